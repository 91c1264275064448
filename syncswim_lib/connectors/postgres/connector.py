"""PostgresConnector: the Connector Protocol over psycopg 3 and logical decoding (pgoutput).

What `setup` changes in the database, per sync `<sync>`:

- schema `syncswim` with the marker table `syncswim.applied` (shared by all syncs of the
  database; dropped by the teardown of the last one);
- publication `syncswim_<sync>` FOR TABLE the synced tables and `syncswim.applied`;
- logical replication slot `syncswim_<sync>` (pgoutput), which keeps WAL until `confirm`;
- `REPLICA IDENTITY FULL` on every synced table, so that updates and deletes carry the
  whole old row (`Change.before`, changed fields, deletes matched by any column). This
  costs WAL volume on updates and deletes; the identity a table had before is recorded in
  `syncswim.replica_identities`, and teardown restores it once no other sync's publication
  has the table;
- `syncswim.owners`: the state store owning each sync's slot (`pipeline/owner.py`).

Setup checks the server first (`checks.py`) and changes nothing when it is not ready; a
setup that fails after changing something is undone by teardown before the error is
raised.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from syncswim_lib.connectors.base import (
    ApplyBatch,
    ApplyResult,
    CaptureBatch,
    StreamLag,
    without_origin,
)
from syncswim_lib.connectors.checks import Finding, refuse_on_errors
from syncswim_lib.connectors.ownership import StreamOwner
from syncswim_lib.connectors.postgres import apply as apply_mod
from syncswim_lib.connectors.postgres import marker, records
from syncswim_lib.connectors.postgres.capture import PlanCache, capture_changes
from syncswim_lib.connectors.postgres.checks import server_findings, streaming_findings
from syncswim_lib.connectors.postgres.connection import (
    MARKER_SCHEMA,
    MARKER_TABLE,
    connect,
    prepare_dsn,
    raise_translated,
    slot_name,
    split_table,
)
from syncswim_lib.connectors.postgres.describe import describe_table
from syncswim_lib.connectors.postgres.kind import CAPABILITIES
from syncswim_lib.connectors.postgres.snapshot import fetch_rows, snapshot_rows
from syncswim_lib.envelope import PgPosition, Position
from syncswim_lib.errors import ConfigError, FatalError, RetriableError
from syncswim_lib.values import TableInfo

if TYPE_CHECKING:
    import psycopg
    import pyarrow as pa

# How long current_position waits for transactions in flight when it is read.
IN_FLIGHT_WAIT_S = 2.0

_IN_FLIGHT = """
SELECT backend_xid::text FROM pg_stat_activity
WHERE backend_xid IS NOT NULL AND (%(among)s::text[] IS NULL OR backend_xid::text = ANY(%(among)s))
"""

_SLOT = """
SELECT database, plugin, confirmed_flush_lsn::text
FROM pg_replication_slots WHERE slot_name = %s
"""


# the slot's lag against the WAL written now; wal_status and restart_lsn are NULL once
# the server has invalidated the slot
_LAG = """
SELECT database, pg_current_wal_lsn()::text, confirmed_flush_lsn::text,
    pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint,
    pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint,
    wal_status
