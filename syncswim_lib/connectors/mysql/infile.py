"""`LOAD DATA LOCAL INFILE` from memory: the connection class, and rows as the file's text.

PyMySQL answers the server's request for a local file by opening whatever path the server
names, which lets a server (or whoever answers on its address) read any file the client
can. Our connections serve only the bytes registered for one statement under a name made
for it, and refuse every other name, so turning on the client's LOCAL_FILES flag exposes
nothing on disk; the rows never touch the disk either.

The file's format is LOAD DATA's default (fields by tab, lines by newline, backslash
escapes, `\\N` for NULL) in utf8mb4. `column_texts` makes a batch's column of fields with
Arrow's kernels where their text is exact (integers, doubles, decimals of the column's
scale, dates, microsecond timestamps, text, JSON without `\\u` escapes) and value by value
with `field_function` otherwise; the text then converts in the server exactly as a literal
of the same value would.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pymysql
from pymysql.connections import Connection, MySQLResult
from pymysql.constants import ER
from pymysql.protocol import LoadLocalPacketWrapper

from syncswim_lib.connectors.mysql.rows import converters_for, read_row
from syncswim_lib.values import ColumnInfo
from syncswim_lib.values.coerce import coerce

NULL = "\\N"
# the characters LOAD DATA's default format gives a meaning (terminators, the escape) and
# NUL, which the server reads back from `\0`
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})
_SEND = 1 << 16  # bytes per packet of the file: well under any max_allowed_packet
_names = itertools.count(1)


class NotLoadable(Exception):
    """A value the file format has no exact spelling for here: the batch goes as multi-row
    statements instead."""


class RowsConnection(Connection):  # type: ignore[misc]
    """A PyMySQL connection whose results read their rows with `rows.read_row`, and with
    the canonical values of the columns `rows.canonical_rows` names; it serves no local
    file (a LOAD DATA LOCAL on it is refused)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.canonical: list[ColumnInfo] | None = None
        super().__init__(*args, **kwargs)

    def _read_query_result(self, unbuffered: bool = False) -> int:
        # PyMySQL's own body, with the result class that serves `infiles`
        self._result = None
        result = _Result(self)
        if unbuffered:
            result.init_unbuffered_query()
        else:
            result.read()
        self._result = result
        if result.server_status is not None:
            self.server_status = result.server_status
        return int(result.affected_rows or 0)


class InfileConnection(RowsConnection):
    """A PyMySQL connection whose LOAD DATA LOCAL reads registered in-memory files only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.infiles: dict[bytes, bytes] = {}
        super().__init__(*args, local_infile=True, **kwargs)


class _Result(MySQLResult):  # type: ignore[misc]
    def _get_descriptions(self) -> None:
        super()._get_descriptions()
        conn = self.connection
        columns = conn.canonical if isinstance(conn, RowsConnection) else None
        plain: list[tuple[str | None, Any]] = getattr(self, "converters")  # noqa: B009
        self.converters = converters_for(columns, plain)

    def _read_row_from_packet(self, packet: Any) -> tuple[Any, ...]:
        row, packet._position = read_row(packet._data, packet._position, self.converters)
        return row

    def _read_load_local_packet(self, first_packet: Any) -> None:
        conn = self.connection
        name = LoadLocalPacketWrapper(first_packet).filename
        data = conn.infiles.get(name) if isinstance(conn, InfileConnection) else None
        try:
            if data is not None:
                view = memoryview(data)
                for start in range(0, len(view), _SEND):
                    conn.write_packet(view[start : start + _SEND])
        finally:
            conn.write_packet(b"")  # the end of the file (an empty one when refused)
            ok_packet = conn._read_packet()
        if not ok_packet.is_ok_packet():
            raise pymysql.err.OperationalError(2014, "Commands Out of Sync")
        self._read_ok_packet(ok_packet)
        if data is None:
            raise pymysql.err.OperationalError(
                ER.FILE_NOT_FOUND, f"the server asked for a local file we did not offer: {name!r}"
            )


@contextmanager
def offered(conn: pymysql.Connection, data: bytes) -> Iterator[str]:
    """A name under which `conn` serves `data` to the LOAD DATA LOCAL it runs meanwhile."""
    if not isinstance(conn, InfileConnection):
        raise NotLoadable("the connection does not serve in-memory files")
    name = f"syncswim-rows-{next(_names)}"
    key = name.encode("utf-8")
    conn.infiles[key] = data
    try:
        yield name
    finally:
        conn.infiles.pop(key, None)


def _text(value: str) -> str:
    return value.translate(_ESCAPES)


def _float(value: float) -> str:
    if not math.isfinite(value):
        # what PyMySQL's escape says of it, so the row is refused as the statements refuse it
        raise pymysql.err.ProgrammingError(f"{value!r} can not be used with MySQL")
    return repr(value)


def _stamp(value: datetime) -> str:
    # an aware datetime is sent as its UTC wall time (to_driver); the session is in UTC
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(" ")


def _duration(value: timedelta) -> str:
    # TIME holds durations: [-]H:MM:SS[.ffffff], as PyMySQL spells a timedelta
    sign = "-" if value < timedelta(0) else ""
    value = abs(value)
    seconds = value.days * 86400 + value.seconds
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    frac = f".{value.microseconds:06d}" if value.microseconds else ""
    return f"{sign}{hours}:{minutes:02d}:{secs:02d}{frac}"


_BY_TYPE: dict[type, Callable[[Any], str]] = {
    str: _text,
    int: str,
    bool: lambda v: "1" if v else "0",
    float: _float,
    Decimal: lambda v: format(v, "f"),
    date: date.isoformat,
    datetime: _stamp,
    time: time.isoformat,
    timedelta: _duration,
}


def field_function(column: ColumnInfo) -> Callable[[Any], str]:
    """A canonical value of `column` (coerced) as one field of the file.

    Bytes go as hex, unhexed by the statement that reads the staging table (`unhexed`):
    the file's character set then never touches them."""
    if column.family == "bytes":
        return lambda v: NULL if v is None else bytes(v).hex()
    if column.family == "json":
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        return lambda v: NULL if v is None else _text(dumps(v))
    if column.family == "other":
        # types without a spelling checked here (spatial, ...)
        def refuse(value: Any) -> str:
            raise NotLoadable(f"column {column.name} ({column.db_type})")

        return refuse

    def field(value: Any) -> str:
        if value is None:
            return NULL
        spell = _BY_TYPE.get(type(value))
        if spell is None:
            raise NotLoadable(f"a {type(value).__name__} value for column {column.name}")
        return spell(value)

    return field


