"""A MariaDB/MySQL endpoint with `capture: poll`: the MySQL connector's describe,
snapshot, fetch and apply, with capture by polling in place of the binary log (a server
without binlog access, or without the ROW format).

What `setup` changes in the database: only the marker table (apply's idempotent replay);
no binlog setting is checked or needed. Polling reads through its own autocommit session
(each query sees the rows committed before it), on the server's UTC clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from syncswim_lib.config.polling import PollSpec
from syncswim_lib.connectors.base import ApplyBatch, ApplyResult, CaptureBatch
from syncswim_lib.connectors.checks import Finding
from syncswim_lib.connectors.polling.capture import After, Poller
from syncswim_lib.connectors.polling.checks import poll_findings
from syncswim_lib.connectors.polling.kind import CAPABILITIES
from syncswim_lib.connectors.polling.rows import (
    count_soft_deletes,
    filter_batches,
    hide_soft_deleted,
    soft_deleted_filter,
    soft_deletes,
    with_writer,
)
from syncswim_lib.envelope import Position
from syncswim_lib.errors import ConfigError
from syncswim_lib.values import TableInfo
from syncswim_lib.values.coerce import coerce

if TYPE_CHECKING:
    import pyarrow as pa
    import pymysql

    from syncswim_lib.connectors.mysql import MySQLConnector


# zone names that are UTC, for a server without time zone tables to convert them
UTC_NAMES = frozenset({"UTC", "UCT", "GMT", "ETC/UTC", "ETC/GMT", "Z", "ZULU", "UNIVERSAL"})


class PolledMySQL:
    capabilities = CAPABILITIES  # declared with the kind (kind.py)

    def __init__(
        self,
        inner: MySQLConnector,
        polls: Mapping[str, PollSpec],
        now: Callable[[], float] = time.time,
    ) -> None:
        self.inner = inner
        self.endpoint = inner.endpoint
        self.polls = polls
        self.poller = Poller(self, polls, now)
        self._conn: pymysql.Connection | None = None

    def _rows(self, sql: str, args: Sequence[Any], what: str) -> list[tuple[Any, ...]]:
        import pymysql

        from syncswim_lib.connectors.mysql.connection import connect, is_retriable, map_error

        try:
            if self._conn is None or not self._conn.open:
                self._conn = connect(self.inner.dsn, self.endpoint)
            with self._conn.cursor() as cur:
                cur.execute(sql, list(args))
                return list(cur.fetchall())
        except pymysql.err.MySQLError as exc:
            if is_retriable(exc):
                self._conn = None  # in doubt: the next call opens another session
            raise map_error(exc, f"{what} on endpoint {self.endpoint}") from exc

    def _table(self, table: str) -> str:
        from syncswim_lib.connectors.mysql.connection import qtable, split_table

        return qtable(*split_table(table, self.inner.db))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.inner.close()

    # -- what the MySQL connector does as it is ------------------------------------------------

    def describe(self, table: str) -> TableInfo:
        return self.inner.describe(table)

    def fetch(self, table: str, column: str, values: Sequence[Any]) -> list[dict[str, Any]]:
        return hide_soft_deleted(self.inner.fetch(table, column, values), self.polls, table)

    def snapshot(
        self, table: str, columns: Sequence[str], order_by: Sequence[str], batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        hidden = soft_deleted_filter(self.polls, table)
        wanted = list(columns) if hidden is None or hidden in columns else [*columns, hidden]
        inner = self.inner.snapshot(table, wanted, order_by, batch_rows)
        return filter_batches(inner, self.polls, table, columns)  # type: ignore[no-any-return]

    def apply(self, batch: ApplyBatch) -> ApplyResult:
        batch, soft = soft_deletes(batch, self.polls, self.describe(batch.table), self.clock)
        return count_soft_deletes(self.inner.apply(with_writer(batch, self.polls)), soft)

    def applied_result(self, sync: str, batch_id: str) -> ApplyResult | None:
        return self.inner.applied_result(sync, batch_id)

    def prune_markers(self, older_than: timedelta) -> int:
        return self.inner.prune_markers(older_than)

    # -- setup: the marker table only ------------------------------------------------------------

    def setup(self, sync: str, tables: Sequence[str]) -> None:
        from syncswim_lib.connectors.mysql import markers

        for table in tables:
            if not self.describe(table).primary_key:
                raise ConfigError(
                    f"table {table} on endpoint {self.endpoint} has no primary key: polling "
                    "identifies rows by it"
                )
        self._rows(markers.create_sql(self.inner.db), (), f"setup of sync {sync}")

    def teardown(self, sync: str) -> None:
        """The sync's markers go; the marker table stays (streamed syncs may share it)."""
        from syncswim_lib.connectors.mysql.connection import MARKER_TABLE, qtable

        db = self.inner.db
        found = self._rows(
            "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
            (db, MARKER_TABLE),
            "teardown",
        )
        if found:
            self._rows(
                f"DELETE FROM {qtable(db, MARKER_TABLE)} WHERE origin = %s", (sync,), "teardown"
            )

    def check_server(self, syncs: Mapping[str, Sequence[str]]) -> list[Finding]:
        """The polled tables' modification columns; no binlog setting is needed."""
        return poll_findings(self, self.polls, syncs)

    def index_columns(self, table: str) -> list[tuple[str, ...]]:
        from syncswim_lib.connectors.mysql.connection import split_table

        db, name = split_table(table, self.inner.db)
        rows = self._rows(
            "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY INDEX_NAME, SEQ_IN_INDEX",
            (db, name),
            f"reading the indexes of {table}",
        )
        out: dict[str, list[str]] = {}
        for index, column in rows:
            out.setdefault(str(index), []).append(str(column))
        return [tuple(c) for c in out.values()]

    def local_time_zone(self, table: str, column: str) -> tuple[str, str] | None:
        """The server's time_zone (what a writer's session starts with: its
        current_timestamp into a datetime is that zone's local time) when it is not UTC,
        and the fix. A named zone the server cannot convert (no time zone tables) is
        judged by its name."""
        ((zone, system, offset),) = self._rows(
            "SELECT @@global.time_zone, @@system_time_zone, TIMESTAMPDIFF(SECOND, "
            "UTC_TIMESTAMP(), CONVERT_TZ(UTC_TIMESTAMP(), '+00:00', "
            "IF(@@global.time_zone = 'SYSTEM', @@system_time_zone, @@global.time_zone)))",
            (),
            "reading the server's time_zone",
        )
        name = str(system if zone == "SYSTEM" else zone)
        utc = offset == 0 if offset is not None else name.upper() in UTC_NAMES
        if utc:
            return None
        return (
            f"the server's time_zone is {name}",
            f"make {table}.{column} a timestamp column (kept in UTC) with its ON UPDATE "
            "default, or run the server with time_zone '+00:00'",
        )

    def maintained(self, table: str, column: str) -> bool | None:
        """True for an `ON UPDATE CURRENT_TIMESTAMP` default, or an UPDATE trigger that
        names the column; None when neither is there."""
        from syncswim_lib.connectors.mysql.connection import split_table

        db, name = split_table(table, self.inner.db)
        extra = self._rows(
            "SELECT EXTRA FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND COLUMN_NAME = %s",
            (db, name, column),
            f"reading column {column} of {table}",
        )
        if any("on update" in str(r[0]).lower() for r in extra):
            return True
        triggers = self._rows(
            "SELECT ACTION_STATEMENT FROM information_schema.TRIGGERS "
            "WHERE EVENT_OBJECT_SCHEMA = %s AND EVENT_OBJECT_TABLE = %s "
            "AND EVENT_MANIPULATION = 'UPDATE'",
            (db, name),
            f"reading the triggers of {table}",
        )
        return True if any(column.lower() in str(r[0]).lower() for r in triggers) else None

    # -- capture (polling) --------------------------------------------------------------------

    def current_position(self, sync: str) -> Position:
        return self.poller.current_position(sync)

    def capture(
        self,
        sync: str,
        tables: Sequence[str],
        since: Position | None,
        max_changes: int,
        skip_origin: str | None = None,
    ) -> CaptureBatch:
        return self.poller.capture(sync, tables, since, max_changes, skip_origin)

    def confirm(self, sync: str, position: Position) -> None:
        self.poller.confirm(sync, position)

    # PollSource ----------------------------------------------------------------------------------

    def clock(self) -> datetime:
        # the session's time zone is UTC (connection.INIT_COMMAND), so is this
        (now,) = self._rows("SELECT UTC_TIMESTAMP(6)", (), "reading the clock")[0]
        assert isinstance(now, datetime)
        return now.replace(tzinfo=UTC)

    def max_value(self, info: TableInfo, column: str) -> Any:
        from syncswim_lib.connectors.mysql.connection import qident
        from syncswim_lib.connectors.mysql.types import to_canonical

        sql = f"SELECT max({qident(column)}) FROM {self._table(info.name)}"
        (value,) = self._rows(sql, (), f"reading max({column}) of {info.name}")[0]
        return to_canonical(value, info.column(column))

    def changed_rows(
        self,
        info: TableInfo,
        column: str,
        since: Any,
        after: After | None,
        key: Sequence[str],
        limit: int,
    ) -> list[dict[str, Any]]:
        from syncswim_lib.connectors.mysql.connection import qident
        from syncswim_lib.connectors.mysql.types import to_canonical

        order = [column, *key]
        where = [f"{qident(column)} IS NOT NULL"]
        args: list[Any] = []
        if since is not None:
            where.append(f"{qident(column)} >= %s")
            args.append(self._param(since, info, column))
        if after is not None:
            where.append(
                f"({', '.join(qident(c) for c in order)}) > ({', '.join('%s' for _ in order)})"
            )
            args.append(self._param(after[0], info, column))
            args.extend(self._param(v, info, k) for k, v in zip(key, after[1], strict=True))
        names = ", ".join(qident(c.name) for c in info.columns)
        sql = (
            f"SELECT {names} FROM {self._table(info.name)} WHERE {' AND '.join(where)} "
            f"ORDER BY {', '.join(qident(c) for c in order)} LIMIT {int(limit)}"
        )
        return [
            {c.name: to_canonical(v, c) for c, v in zip(info.columns, r, strict=True)}
            for r in self._rows(sql, args, f"polling {info.name}")
        ]

    def existing_keys(
        self, info: TableInfo, key: Sequence[str], keys: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        from syncswim_lib.connectors.mysql.connection import qident
        from syncswim_lib.connectors.mysql.types import to_canonical

        if not keys:
            return []
        one = "(" + ", ".join("%s" for _ in key) + ")"
        cols = ", ".join(qident(k) for k in key)
        sql = (
            f"SELECT {cols} FROM {self._table(info.name)} "
            f"WHERE ({cols}) IN ({', '.join(one for _ in keys)})"
        )
        args = [self._param(k[c], info, c) for k in keys for c in key]
        return [
            {c: to_canonical(v, info.column(c)) for c, v in zip(key, r, strict=True)}
            for r in self._rows(sql, args, f"comparing the keys of {info.name}")
        ]

    @staticmethod
    def _param(value: Any, info: TableInfo, name: str) -> Any:
        from syncswim_lib.connectors.mysql.types import to_driver

        column = info.column(name)
        assert column is not None
        return to_driver(coerce(value, column), column)
