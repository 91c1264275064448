"""MySQL/MariaDB column types: families, canonical values, driver values, Arrow types.

Values reach us from two decoders that disagree in small ways (PyMySQL's text protocol for
snapshots and fetches, mysql-replication for the binlog): `to_canonical` makes both give
the same canonical value, so a row read by snapshot equals the same row seen in capture.

Values a family cannot hold are never bent to fit: a `tinyint(1)` (family bool) holding
something other than 0 or 1 reads as that int, and a zero date or datetime (stored by a
session without NO_ZERO_DATE) as its text, '0000-00-00' / '0000-00-00 00:00:00'. Other
invalid dates (a zero month or day) read as the server prints them; the binlog decoder
does not hand their parts on, so capture reads them as the zero date. `coerce` refuses
all of them for a bool or date column, so they surface as record errors.
"""

from __future__ import annotations

import json
import re
import struct
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa

from syncswim_lib.values import ColumnInfo, TypeFamily
from syncswim_lib.values.arrow import arrow_type as value_arrow_type

_INT_TYPES = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year", "bit"}
_TEXT_TYPES = {
    "char",
    "varchar",
    "tinytext",
    "text",
    "mediumtext",
    "longtext",
    "enum",
    "set",
    "inet4",
    "inet6",
}
_BYTES_TYPES = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"}
_FLOAT_TYPES = {"float", "double", "real", "double precision"}
ZERO_DATE = "0000-00-00"
ZERO_DATETIME = "0000-00-00 00:00:00"
_ZERO = re.compile(r"0000-00-00(?:[ T]00:00:00(?:\.0*)?)?")
# a zero TIMESTAMP is stored as second 0, which the binlog decoder turns into the epoch
_EPOCH = datetime(1970, 1, 1)
_SIMPLE: dict[str, TypeFamily] = {
    "decimal": "decimal",
    "numeric": "decimal",
    "date": "date",
    "datetime": "timestamp",
    "timestamp": "timestamptz",
    "time": "time",
    "json": "json",
    "uuid": "uuid",
}


def family_for(data_type: str, column_type: str, json_checked: bool) -> TypeFamily:
    """`data_type`/`column_type` as information_schema spells them.

    MariaDB's JSON is LONGTEXT with a json_valid() CHECK: the caller says if it has one.
    """
    dt = data_type.lower()
    ct = column_type.lower()
    if (dt == "tinyint" and ct.startswith("tinyint(1)")) or dt in ("bool", "boolean"):
        return "bool"
    if json_checked and dt in _TEXT_TYPES:
        return "json"
    if dt in _INT_TYPES:
        return "int"
    if dt in _FLOAT_TYPES:
        return "float"
    if dt in _TEXT_TYPES:
        return "text"
    if dt in _BYTES_TYPES:
        return "bytes"
    return _SIMPLE.get(dt, "other")


def _is_single_float(column: ColumnInfo) -> bool:
    return column.family == "float" and column.db_type.lower().startswith("float")


def _shortest_float32(value: float) -> float:
    """The binlog gives FLOAT as the exact single-precision value (0.1 -> 0.10000000149...)
    while the text protocol prints the shortest decimal: use the shortest for both."""
    packed = struct.pack("<f", value)
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack("<f", candidate) == packed:
            return candidate
    return value


def _set_members(db_type: str) -> list[str]:
    inner = db_type[db_type.find("(") + 1 : db_type.rfind(")")]
    return [m.replace("''", "'") for m in re.findall(r"'((?:[^']|'')*)'", inner)]


def _normalise_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, dict):
        return {_normalise_json(k): _normalise_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise_json(v) for v in value]
    return value


def _as_text(value: Any, column: ColumnInfo) -> str:
    if isinstance(value, set | frozenset):
        order = _set_members(column.db_type)
        return ",".join(sorted(value, key=lambda m: order.index(m) if m in order else len(order)))
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _as_bytes(value: Any, column: ColumnInfo) -> bytes:
    raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    # BINARY(n) is stored zero-padded; the binlog strips the padding, SELECT keeps it
    if column.db_type.lower().startswith("binary(") and column.max_length:
        raw = raw.ljust(column.max_length, b"\0")
    return raw


