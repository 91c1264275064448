"""A continuous reader of a sync's slot over the streaming replication protocol.

A thread holds a `replication=database` connection in `START_REPLICATION SLOT ...
LOGICAL` (pgoutput v1, the sync's publication) and reads XLogData messages as the server
sends them, with no polling: each transaction is decoded by the same assembler as the
peek path (`capture.py`: same positions, same origin tags, same key-change split) when
its Commit arrives, and handed to capture through a `StreamBuffer`.

Confirm after journal: the standby status updates the thread sends report as flushed only
the position capture `confirm`ed, i.e. what the journal has committed; the slot keeps
everything after it. A connection the server drops (or a slot still held by a reader
that died) is reopened with backoff; the server then sends again from the slot's
confirmed position and what the buffer already holds is left out by position.
"""

from __future__ import annotations

import logging
import select
import struct
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from syncswim_lib.connectors.base import CaptureBatch
from syncswim_lib.connectors.postgres import pgoutput
from syncswim_lib.connectors.postgres.capture import (
    RelationPlan,
    _Assembler,
    plan_for,
)
from syncswim_lib.connectors.postgres.connection import qualify, slot_name
from syncswim_lib.connectors.postgres.describe import describe_table
from syncswim_lib.connectors.streambuf import StreamBuffer, Txn
from syncswim_lib.envelope import PgPosition, Position
from syncswim_lib.errors import ConfigError, FatalError
from syncswim_lib.values import TableInfo

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

FEEDBACK_EVERY_S = 1.0
POLL_S = 0.1  # how often the thread looks at its stop flag while the server is quiet
BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
# PostgreSQL's epoch for the replication protocol's timestamps
_PG_EPOCH_US = 946_684_800 * 1_000_000


def _now_pg() -> int:
    return int(time.time() * 1_000_000) - _PG_EPOCH_US


