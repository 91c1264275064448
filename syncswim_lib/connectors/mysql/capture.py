"""Reading row changes from the binlog and grouping them into whole transactions.

One BinLogStreamReader per call, non-blocking: it reads what the binlog holds now and
returns. It resumes from a file/position (`is_mariadb=False`, which MariaDB accepts; with
`is_mariadb=True` the reader would ignore file/position and replay from the first binlog).

Positions: every change of a transaction carries (file, end of its commit event, index in
the transaction); the batch's end position is (file, end of the last commit seen, number of
changes in that transaction), so it sorts after every change it covers and before the next
transaction. Reading resumes at `end_position.pos`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from syncswim_lib.connectors.base import CaptureBatch
from syncswim_lib.connectors.mysql.connection import (
    BINLOG_READ_ERROR,
    MySQLDsn,
    error_code,
    error_text,
    map_error,
)
from syncswim_lib.connectors.mysql.types import ZERO_DATE, ZERO_DATETIME, to_canonical
from syncswim_lib.envelope import BinlogPosition, Change, Op, Position
from syncswim_lib.errors import PositionLost
from syncswim_lib.values import ColumnInfo, TableInfo

# mysql-replication reads an invalid (zero) date or datetime as None, and says why in the
# row's `none_sources` (pymysqlreplication.constants.NONE_SOURCE): such a value is no
# NULL, it reads as the zero date's text (see types.py)
_OUT_OF_RANGE = {
    "out of date range": ZERO_DATE,
    "out of datetime range": ZERO_DATETIME,
    "out of datetime2 range": ZERO_DATETIME,
}


def _values(row: dict[str, Any], values: str, sources: str) -> dict[str, Any]:
    found: dict[str, Any] = row[values]
    why: dict[str, str] = row.get(sources) or {}
    zeros = {n: _OUT_OF_RANGE[s] for n, s in why.items() if s in _OUT_OF_RANGE}
    if not zeros:
        return found
    return {**found, **{n: z for n, z in zeros.items() if found.get(n) is None}}


@dataclass(frozen=True)
class RowChange:
    op: Op
    schema: str
    table: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass
class _Txn:
    rows: list[RowChange] = field(default_factory=list)
    origin: str | None = None  # from its marker row, the first row of a tagged transaction


class TransactionAssembler:
    """Turns binlog events into Changes, one committed transaction at a time.

    `describe(schema, table)` gives the TableInfo used to convert values and find the key.
    """

    def __init__(
        self,
        marker: tuple[str, str],
        wanted: set[tuple[str, str]],
        describe: Callable[[str, str], TableInfo],
        start: BinlogPosition,
        since: BinlogPosition | None,
        skip_origin: str | None = None,
        names: dict[tuple[str, str], str] | None = None,
    ) -> None:
        self.marker = marker
        self.skip_origin = skip_origin
        self.names = names or {}  # (schema, table) -> the table as the caller named it
        self.echoes: dict[str, int] = {}
        self.wanted = wanted
        self.describe = describe
        self.since = since
        self.file = start.file
        self.cursor = start  # the position after the last complete transaction
        self.txn: _Txn | None = None
        self.changes: list[Change] = []
        self.truncates: list[tuple[str, Position]] = []
        self._shapes: dict[tuple[str, str], _TableShape] = {}

    # --- events ---------------------------------------------------------------------------

    def rotate(self, next_file: str, position: int, artificial: bool) -> bool:
        """A RotateEvent; False when reading must stop.

        The server sends an artificial rotate at the start of every dump. Inside a
        transaction that means the reader reconnected in its middle (mysql-replication does
        so by itself after a lost connection) and would miss the table maps of the rows
        that follow: drop the partial transaction and stop; the next call re-reads it whole.
        """
        if artificial and self.txn is not None:
            self.txn = None
            return False
        self.file = next_file
        if self.txn is None:
            moved = BinlogPosition(next_file, position)
            if (moved.file, moved.pos) > (self.cursor.file, self.cursor.pos):
                self.cursor = moved
        return True

    def begin(self) -> None:
        self.txn = _Txn()

    def rows(self, op: Op, schema: str, table: str, rows: Iterable[dict[str, Any]]) -> None:
        if self.txn is None:  # row events outside BEGIN/COMMIT: treat as their own txn
            self.txn = _Txn()
        if (schema, table) not in self.wanted and (schema, table) != self.marker:
            return
        for row in rows:
            if not self.txn.rows and op == Op.INSERT and (schema, table) == self.marker:
                self.txn.origin = str(_values(row, "values", "none_sources").get("origin"))
            if op == Op.UPDATE:
                before = _values(row, "before_values", "before_none_sources")
                after = _values(row, "after_values", "after_none_sources")
            elif op == Op.DELETE:
                before, after = _values(row, "values", "none_sources"), None
            else:
                before, after = None, _values(row, "values", "none_sources")
            self.txn.rows.append(RowChange(op, schema, table, before, after))

    def skips(self, schema: str, table: str) -> bool:
        """Whether a row event belongs to a transaction of the origin to leave out: its
        rows are then counted, not decoded (decoding is most of a binlog read's cost)."""
        txn = self.txn
        if txn is None or self.skip_origin is None or txn.origin != self.skip_origin:
            return False
        if (schema, table) in self.wanted:
            name = self.names.get((schema, table), f"{schema}.{table}")
            self.echoes[name] = self.echoes.get(name, 0) + 1
        return True

    def statement(self, query: str, end_pos: int, timestamp: int, schema: str = "") -> None:
        """A QueryEvent: BEGIN, COMMIT, savepoints, or a DDL statement (`schema`: the
        statement's default database)."""
        word = query.lstrip().split(None, 1)[0].upper() if query.strip() else ""
        if word == "TRUNCATE":
            self._truncate(query, schema, end_pos)
        if word == "BEGIN":
            self.begin()
        elif word == "COMMIT":
            self.commit(end_pos, timestamp)
        elif word in ("SAVEPOINT", "RELEASE") or query.upper().startswith("ROLLBACK TO"):
            return
        elif word == "ROLLBACK":
            self.txn = None
            self.cursor = BinlogPosition(self.file, end_pos)
        elif self.txn is None or not self.txn.rows:
            # DDL commits on its own; step past it so a resume does not read it again
            self.txn = None
            self.cursor = BinlogPosition(self.file, end_pos)

    def _truncate(self, query: str, schema: str, end_pos: int) -> None:
        """`TRUNCATE [TABLE] [db.]name` of a captured table: its position is the end of
        the statement's event (it commits on its own)."""
        match = _TRUNCATE.match(query)
        if match is None:
            return
        db = match.group(1) or match.group(2) or schema
        table = match.group(3) or match.group(4)
        position = BinlogPosition(self.file, end_pos)
        if (db, table) in self.wanted and (self.since is None or _after(position, self.since)):
            self.truncates.append((f"{db}.{table}", position))  # as changes name it

    def commit(self, end_pos: int, timestamp: int) -> None:
        txn, self.txn = self.txn, None
        rows = txn.rows if txn else []
        origin: str | None = None
        if rows and rows[0].op == Op.INSERT and (rows[0].schema, rows[0].table) == self.marker:
            origin = str((rows[0].after or {}).get("origin"))
        commit_ts = datetime.fromtimestamp(timestamp, UTC) if timestamp else None
        detected = datetime.now(UTC)
        seq = 0
        for row in rows:
            if (row.schema, row.table) == self.marker:
                continue
            for change in self._changes(row, end_pos, seq, commit_ts, detected, origin):
                if self.since is None or _after(change.position, self.since):
                    self.changes.append(change)
                seq += 1
        self.cursor = BinlogPosition(self.file, end_pos, seq)

    # --- conversion -----------------------------------------------------------------------

    def _table(self, schema: str, table: str) -> _TableShape:
        shape = self._shapes.get((schema, table))
        if shape is None:
            shape = _TableShape.of(f"{schema}.{table}", self.describe(schema, table))
            self._shapes[(schema, table)] = shape
        return shape

    def _changes(
        self,
        row: RowChange,
        end_pos: int,
        seq: int,
        commit_ts: datetime | None,
        detected: datetime,
        origin: str | None,
    ) -> list[Change]:
        shape = self._table(row.schema, row.table)
        before = shape.convert(row.before)
        after = shape.convert(row.after)
        pk, name, file = shape.primary_key, shape.name, self.file
        if before is not None and after is not None:
            if any(before.get(c) != after.get(c) for c in pk):
                # a new primary key is another record: the old one goes, the new one comes
                return [
                    Change(Op.DELETE, name, {c: before.get(c) for c in pk}, None, before,
                           BinlogPosition(file, end_pos, seq), commit_ts, detected, origin),
                    Change(Op.INSERT, name, {c: after.get(c) for c in pk}, after, None,
                           BinlogPosition(file, end_pos, seq + 1), commit_ts, detected, origin),
                ]  # fmt: skip
            changed = tuple([c for c, v in after.items() if c not in before or before[c] != v])
            key_src = after
            op = Op.UPDATE
        else:
            changed = None
            key_src = after if after is not None else before or {}
            op = row.op
        return [
            Change(
                op,
                name,
                {c: key_src.get(c) for c in pk},
                after,
                before,
                BinlogPosition(file, end_pos, seq),
                commit_ts,
                detected,
                origin,
                changed,
            )
        ]

    def result(self) -> CaptureBatch:
        return CaptureBatch(
            changes=tuple(self.changes),
            end_position=self.cursor,
            echoes=dict(self.echoes),
            truncates=tuple(self.truncates),
        )


# The families whose value mysql-replication already gives in its canonical form when it
# is of this type: `to_canonical` would return the very same value (an int of an integer
# column, a str of a text one, ...), so the call is left out. Everything else (booleans,
# BIT, FLOAT, timestamps, JSON, bytes, TIME, sets) goes through `to_canonical`.
_AS_IS: dict[str, type] = {
    "int": int,
    "float": float,
    "decimal": Decimal,
    "text": str,
    "uuid": str,
    "date": date,
}


def _as_is(column: ColumnInfo) -> type | None:
    if column.family == "float" and column.db_type.lower().startswith("float"):
        return None  # single precision: the shortest decimal of it (types.py)
    return _AS_IS.get(column.family)


@dataclass(frozen=True)
class _TableShape:
    name: str
    primary_key: tuple[str, ...]
    columns: dict[str, ColumnInfo]
    as_is: dict[str, type] = field(default_factory=dict)  # see _AS_IS

    @classmethod
    def of(cls, name: str, info: TableInfo) -> _TableShape:
        columns = {c.name: c for c in info.columns}
        as_is = {c.name: t for c in info.columns if (t := _as_is(c)) is not None}
        return cls(name, info.primary_key, columns, as_is)

    def convert(self, values: dict[str, Any] | None) -> dict[str, Any] | None:
        if values is None:
            return None
        cols, as_is = self.columns, self.as_is
        # a column added since describe() ran is passed through with generic conversion
        return {
            name: v if v is None or type(v) is as_is.get(name) else to_canonical(v, cols.get(name))
            for name, v in values.items()
        }


def read_binlog(
    dsn: MySQLDsn,
    server_id: int,
    assembler: TransactionAssembler,
    max_changes: int,
    what: str,
) -> CaptureBatch:
    """Feed the binlog from `assembler.cursor` to the assembler until it holds at least
    `max_changes` changes at a transaction boundary, or the binlog ends for now."""
    import pymysql
    from pymysqlreplication import BinLogStreamReader
    from pymysqlreplication.event import MariadbGtidEvent, QueryEvent, RotateEvent, XidEvent
    from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

    tables = {t for (_, t) in assembler.wanted} | {assembler.marker[1]}
    schemas = {s for (s, _) in assembler.wanted} | {assembler.marker[0]}
    start = assembler.cursor
    reader = BinLogStreamReader(
        connection_settings=dsn.kwargs(),
        server_id=server_id,
        log_file=start.file,
        log_pos=start.pos,
        resume_stream=True,
        blocking=False,
        is_mariadb=False,
        only_schemas=sorted(schemas),
        only_tables=sorted(tables),
        only_events=[
            WriteRowsEvent,
            UpdateRowsEvent,
            DeleteRowsEvent,
            XidEvent,
            RotateEvent,
            QueryEvent,
            MariadbGtidEvent,
        ],
        enable_logging=False,
        # a table map is parsed once per table id: an ALTER gives the table a new id, so
        # this only skips re-reading the same definition before every row event (most of
        # a small transaction's decoding cost)
        freeze_schema=True,
    )
    ops = {WriteRowsEvent: Op.INSERT, UpdateRowsEvent: Op.UPDATE, DeleteRowsEvent: Op.DELETE}
    try:
        for event in reader:
            kind = type(event)
            if kind in ops:
                if not assembler.skips(event.schema, event.table):
                    assembler.rows(ops[kind], event.schema, event.table, event.rows)
            elif kind is XidEvent:
                assembler.commit(event.packet.log_pos, event.timestamp)
                if len(assembler.changes) >= max_changes:
                    break
            elif kind is MariadbGtidEvent:
                assembler.begin()
            elif kind is QueryEvent:
                assembler.statement(
                    event.query, event.packet.log_pos, event.timestamp, query_schema(event)
                )
                if assembler.txn is None and len(assembler.changes) >= max_changes:
                    break
            elif kind is RotateEvent:
                artificial = event.timestamp == 0  # sent by the server at each (re)connect
                if not assembler.rotate(event.next_binlog, event.position, artificial):
                    break
    except pymysql.err.MySQLError as exc:
        if error_code(exc) == BINLOG_READ_ERROR:
            raise PositionLost(
                f"{what}: cannot read binlog file {start.file} at position {start.pos} "
                f"(purged, or the server's binlogs were reset): {error_text(exc)}. "
                "The stored position is lost: changes made since may not be captured"
            ) from exc
        raise map_error(exc, what) from exc
    finally:
        reader.close()
    return assembler.result()


def query_schema(event: Any) -> str:
    """A QueryEvent's default database (the library gives bytes)."""
    raw = getattr(event, "schema", b"")
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")


# TRUNCATE [TABLE] [`db`.]`name`, each name quoted or not
_TRUNCATE = re.compile(
    r"\s*TRUNCATE\s+(?:TABLE\s+)?(?:(?:`([^`]+)`|(\w+))\.)?(?:`([^`]+)`|(\w+))",
    re.IGNORECASE,
)


def _after(position: object, since: BinlogPosition) -> bool:
    return isinstance(position, BinlogPosition) and position > since
