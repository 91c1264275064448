"""Writer leases: one writer per sync entity, and the stop requests of streaming runs.

A writer (the streaming run, an asset's step, `syncswim sync`) takes a lease on every
entity it may write before it captures or applies, renews it while it works and releases
it when done. A lease names its holder, the host and process id and when it expires: a
holder that died on this host (its process is gone) loses it at once, one on another host
when it expires. Taking the leases of several entities is one transaction: all or none.

The tables live beside the store's own (created on first use, so stores at any schema
version have them): `writer_leases` and `stream_stops`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from syncswim_lib.errors import RetriableError
from syncswim_lib.state.base import StateStore
from syncswim_lib.state.sqlstore import Cursor, SqlStateStore

DEFAULT_TTL_S = 30.0
HOST = socket.gethostname()

_DDL = (
    """CREATE TABLE IF NOT EXISTS writer_leases (
    sync_name TEXT NOT NULL,
    entity TEXT NOT NULL,
    holder TEXT NOT NULL,
    purpose TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (sync_name, entity)
)""",
    """CREATE TABLE IF NOT EXISTS stream_stops (
    sync_name TEXT PRIMARY KEY,
    requested_at DOUBLE PRECISION NOT NULL,
    reason TEXT NOT NULL
)""",
)
_READY: weakref.WeakSet[SqlStateStore] = weakref.WeakSet()  # stores that have the tables


@dataclass(frozen=True)
class LeaseInfo:
    sync: str
    entity: str
    holder: str
    purpose: str  # what the holder is: "streaming run <id>", "asset step", "syncswim sync"
    host: str
    pid: int
    expires_at: float

    def alive(self, now: float) -> bool:
        if self.expires_at <= now:
            return False
        return not (self.host == HOST and not _pid_alive(self.pid))

    def describe(self) -> str:
        return f"{self.purpose} (pid {self.pid} on {self.host})"


class WriterBusy(RetriableError):
    """Another live writer holds a lease this writer needs."""

    def __init__(self, message: str, holders: Sequence[LeaseInfo]) -> None:
        super().__init__(message)
        self.holders = tuple(holders)


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(") ", 1)[1].startswith("Z"):
                return False  # a zombie: dead, not yet reaped
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _tx(store: StateStore) -> Iterator[Cursor | None]:
    """A write transaction on the store's own tables; None for a store that is not SQL (the
    in-memory stores of some tests), where leases are not kept."""
    if not isinstance(store, SqlStateStore):
        yield None
        return
    if store not in _READY:
        with store._write() as cur:
            for statement in _DDL:
                cur.execute(statement)
        _READY.add(store)
    with store._write() as cur:
        yield cur


def _q(store: StateStore, query: str) -> str:
    assert isinstance(store, SqlStateStore)
    return store._q(query)


def _rows(cur: Cursor, store: StateStore, sync: str) -> list[LeaseInfo]:
    cur.execute(
        _q(
            store,
            "SELECT sync_name, entity, holder, purpose, host, pid, expires_at "
            "FROM writer_leases WHERE sync_name = ?",
        ),
        (sync,),
    )
    return [LeaseInfo(r[0], r[1], r[2], r[3], r[4], int(r[5]), float(r[6])) for r in cur.fetchall()]


def holders(store: StateStore, sync: str, *, dead_too: bool = False) -> list[LeaseInfo]:
    """The live leases of `sync` (`dead_too`: also those of holders that died or let them
    expire, until someone takes them over)."""
    now = time.time()
    with _tx(store) as cur:
        if cur is None:
            return []
        return [le for le in _rows(cur, store, sync) if dead_too or le.alive(now)]


def try_acquire(
    store: StateStore,
    sync: str,
    entities: Sequence[str],
    holder: str,
    purpose: str,
    ttl_s: float = DEFAULT_TTL_S,
) -> list[LeaseInfo]:
    """Take (or renew) the leases of `entities` for `holder`; [] when taken, else the live
    leases of others that stand in the way (nothing is taken then)."""
    now = time.time()
    with _tx(store) as cur:
        if cur is None:
            return []
        wanted = set(entities)
        blocking = [
            le
            for le in _rows(cur, store, sync)
            if le.entity in wanted and le.holder != holder and le.alive(now)
        ]
        if blocking:
            return blocking
        marks = ", ".join("?" for _ in wanted)
        cur.execute(
            _q(store, f"DELETE FROM writer_leases WHERE sync_name = ? AND entity IN ({marks})"),
            (sync, *sorted(wanted)),
        )
        cur.executemany(
            _q(
                store,
                "INSERT INTO writer_leases (sync_name, entity, holder, purpose, host, pid, "
                "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            ),
            [(sync, e, holder, purpose, HOST, os.getpid(), now + ttl_s) for e in sorted(wanted)],
        )
    return []


def release(store: StateStore, sync: str, holder: str) -> None:
    with _tx(store) as cur:
        if cur is not None:
            cur.execute(
                _q(store, "DELETE FROM writer_leases WHERE sync_name = ? AND holder = ?"),
                (sync, holder),
            )


class Lease:
    """Leases held on some entities of a sync; `renew()` while working, `release()` at the
    end (also on leaving a `with` block)."""

    def __init__(
        self,
        store: StateStore,
        sync: str,
        entities: Sequence[str],
        holder: str,
        purpose: str,
        ttl_s: float,
    ) -> None:
        self.store, self.sync, self.entities = store, sync, tuple(entities)
        self.holder, self.purpose, self.ttl_s = holder, purpose, ttl_s
        self.renewed_at = time.monotonic()

    def renew(self, every_s: float = 0.0) -> None:
        """Extend the lease (at most once per `every_s`); WriterBusy if it was lost (this
        holder looked dead or let it expire, and another writer took it)."""
        if time.monotonic() - self.renewed_at < every_s:
            return
        blocking = try_acquire(
            self.store, self.sync, self.entities, self.holder, self.purpose, self.ttl_s
        )
        if blocking:
            raise WriterBusy(
                f"{self.purpose} lost its writer lease on {self.sync} to {blocking[0].describe()}",
                blocking,
            )
        self.renewed_at = time.monotonic()

    def release(self) -> None:
        release(self.store, self.sync, self.holder)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(
    store: StateStore,
    sync: str,
    entities: Sequence[str],
    holder: str,
    purpose: str,
    *,
    wait_s: float = 0.0,
    ttl_s: float = DEFAULT_TTL_S,
    poll_s: float = 0.1,
) -> Lease:
    """The leases of `entities`, waiting up to `wait_s` for other writers to finish;
    WriterBusy naming them when they do not."""
    deadline = time.monotonic() + wait_s
    while True:
        blocking = try_acquire(store, sync, entities, holder, purpose, ttl_s)
        if not blocking:
            return Lease(store, sync, entities, holder, purpose, ttl_s)
        if time.monotonic() >= deadline:
            who = sorted({b.describe() for b in blocking})
            raise WriterBusy(
                f"sync {sync} is being written by {', '.join(who)}; waited {wait_s:g} s for "
                "it (a streaming run is stopped with `syncswim stop` or by turning its "
                "sensor off)",
                blocking,
            )
        time.sleep(poll_s)


@contextlib.contextmanager
def hold(
    store: StateStore,
    sync: str,
    entities: Sequence[str],
    holder: str,
    purpose: str,
    *,
    wait_s: float = 0.0,
    ttl_s: float = DEFAULT_TTL_S,
) -> Iterator[Keeper]:
    """`acquire`, then renew from a thread every third of `ttl_s` until the block ends
    (a step of any length keeps its lease); released on leaving."""
    lease = acquire(store, sync, entities, holder, purpose, wait_s=wait_s, ttl_s=ttl_s)
    keeper = Keeper(lease)
    keeper.start()
    try:
        yield keeper
    finally:
        keeper.stop()
        lease.release()


class Keeper(threading.Thread):
    """Renews a lease in the background; `check()` raises WriterBusy once it was lost."""

    def __init__(self, lease: Lease) -> None:
        super().__init__(name=f"lease-{lease.sync}", daemon=True)
        self.lease = lease
        self.lost: WriterBusy | None = None
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.lease.ttl_s / 3):
            try:
                self.lease.renew()
            except WriterBusy as exc:
                self.lost = exc
                return
            except Exception:  # the store busy or unreachable for a moment: try again
                continue

    def check(self) -> None:
        if self.lost is not None:
            raise self.lost

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=5)


# stop requests ------------------------------------------------------------------------------


def request_stop(store: StateStore, sync: str, reason: str) -> None:
    """Ask `sync`'s streaming run to end at its next batch boundary, and its sensor not to
    start another until `clear_stop`."""
    with _tx(store) as cur:
        if cur is None:
            return
        cur.execute(_q(store, "DELETE FROM stream_stops WHERE sync_name = ?"), (sync,))
        cur.execute(
            _q(
                store, "INSERT INTO stream_stops (sync_name, requested_at, reason) VALUES (?, ?, ?)"
            ),
            (sync, time.time(), reason),
        )


def clear_stop(store: StateStore, sync: str) -> bool:
    """Whether a stop request was there to clear."""
    with _tx(store) as cur:
        if cur is None:
            return False
        cur.execute(_q(store, "DELETE FROM stream_stops WHERE sync_name = ?"), (sync,))
        return bool(cur.rowcount)


def stop_request(store: StateStore, sync: str) -> tuple[float, str] | None:
    """(requested at, reason) of a pending stop request of `sync`."""
    with _tx(store) as cur:
        if cur is None:
            return None
        cur.execute(
            _q(store, "SELECT requested_at, reason FROM stream_stops WHERE sync_name = ?"),
            (sync,),
        )
        row: Any = cur.fetchone()
    return None if row is None else (float(row[0]), str(row[1]))
