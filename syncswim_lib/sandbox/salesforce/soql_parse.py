"""SOQL lexer and parser for the subset a sync tool uses (see docs/salesforce-emulator.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .contract import ApiError

_TOKEN_RE = re.compile(
    r"""(?P<ws>\s+)
    |(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
    |(?P<date>\d{4}-\d{2}-\d{2})
    |(?P<number>[+-]?\d+(?:\.\d+)?)
    |(?P<string>'(?:[^'\\]|\\.)*')
    |(?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    |(?P<op>!=|<>|<=|>=|=|<|>)
    |(?P<punct>[(),:])
    """,
    re.VERBOSE,
)
_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "b": "\b",
    "f": "\f",
    "'": "'",
    '"': '"',
    "\\": "\\",
    "%": "\\%",
    "_": "\\_",
}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int

    @property
    def upper(self) -> str:
        return self.text.upper()


@dataclass(frozen=True)
class FieldRef:
    path: tuple[str, ...]
    pos: int


@dataclass(frozen=True)
class CountItem:
    arg: FieldRef | None
    alias: str | None


@dataclass(frozen=True)
class Literal:
    kind: str  # string number bool null date datetime dateliteral
    value: Any
    pos: int
    n: int | None = None


@dataclass(frozen=True)
class Compare:
    field: FieldRef
    op: str  # = != < <= > >= IN NOT_IN LIKE INCLUDES EXCLUDES
    value: Literal | tuple[Literal, ...] | Query


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND OR
    items: tuple[Cond, ...]


@dataclass(frozen=True)
class Not:
    item: Cond


Cond = Compare | BoolOp | Not


@dataclass(frozen=True)
class OrderItem:
    field: FieldRef
    desc: bool
    nulls_last: bool


@dataclass(frozen=True)
class Query:
    select: tuple[FieldRef | CountItem | Query, ...]
    sobject: str
    sobject_pos: int
    where: Cond | None
    order: tuple[OrderItem, ...]
    limit: int | None
    offset: int | None


DATE_LITERALS = frozenset(
    {
        "TODAY",
        "YESTERDAY",
        "TOMORROW",
        "LAST_N_DAYS",
        "NEXT_N_DAYS",
        "N_DAYS_AGO",
        "THIS_MONTH",
        "LAST_MONTH",
        "THIS_YEAR",
    }
)
_N_LITERALS = frozenset({"LAST_N_DAYS", "NEXT_N_DAYS", "N_DAYS_AGO"})
_RESERVED = frozenset(
    {
        "FROM",
        "WHERE",
        "ORDER",
        "LIMIT",
        "OFFSET",
        "GROUP",
        "HAVING",
        "AND",
        "OR",
        "NOT",
        "IN",
        "LIKE",
        "ASC",
        "DESC",
        "NULLS",
        "BY",
        "SELECT",
        "INCLUDES",
        "EXCLUDES",
        "WITH",
        "FOR",
        "USING",
    }
)


def error_prefix(soql: str, pos: int) -> str:
    row = soql.count("\n", 0, pos) + 1
    line_start = soql.rfind("\n", 0, pos) + 1
    col = pos - line_start + 1
    line_end = soql.find("\n", pos)
    line = soql[line_start : line_end if line_end >= 0 else len(soql)]
    return f"\n{line}\n{' ' * (col - 1)}^\nERROR at Row:{row}:Column:{col}\n"


def tokenize(soql: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(soql):
        m = _TOKEN_RE.match(soql, pos)
        if not m:
            raise ApiError(
                400, "MALFORMED_QUERY", error_prefix(soql, pos) + f"unexpected token: '{soql[pos]}'"
            )
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(Token(kind, m.group(), pos))
        pos = m.end()
    out.append(Token("eof", "", len(soql)))
    return out


def unescape(raw: str) -> str:
    body = raw[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


class Parser:
    def __init__(self, soql: str) -> None:
        self.soql = soql
        self.toks = tokenize(soql)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def fail(self, tok: Token | None = None) -> ApiError:
        t = tok or self.tok
        shown = t.text if t.kind != "eof" else "<EOF>"
        return ApiError(
            400, "MALFORMED_QUERY", error_prefix(self.soql, t.pos) + f"unexpected token: '{shown}'"
        )

    def take(self) -> Token:
        t = self.tok
        self.i += 1
        return t

    def kw(self, *words: str) -> bool:
        return self.tok.kind == "ident" and self.tok.upper in words

    def expect_kw(self, word: str) -> Token:
        if not self.kw(word):
            raise self.fail()
        return self.take()

    def expect(self, text: str) -> Token:
        if self.tok.text != text:
            raise self.fail()
        return self.take()

    def parse(self) -> Query:
        q = self.query()
        if self.tok.kind != "eof":
            raise self.fail()
        return q

    def query(self) -> Query:
        self.expect_kw("SELECT")
        select: list[FieldRef | CountItem | Query] = [self.select_item()]
        while self.tok.text == ",":
            self.take()
            select.append(self.select_item())
        self.expect_kw("FROM")
        obj = self.take()
        if obj.kind != "ident" or "." in obj.text or obj.upper in _RESERVED:
            raise self.fail(obj)
        where = None
        if self.kw("WHERE"):
            self.take()
            where = self.cond()
        order: list[OrderItem] = []
        if self.kw("ORDER"):
            self.take()
            self.expect_kw("BY")
            order.append(self.order_item())
            while self.tok.text == ",":
                self.take()
                order.append(self.order_item())
        limit = offset = None
        if self.kw("LIMIT"):
            self.take()
            limit = self.integer()
        if self.kw("OFFSET"):
            self.take()
            offset = self.integer()
        return Query(tuple(select), obj.text, obj.pos, where, tuple(order), limit, offset)

    def integer(self) -> int:
        t = self.take()
        if t.kind != "number" or not t.text.isdigit():
            raise self.fail(t)
        return int(t.text)

    def field(self) -> FieldRef:
        t = self.take()
        if t.kind != "ident" or t.upper in _RESERVED:
            raise self.fail(t)
        return FieldRef(tuple(t.text.split(".")), t.pos)

    def select_item(self) -> FieldRef | CountItem | Query:
        if self.tok.text == "(":
            self.take()
            sub = self.query()
            self.expect(")")
            return sub
        if self.kw("COUNT") and self.toks[self.i + 1].text == "(":
            self.take()
            self.take()
            arg = None if self.tok.text == ")" else self.field()
            self.expect(")")
            alias = None
            if self.tok.kind == "ident" and self.tok.upper not in _RESERVED:
                alias = self.take().text
            return CountItem(arg, alias)
        return self.field()

    def order_item(self) -> OrderItem:
        f = self.field()
        desc = False
        if self.kw("ASC", "DESC"):
            desc = self.take().upper == "DESC"
        nulls_last = False
        if self.kw("NULLS"):
            self.take()
            if not self.kw("FIRST", "LAST"):
                raise self.fail()
            nulls_last = self.take().upper == "LAST"
        return OrderItem(f, desc, nulls_last)

    def cond(self) -> Cond:
        items = [self.not_cond()]
        op = ""
        while self.kw("AND", "OR"):
            if op and self.tok.upper != op:
                # SOQL gives AND no precedence over OR: a real org refuses the mix
                # unless parentheses group it.
                raise self.fail()
            op = self.take().upper
            items.append(self.not_cond())
        return items[0] if len(items) == 1 else BoolOp(op, tuple(items))

    def not_cond(self) -> Cond:
        if self.kw("NOT"):
            self.take()
            return Not(self.not_cond())
        if self.tok.text == "(":
            self.take()
            c = self.cond()
            self.expect(")")
            return c
        return self.comparison()

    def comparison(self) -> Compare:
        f = self.field()
        if self.tok.kind == "op":
            op = self.take().text
            return Compare(f, "!=" if op == "<>" else op, self.literal())
        if self.kw("NOT") and self.toks[self.i + 1].upper == "IN":
            self.take()
            self.take()
            return Compare(f, "NOT_IN", self.in_values())
        if self.kw("IN", "INCLUDES", "EXCLUDES"):
            op = self.take().upper
            return Compare(f, op, self.in_values())
        if self.kw("LIKE"):
            self.take()
            lit = self.literal()
            if lit.kind != "string":
                raise self.fail()
            return Compare(f, "LIKE", lit)
        raise self.fail()

    def in_values(self) -> tuple[Literal, ...] | Query:
        self.expect("(")
        if self.kw("SELECT"):
            sub = self.query()
            self.expect(")")
            return sub
        vals = [self.literal()]
        while self.tok.text == ",":
            self.take()
            vals.append(self.literal())
        self.expect(")")
        return tuple(vals)

    def literal(self) -> Literal:
        t = self.take()
        if t.kind == "string":
            return Literal("string", unescape(t.text), t.pos)
        if t.kind == "number":
            num = float(t.text) if "." in t.text else int(t.text)
            return Literal("number", num, t.pos)
        if t.kind in ("date", "datetime"):
            return Literal(t.kind, t.text, t.pos)
        if t.kind == "ident":
            u = t.upper
            if u in ("TRUE", "FALSE"):
                return Literal("bool", u == "TRUE", t.pos)
            if u == "NULL":
                return Literal("null", None, t.pos)
            if u in DATE_LITERALS:
                n = None
                if u in _N_LITERALS:
                    self.expect(":")
                    n = self.integer()
                return Literal("dateliteral", u, t.pos, n)
        raise self.fail(t)


def parse(soql: str) -> Query:
    return Parser(soql).parse()
