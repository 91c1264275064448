"""Reading result rows with less Python per value than PyMySQL's own reader.

PyMySQL reads each field of a text-protocol row with three method calls (the length, the
bytes, the decoding) and then its type's converter, after which `types.to_canonical`
looks at the value again. Two things here cut that:

- `read_row` parses a row packet's length-coded fields in one loop over the packet's
  bytes, with the same result as PyMySQL's `_read_row_from_packet` (the same decoding and
  converters, a short row cut where its fields end); every query of our connections reads
  its rows with it;
- `canonical_rows(conn, columns)`: for the statement run inside it, whose result columns
  are `columns`, each field is converted straight from its text to the canonical value
  `to_canonical` gives (`fused`): an integer by `int`, a DECIMAL by `Decimal`, a DATETIME
  by `datetime.fromisoformat`, a JSON text by the C JSON parser, a text column's value as
  decoded. A value or a type without such a step (a zero date, BIT, TIME, FLOAT, binary
  strings, SET members, ...) goes through PyMySQL's converter and `to_canonical`, as
  before, so every value reads as it did.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from pymysql import converters

from syncswim_lib.connectors.mysql.types import to_canonical
from syncswim_lib.values import ColumnInfo

Converter = Callable[[Any], Any]
# the epoch as the binlog decodes a zero TIMESTAMP (see `types.to_canonical`)
_EPOCH = datetime(1970, 1, 1)
_BOOLS = {"0": False, "1": True}


def read_row(
    data: bytes, position: int, fields: Sequence[tuple[str | None, Converter | None]]
) -> tuple[tuple[Any, ...], int]:
    """The fields of a text-protocol row packet `data` from `position` (one per entry of
    `fields`: its encoding and converter, either None), and the position after them."""
    row: list[Any] = []
    append = row.append
    size = len(data)
    for encoding, convert in fields:
        if position >= size:
            break  # a row shorter than the result's columns: PyMySQL stops there too
        length = data[position]
        if length < 251:
            position += 1
        elif length == 251:  # NULL
            position += 1
            append(None)
            continue
        elif length == 252:
            length = data[position + 1] | data[position + 2] << 8
            position += 3
        elif length == 253:
            length = data[position + 1] | data[position + 2] << 8 | data[position + 3] << 16
            position += 4
        else:
            length = int.from_bytes(data[position + 1 : position + 9], "little")
            position += 9
        value: Any = data[position : position + length]
        position += length
        if encoding is not None:
            value = value.decode(encoding)
        if convert is not None:
            value = convert(value)
        append(value)
    return tuple(row), position


def _generic(column: ColumnInfo, convert: Converter | None) -> Converter:
    """PyMySQL's converter then `to_canonical`: the reading every value had before."""
    if convert is None:
        return lambda value: to_canonical(value, column)
    return lambda value: to_canonical(convert(value), column)


def _stamp(column: ColumnInfo, slow: Converter) -> Converter:
    zoned = column.family == "timestamptz"

    def read(text: str) -> Any:
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            return slow(text)  # a zero or invalid date: kept as its text
        if value.tzinfo is not None or len(text) < 19 or text[10] != " ":
            return slow(text)  # never from the server; read as PyMySQL reads it
        if zoned and value == _EPOCH:
            return slow(text)
        return value.replace(tzinfo=UTC)

    return read


def _day(slow: Converter) -> Converter:
    def read(text: str) -> Any:
        if len(text) != 10:
            return slow(text)
        try:
            return date.fromisoformat(text)
        except ValueError:
            return slow(text)

    return read


def _flag(slow: Converter) -> Converter:
    def read(text: str) -> Any:
        value = _BOOLS.get(text)
        return slow(text) if value is None else value

    return read


def fused(column: ColumnInfo, encoding: str | None, convert: Converter | None) -> Converter | None:
    """A field's converter from its decoded text straight to `to_canonical`'s value, for a
    field PyMySQL would decode with `encoding` and convert with `convert` (None: no step
    at all, the decoded text being the value)."""
    family = column.family
    slow = _generic(column, convert)
    if encoding is None:
        return slow  # bytes: binary strings and their padding, BIT
    if family == "int" and convert is int:
        return int
    if family == "decimal" and convert is Decimal:
        return Decimal
    if family == "float" and convert is float and not column.db_type.lower().startswith("float"):
        return float  # FLOAT (single precision) is read as its shortest text: to_canonical
    if family == "bool" and convert is int:
        return _flag(slow)
    if family == "json" and convert is None:
        return json.loads
    if family in ("text", "uuid") and convert is None:
        return None  # to_canonical gives the decoded text itself
    if family in ("timestamp", "timestamptz") and convert is converters.convert_datetime:
        return _stamp(column, slow)
    if family == "date" and convert is converters.convert_date:
        return _day(slow)
    return slow


@contextmanager
def canonical_rows(conn: Any, columns: Sequence[ColumnInfo]) -> Iterator[bool]:
    """Rows of the statement run meanwhile on `conn` arrive with the canonical values of
    `columns`, its result's columns in their order, when `conn` is a connection of
    `connection.connect` (yields True); another connection's rows (yields False) carry
    the driver's values, for `to_canonical`. Its result must have those columns."""
    from syncswim_lib.connectors.mysql.infile import RowsConnection

    if not isinstance(conn, RowsConnection):
        yield False
        return
    previous = conn.canonical
    conn.canonical = list(columns)
    try:
        yield True
    finally:
        conn.canonical = previous


def converters_for(
    columns: Sequence[ColumnInfo] | None, plain: Sequence[tuple[str | None, Converter | None]]
) -> list[tuple[str | None, Converter | None]]:
    """The (encoding, converter) of each field: `plain` (PyMySQL's), or with `columns` the
    fused ones."""
    if columns is None or len(columns) != len(plain):
        return list(plain)
    out: list[tuple[str | None, Converter | None]] = []
    for column, (encoding, convert) in zip(columns, plain, strict=True):
        out.append((encoding, fused(column, encoding, convert)))
    return out