FROM pg_replication_slots WHERE slot_name = %s
"""


class PostgresConnector:
    capabilities = CAPABILITIES  # declared with the kind (kind.py)

    def __init__(self, dsn: str, endpoint: str, timeouts: Mapping[str, str] | None = None) -> None:
        # checked now: a malformed DSN is a ConfigError naming the key, without the password
        self.dsn = prepare_dsn(dsn, endpoint, timeouts)
        self.endpoint = endpoint
        self._conn: psycopg.Connection | None = None
        self._plans: PlanCache = {}
        self._held: dict[str, TableInfo] | None = None  # see hold_descriptions

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self.dsn)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- description ---------------------------------------------------------------

    def describe(self, table: str) -> TableInfo:
        import psycopg

        try:
            info = describe_table(self._connection(), table, self.endpoint)
        except psycopg.Error as exc:
            raise_translated(exc, f"describing {table} in endpoint {self.endpoint}")
        if self._held is not None:
            self._held[table] = info
        return info

    def hold_descriptions(self, on: bool) -> None:
        """While on, fetch and apply take a table as describe() last read it instead of
        reading the catalog again: four queries a call, most of a small batch's round
        trips. A run turns it on, its drift check reads every table, and it is off again at
        the run's end; off (the default) every call reads the table as it is now."""
        self._held = {} if on else None

    def _described(self, table: str) -> TableInfo:
        held = self._held
        info = None if held is None else held.get(table)
        return self.describe(table) if info is None else info

    # -- setup -----------------------------------------------------------------------

    def check_server(self, syncs: Mapping[str, Sequence[str]]) -> list[Finding]:
        import psycopg

        try:
            return server_findings(self._connection(), self.endpoint, syncs)
        except psycopg.Error as exc:
            raise_translated(exc, f"checking the server of endpoint {self.endpoint}")

    def check_streaming(self, syncs: Sequence[str]) -> list[Finding]:
        """What `run: streaming` syncs need beyond capture (WAL senders, pg_hba)."""
        import psycopg

        try:
            return streaming_findings(self._connection(), str(self.dsn), self.endpoint, syncs)
        except psycopg.Error as exc:
            raise_translated(exc, f"checking the server of endpoint {self.endpoint}")

    def stream_owner(self, sync: str) -> StreamOwner | None:
        import psycopg

        try:
            return records.owner(self._connection(), sync)
        except psycopg.Error as exc:
            raise_translated(exc, f"reading who owns sync {sync} in endpoint {self.endpoint}")

    def claim_stream(self, sync: str, owner: StreamOwner) -> StreamOwner:
        import psycopg

        try:
            return records.claim(self._connection(), sync, owner)
        except psycopg.Error as exc:
            raise_translated(exc, f"recording the owner of sync {sync} in {self.endpoint}")

    def setup(self, sync: str, tables: Sequence[str]) -> None:
        import psycopg

        slot = slot_name(sync)
        infos = [self.describe(t) for t in tables]
        for info in infos:
            if not info.primary_key:
                raise ConfigError(
                    f"table {info.name} in endpoint {self.endpoint} has no primary key: "
                    "capture identifies rows by it"
                )
        refuse_on_errors(
            self.check_server({sync: [info.name for info in infos]}),
            f"setup of sync {sync} in endpoint {self.endpoint}",
        )
        conn = self._connection()
        fresh = (
            conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (slot,)).fetchone()
            is None
        )
        try:
            with conn.transaction():
                # concurrent setups of several syncs would race on CREATE ... IF NOT EXISTS
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('syncswim.setup'))")
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {MARKER_SCHEMA}")
                conn.execute(marker.MARKER_DDL)
                for ddl in records.RECORDS_DDL:
                    conn.execute(ddl)
                for info in infos:
                    records.set_full(conn, info.name)
                self._publication(conn, slot, [info.name for info in infos])
            self._slot(conn, slot)
        except BaseException as exc:
            if fresh:  # leave nothing behind: what this setup created goes again
                with contextlib.suppress(Exception):
                    self.teardown(sync)
            if isinstance(exc, psycopg.Error):
                raise_translated(exc, f"setup of sync {sync} in endpoint {self.endpoint}")
            raise

    def _publication(self, conn: psycopg.Connection, pub: str, tables: list[str]) -> None:
        from psycopg import sql

        wanted = {*tables, f"{MARKER_SCHEMA}.{MARKER_TABLE}"}
        table_list = sql.SQL(", ").join(sql.Identifier(*split_table(t)) for t in sorted(wanted))
        exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (pub,)).fetchone()
        if exists is None:
            conn.execute(
                sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
                    sql.Identifier(pub), table_list
                )
            )
            return
        current = {
            f"{s}.{t}"
            for s, t in conn.execute(
                "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
                (pub,),
            ).fetchall()
        }
        if current != wanted:
            conn.execute(
                sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(sql.Identifier(pub), table_list)
            )

    def _slot(self, conn: psycopg.Connection, slot: str) -> None:
        import psycopg

        database = conn.info.dbname
        row = conn.execute(_SLOT, (slot,)).fetchone()
        if row is None:
            try:
                conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
                return
            except psycopg.errors.DuplicateObject:
                row = conn.execute(_SLOT, (slot,)).fetchone()  # another setup won the race
        if row is not None and (row[0] != database or row[1] != "pgoutput"):
            raise ConfigError(
                f"replication slot {slot} already exists on the server of endpoint "
                f"{self.endpoint} for database {row[0]} (plugin {row[1]}): slot names are "
                "server-wide, so give this sync another name"
            )

    def reset_position(self, sync: str) -> Position:
        """After `PositionLost`: the invalidated slot replaced by a new one, which starts
        at the current WAL position (returned)."""
        import psycopg

        slot = slot_name(sync)
        conn = self._connection()
        try:
            row = conn.execute(_SLOT, (slot,)).fetchone()
            if row is not None and row[1] == "pgoutput" and row[0] == conn.info.dbname:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            self._slot(conn, slot)
        except psycopg.Error as exc:
            raise_translated(exc, f"recreating replication slot {slot} in {self.endpoint}")
        return self.current_position(sync)

    def teardown(self, sync: str) -> None:
        """Undo `setup` for `sync`: slot, publication, its owner record, the replica
        identity of tables no other sync publishes, and the schema after the last sync."""
        import psycopg
        from psycopg import sql

        slot = slot_name(sync)
        conn = self._connection()
        try:
            row = conn.execute(_SLOT, (slot,)).fetchone()
            # a slot of that name made by someone else (another plugin) is not ours to drop
            if row is not None and row[0] == conn.info.dbname and row[1] == "pgoutput":
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('syncswim.setup'))")
                published = _published(conn, "pubname = %s", slot)
                conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(slot)))
                still = _published(conn, "pubname LIKE %s", "syncswim\\_%")
                records.restore(conn, published - still)
                if conn.execute("SELECT to_regclass(%s)", (records.OWNERS,)).fetchone() != (None,):
                    conn.execute(f"DELETE FROM {records.OWNERS} WHERE sync = %s", (sync,))
                others = conn.execute(
                    "SELECT 1 FROM pg_publication WHERE pubname LIKE %s", ("syncswim\\_%",)
                ).fetchone()
                if others is None:
                    conn.execute(f"DROP TABLE IF EXISTS {MARKER_SCHEMA}.{MARKER_TABLE}")
                    conn.execute(f"DROP TABLE IF EXISTS {records.OWNERS}")
                    conn.execute(f"DROP TABLE IF EXISTS {records.IDENTITIES}")
                    conn.execute(f"DROP SCHEMA IF EXISTS {MARKER_SCHEMA} RESTRICT")
        except psycopg.Error as exc:
            raise_translated(exc, f"teardown of sync {sync} in endpoint {self.endpoint}")

    # -- change stream ---------------------------------------------------------------

    def current_position(self, sync: str) -> Position:
        """The WAL write position, once the transactions then in flight have finished.

        A transaction whose commit record lies before the position is skipped by capture,
        so it must be visible to a snapshot taken after this returns: one still between
        writing its commit record and becoming visible is waited for. One still running
        after IN_FLIGHT_WAIT_S is taken for a long transaction that will commit after the
        position (and be captured); a commit stuck longer than that between the two steps
        (a synchronous standby that does not answer) would be missed by the snapshot.
        """
        import psycopg

        slot_name(sync)
        conn = self._connection()
        try:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
            assert row is not None
            lsn = row[0]
            # read after the position: every transaction that wrote its commit record
            # before it has either ended or still shows its xid here
            in_flight = [r[0] for r in conn.execute(_IN_FLIGHT, {"among": None}).fetchall()]
            deadline = time.monotonic() + IN_FLIGHT_WAIT_S
            while in_flight and time.monotonic() < deadline:
                time.sleep(0.005)
                in_flight = [
                    r[0] for r in conn.execute(_IN_FLIGHT, {"among": in_flight}).fetchall()
                ]
        except psycopg.Error as exc:
            raise_translated(exc, f"reading the WAL position of endpoint {self.endpoint}")
        return PgPosition(PgPosition.parse_lsn(lsn), 0)

    def capture(
        self,
        sync: str,
        tables: Sequence[str],
        since: Position | None,
        max_changes: int,
        skip_origin: str | None = None,
    ) -> CaptureBatch:
        batch = capture_changes(
            self._connection(),
            slot_name(sync),
            tables,
            since,
            max_changes,
            self.describe,
            self.endpoint,
            self._plans,
            skip_origin,
        )
        return without_origin(batch, skip_origin)  # a row the assembler could not tell

    def confirm(self, sync: str, position: Position) -> None:
        import psycopg

        slot = slot_name(sync)
        if not isinstance(position, PgPosition):
            raise ConfigError(
                f"a PostgreSQL slot cannot be confirmed at a {position.kind} position"
            )
        conn = self._connection()
        try:
            row = conn.execute(_SLOT, (slot,)).fetchone()
            if row is None or row[0] != conn.info.dbname:
                raise FatalError(
                    f"replication slot {slot} does not exist in endpoint {self.endpoint}"
                )
            confirmed = PgPosition.parse_lsn(row[2])
            if position.lsn > confirmed:  # the server refuses to move a slot backwards
                conn.execute(
                    "SELECT pg_replication_slot_advance(%s, %s::pg_lsn)",
                    (slot, PgPosition.format_lsn(position.lsn)),
                )
        except psycopg.Error as exc:
            raise_translated(exc, f"confirming slot {slot} in endpoint {self.endpoint}")

    def lag(self, sync: str, stored: Position | None) -> StreamLag:
        """The slot's figures: WAL written since its confirmed position (what capture has
        not journaled yet) and since its restart position (what the server keeps for
        it). The slot is the authority here, not `stored`: the journal confirms the slot
        once it holds the changes."""
        import psycopg

        slot = slot_name(sync)
        conn = self._connection()
        try:
            row = conn.execute(_LAG, (slot,)).fetchone()
            if row is None or row[0] != conn.info.dbname:
                now = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
                return StreamLag(
                    self.endpoint,
                    f"replication slot {slot}",
                    "missing",
                    None,
                    current=None if now is None else now[0],
                )
        except psycopg.Error as exc:
            raise_translated(exc, f"reading the lag of slot {slot} in endpoint {self.endpoint}")
        _, current, confirmed, lag, retained, wal_status = row
        status = "ok" if wal_status in (None, "reserved") else str(wal_status)
        if wal_status is None and retained is None:  # invalidated (before wal_status)
            status = "lost"
        return StreamLag(
            self.endpoint,
            f"replication slot {slot}",
            status,
            None if lag is None else int(lag),
            retained_bytes=None if retained is None else int(retained),
            current=current,
            confirmed=confirmed,
        )

    # -- reading and writing rows ----------------------------------------------------

    def snapshot(
        self, table: str, columns: Sequence[str], order_by: Sequence[str], batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        info = self.describe(table)
        return snapshot_rows(self.dsn, info, columns, order_by, batch_rows, self.endpoint)

    def fetch(self, table: str, column: str, values: Sequence[Any]) -> list[dict[str, Any]]:
        return fetch_rows(self._connection(), self._described(table), column, values, self.endpoint)

    def apply(self, batch: ApplyBatch) -> ApplyResult:
        try:
            return apply_mod.apply_batch(self._connection(), batch, self._described(batch.table))
        except RetriableError:
            # a session in doubt (timed out, cut) is not reused: the retry opens a new one
            self.close()
            raise

    def applied_result(self, sync: str, batch_id: str) -> ApplyResult | None:
        return marker.applied_result(self._connection(), sync, batch_id)

    def prune_markers(self, older_than: timedelta) -> int:
        return marker.prune(self._connection(), older_than, self.endpoint)


def _published(conn: psycopg.Connection, where: str, arg: str) -> set[str]:
    """`schema.table` of the tables in the matching publications (the marker excluded)."""
    rows = conn.execute(
        f"SELECT schemaname, tablename FROM pg_publication_tables WHERE {where}", (arg,)
    ).fetchall()
    return {f"{s}.{t}" for s, t in rows} - {f"{MARKER_SCHEMA}.{MARKER_TABLE}"}
