"""SOQL evaluation over the org's records (the parser lives in soql_parse.py)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol

from . import ids
from .contract import ApiError
from .schema import NUMBER_TYPES, STRING_TYPES, FieldDef, ObjectDef, Schema
from .soql_parse import (
    BoolOp,
    Compare,
    Cond,
    CountItem,
    FieldRef,
    Literal,
    Not,
    Query,
    error_prefix,
    parse,
)
from .values import fmt_datetime, parse_datetime

Rec = dict[str, Any]
Pred = Callable[[Rec], bool]
_CUSTOM_HINT = (
    "If you are attempting to use a custom field, be sure to append the '__c' after "
    "the custom field name. Please reference your WSDL or the describe call for the "
    "appropriate names."
)


class RecordSource(Protocol):
    def scan(self, sobject: str) -> Iterable[Rec]: ...  # visible records, in id order

    def get(self, record_id: str) -> Rec | None: ...  # visible record by 18-char id

    def now(self) -> datetime: ...


@dataclass(frozen=True)
class QueryResult:
    records: list[Rec]
    total_size: int


@dataclass(frozen=True)
class Resolved:
    hops: tuple[tuple[FieldDef, ObjectDef], ...]  # lookup field, target object
    final: FieldDef


class _Compiler:
    def __init__(self, schema: Schema, source: RecordSource, soql: str, version: str) -> None:
        self.schema, self.source, self.soql, self.version = schema, source, soql, version

    def err(self, pos: int, code: str, msg: str) -> ApiError:
        return ApiError(400, code, error_prefix(self.soql, pos) + msg)

    def obj(self, q: Query) -> ObjectDef:
        obj = self.schema.get(q.sobject)
        if obj is None:
            raise self.err(
                q.sobject_pos,
                "INVALID_TYPE",
                f"sObject type '{q.sobject}' is not supported. If you are attempting "
                "to use a custom object, be sure to append the '__c' after the entity "
                "name. Please reference your WSDL or the describe call for the "
                "appropriate names.",
            )
        return obj

    def resolve(self, obj: ObjectDef, ref: FieldRef) -> Resolved:
        parts = list(ref.path)
        if (
            len(parts) > 1
            and parts[0].lower() == obj.name.lower()
            and parts[0].lower() not in obj.by_relationship
        ):
            parts = parts[1:]
        hops: list[tuple[FieldDef, ObjectDef]] = []
        cur = obj
        for rel in parts[:-1]:
            lookup = cur.by_relationship.get(rel.lower())
            target = self.schema.get(lookup.reference_to[0]) if lookup else None
            if lookup is None or target is None:
                raise self.err(
                    ref.pos,
                    "INVALID_FIELD",
                    f"Didn't understand relationship '{rel}' in field path. If you "
                    "are attempting to use a custom relationship, be sure to append "
                    "the '__r' after the custom relationship name. Please reference "
                    "your WSDL or the describe call for the appropriate names.",
                )
            hops.append((lookup, target))
            cur = target
        final = cur.field(parts[-1])
        if final is None:
            raise self.err(
                ref.pos,
                "INVALID_FIELD",
                f"No such column '{parts[-1]}' on entity '{cur.name}'. {_CUSTOM_HINT}",
            )
        return Resolved(tuple(hops), final)

    def getter(self, r: Resolved) -> Callable[[Rec], Any]:
        name = r.final.name
        if not r.hops:
            return lambda rec: rec.get(name)
        hop_names = [h.name for h, _ in r.hops]
        get = self.source.get

        def follow(rec: Rec) -> Any:
            cur: Rec | None = rec
            for hn in hop_names:
                pid = cur.get(hn) if cur else None
                cur = get(pid) if pid else None
            return cur.get(name) if cur else None

        return follow

    # --- WHERE ---------------------------------------------------------------------------
    def cond(self, obj: ObjectDef, c: Cond) -> Pred:
        if isinstance(c, BoolOp):
            preds = [self.cond(obj, i) for i in c.items]
            if c.op == "AND":
                return lambda rec: all(p(rec) for p in preds)
            return lambda rec: any(p(rec) for p in preds)
        if isinstance(c, Not):
            inner = self.cond(obj, c.item)
            return lambda rec: not inner(rec)
        return self.compare(obj, c)

    def convert(self, f: FieldDef, lit: Literal) -> Any:
        t = f.type
        kind = lit.kind
        if kind == "null":
            return None
        if t in STRING_TYPES:
            if kind != "string":
                raise self._type_err(lit, f, "string", "should be enclosed in quotes")
            return str(lit.value).lower()
        if t in ("id", "reference"):
            rid = ids.normalize(lit.value) if kind == "string" else None
            if rid is None:
                raise self.err(
                    lit.pos, "INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {lit.value}"
                )
            return rid
        if t == "boolean":
            if kind != "bool":
                raise self._type_err(lit, f, "boolean", "should not be enclosed in quotes")
            return lit.value
        if t in NUMBER_TYPES or t in ("int", "long"):
            if kind != "number":
                raise self._type_err(lit, f, "number", "should not be enclosed in quotes")
            return lit.value
        if t == "date" and kind == "date":
            return lit.value
        if t == "datetime" and kind == "datetime":
            dt = parse_datetime(lit.value)
            if dt is None:
                raise self.err(lit.pos, "MALFORMED_QUERY", f"invalid dateTime: {lit.value}")
            return fmt_datetime(dt)
        if t in ("date", "datetime"):
            want = "dateTime" if t == "datetime" else "date"
            raise self._type_err(lit, f, want, "should not be enclosed in quotes")
        return lit.value

    def _type_err(self, lit: Literal, f: FieldDef, want: str, tail: str) -> ApiError:
        return self.err(
            lit.pos,
            "INVALID_FIELD",
            f"value of filter criterion for field '{f.name}' must be of type {want} and {tail}",
        )

    def date_range(self, f: FieldDef, lit: Literal) -> tuple[str, str]:
        if f.type not in ("date", "datetime"):
            raise self._type_err(lit, f, f.type, "should not be a date literal")
        today = self.source.now().astimezone(UTC).date()
        n = lit.n or 0
        name = lit.value
        if name == "TODAY":
            lo, hi = today, today + timedelta(days=1)
        elif name == "YESTERDAY":
            lo, hi = today - timedelta(days=1), today
        elif name == "TOMORROW":
            lo, hi = today + timedelta(days=1), today + timedelta(days=2)
        elif name == "LAST_N_DAYS":
            lo, hi = today - timedelta(days=n), today + timedelta(days=1)
        elif name == "NEXT_N_DAYS":
            lo, hi = today + timedelta(days=1), today + timedelta(days=n + 1)
        elif name == "N_DAYS_AGO":
            lo, hi = today - timedelta(days=n), today - timedelta(days=n - 1)
        elif name == "THIS_MONTH":
            lo = today.replace(day=1)
            hi = (lo + timedelta(days=32)).replace(day=1)
        elif name == "LAST_MONTH":
            hi = today.replace(day=1)
            lo = (hi - timedelta(days=1)).replace(day=1)
        else:  # THIS_YEAR
            lo, hi = date(today.year, 1, 1), date(today.year + 1, 1, 1)
        if f.type == "date":
            return lo.isoformat(), hi.isoformat()
        return (
            fmt_datetime(datetime.combine(lo, time(), UTC)),
            fmt_datetime(datetime.combine(hi, time(), UTC)),
        )

    def compare(self, obj: ObjectDef, c: Compare) -> Pred:
        r = self.resolve(obj, c.field)
        f = r.final
        if not f.filterable:
            raise self.err(
                c.field.pos, "INVALID_FIELD", f"field '{f.name}' can not be filtered in query call"
            )
        op = c.op
        multi_valued = f.type == "multipicklist"
        if op in ("INCLUDES", "EXCLUDES") and not multi_valued:
            raise self.err(
                c.field.pos,
                "INVALID_QUERY_FILTER_OPERATOR",
                "includes or excludes operator only valid on multipicklist field",
            )
        if multi_valued and op not in _MULTIPICKLIST_OPS:
            raise self.err(
                c.field.pos,
                "INVALID_QUERY_FILTER_OPERATOR",
                "invalid operator on multipicklist field",
            )
        raw = self.getter(r)
        lower = f.type in STRING_TYPES
        get: Callable[[Rec], Any] = (lambda rec: _low(raw(rec))) if lower else raw
        if isinstance(c.value, Query | tuple):
            if op in ("INCLUDES", "EXCLUDES"):
                assert isinstance(c.value, tuple)
                terms = [set(str(self.convert(f, v) or "").split(";")) for v in c.value]
                inc = op == "INCLUDES"

                def multi(rec: Rec) -> bool:
                    v = get(rec)
                    have = set(v.split(";")) if v else set()
                    hit = any(t <= have for t in terms)
                    return hit if inc else not hit

                return multi
            values = (
                self.semi_join(c.value)
                if isinstance(c.value, Query)
                else {self.convert(f, v) for v in c.value}
            )
            if op == "IN":
                return lambda rec: get(rec) in values
            return lambda rec: get(rec) not in values
        lit = c.value
        if op == "LIKE":
            rx = _like_regex(str(lit.value))
            return lambda rec: (v := raw(rec)) is not None and rx.fullmatch(str(v)) is not None
        if lit.kind == "dateliteral":
            lo, hi = self.date_range(f, lit)
            ranges: dict[str, Callable[[Any], bool]] = {
                "=": lambda v: lo <= v < hi,
                "!=": lambda v: not lo <= v < hi,
                "<": lambda v: v < lo,
                "<=": lambda v: v < hi,
                ">": lambda v: v >= hi,
                ">=": lambda v: v >= lo,
            }
            test = ranges[op]
            return lambda rec: (v := get(rec)) is not None and test(v)
        x = self.convert(f, lit)
        if multi_valued and x is not None:
            # 'A;B' names a selection, not a string: it equals 'B;A'
            chosen = frozenset(str(x).split(";"))

            def same(rec: Rec) -> bool:
                v = get(rec)
                return v is not None and frozenset(v.split(";")) == chosen

            return same if op == "=" else lambda rec: not same(rec)
        if op == "=":
            return lambda rec: get(rec) == x
        if op == "!=":
            return lambda rec: get(rec) != x
        if x is None:
            return lambda rec: False
        ops: dict[str, Callable[[Any], bool]] = {
            "<": lambda v: v < x,
            "<=": lambda v: v <= x,
            ">": lambda v: v > x,
            ">=": lambda v: v >= x,
        }
        test = ops[op]
        return lambda rec: (v := get(rec)) is not None and test(v)

    def semi_join(self, q: Query) -> set[Any]:
        if len(q.select) != 1 or not isinstance(q.select[0], FieldRef):
            raise self.err(
                q.sobject_pos, "MALFORMED_QUERY", "semi join sub-selects can only select one field"
            )
        res = run(self.schema, self.source, q, self.soql, self.version, raw=True)
        return {r for r in res.records}

    # --- projection ----------------------------------------------------------------------
    def attrs(self, obj: ObjectDef, rid: str) -> dict[str, str]:
        return {
            "type": obj.name,
            "url": f"/services/data/v{self.version}/sobjects/{obj.name}/{rid}",
        }


# The SOQL docs' operators for a multi-select picklist, plus IN / NOT IN, left as they
# were (unverified either way).
_MULTIPICKLIST_OPS = frozenset({"=", "!=", "INCLUDES", "EXCLUDES", "IN", "NOT_IN"})


def _low(v: Any) -> Any:
    return v.lower() if isinstance(v, str) else v


def _like_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def execute(schema: Schema, source: RecordSource, soql: str, version: str) -> QueryResult:
    if not soql or not soql.strip():
        raise ApiError(400, "MALFORMED_QUERY", "SOQL query is empty")
    return run(schema, source, parse(soql), soql, version)


def run(
    schema: Schema,
    source: RecordSource,
    q: Query,
    soql: str,
    version: str,
    raw: bool = False,
    rows: Iterable[Rec] | None = None,
) -> QueryResult:
    from .soql_exec import run_query

    return run_query(_Compiler(schema, source, soql, version), q, raw, rows)


__all__ = ["CountItem", "QueryResult", "RecordSource", "Resolved", "execute"]
