"""The streaming run: one long-lived writer per sync that captures continuously and applies
micro-batches as soon as work is pending (`run: streaming`, docs/streaming.md).

It is the same pipeline as a micro-batch run, driven differently:

1. It takes the writer lease of every entity of the sync (`state/leases.py`): no other
   writer (an asset step, `syncswim sync`, a second streaming run) runs while it holds it.
2. Each side's change stream is read by a thread that the server pushes to: PostgreSQL
   over the replication protocol (`postgres/replication.py`), MariaDB/MySQL as a blocking
   binlog dump (`mysql/stream.py`). The sides' connectors capture from those readers
   instead of peeking or polling, so `capture_endpoint` (journal with the position in one
   transaction, then confirm) and `run_entities` are used unchanged.
3. As soon as a transaction arrives a batch opens; more are taken while they keep
   coming, until `batch_changes` changes have arrived, an idle gap of `idle_gap_ms` or
   `max_batch_ms` after the first; then they are journaled (one state commit) and the entities
   with pending changes and their descendants run (`run_entities`, dependency order) and
   `on_batch` reports each entity's batch.
4. Between batches (and only there) it renews its lease and asks whether to stop: a stop
   request (`syncswim stop`), the caller's `should_stop` (the Dagster sensor turned off),
   or the rotation period. A crash anywhere loses nothing: what was not journaled was not
   confirmed, and the journal's positions say where the next run resumes.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from syncswim_lib.config.models import StreamingSettings
from syncswim_lib.connectors.base import ContinuousReader
from syncswim_lib.errors import ConfigError
from syncswim_lib.pipeline.capture import (
    capture_endpoint,
    ensure_setup,
    entity_tables,
    truncate_policies,
)
from syncswim_lib.pipeline.report import EntityReport
from syncswim_lib.pipeline.run import run_entities
from syncswim_lib.pipeline.runtime import Runtime
from syncswim_lib.pipeline.seed import unfinished
from syncswim_lib.state import leases

log = logging.getLogger(__name__)

WAKE_S = 0.25  # the longest the loop sleeps without looking at its stop conditions
STOP_CHECK_S = 0.5  # how often the state store is asked for a stop request
DUE_CHECK_S = 5.0  # how often pending work that no change announces is looked for


@dataclass
class Batch:
    """One applied micro-batch: the reports of the entities that ran."""

    number: int
    reports: dict[str, EntityReport]
    captured: int
    first_change_at: float  # time.time() when its first transaction was journaled
    echoes: Counter[str] = field(default_factory=Counter)


BatchHook = Callable[[Batch], None]
StopCheck = Callable[[], str | None]


def open_stream(rt: Runtime, sync: str, endpoint: str) -> ContinuousReader:
    """The continuous reader of `sync`'s change stream on `endpoint`, from the stored
    position (set up first: `ensure_setup`); the endpoint's kind provides it."""
    declared = rt.project.endpoints[endpoint]
    reading = declared.reading
    if reading.stream is None:
        raise ConfigError(
            f"run mode 'streaming' has no continuous reader for {declared.kind} endpoints"
        )
    decl = rt.project.syncs[sync]
    emaps = [rt.entity_map(sync, name) for name in decl.entities]
    tables = sorted(entity_tables(emaps, endpoint))
    since = rt.store.get_position(sync, endpoint)
    if since is not None and not isinstance(since, reading.position):
        raise ConfigError(f"sync {sync} stored a {since.kind} position for {endpoint}")
    return reading.stream(rt.connector(endpoint), sync, tables, since)