def _as_time(value: Any) -> Any:
    if isinstance(value, timedelta):
        # TIME also holds durations (-838:59:59 .. 838:59:59): only a time of day is a time
        if timedelta(0) <= value < timedelta(days=1):
            return (datetime.min + value).time()
        return value
    return value


def _text(value: str | bytes) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


def _as_int(value: Any) -> int:
    if isinstance(value, str):  # BIT from the binlog: "101"
        return int(value, 2) if value else 0
    if isinstance(value, bytes):  # BIT from the text protocol
        return int.from_bytes(value, "big")
    return int(value)


def _as_bool(value: Any) -> bool | int:
    if isinstance(value, bool):
        return value
    number = int(value)
    return bool(number) if number in (0, 1) else number


def _invalid_date(text: str, family: TypeFamily) -> str:
    """The text of a date PyMySQL could not read; every spelling of zero reads as one."""
    if _ZERO.fullmatch(text.strip()):
        return ZERO_DATE if family == "date" else ZERO_DATETIME
    return text


def to_canonical(value: Any, column: ColumnInfo | None) -> Any:
    """A value from PyMySQL or mysql-replication as the canonical Python value."""
    if value is None:
        return None
    family = column.family if column else "other"
    if column is None or family == "other":
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value
    if family == "bool":
        return _as_bool(value)
    if family == "int":
        return _as_int(value)
    if family == "float":
        return _shortest_float32(float(value)) if _is_single_float(column) else float(value)
    if family == "decimal":
        return value if isinstance(value, Decimal) else Decimal(str(value))
    if family in ("text", "uuid"):
        return _as_text(value, column)
    if family == "json":
        if isinstance(value, str | bytes):
            return json.loads(value)  # parsed text holds no bytes: nothing to normalise
        return _normalise_json(value)
    if family == "bytes":
        return _as_bytes(value, column)
    if family in ("timestamp", "timestamptz"):
        if isinstance(value, str | bytes):  # PyMySQL's text of a date it cannot read
            return _invalid_date(_text(value), family)
        if family == "timestamptz" and value == _EPOCH:
            return ZERO_DATETIME  # 1970-01-01 00:00:00 UTC is below TIMESTAMP's range
        # DATETIME has no zone and TIMESTAMP is read in UTC (session and binlog): both UTC
        return value.replace(tzinfo=UTC) if isinstance(value, datetime) else None
    if family == "date":
        if isinstance(value, str | bytes):
            return _invalid_date(_text(value), family)
        return value if isinstance(value, date) else None
    if family == "time":
        return _as_time(value)
    return value


def to_driver(value: Any, column: ColumnInfo) -> Any:
    """A coerced canonical value in the form PyMySQL sends for `column`."""
    if value is None:
        return None
    if column.family == "json":
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value


def arrow_type(column: ColumnInfo) -> pa.DataType:
    """The Arrow type of a snapshot column: the value model's map
    (`syncswim_lib.values.arrow`) but for the types only MySQL has: an unsigned BIGINT
    (uint64), DECIMAL up to 65 digits (decimal256 above 38) and TIME (a time of day)."""
    family = column.family
    if family == "int":
        unsigned_big = column.db_type.lower().startswith("bigint") and "unsigned" in column.db_type
        return pa.uint64() if unsigned_big else pa.int64()
    if family == "decimal":
        precision = column.precision or 38
        scale = column.scale or 0
        if precision <= 38:
            return pa.decimal128(precision, scale)
        return pa.decimal256(precision, scale)
    if family == "time":
        return pa.time64("us")
    return value_arrow_type(column)  # json as JSON text


def to_arrow_value(value: Any, column: ColumnInfo) -> Any:
    """A canonical value as `arrow_type(column)` accepts it."""
    if value is None:
        return None
    family = column.family
    if family == "json":
        # sorted like PostgreSQL's snapshot text, so both sides' snapshots compare equal
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    if family == "time":
        if not isinstance(value, time):
            # never silently lose a duration Arrow's time64 cannot hold
            raise ValueError(f"column {column.name}: TIME value {value} is not a time of day")
        return value
    if family in ("text", "uuid", "other") and not isinstance(value, str):
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return value
