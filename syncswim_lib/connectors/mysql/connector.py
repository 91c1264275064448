"""MySQLConnector: the Connector Protocol for MySQL 8 and MariaDB 10.6+.

Not thread-safe: one connector per thread. It keeps one control connection (describe,
fetch, apply, positions), opens one more per snapshot and a binlog reader per capture.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from syncswim_lib.connectors.base import (
    ApplyBatch,
    ApplyResult,
    CaptureBatch,
    StreamLag,
)
from syncswim_lib.connectors.checks import Finding, refuse_on_errors
from syncswim_lib.connectors.mysql import apply as apply_mod
from syncswim_lib.connectors.mysql import markers
from syncswim_lib.connectors.mysql.capture import TransactionAssembler, read_binlog
from syncswim_lib.connectors.mysql.checks import server_findings
from syncswim_lib.connectors.mysql.connection import (
    MARKER_TABLE,
    NO_SUCH_TABLE,
    PARSE_ERROR,
    connect,
    error_code,
    is_retriable,
    map_error,
    parse_dsn,
    qident,
    qtable,
    server_id_for,
    split_table,
)
from syncswim_lib.connectors.mysql.describe import describe_table
from syncswim_lib.connectors.mysql.kind import CAPABILITIES
from syncswim_lib.connectors.mysql.rows import canonical_rows
from syncswim_lib.connectors.mysql.snapshot import snapshot_batches
from syncswim_lib.connectors.mysql.types import to_canonical, to_driver
from syncswim_lib.connectors.ownership import StreamOwner
from syncswim_lib.envelope import BinlogPosition, Position
from syncswim_lib.errors import ConfigError, FatalError, SyncSwimError
from syncswim_lib.values import TableInfo
from syncswim_lib.values.coerce import coerce

if TYPE_CHECKING:
    import pymysql

_FETCH_CHUNK = 1000
OWNERS_TABLE = "_syncswim_owners"


class MySQLConnector:
    capabilities = CAPABILITIES  # declared with the kind (kind.py)

    def __init__(self, dsn: str, endpoint: str, timeouts: Mapping[str, str] | None = None) -> None:
        self.endpoint = endpoint
        self.dsn = parse_dsn(dsn, endpoint, timeouts)
        self.db = self.dsn.database
        self._conn: pymysql.Connection | None = None
        self._held: dict[str, TableInfo] | None = None  # see hold_descriptions

    def __repr__(self) -> str:
        return f"MySQLConnector({self.dsn.safe()!r}, endpoint={self.endpoint!r})"

    # --- connection ------------------------------------------------------------------------

    def _connection(self) -> pymysql.Connection:
        if self._conn is None or not self._conn.open:
            self._conn = connect(self.dsn, self.endpoint)
        return self._conn

    def _failed(self, exc: Exception, what: str) -> SyncSwimError:
        """Map a driver error; a connection in doubt is dropped so the next call reconnects."""
        if is_retriable(exc):
            self._drop()
        return map_error(exc, f"{what} on endpoint {self.endpoint}")

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: nothing more to release
                conn.close()

    def close(self) -> None:
        self._drop()

    # --- schema ----------------------------------------------------------------------------

    def describe(self, table: str) -> TableInfo:
        import pymysql

        db, name = split_table(table, self.db)
        try:
            info = describe_table(self._connection(), db, name, name=table, endpoint=self.endpoint)
        except pymysql.err.MySQLError as exc:
            raise self._failed(exc, f"describing {table}") from exc
        if self._held is not None:
            self._held[table] = info
        return info

    def hold_descriptions(self, on: bool) -> None:
        """While on, fetch and apply take a table as describe() last read it instead of
        reading the catalog again: four information_schema queries a call, most of a small
        batch's round trips. A run turns it on, its drift check reads every table, and it is
        off again at the run's end; off (the default) every call reads the table now."""
        self._held = {} if on else None

    def _described(self, table: str) -> TableInfo:
        held = self._held
        info = None if held is None else held.get(table)
        return self.describe(table) if info is None else info

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._connection().cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    def check_server(self, syncs: Mapping[str, Sequence[str]]) -> list[Finding]:
        import pymysql

        try:
            return server_findings(self._query, self.endpoint)
        except pymysql.err.MySQLError as exc:
            raise self._failed(exc, "checking the server") from exc

    def stream_owner(self, sync: str) -> StreamOwner | None:
        import pymysql

        try:
            rows = self._query(
                f"SELECT state_id, state FROM {qtable(self.db, OWNERS_TABLE)} WHERE sync = %s",
                (sync,),
            )
        except pymysql.err.MySQLError as exc:
            if error_code(exc) == NO_SUCH_TABLE:
                return None
            raise self._failed(exc, f"reading who owns sync {sync}") from exc
        return StreamOwner(str(rows[0][0]), str(rows[0][1])) if rows else None

    def claim_stream(self, sync: str, owner: StreamOwner) -> StreamOwner:
        import pymysql

        try:
            self._query(_owners_ddl(self.db))
            self._query(
                f"INSERT IGNORE INTO {qtable(self.db, OWNERS_TABLE)} (sync, state_id, state) "
                "VALUES (%s, %s, %s)",
                (sync, owner.state_id, owner.state),
            )
        except pymysql.err.MySQLError as exc:
            raise self._failed(exc, f"recording the owner of sync {sync}") from exc
        found = self.stream_owner(sync)
        assert found is not None
        return found

    def setup(self, sync: str, tables: Sequence[str]) -> None:
        """Check the server and the tables, then create the marker and owner tables."""
        import pymysql

        for table in tables:
            info = self.describe(table)
            if not info.primary_key:
                raise ConfigError(
                    f"table {table} on endpoint {self.endpoint} has no primary key: "
                    "change capture needs one to identify rows"
                )
        refuse_on_errors(
            self.check_server({sync: list(tables)}),
            f"setup of sync {sync} on endpoint {self.endpoint}",
        )
        try:
            self._query(markers.create_sql(self.db))
            self._query(_owners_ddl(self.db))
        except pymysql.err.MySQLError as exc:
            raise self._failed(exc, f"setting up sync {sync}") from exc

    def teardown(self, sync: str, *, drop_marker_table: bool = False) -> None:
        """Forget `sync`'s applied-batch markers and its owner. The marker table is shared by
        every sync writing to this database, so it is dropped only when asked or when no
        sync is set up here any more."""
        import pymysql

        marker = qtable(self.db, MARKER_TABLE)
        owners = qtable(self.db, OWNERS_TABLE)
        try:
            with contextlib.suppress(pymysql.err.ProgrammingError):  # no owner table (yet)
                self._query(f"DELETE FROM {owners} WHERE sync = %s", (sync,))
            left = self._query(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s AND "
                "table_name = %s",
                (self.db, OWNERS_TABLE),
            )
            remaining = self._query(f"SELECT count(*) FROM {owners}") if left[0][0] else [(0,)]
            if drop_marker_table or not remaining[0][0]:
                self._query(f"DROP TABLE IF EXISTS {marker}")
                self._query(f"DROP TABLE IF EXISTS {owners}")
            else:
                self._query(f"DELETE FROM {marker} WHERE origin = %s", (sync,))
        except pymysql.err.MySQLError as exc:
            if error_code(exc) == NO_SUCH_TABLE:
                return
            raise self._failed(exc, f"tearing down sync {sync}") from exc

    # --- capture ---------------------------------------------------------------------------

    def reset_position(self, sync: str) -> Position:
        """After `PositionLost` (the binlog file was purged): capture goes on from the
        server's current position; nothing on the server needs recreating."""
        return self.current_position(sync)

    def current_position(self, sync: str) -> Position:
        import pymysql

        try:
            try:
                rows = self._query("SHOW MASTER STATUS")
            except pymysql.err.ProgrammingError as exc:  # MySQL 8.4 renamed it
                if error_code(exc) != PARSE_ERROR:
                    raise
                rows = self._query("SHOW BINARY LOG STATUS")
        except pymysql.err.MySQLError as exc:
            raise self._failed(exc, "reading the binlog position") from exc
        if not rows:
            raise FatalError(f"endpoint {self.endpoint}: binary logging is off (log_bin)")
        return BinlogPosition(str(rows[0][0]), int(rows[0][1]))

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
        now = self.current_position(sync)
        assert isinstance(now, BinlogPosition)
        start = since if since is not None else now
        if (start.file, start.pos) == (now.file, now.pos):
            # nothing written since: one query instead of a binlog dump (two connections)
            return CaptureBatch(changes=(), end_position=start)
        assembler = TransactionAssembler(
            marker=(self.db, MARKER_TABLE),
            wanted={split_table(t, self.db) for t in tables},
            # described once per call and table: a schema change shows up at the next call
            describe=lambda db, table: self.describe(f"{db}.{table}"),
            start=start,
            since=since,
            skip_origin=skip_origin,
            names={split_table(t, self.db): t for t in tables},
        )
        # per process and thread: the sensor and a run may read the same sync's binlog at
        # once, and the server disconnects an older reader that reuses a server_id
        server_id = server_id_for(
            self.endpoint,
            f"{self.dsn.host}:{self.dsn.port}/{self.db}",
            sync,
            f"capture:{os.getpid()}:{threading.get_ident()}",
        )
        return read_binlog(
            self.dsn,
            server_id,
            assembler,
            max(1, max_changes),
            what=f"capturing sync {sync} on endpoint {self.endpoint}",
        )

    def confirm(self, sync: str, position: Position) -> None:
        """Nothing to release: the position lives in our state, not on the server. The
        server purges binlogs by its own expiry (binlog_expire_logs_seconds), which must
        outlast the longest pause of a sync."""

    def lag(self, sync: str, stored: Position | None) -> StreamLag:
        """Binlog written after the stored position: the files after the stored one and
        the bytes from it to the server's current position (SHOW BINARY LOGS sizes).
        The position lives in our state, not on the server, so `stored` is the measure."""
        import pymysql

        now = self.current_position(sync)
        assert isinstance(now, BinlogPosition)
        current = f"{now.file}:{now.pos}"
        if stored is None:
            return StreamLag(self.endpoint, "binlog", "not started", None, current=current)
        if not isinstance(stored, BinlogPosition):
            raise FatalError(
                f"endpoint {self.endpoint}: sync {sync} stored a {stored.kind} position, "
                "a MySQL endpoint needs a binlog position"
            )
        confirmed = f"{stored.file}:{stored.pos}"
        try:
            logs = [(str(r[0]), int(r[1])) for r in self._query("SHOW BINARY LOGS")]
        except pymysql.err.MySQLError as exc:
            raise self._failed(exc, "listing the binlog files") from exc
        names = [name for name, _ in logs]
        if stored.file not in names or now.file not in names:
            # purged: the next capture finds the position lost and reconciles
            return StreamLag(
                self.endpoint, "binlog", "lost", None, current=current, confirmed=confirmed
            )
        first, last = names.index(stored.file), names.index(now.file)
        if (last, now.pos) < (first, stored.pos):  # the binlogs were reset under the sync
            return StreamLag(
                self.endpoint, "binlog", "lost", None, current=current, confirmed=confirmed
            )
        behind = sum(size for _, size in logs[first:last]) - stored.pos + now.pos
        return StreamLag(
            self.endpoint,
            "binlog",
            "ok",
            max(behind, 0),
            files_behind=last - first,
            current=current,
            confirmed=confirmed,
        )

    # --- reads -----------------------------------------------------------------------------

    def snapshot(
        self, table: str, columns: Sequence[str], order_by: Sequence[str], batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        info = self.describe(table)  # a missing table fails here, not at the first batch

        def open_connection() -> pymysql.Connection:
            return connect(self.dsn, self.endpoint, streaming=True)

        return snapshot_batches(open_connection, info, columns, order_by, batch_rows, self.endpoint)

    def fetch(self, table: str, column: str, values: Sequence[Any]) -> list[dict[str, Any]]:
        import pymysql

        info = self._described(table)
        col = info.column(column)
        if col is None:
            raise ConfigError(
                f"column {column} does not exist in table {table} on endpoint {self.endpoint}"
            )
        wanted = []
        for v in values:
            try:
                wanted.append(to_driver(coerce(v, col), col))
            except ValueError:
                continue  # a value the column cannot hold matches no row
        names = [c.name for c in info.columns]
        select = (
            f"SELECT {', '.join(qident(n) for n in names)} FROM {qtable(*info.name.split('.', 1))}"
        )
        out: list[dict[str, Any]] = []
        try:
            for i in range(0, len(wanted), _FETCH_CHUNK):
                chunk = wanted[i : i + _FETCH_CHUNK]
                marks = ", ".join(["%s"] * len(chunk))
                conn = self._connection()
                with canonical_rows(conn, info.columns) as canonical, conn.cursor() as cur:
                    cur.execute(f"{select} WHERE {qident(column)} IN ({marks})", chunk)
                    rows = cur.fetchall()
                if canonical:  # read in canonical values (rows.py): no pass over them here
                    out += [dict(zip(names, r, strict=True)) for r in rows]
                else:
                    out += [
                        {c.name: to_canonical(v, c) for c, v in zip(info.columns, r, strict=True)}
                        for r in rows
                    ]
        except pymysql.err.MySQLError as exc:
            raise self._failed(exc, f"fetching rows of {table}") from exc
        except (ValueError, TypeError) as exc:
            # a value read while its result was still arriving: the connection is not
            # usable after it
            self._drop()
            what = f"fetching rows of {table} on endpoint {self.endpoint}"
            raise FatalError(f"{what}: {exc}") from exc
        return out

    # --- writes ----------------------------------------------------------------------------

    def apply(self, batch: ApplyBatch) -> ApplyResult:
        info = self._described(batch.table)
        try:
            return apply_mod.apply_batch(self._connection(), info, self.db, batch, self.endpoint)
        except SyncSwimError:
            # the transaction was rolled back; a broken connection must not be reused
            conn = self._conn
            if conn is not None and not conn.open:
                self._drop()
            raise

    def applied_result(self, sync: str, batch_id: str) -> ApplyResult | None:
        import pymysql

        try:
            return markers.read_result(self._connection(), self.db, batch_id, origin=sync)
        except pymysql.err.MySQLError as exc:
            if error_code(exc) == NO_SUCH_TABLE:
                return None
            raise self._failed(exc, f"reading the result of batch {batch_id}") from exc

    def prune_markers(self, older_than: timedelta) -> int:
        import pymysql

        try:
            return markers.prune(self._connection(), self.db, older_than)
        except pymysql.err.MySQLError as exc:
            if error_code(exc) == NO_SUCH_TABLE:
                return 0  # never set up: no markers to prune
            raise self._failed(exc, "pruning the apply markers") from exc


def _owners_ddl(db: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {qtable(db, OWNERS_TABLE)} ("
        " sync varchar(64) NOT NULL PRIMARY KEY,"
        " state_id varchar(64) NOT NULL,"
        " state text NOT NULL,"
        " claimed_at timestamp(6) NOT NULL DEFAULT current_timestamp(6)"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    )
