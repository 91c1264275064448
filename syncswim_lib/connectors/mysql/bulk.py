"""The building blocks of the set-based apply: what the server allows, chunks, derived
tables of literal rows, and bisection of a refused statement.

Statements are sent as text with every value inlined by PyMySQL's own escaping (the same
the driver applies to `%s` parameters), so one chunk is one round trip and its size is
known before it is sent.
"""

from __future__ import annotations

import json
import re
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from syncswim_lib.connectors.mysql.types import to_driver
from syncswim_lib.values import ColumnInfo

if TYPE_CHECKING:
    import pymysql

CHUNK_ROWS = 1000  # rows per INSERT / UPDATE / DELETE / locking SELECT
# Characters of statement text per chunk, at most. utf8mb4 takes up to four bytes per
# character, and the bound is further lowered to an eighth of max_allowed_packet, so a
# chunk stays well inside one packet whatever its text.
CHUNK_CHARS = 1 << 20
# what a statement needs around its rows (keywords, names), in bytes, at most
_PACKET_SLACK = 1024
# Rows and characters per LOAD DATA LOCAL into the staging table: the file is streamed in
# packets, so only memory and the cost of bisecting a refused chunk bound it.
LOAD_ROWS = 5000
LOAD_CHARS = 32 << 20
# the server (1148: local_infile off on MariaDB / older MySQL; 3948: MySQL 8) refusing
# LOAD DATA LOCAL: the multi-row statements do the work instead
LOCAL_REFUSED = frozenset({1148, 3948})

T = TypeVar("T")