class StreamingRun:
    def __init__(
        self,
        rt: Runtime,
        sync: str,
        *,
        holder: str | None = None,
        purpose: str = "streaming run",
        settings: StreamingSettings | None = None,
        on_batch: BatchHook | None = None,
        should_stop: StopCheck | None = None,
        on_ready: Callable[[dict[str, str]], None] | None = None,
        lease_ttl_s: float = leases.DEFAULT_TTL_S,
        lease_wait_s: float | None = None,
    ) -> None:
        self.rt, self.sync = rt, sync
        self.decl = rt.project.syncs[sync]
        self.settings = settings or self.decl.streaming
        self.holder = holder or f"streaming:{uuid.uuid4().hex}"
        self.purpose = purpose
        self.on_batch = on_batch
        self.should_stop = should_stop
        self.on_ready = on_ready  # called once both readers are open, with their positions
        self.lease_ttl_s = lease_ttl_s
        # long enough for a dead holder's lease to run out
        self.lease_wait_s = lease_ttl_s + 5 if lease_wait_s is None else lease_wait_s
        self.streams: dict[str, ContinuousReader] = {}
        self.batches = 0
        self.stop_reason: str | None = None

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> str:
        """Stream until told to stop; returns why it stopped."""
        rt, sync = self.rt, self.sync
        order = self.decl.apply_order()
        with leases.hold(
            rt.store,
            sync,
            order,
            self.holder,
            self.purpose,
            wait_s=self.lease_wait_s,
            ttl_s=self.lease_ttl_s,
        ) as lease:
            try:
                return self._stream(lease)
            finally:
                self._detach()

    def _stream(self, lease: leases.Keeper) -> str:
        rt, sync = self.rt, self.sync
        started = time.monotonic()
        wake = threading.Event()
        ensure_setup(rt, sync)
        for endpoint in (self.decl.a, self.decl.b):
            stream = open_stream(rt, sync, endpoint)
            stream.buffer.wake = wake
            self._attach(endpoint, stream)
            stream.start()
        if self.on_ready is not None:
            positions = {}
            for endpoint in (self.decl.a, self.decl.b):
                pos = rt.store.get_position(sync, endpoint)
                positions[endpoint] = "start" if pos is None else str(pos.to_json())
            self.on_ready(positions)
        # what came in while nobody streamed (and what waits) first
        self._apply(self._pending_selection(), 0, time.time(), Counter())
        last_stop_check = 0.0
        last_due_check = time.monotonic()
        while True:
            lease.check()
            now = time.monotonic()
            if now - last_stop_check >= STOP_CHECK_S:
                last_stop_check = now
                reason = self._stop_reason(started)
                if reason is not None:
                    self.stop_reason = reason
                    return reason
            if now - last_due_check >= DUE_CHECK_S:
                # work no new change wakes us for: failed records whose next try is due,
                # and records a batch handed back (a target row changed underneath)
                last_due_check = now
                self._apply(self._pending_selection(), 0, time.time(), Counter())
            if not wake.wait(WAKE_S):
                continue
            wake.clear()
            first_at = time.time()
            echoes: Counter[str] = Counter()
            idle = self.settings.idle_gap_ms / 1000
            close_at = time.monotonic() + self.settings.max_batch_ms / 1000
            # the batch's transactions are journaled together when it closes: one state
            # commit (a synchronous one) per batch instead of one per wake-up, which under
            # a steady stream came every few milliseconds. Nothing is confirmed to a
            # source before its journal commit, so a crash meanwhile loses nothing. A
            # reader whose buffer does not count its changes is journaled at each wake-up.
            counted = self._counted()
            captured = 0 if counted else self._journal(echoes)
            while (self._buffered() if counted else captured) < self.settings.batch_changes:
                left = close_at - time.monotonic()
                if left <= 0 or not wake.wait(min(idle, left)):
                    break
                wake.clear()
                if not counted:
                    captured += self._journal(echoes)
            if counted:
                captured = self._journal(echoes)
            if captured:
                self._apply(self._pending_selection(), captured, first_at, echoes)

    def _stop_reason(self, started: float) -> str | None:
        request = leases.stop_request(self.rt.store, self.sync)
        if request is not None:
            return f"stop requested: {request[1]}"
        if self.should_stop is not None:
            reason = self.should_stop()
            if reason is not None:
                return reason
        if time.monotonic() - started >= self.settings.rotate_every_s:
            return f"rotated after {self.settings.rotate_every_s} s"
        return None

    def _counted(self) -> bool:
        """Whether every reader's buffer counts the changes it holds (`StreamBuffer`)."""
        return all(callable(getattr(s.buffer, "changes", None)) for s in self.streams.values())

    def _buffered(self) -> int:
        """Changes the readers hold, not journaled yet."""
        return sum(int(stream.buffer.changes()) for stream in self.streams.values())

    def _journal(self, echoes: Counter[str]) -> int:
        """Everything the readers hold, into the journal (then confirmed)."""
        rt, sync = self.rt, self.sync
        emaps = [rt.entity_map(sync, name) for name in self.decl.entities]
        total = 0
        for endpoint in (self.decl.a, self.decl.b):
            tables = entity_tables(emaps, endpoint)
            total += capture_endpoint(
                rt.store,
                rt.connector(endpoint),
                sync,
                endpoint,
                tables,
                echoes=echoes,
                truncates=truncate_policies(self.decl, endpoint),
            )
        return total

    def _pending_selection(self) -> list[str]:
        pending = self.rt.store.pending_counts(self.sync)
        # a `full` run left unfinished (a crash, a lost position marked for reconciling)
        for e in self.decl.entities:
            if unfinished(self.rt.store, self.sync, e):
                pending.setdefault(e, 0)
        wanted = {
            d for e in pending if e in self.decl.entities for d in (e, *self.decl.descendants(e))
        }
        return [e for e in self.decl.apply_order() if e in wanted]

    def _apply(
        self, names: list[str], captured: int, first_at: float, echoes: Counter[str]
    ) -> None:
        if not names:
            return
        reports = run_entities(self.rt, self.sync, names)
        for name, n in echoes.items():
            if name in reports:
                reports[name].skipped_echoes += n
        reports[names[0]].captured += captured
        self.batches += 1
        if self.on_batch is not None:
            self.on_batch(Batch(self.batches, reports, captured, first_at, echoes))

    # -- the connectors read from the streams --------------------------------------------

    def _attach(self, endpoint: str, stream: ContinuousReader) -> None:
        conn = self.rt.connector(endpoint)
        # the run's connector captures and confirms through the stream; everything else
        # (apply, describe, fetch, snapshot) is the connector's own
        setattr(conn, "capture", stream.capture)  # noqa: B010
        setattr(conn, "confirm", stream.confirm)  # noqa: B010
        self.streams[endpoint] = stream

    def _detach(self) -> None:
        for endpoint, stream in self.streams.items():
            stream.close()
            conn = self.rt.connector(endpoint)
            for name in ("capture", "confirm"):
                if name in vars(conn):
                    delattr(conn, name)
        self.streams.clear()