class ReplicationStream:
    """`start()` the thread, `capture()`/`confirm()` as a connector would, `close()`."""

    def __init__(
        self,
        dsn: str,
        endpoint: str,
        sync: str,
        tables: Sequence[str],
        since: PgPosition | None,
    ) -> None:
        self.dsn, self.endpoint, self.sync = dsn, endpoint, sync
        self.slot = slot_name(sync)
        self.wanted = frozenset(qualify(t) for t in tables)
        self.buffer = StreamBuffer()
        self._last = since  # the end of the last transaction handed to the buffer
        self._flushed = since.lsn if since is not None else 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._plans: dict[tuple[pgoutput.Relation, bool], RelationPlan] = {}
        self.connects = 0  # connections opened (a reconnect shows as more than one)
        self.connected = threading.Event()

    # -- the connector's side -----------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._main, name=f"pg-replication-{self.slot}", daemon=True
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
        if since is not None and not isinstance(since, PgPosition):
            raise ConfigError(f"a PostgreSQL capture cannot resume from a {since.kind} position")
        return self.buffer.take({qualify(t) for t in tables}, since, max_changes, skip_origin)

    def confirm(self, sync: str, position: Position) -> None:
        """The journal holds everything up to `position`: report it flushed."""
        if not isinstance(position, PgPosition):
            raise ConfigError(
                f"a PostgreSQL slot cannot be confirmed at a {position.kind} position"
            )
        self._flushed = max(self._flushed, position.lsn)

    @property
    def flushed(self) -> int:
        return self._flushed

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- the thread -----------------------------------------------------------------------

    def _main(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._stream()
                failures = 0
            except FatalError as exc:
                self.buffer.fail(exc)
                return
            except Exception as exc:  # a dropped connection, a slot still held
                wait = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                failures += 1
                log.warning(
                    "replication stream of slot %s in endpoint %s: %s; reconnecting in %s s",
                    self.slot,
                    self.endpoint,
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc),
                    wait,
                )
                self.connected.clear()
                self._stop.wait(wait)

    def _connect(self) -> psycopg.Connection:
        import psycopg

        try:
            return psycopg.connect(str(self.dsn), autocommit=True, replication="database")
        except psycopg.OperationalError as exc:
            raise ConnectionError(f"cannot connect for replication: {exc}") from None

    def _stream(self) -> None:
        import psycopg
        from psycopg import pq

        conn = self._connect()
        describer = psycopg.connect(str(self.dsn), autocommit=True)
        try:
            pg = conn.pgconn
            command = (
                f"START_REPLICATION SLOT {self.slot} LOGICAL 0/0 "
                f"(proto_version '1', publication_names '{self.slot}')"
            )
            pg.send_query(command.encode())
            res = pg.get_result()
            if res is None or res.status != pq.ExecStatus.COPY_BOTH:
                text = (res.error_message or b"").decode(errors="replace") if res else ""
                if "does not exist" in text:
                    raise FatalError(
                        f"replication slot {self.slot} (or its publication) does not exist in "
                        f"endpoint {self.endpoint}: {text.strip()}; run the sync's setup again"
                    )
                raise ConnectionError(f"START_REPLICATION refused: {text.strip()}")
            self.connects += 1
            self.connected.set()
            pg.nonblocking = 1
            asm = _Assembler(self._last, self.wanted, 1 << 30, self._resolver(describer))
            messages: list[bytes] = []
            sent = -1
            last_feedback = 0.0
            while not self._stop.is_set():
                n, data = pg.get_copy_data(1)
                if n == 0:
                    now = time.monotonic()
                    if self._flushed != sent or now - last_feedback > FEEDBACK_EVERY_S:
                        self._feedback(pg, self._flushed)
                        sent, last_feedback = self._flushed, now
                    ready, _, _ = select.select([pg.socket], [], [], POLL_S)
                    if ready:
                        pg.consume_input()
                    continue
                if n < 0:
                    raise ConnectionError(
                        f"the server ended the stream: {pg.error_message.decode(errors='replace')}"
                    )
                msg = bytes(data)
                kind = msg[:1]
                if kind == b"w":
                    payload = msg[25:]
                    messages.append(payload)
                    if payload[:1] == b"C":
                        self._commit(asm, messages)
                        messages = []
                elif kind == b"k":
                    (reply,) = struct.unpack_from("!B", msg, 17)
                    if reply:
                        self._feedback(pg, self._flushed)
                        sent, last_feedback = self._flushed, time.monotonic()
        finally:
            describer.close()
            conn.close()

    def _commit(self, asm: _Assembler, messages: list[bytes]) -> None:
        asm.since = self._last
        asm.detected_at = datetime.now(UTC)
        asm.changes = []
        asm.truncates = []
        asm.feed(messages)
        end = asm.end
        if end is None or (self._last is not None and end <= self._last):
            return  # a transaction the journal already has
        assert isinstance(end, PgPosition)
        self._last = end
        self.buffer.put(Txn(tuple(asm.changes), end, {}, tuple(asm.truncates)))

    def _feedback(self, pg: psycopg.pq.abc.PGconn, lsn: int) -> None:
        """A standby status update: written, flushed and applied up to `lsn`."""
        msg = b"r" + struct.pack("!QQQqB", lsn, lsn, lsn, _now_pg(), 0)
        if pg.put_copy_data(msg) != 1 or pg.flush() < 0:
            raise ConnectionError("cannot send the standby status update")

    def _resolver(self, conn: psycopg.Connection) -> _Resolver:
        return _Resolver(conn, self.wanted, self._plans, self.slot, self.endpoint)


class _Resolver:
    """Relation -> plan, described once per relation shape (as the peek path does)."""

    def __init__(
        self,
        conn: psycopg.Connection,
        wanted: frozenset[str],
        cache: dict[tuple[pgoutput.Relation, bool], RelationPlan],
        slot: str,
        endpoint: str,
    ) -> None:
        self.conn, self.wanted, self.cache = conn, wanted, cache
        self.slot, self.endpoint = slot, endpoint

    def __call__(self, relation: pgoutput.Relation) -> RelationPlan:
        name = relation.qualified_name
        key = (relation, name in self.wanted)
        if key not in self.cache:
            info: TableInfo | None = None
            if name in self.wanted:
                try:
                    info = describe_table(self.conn, name, self.endpoint)
                except ConfigError as exc:
                    raise FatalError(
                        f"slot {self.slot} in endpoint {self.endpoint} holds changes of "
                        f"{name}, which can no longer be described: {exc}"
                    ) from exc
            self.cache[key] = plan_for(relation, info)
        return self.cache[key]
