"""A PostgreSQL endpoint with `capture: poll`: the PostgreSQL connector's describe,
snapshot, fetch and apply, with capture by polling in place of the replication slot
(a read replica, or a role without the REPLICATION attribute).

What `setup` changes in the database: only the schema `syncswim` with the marker table
`syncswim.applied` (apply's idempotent replay). No slot, no publication, no replica
identity change. Polling reads through its own session, so a long poll never holds the
apply's connection.
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
    soft_deletes,
    with_writer,
)
from syncswim_lib.envelope import Position
from syncswim_lib.errors import ConfigError
from syncswim_lib.values import TableInfo

if TYPE_CHECKING:
    import psycopg
    import pyarrow as pa

    from syncswim_lib.connectors.postgres import PostgresConnector


class PolledPostgres:
    capabilities = CAPABILITIES  # declared with the kind (kind.py)

    def __init__(
        self,
        inner: PostgresConnector,
        polls: Mapping[str, PollSpec],
        now: Callable[[], float] = time.time,
    ) -> None:
        self.inner = inner
        self.endpoint = inner.endpoint
        self.polls = polls
        self.poller = Poller(self, polls, now)
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        from syncswim_lib.connectors.postgres.connection import connect

        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self.inner.dsn)
        return self._conn

    def _rows(self, query: Any, args: Sequence[Any], what: str) -> list[Any]:
        import psycopg

        from syncswim_lib.connectors.postgres.connection import raise_translated

        try:
            return self._connection().execute(query, args).fetchall()
        except psycopg.Error as exc:
            raise_translated(exc, f"{what} in endpoint {self.endpoint}")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.inner.close()

    # -- what the PostgreSQL connector does as it is -------------------------------------------

    def describe(self, table: str) -> TableInfo:
        return self.inner.describe(table)

    def fetch(self, table: str, column: str, values: Sequence[Any]) -> list[dict[str, Any]]:
        return hide_soft_deleted(self.inner.fetch(table, column, values), self.polls, table)

    def snapshot(
        self, table: str, columns: Sequence[str], order_by: Sequence[str], batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        from syncswim_lib.connectors.polling.rows import soft_deleted_filter

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
        import psycopg

        from syncswim_lib.connectors.postgres import marker
        from syncswim_lib.connectors.postgres.connection import MARKER_SCHEMA, raise_translated

        for table in tables:
            if not self.describe(table).primary_key:
                raise ConfigError(
                    f"table {table} in endpoint {self.endpoint} has no primary key: polling "
                    "identifies rows by it"
                )
        conn = self._connection()
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('syncswim.setup'))")
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {MARKER_SCHEMA}")
                conn.execute(marker.MARKER_DDL)
        except psycopg.Error as exc:
            raise_translated(exc, f"setup of sync {sync} in endpoint {self.endpoint}")

    def teardown(self, sync: str) -> None:
        """The sync's markers go; the marker table stays (streamed syncs may share it)."""
        from syncswim_lib.connectors.postgres.connection import MARKER_SCHEMA, MARKER_TABLE

        marker = f"{MARKER_SCHEMA}.{MARKER_TABLE}"
        (exists,) = self._rows("SELECT to_regclass(%s)", (marker,), "teardown")[0]
        if exists is not None:
            self._connection().execute(f"DELETE FROM {marker} WHERE origin = %s", (sync,))

    def check_server(self, syncs: Mapping[str, Sequence[str]]) -> list[Finding]:
        """The polled tables' modification columns; no replication setting is needed."""
        return poll_findings(self, self.polls, syncs)

    def index_columns(self, table: str) -> list[tuple[str, ...]]:
        rows = self._rows(
            """
            SELECT array_agg(a.attname ORDER BY k.ord)
            FROM pg_index i
            CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE i.indrelid = %s::regclass
            GROUP BY i.indexrelid
            """,
            (self._regclass(table),),
            f"reading the indexes of {table}",
        )
        return [tuple(r[0]) for r in rows]

    def maintained(self, table: str, column: str) -> bool | None:
        """True when a row-level UPDATE trigger's function names the column (PostgreSQL has
        no ON UPDATE default); None when none does."""
        rows = self._rows(
            """
            SELECT p.prosrc FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
            WHERE t.tgrelid = %s::regclass AND NOT t.tgisinternal
              AND (t.tgtype & 16) <> 0 AND (t.tgtype & 1) <> 0
            """,
            (self._regclass(table),),
            f"reading the triggers of {table}",
        )
        return True if any(column.lower() in (r[0] or "").lower() for r in rows) else None

    def local_time_zone(self, table: str, column: str) -> tuple[str, str] | None:
        """The TimeZone the database's sessions start with (their `now()` into a timestamp
        without time zone is that zone's local time), when it is not UTC now, and the
        fix; our own session's is set to UTC, so the setting it would reset to is read."""
        ((zone, utc),) = self._rows(
            "SELECT reset_val, (now() AT TIME ZONE reset_val) = (now() AT TIME ZONE 'UTC') "
            "FROM pg_settings WHERE name = 'TimeZone'",
            (),
            "reading the database's TimeZone",
        )
        if utc:
            return None
        return (
            f"the database's TimeZone is {zone}",
            f"ALTER TABLE {table} ALTER {column} TYPE timestamptz, or set the database's "
            "TimeZone to UTC",
        )

    @staticmethod
    def _regclass(table: str) -> str:
        from syncswim_lib.connectors.postgres.connection import split_table

        schema, name = split_table(table)
        return '"' + schema.replace('"', '""') + '"."' + name.replace('"', '""') + '"'

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
        # the server's clock, not the transaction's start (each statement is its own here)
        (now,) = self._rows("SELECT clock_timestamp()", (), "reading the clock")[0]
        assert isinstance(now, datetime)
        return now.astimezone(UTC)

    def max_value(self, info: TableInfo, column: str) -> Any:
        from psycopg import sql

        from syncswim_lib.connectors.postgres.connection import split_table
        from syncswim_lib.connectors.postgres.types import from_db

        col = info.column(column)
        assert col is not None
        query = sql.SQL("SELECT max({}) FROM {}").format(
            sql.Identifier(column), sql.Identifier(*split_table(info.name))
        )
        (value,) = self._rows(query, (), f"reading max({column}) of {info.name}")[0]
        return from_db(value, col.family)

    def changed_rows(
        self,
        info: TableInfo,
        column: str,
        since: Any,
        after: After | None,
        key: Sequence[str],
        limit: int,
    ) -> list[dict[str, Any]]:
        from psycopg import sql

        from syncswim_lib.connectors.postgres.connection import split_table
        from syncswim_lib.connectors.postgres.snapshot import _select_item
        from syncswim_lib.connectors.postgres.types import from_db

        col = info.column(column)
        assert col is not None
        order = [column, *key]
        where = [sql.SQL("{} IS NOT NULL").format(sql.Identifier(column))]
        args: list[Any] = []
        if since is not None:
            where.append(sql.SQL("{} >= %s").format(sql.Identifier(column)))
            args.append(self._param(since, info, column))
        if after is not None:
            where.append(
                sql.SQL("({}) > ({})").format(
                    sql.SQL(", ").join(sql.Identifier(c) for c in order),
                    sql.SQL(", ").join(sql.SQL("%s") for _ in order),
                )
            )
            args.append(self._param(after[0], info, column))
            args.extend(self._param(v, info, k) for k, v in zip(key, after[1], strict=True))
        query = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT {}").format(
            sql.SQL(", ").join(_select_item(c) for c in info.columns),
            sql.Identifier(*split_table(info.name)),
            sql.SQL(" AND ").join(where),
            sql.SQL(", ").join(sql.Identifier(c) for c in order),
            sql.Literal(int(limit)),
        )
        rows = self._rows(query, args, f"polling {info.name}")
        return [
            {c.name: from_db(v, c.family) for c, v in zip(info.columns, r, strict=True)}
            for r in rows
        ]

    def existing_keys(
        self, info: TableInfo, key: Sequence[str], keys: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        from psycopg import sql

        from syncswim_lib.connectors.postgres.connection import split_table
        from syncswim_lib.connectors.postgres.types import from_db

        if not keys:
            return []
        cols = [info.column(k) for k in key]
        row = sql.SQL("({})").format(sql.SQL(", ").join(sql.SQL("%s") for _ in key))
        query = sql.SQL("SELECT {} FROM {} WHERE ({}) IN (VALUES {})").format(
            sql.SQL(", ").join(sql.Identifier(k) for k in key),
            sql.Identifier(*split_table(info.name)),
            sql.SQL(", ").join(sql.Identifier(k) for k in key),
            sql.SQL(", ").join(row for _ in keys),
        )
        args = [self._param(k[c], info, c) for k in keys for c in key]
        rows = self._rows(query, args, f"comparing the keys of {info.name}")
        return [
            {c.name: from_db(v, c.family) for c, v in zip(cols, r, strict=True) if c is not None}
            for r in rows
        ]

    @staticmethod
    def _param(value: Any, info: TableInfo, name: str) -> Any:
        from syncswim_lib.connectors.postgres.types import db_param
        from syncswim_lib.values.coerce import coerce

        column = info.column(name)
        assert column is not None
        return db_param(coerce(value, column), column)
