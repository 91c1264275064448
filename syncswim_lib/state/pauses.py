"""Paused endpoints: a sync whose target asked for no more calls (its API budget spent)
and when a run may try again. Kept beside the store's own tables (created on first use,
as leases.py does), one row per sync and endpoint."""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from syncswim_lib.state.base import StateStore
from syncswim_lib.state.sqlstore import Cursor, SqlStateStore

_DDL = """CREATE TABLE IF NOT EXISTS api_pauses (
    sync_name TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    paused_at DOUBLE PRECISION NOT NULL,
    retry_at DOUBLE PRECISION NOT NULL,
    checked_at DOUBLE PRECISION NOT NULL,
    times INTEGER NOT NULL,
    PRIMARY KEY (sync_name, endpoint)
)"""
_READY: weakref.WeakSet[SqlStateStore] = weakref.WeakSet()


@dataclass(frozen=True)
class Pause:
    sync: str
    endpoint: str
    reason: str  # "api budget"
    message: str  # the error that paused it
    paused_at: float  # epoch seconds
    retry_at: float  # no run is started for the sync before this (its sensor skips)
    checked_at: float  # when the endpoint was last asked whether it may be called again
    times: int  # pauses in a row: the wait doubles with each


@contextmanager
def _tx(store: StateStore) -> Iterator[Cursor | None]:
    if not isinstance(store, SqlStateStore):  # an in-memory store of some tests
        yield None
        return
    if store not in _READY:
        with store._write() as cur:
            cur.execute(_DDL)
        _READY.add(store)
    with store._write() as cur:
        yield cur


def pauses(store: StateStore, sync: str, endpoints: Sequence[str] | None = None) -> list[Pause]:
    with _tx(store) as cur:
        if cur is None:
            return []
        assert isinstance(store, SqlStateStore)
        cur.execute(
            store._q(
                "SELECT sync_name, endpoint, reason, message, paused_at, retry_at, checked_at, "
                "times "
                "FROM api_pauses WHERE sync_name = ? ORDER BY endpoint"
            ),
            (sync,),
        )
        rows: list[Any] = cur.fetchall()
    found = [
        Pause(r[0], r[1], r[2], r[3], float(r[4]), float(r[5]), float(r[6]), int(r[7]))
        for r in rows
    ]
    return [p for p in found if endpoints is None or p.endpoint in endpoints]


def set_pause(store: StateStore, pause: Pause) -> None:
    with _tx(store) as cur:
        if cur is None:
            return
        assert isinstance(store, SqlStateStore)
        cur.execute(
            store._q("DELETE FROM api_pauses WHERE sync_name = ? AND endpoint = ?"),
            (pause.sync, pause.endpoint),
        )
        cur.execute(
            store._q(
                "INSERT INTO api_pauses (sync_name, endpoint, reason, message, paused_at, "
                "retry_at, checked_at, times) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            (
                pause.sync,
                pause.endpoint,
                pause.reason,
                pause.message,
                pause.paused_at,
                pause.retry_at,
                pause.checked_at,
                pause.times,
            ),
        )


def clear_pause(store: StateStore, sync: str, endpoint: str) -> None:
    with _tx(store) as cur:
        if cur is None:
            return
        assert isinstance(store, SqlStateStore)
        cur.execute(
            store._q("DELETE FROM api_pauses WHERE sync_name = ? AND endpoint = ?"),
            (sync, endpoint),
        )
