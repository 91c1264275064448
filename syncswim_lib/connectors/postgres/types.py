"""PostgreSQL types: families, canonical values (from text and from psycopg), Arrow types.

Canonical values (see `envelope.py`): int, float, Decimal, str, bool, date, aware UTC
datetime (for `timestamp` too: a zone-less timestamp is read as UTC), dict/list/scalar
for JSON, bytes for bytea. `uuid`, `time` and every other type are the server's text
output, so capture (which decodes text) and snapshot/fetch (which cast these types to
text in SQL) produce the very same strings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from syncswim_lib.values import ColumnInfo, TypeFamily
from syncswim_lib.values.arrow import decimal_is_bounded

# Built-in type OIDs (pg_type.dat) -> family; capture falls back to `describe` for others.
OID_FAMILY: dict[int, TypeFamily] = {
    20: "int", 21: "int", 23: "int", 26: "int",
    700: "float", 701: "float",
    1700: "decimal",
    16: "bool",
    18: "text", 19: "text", 25: "text", 1042: "text", 1043: "text",
    1082: "date",
    1114: "timestamp",
    1184: "timestamptz",
    1083: "time", 1266: "time",
    114: "json", 3802: "json",
    17: "bytes",
    2950: "uuid",
}  # fmt: skip

# Base type name (pg_type.typname) -> family, for `describe`.
NAME_FAMILY: dict[str, TypeFamily] = {
    "int2": "int", "int4": "int", "int8": "int", "oid": "int",
    "float4": "float", "float8": "float",
    "numeric": "decimal",
    "bool": "bool",
    "char": "text", "name": "text", "text": "text", "bpchar": "text", "varchar": "text",
    "citext": "text",
    "date": "date",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
    "time": "time", "timetz": "time",
    "json": "json", "jsonb": "json",
    "bytea": "bytes",
    "uuid": "uuid",
}  # fmt: skip

# Families read as the server's text output (cast to text in snapshot and fetch queries).
TEXT_CAST_FAMILIES = frozenset({"uuid", "time", "other"})


def family_of(type_name: str, type_type: str) -> TypeFamily:
    """Family of a base type by name; enums are text, anything unknown is 'other'."""
    if type_type == "e":
        return "text"
    return NAME_FAMILY.get(type_name, "other")


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _timestamptz(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _bytea(text: str) -> bytes:
    return bytes.fromhex(text[2:]) if text.startswith("\\x") else text.encode()


def _as_text(text: str) -> str:
    return text


def _bool(text: str) -> bool:
    return text == "t"


_FROM_TEXT: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "decimal": Decimal,
    "bool": _bool,
    "date": date.fromisoformat,
    "timestamp": _timestamp,
    "timestamptz": _timestamptz,
    "json": json.loads,
    "bytes": _bytea,
}


def text_converter(family: TypeFamily) -> Callable[[str], Any]:
    """The function turning this family's text output into its canonical value."""
    convert = _FROM_TEXT.get(family, _as_text)
    if convert in (int, float, _bool, _as_text):
        return convert

    def guarded(text: str) -> Any:
        try:
            return convert(text)
        except (ValueError, ArithmeticError):
            # 'infinity', BC dates, years past 9999: Python cannot hold them; keep the text
            return text

    return guarded


def from_text(text: str | None, family: TypeFamily) -> Any:
    """The canonical value of one column in PostgreSQL's text output form."""
    return None if text is None else text_converter(family)(text)


def from_db(value: Any, family: TypeFamily) -> Any:
    """The canonical value of a column as psycopg loaded it (text-cast families excepted)."""
    if value is None:
        return None
    if family in ("timestamp", "timestamptz") and isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if family == "bytes" and isinstance(value, memoryview):
        return bytes(value)
    return value


def json_text(value: Any) -> str:
    """One text form for a JSON value, whatever json/jsonb stored: sorted keys, compact."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def arrow_value(value: Any, column: ColumnInfo) -> Any:
    """A canonical value in the form `pa.array(..., type=arrow_type(column))` accepts
    (`syncswim_lib.values.arrow`)."""
    if value is None:
        return None
    if column.family == "json":
        return json_text(value)
    if column.family == "decimal" and not decimal_is_bounded(column):
        return format(value, "f") if isinstance(value, Decimal) else str(value)
    if column.family in ("date", "timestamp", "timestamptz") and isinstance(value, str):
        return None  # 'infinity' and other values Arrow cannot hold
    return value


def db_param(value: Any, column: ColumnInfo) -> Any:
    """A coerced canonical value as psycopg must send it to `column`."""
    if value is None:
        return None
    if column.family == "json":
        from psycopg.types.json import Json, Jsonb

        return Jsonb(value) if column.db_type.startswith("jsonb") else Json(value)
    if column.family == "timestamp" and isinstance(value, datetime) and value.tzinfo:
        # a zone-less column holds UTC wall-clock time; sending an aware value would make
        # the server convert it through the session time zone
        return value.astimezone(UTC).replace(tzinfo=None)
    return value