@dataclass(frozen=True)
class ServerTraits:
    """What one connection's server allows, read once per connection."""

    max_packet: int  # the session's max_allowed_packet, in bytes
    returning: bool  # INSERT ... RETURNING: MariaDB 10.5 and later, not MySQL
    local_infile: bool = False  # the server allows LOAD DATA LOCAL (@@local_infile)

    @property
    def chunk_chars(self) -> int:
        return max(4096, min(CHUNK_CHARS, self.max_packet // 8))

    def fits(self, sql: str) -> bool:
        """Whether `sql` fits in one packet (cheap unless the text is near the limit)."""
        if len(sql) * 4 + _PACKET_SLACK <= self.max_packet:
            return True
        return len(sql.encode("utf-8")) + _PACKET_SLACK <= self.max_packet


_TRAITS: weakref.WeakKeyDictionary[Any, ServerTraits] = weakref.WeakKeyDictionary()


def supports_returning(version: str) -> bool:
    """`@@version` of a MariaDB 10.5 or later (`10.11.6-MariaDB-log`)."""
    if "mariadb" not in version.lower():
        return False
    found = re.match(r"(\d+)\.(\d+)", version)
    return found is not None and (int(found[1]), int(found[2])) >= (10, 5)


def server_traits(conn: pymysql.Connection) -> ServerTraits:
    traits = _TRAITS.get(conn)
    if traits is None:
        with conn.cursor() as cur:
            cur.execute("SELECT @@max_allowed_packet, @@version, @@local_infile")
            row = cur.fetchone()
        assert row is not None
        traits = ServerTraits(
            max_packet=int(row[0]),
            returning=supports_returning(str(row[1])),
            local_infile=bool(int(row[2] or 0)),
        )
        _TRAITS[conn] = traits
    return traits


_REFUSED: weakref.WeakSet[Any] = weakref.WeakSet()


def loadable(conn: pymysql.Connection, traits: ServerTraits) -> bool:
    """Whether inserts on `conn` may go through LOAD DATA LOCAL from memory: the server
    allows it, the connection serves in-memory files, and it was not refused before."""
    from syncswim_lib.connectors.mysql.infile import InfileConnection

    return traits.local_infile and isinstance(conn, InfileConnection) and conn not in _REFUSED


def refuse_loading(conn: pymysql.Connection) -> None:
    """The server refused LOAD DATA LOCAL on `conn`: its inserts go as statements."""
    _REFUSED.add(conn)


def literal_function(column: ColumnInfo, conn: pymysql.Connection) -> Callable[[Any], str]:
    """What `conn.escape(to_driver(value, column))` gives for a canonical value of `column`,
    its branches chosen once per value type: rendering every value is most of the client's
    work in a set-based write."""
    from pymysql import converters

    escape = conn.escape
    encoders = conn.encoders

    def generic(value: Any) -> str:
        return str(escape(to_driver(value, column)))

    if column.family == "json":
        # to_driver's json.dumps, with the encoder json.dumps would build per call built once
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        return lambda value: "NULL" if value is None else str(escape(dumps(value)))

    def encoded(kind: type) -> Callable[[Any], str]:
        encode = encoders[kind]
        return lambda value: str(encode(value, encoders))

    by_type: dict[type, Callable[[Any], str]] = {str: escape, bytes: escape}
    for kind in (type(None), int, float, Decimal, date, datetime, time, timedelta):
        if kind in encoders:
            by_type[kind] = encoded(kind)
    if int in encoders:
        by_type[bool] = lambda value: str(encoders[int](int(value), encoders))
    # isoformat spells dates and times as PyMySQL's escape_date / escape_datetime do
    # (zero-padded, microseconds only when there are some), at a fraction of the cost
    if encoders.get(date) is converters.escape_date:
        by_type[date] = lambda value: f"'{value.isoformat()}'"
    stamp = by_type.get(datetime)
    if encoders.get(datetime) is converters.escape_datetime:
        stamp = lambda value: f"'{value.isoformat(' ')}'"  # noqa: E731
    if stamp is not None:
        # to_driver: an aware datetime is sent as its UTC wall time
        by_type[datetime] = lambda value: stamp(
            value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)
        )

    def render(value: Any) -> str:
        return by_type.get(type(value), generic)(value)

    return render


def chunks(
    items: Sequence[T], size: Callable[[T], int], max_rows: int, max_chars: int
) -> Iterator[list[T]]:
    """`items` in order, in runs of at most `max_rows` and `max_chars` (by `size`); an item
    larger than `max_chars` goes alone."""
    chunk: list[T] = []
    used = 0
    for item in items:
        n = size(item)
        if chunk and (len(chunk) >= max_rows or used + n > max_chars):
            yield chunk
            chunk, used = [], 0
        chunk.append(item)
        used += n
    if chunk:
        yield chunk


def derived(names: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A derived table of literal rows, `SELECT 1 AS a, 'x' AS b UNION ALL SELECT 2, 'y'`.

    Its text columns keep the literals' weak (coercible) collation, so comparing one with a
    column uses that column's collation and index, as `column = 'literal'` does: the row a
    key finds through it is the row `WHERE key = %s` finds. (MariaDB's `VALUES` table
    names its columns after the first row, MySQL's `VALUES ROW()` exists only in MySQL.)
    """
    first = "SELECT " + ", ".join(f"{v} AS {n}" for v, n in zip(rows[0], names, strict=True))
    return " UNION ALL ".join([first, *("SELECT " + ", ".join(r) for r in rows[1:])])


def write_bisected(
    chunk: list[T],
    execute: Callable[[list[T]], None],
    done: Callable[[list[T]], None],
    reject: Callable[[T, BaseException], None],
    row_error: Callable[[BaseException], bool],
) -> None:
    """Run `chunk` as one statement (`execute`), then `done`. When the database refuses it
    for a row's sake (`row_error`), run each half the same way, down to the single items it
    refuses, which go to `reject`: k bad rows among n cost about 2·k·log2(n) statements.

    The halves run in order, each seeing what the one before wrote, so of two rows that
    conflict (the same new unique value) the later is refused, as if written one by one.
    A refused statement leaves nothing behind: InnoDB undoes a failed statement by itself
    and keeps the transaction (the errors that end it are not row errors).
    """
    try:
        execute(chunk)
    except Exception as exc:
        if not row_error(exc):
            raise
        if len(chunk) == 1:
            reject(chunk[0], exc)
            return
        half = len(chunk) // 2
        write_bisected(chunk[:half], execute, done, reject, row_error)
        write_bisected(chunk[half:], execute, done, reject, row_error)
        return
    done(chunk)
