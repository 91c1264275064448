"""A continuous reader of the binlog: one blocking `BinLogStreamReader` in a thread.

The server pushes each event as it is written (no polling); the thread feeds the same
`TransactionAssembler` as the one-shot capture (same positions, origin tags and echo
counts) and hands every committed transaction to capture through a `StreamBuffer`. The
server sends a heartbeat every `HEARTBEAT_S` while the binlog is quiet, which is when
the thread looks at its stop flag.

Positions live in our journal only (MySQL has nothing to confirm). A lost connection is
reopened by mysql-replication itself; when that happens inside a transaction (its table
maps lost) or the reader fails, the thread opens a new reader at the end of the last
whole transaction, with backoff. A purged binlog is fatal, as in `capture.read_binlog`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from syncswim_lib.connectors.base import CaptureBatch
from syncswim_lib.connectors.mysql.capture import TransactionAssembler, query_schema
from syncswim_lib.connectors.mysql.connection import (
    BINLOG_READ_ERROR,
    MARKER_TABLE,
    MySQLDsn,
    connect,
    error_code,
    error_text,
    server_id_for,
    split_table,
)
from syncswim_lib.connectors.mysql.connector import MySQLConnector
from syncswim_lib.connectors.mysql.describe import describe_table
from syncswim_lib.connectors.streambuf import StreamBuffer, Txn
from syncswim_lib.envelope import BinlogPosition, Op, Position
from syncswim_lib.errors import FatalError
from syncswim_lib.values import TableInfo

if TYPE_CHECKING:
    import pymysql

log = logging.getLogger(__name__)

HEARTBEAT_S = 0.25
BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class BinlogStream:
    """`start()` the thread, `capture()`/`confirm()` as a connector would, `close()`."""

    def __init__(
        self,
        connector: MySQLConnector,
        sync: str,
        tables: Sequence[str],
        since: BinlogPosition,
    ) -> None:
        self.conn, self.sync = connector, sync
        self.dsn: MySQLDsn = connector.dsn
        self.endpoint = connector.endpoint
        db = connector.db
        self.marker = (db, MARKER_TABLE)
        self.wanted = {split_table(t, db) for t in tables}
        self.names = {split_table(t, db): t for t in tables}
        self.buffer = StreamBuffer()
        self._cursor = since  # the end of the last whole transaction read
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.readers = 0  # readers opened (a reconnect shows as more than one)
        self.connected = threading.Event()
        self.server_id = server_id_for(
            self.endpoint,
            f"{self.dsn.host}:{self.dsn.port}/{db}",
            sync,
            f"stream:{os.getpid()}",
        )
        self._db: pymysql.Connection | None = None  # the thread's own, for describing

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._main, name=f"binlog-stream-{self.sync}", daemon=True
        )
        self._thread.start()

    def capture(
        self,
        sync: str,
        tables: Sequence[str],
        since: Position | None,
        max_changes: int,
        skip_origin: str | None = None,
    ) -> CaptureBatch:
        if since is not None and not isinstance(since, BinlogPosition):
            raise FatalError(
                f"endpoint {self.endpoint}: sync {sync} stored a {since.kind} position, "
                "a MySQL endpoint needs a binlog position"
            )
        names = {t if "." in t else f"{self.conn.db}.{t}" for t in tables}
        return self.buffer.take(names | set(tables), since, max_changes, skip_origin)

    def confirm(self, sync: str, position: Position) -> None:
        """Nothing to release on the server (see MySQLConnector.confirm)."""

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- the thread -----------------------------------------------------------------------

    def _main(self) -> None:
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    if self._read():
                        failures = 0
                        continue
                except FatalError as exc:
                    self.buffer.fail(exc)
                    return
                except Exception as exc:  # a dropped connection that could not reopen
                    log.warning(
                        "binlog stream of sync %s on endpoint %s: %s",
                        self.sync,
                        self.endpoint,
                        str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc),
                    )
                self.connected.clear()
                self._stop.wait(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
                failures += 1
        finally:
            if self._db is not None:
                self._db.close()

    def _describe(self, db: str, table: str) -> TableInfo:
        if self._db is None or not self._db.open:
            self._db = connect(self.dsn, self.endpoint)
        return describe_table(self._db, db, table, name=f"{db}.{table}", endpoint=self.endpoint)

    def _read(self) -> bool:
        """Read until stopped (True) or until the reader must be reopened (False)."""
        import pymysql
        from pymysqlreplication import BinLogStreamReader
        from pymysqlreplication.event import (
            HeartbeatLogEvent,
            MariadbGtidEvent,
            QueryEvent,
            RotateEvent,
            XidEvent,
        )
        from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

        start = self._cursor
        asm = TransactionAssembler(
            marker=self.marker,
            wanted=self.wanted,
            describe=self._describe,
            start=start,
            since=start,
            skip_origin=self.sync,
            names=self.names,
        )
        reader = BinLogStreamReader(
            connection_settings=self.dsn.kwargs(),
            server_id=self.server_id,
            log_file=start.file,
            log_pos=start.pos,
            resume_stream=True,
            blocking=True,
            slave_heartbeat=HEARTBEAT_S,
            is_mariadb=False,
            only_schemas=sorted({s for s, _ in self.wanted} | {self.marker[0]}),
            only_tables=sorted({t for _, t in self.wanted} | {self.marker[1]}),
            only_events=[
                WriteRowsEvent,
                UpdateRowsEvent,
                DeleteRowsEvent,
                XidEvent,
                RotateEvent,
                QueryEvent,
                MariadbGtidEvent,
                HeartbeatLogEvent,
            ],
            enable_logging=False,
            # a table map is parsed once per table id, as in `capture.read_binlog`: an
            # ALTER gives the table a new id, a reconnect starts an empty map
            freeze_schema=True,
        )
        ops = {WriteRowsEvent: Op.INSERT, UpdateRowsEvent: Op.UPDATE, DeleteRowsEvent: Op.DELETE}
        self.readers += 1
        self.connected.set()
        try:
            for event in reader:
                if self._stop.is_set():
                    return True
                kind = type(event)
                if kind in ops:
                    if not asm.skips(event.schema, event.table):
                        asm.rows(ops[kind], event.schema, event.table, event.rows)
                elif kind is XidEvent:
                    asm.commit(event.packet.log_pos, event.timestamp)
                    self._hand_over(asm)
                elif kind is MariadbGtidEvent:
                    asm.begin()
                elif kind is QueryEvent:
                    # the statement's default database names an unqualified TRUNCATE's table
                    asm.statement(
                        event.query, event.packet.log_pos, event.timestamp, query_schema(event)
                    )
                    if asm.txn is None:
                        self._hand_over(asm)
                elif kind is RotateEvent:
                    artificial = event.timestamp == 0  # sent at each (re)connect
                    if not asm.rotate(event.next_binlog, event.position, artificial):
                        return False  # reconnected inside a transaction: read it again
            return False  # the server ended the dump
        except pymysql.err.MySQLError as exc:
            if error_code(exc) == BINLOG_READ_ERROR:
                raise FatalError(
                    f"streaming sync {self.sync} on endpoint {self.endpoint}: cannot read "
                    f"binlog file {start.file} at position {start.pos} (purged, or the "
                    f"server's binlogs were reset): {error_text(exc)}. The stored position "
                    "is lost: re-snapshot this sync."
                ) from exc
            raise
        finally:
            reader.close()

    def _hand_over(self, asm: TransactionAssembler) -> None:
        cursor = asm.cursor
        if (cursor.file, cursor.pos, cursor.seq) <= (
            self._cursor.file,
            self._cursor.pos,
            self._cursor.seq,
        ) and not asm.changes:
            return
        self._cursor = cursor
        asm.since = cursor
        changes, echoes, truncates = tuple(asm.changes), dict(asm.echoes), tuple(asm.truncates)
        asm.changes, asm.echoes, asm.truncates = [], {}, []
        self.buffer.put(Txn(changes, cursor, echoes, truncates))