def picked(column: ColumnInfo, name: str) -> str:
    """The staging column `name` as the INSERT ... SELECT reads it for `column`: text
    converts to every type as a literal would, but for bytes (sent as hex) and BIT, which
    would take the text's own bytes ('5' is 0x35) where a number is meant."""
    if column.family == "bytes":
        return f"UNHEX({name})"
    if column.db_type.lower().startswith("bit"):
        return f"CAST({name} AS UNSIGNED)"
    return name


def _escaped(text: pa.Array) -> pa.Array:
    # backslash first, so the escapes added after it are not escaped again
    for raw, spelt in (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"), ("\0", "\\0")):
        text = pc.replace_substring(text, raw, spelt)
    return text


def _vectorised(values: pa.Array, column: ColumnInfo) -> pa.Array | None:
    """The column's fields made by Arrow's kernels, where their text is exactly the one
    `field_function` gives the canonical value; None where it is not (the caller then
    goes value by value)."""
    kind, family = values.type, column.family
    text: pa.Array
    if family == "int" and pa.types.is_integer(kind):
        text = values.cast(pa.string())
    elif family == "float" and pa.types.is_floating(kind):
        if pc.any(pc.invert(pc.is_finite(values))).as_py():
            return None  # NaN and the infinities are refused row by row
        # Arrow prints the shortest text that reads back as the same double, as repr does
        text = values.cast(pa.string())
    elif family == "bool" and pa.types.is_boolean(kind):
        text = pc.if_else(values, "1", "0")
    elif family == "decimal" and pa.types.is_decimal(kind) and kind.scale == column.scale:
        text = values.cast(pa.string())  # every digit of the scale, no exponent
    elif family == "date" and pa.types.is_date32(kind):
        text = values.cast(pa.string())
    elif (
        family in ("timestamp", "timestamptz")
        and pa.types.is_timestamp(kind)
        and kind.unit == "us"
        and (column.precision is None or column.precision >= 6)
    ):
        # the instant's UTC wall time (the session is in UTC), with all six digits; fewer
        # digits in the column are truncated by `coerce`, value by value
        text = values.cast(pa.timestamp("us")).cast(pa.string())
    elif family in ("text", "uuid") and pa.types.is_string(kind):
        text = _escaped(values)
    elif family == "json" and pa.types.is_string(kind):
        if pc.any(pc.match_substring(values, "\\u")).as_py():
            # \u escapes: the statements store the characters, so the text is made again
            return None
        text = _escaped(values)
    else:
        return None
    return pc.fill_null(text, NULL)


def column_texts(values: pa.ChunkedArray, column: ColumnInfo, bad: dict[int, str]) -> pa.Array:
    """One field per row of a batch's column. A row whose value the column cannot take
    (`coerce` or the driver refusing it) is added to `bad` with why."""
    from syncswim_lib.connectors.mysql.connection import error_text

    flat = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    made = _vectorised(flat, column)
    if made is not None:
        return made
    field = field_function(column)
    out: list[str] = []
    for i, value in enumerate(flat.to_pylist()):
        text = ""
        if i not in bad:
            try:
                text = field(coerce(value, column))
            except ValueError as exc:
                bad[i] = str(exc)
            except pymysql.err.Error as exc:
                bad[i] = error_text(exc)
        out.append(text)
    return pa.array(out, pa.string())


def joined(fields: list[pa.Array]) -> pa.Array:
    """Each row's fields joined by tabs."""
    if len(fields) == 1:
        return fields[0]
    return pc.binary_join_element_wise(*fields, "\t")
