"""The few SQL statements the connector conformance suite writes as "another application",
run against a MemoryDatabase: CREATE TABLE, INSERT ... VALUES, UPDATE ... SET ... WHERE,
DELETE ... WHERE, SELECT ... [WHERE]. WHERE is `column = value` joined by AND; SET takes a
value, a column, or `column + value`. Values: `%s` parameters, numbers, 'text', NULL."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from syncswim_lib.connectors.memory import MemoryDatabase, Transaction
from syncswim_lib.values import ColumnInfo, TableInfo, TypeFamily

_TOKEN = re.compile(r"\s*(?:(%s)|('(?:[^']|'')*')|(-?\d+(?:\.\d+)?)|(\w+)|(\S))")

# type name -> (family, auto-generated)
_TYPES: dict[str, tuple[TypeFamily, bool]] = {
    "serial": ("int", True),
    "bigserial": ("int", True),
    "int": ("int", False),
    "integer": ("int", False),
    "bigint": ("int", False),
    "smallint": ("int", False),
    "varchar": ("text", False),
    "text": ("text", False),
    "numeric": ("decimal", False),
    "decimal": ("decimal", False),
    "boolean": ("bool", False),
    "bool": ("bool", False),
    "date": ("date", False),
    "timestamptz": ("timestamptz", False),
    "timestamp": ("timestamp", False),
    "json": ("json", False),
    "jsonb": ("json", False),
    "double": ("float", False),
    "real": ("float", False),
}


class _Param:
    """A `%s` placeholder: the next parameter."""


class _Col:
    def __init__(self, name: str) -> None:
        self.name = name


class _Tokens:
    def __init__(self, sql: str) -> None:
        self.items: list[Any] = []
        for m in _TOKEN.finditer(sql.strip()):
            param, text, number, word, other = m.groups()
            if param:
                self.items.append(_Param())
            elif text is not None:
                self.items.append(("str", text[1:-1].replace("''", "'")))
            elif number is not None:
                self.items.append(("num", float(number) if "." in number else int(number)))
            elif word is not None:
                self.items.append(word)
            elif other is not None:
                self.items.append(other)
        self.i = 0

    def peek(self) -> Any:
        return self.items[self.i] if self.i < len(self.items) else None

    def next(self) -> Any:
        item = self.peek()
        self.i += 1
        return item

    def word(self, *expected: str) -> str:
        item = self.next()
        if not isinstance(item, str) or (expected and item.upper() not in expected):
            raise ValueError(f"expected {' or '.join(expected) or 'a name'}, got {item!r}")
        return item

    def accept(self, word: str) -> bool:
        item = self.peek()
        if isinstance(item, str) and item.upper() == word.upper():
            self.i += 1
            return True
        return False

    def done(self) -> bool:
        return self.i >= len(self.items)


def _value(tokens: _Tokens, params: Iterator[Any]) -> Any:
    item = tokens.next()
    if isinstance(item, _Param):
        return next(params)
    if isinstance(item, tuple):
        return item[1]
    if isinstance(item, str) and item.upper() == "NULL":
        return None
    if isinstance(item, str) and item.upper() in ("TRUE", "FALSE"):
        return item.upper() == "TRUE"
    raise ValueError(f"expected a value, got {item!r}")


def _expr(tokens: _Tokens, params: Iterator[Any]) -> Any:
    """A value, a column, or `column + value`."""
    item = tokens.peek()
    if (
        isinstance(item, str)
        and item.upper() not in ("NULL", "TRUE", "FALSE")
        and item.isidentifier()
    ):
        tokens.next()
        col = _Col(item)
        if tokens.peek() == "+":
            tokens.next()
            return (col, _value(tokens, params))
        return col
    return _value(tokens, params)


Where = list[tuple[str, list[Any]]]  # column -> the values it may hold


def _where(tokens: _Tokens, params: Iterator[Any]) -> Where:
    where: Where = []
    if not tokens.accept("WHERE"):
        return where
    while True:
        name = tokens.word()
        if tokens.accept("IN"):
            if tokens.next() != "(":
                raise ValueError("expected (")
            values = [_value(tokens, params)]
            while tokens.next() == ",":
                values.append(_value(tokens, params))
        elif tokens.next() == "=":
            values = [_value(tokens, params)]
        else:
            raise ValueError("only `column = value` and `column IN (...)` are supported")
        where.append((name, values))
        if not tokens.accept("AND"):
            return where


def _select(txn: Transaction, table: str, where: Where) -> list[dict[str, Any]]:
    """The rows `where` finds, in primary-key order."""
    if not where:
        return txn.select(table)
    pk = txn.db.describe(table).primary_key
    found: set[str] = set()
    for combo in itertools.product(*(values for _, values in where)):
        cond = {name: value for (name, _), value in zip(where, combo, strict=True)}
        found.update(repr([row[k] for k in pk]) for row in txn.select(table, cond))
    return [row for row in txn.select(table) if repr([row[k] for k in pk]) in found]


def _names(tokens: _Tokens) -> list[str]:
    if tokens.next() != "(":
        raise ValueError("expected (")
    names = []
    while True:
        names.append(tokens.word())
        sep = tokens.next()
        if sep == ")":
            return names
        if sep != ",":
            raise ValueError(f"expected , or ), got {sep!r}")


def _create(db: MemoryDatabase, tokens: _Tokens) -> None:
    tokens.word("TABLE")
    name = tokens.word()
    if tokens.next() != "(":
        raise ValueError("expected (")
    columns: list[ColumnInfo] = []
    pk: list[str] = []
    unique: list[tuple[str, ...]] = []
    while True:
        if tokens.accept("PRIMARY"):
            tokens.word("KEY")
            pk.extend(_names(tokens))
            if tokens.next() == ")":
                break
            continue
        if tokens.accept("UNIQUE"):
            unique.append(tuple(_names(tokens)))
            if tokens.next() == ")":
                break
            continue
        col = tokens.word()
        type_name = tokens.word().lower()
        family, auto = _TYPES.get(type_name, ("other", False))
        precision = scale = max_length = None
        db_type = type_name
        if type_name == "double":
            tokens.accept("precision")
        if tokens.peek() == "(":
            tokens.next()
            first = tokens.next()[1]
            second = None
            if tokens.peek() == ",":
                tokens.next()
                second = tokens.next()[1]
            tokens.next()  # )
            db_type = f"{type_name}({first}{'' if second is None else f',{second}'})"
            if family == "text":
                max_length = first
            elif family == "decimal":
                precision, scale = first, second or 0
            else:
                precision = first
        nullable = True
        while tokens.peek() not in (",", ")"):
            word = tokens.word().upper()
            if word == "PRIMARY":
                tokens.word("KEY")
                pk.append(col)
                nullable = False
            elif word == "UNIQUE":
                unique.append((col,))
            elif word == "NOT":
                tokens.word("NULL")
                nullable = False
            elif word == "AUTO_INCREMENT":
                auto = True
            elif word != "NULL":
                raise ValueError(f"unsupported column option {word}")
        columns.append(
            ColumnInfo(col, family, db_type, nullable, precision, scale, max_length, auto)
        )
        if tokens.next() == ")":
            break
    # a primary-key column is NOT NULL, wherever the key is declared
    columns = [replace(c, nullable=False) if c.name in pk else c for c in columns]
    groups = ([tuple(pk)] if pk else []) + unique
    db.create_table(TableInfo(name, tuple(columns), tuple(pk), tuple(groups)))


def _create_index(db: MemoryDatabase, tokens: _Tokens) -> None:
    """CREATE INDEX name ON table (columns): a plain index changes nothing here."""
    tokens.word()
    tokens.word("ON")
    table = tokens.word()
    names = _names(tokens)
    info = db.describe(table)
    for name in names:
        if info.column(name) is None:
            raise ValueError(f"column {name} does not exist in table {table}")


def _set_values(row: dict[str, Any], assignments: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, expr in assignments:
        if isinstance(expr, _Col):
            values[name] = row[expr.name]
        elif isinstance(expr, tuple):
            col, add = expr
            base = row[col.name]
            values[name] = None if base is None or add is None else base + add
        else:
            values[name] = expr
    return values


def execute(
    db: MemoryDatabase, txn: Transaction, sql: str, params: Sequence[Any]
) -> list[tuple[Any, ...]]:
    tokens = _Tokens(sql)
    args = iter(params)
    verb = tokens.word().upper()
    rows: list[tuple[Any, ...]] = []
    if verb == "CREATE" and tokens.accept("INDEX"):
        _create_index(db, tokens)
    elif verb == "CREATE":
        _create(db, tokens)
    elif verb == "INSERT":
        tokens.word("INTO")
        table = tokens.word()
        names = _names(tokens)
        tokens.word("VALUES")
        if tokens.next() != "(":
            raise ValueError("expected (")
        values = []
        for i in range(len(names)):
            values.append(_value(tokens, args))
            if tokens.next() != ("," if i < len(names) - 1 else ")"):
                raise ValueError("malformed VALUES")
        txn.insert(table, dict(zip(names, values, strict=True)))
    elif verb == "UPDATE":
        table = tokens.word()
        tokens.word("SET")
        assignments = []
        while True:
            name = tokens.word()
            if tokens.next() != "=":
                raise ValueError("expected =")
            assignments.append((name, _expr(tokens, args)))
            if tokens.peek() != ",":
                break
            tokens.next()
        where = _where(tokens, args)
        pk = db.describe(table).primary_key
        for row in _select(txn, table, where):
            txn.update(table, {k: row[k] for k in pk}, _set_values(row, assignments))
    elif verb == "DELETE":
        tokens.word("FROM")
        table = tokens.word()
        pk = db.describe(table).primary_key
        for row in _select(txn, table, _where(tokens, args)):
            txn.delete(table, {k: row[k] for k in pk})
    elif verb == "SELECT":
        names = [tokens.word()]
        while tokens.peek() == ",":
            tokens.next()
            names.append(tokens.word())
        tokens.word("FROM")
        table = tokens.word()
        rows = [tuple(r[n] for n in names) for r in _select(txn, table, _where(tokens, args))]
    else:
        raise ValueError(f"unsupported statement {verb}")
    if not tokens.done():
        raise ValueError(f"unexpected {tokens.peek()!r} in {sql!r}")
    return rows
