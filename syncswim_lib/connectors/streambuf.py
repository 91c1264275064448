"""The hand-over between a continuous change reader (a thread) and capture.

A reader thread `put`s each committed transaction (its changes and the position after
it); capture `take`s whole transactions as one `CaptureBatch`, journals them and then
`confirm`s, exactly as with a polled stream. Nothing here is durable: what a crash loses
from the buffer was never confirmed, so the source sends it again.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from syncswim_lib.connectors.base import CaptureBatch, without_origin
from syncswim_lib.envelope import Change, Position


@dataclass(frozen=True)
class Txn:
    changes: tuple[Change, ...]
    end: Position
    echoes: dict[str, int]
    # (table, position) of each TRUNCATE in it: the rows it removed are not in `changes`
    truncates: tuple[tuple[str, Position], ...] = ()


class StreamBuffer:
    def __init__(self) -> None:
        self._txns: deque[Txn] = deque()
        self._changes = 0  # in the transactions held (a batch closes on a count of them)
        self._cond = threading.Condition()
        self.error: BaseException | None = None  # the reader's fatal error, raised by take
        # set on every put (and failure): one event can wake a consumer of several buffers
        self.wake: threading.Event | None = None

    def put(self, txn: Txn) -> None:
        with self._cond:
            self._txns.append(txn)
            self._changes += len(txn.changes)
            self._cond.notify_all()
        if self.wake is not None:
            self.wake.set()

    def fail(self, error: BaseException) -> None:
        with self._cond:
            self.error = error
            self._cond.notify_all()
        if self.wake is not None:
            self.wake.set()

    def wait(self, timeout: float) -> bool:
        """Whether a transaction (or an error) is waiting, after at most `timeout` s."""
        with self._cond:
            return self._cond.wait_for(lambda: bool(self._txns) or self.error is not None, timeout)

    def __len__(self) -> int:
        with self._cond:
            return len(self._txns)

    def changes(self) -> int:
        """The changes of the transactions held (our own echoes included)."""
        with self._cond:
            return self._changes

    def take(
        self,
        tables: set[str],
        since: Position | None,
        max_changes: int,
        skip_origin: str | None,
    ) -> CaptureBatch:
        """Whole transactions after `since`, up to `max_changes` changes (at least one
        transaction); an empty batch ending at `since` when there is none."""
        changes: list[Change] = []
        echoes: dict[str, int] = {}
        truncates: list[tuple[str, Position]] = []
        end = since
        with self._cond:
            if self.error is not None:
                raise self.error
            while self._txns and (not changes or len(changes) < max_changes):
                txn = self._txns.popleft()
                self._changes -= len(txn.changes)
                if since is not None and not _after(txn.end, since):
                    continue  # already journaled (sent again after a reconnect)
                changes.extend(
                    c
                    for c in txn.changes
                    if c.table in tables and (since is None or _after(c.position, since))
                )
                for table, n in txn.echoes.items():
                    echoes[table] = echoes.get(table, 0) + n
                truncates.extend(
                    (table, pos)
                    for table, pos in txn.truncates
                    if table in tables and (since is None or _after(pos, since))
                )
                end = txn.end
        batch = CaptureBatch(tuple(changes), end, echoes, tuple(truncates))
        return without_origin(batch, skip_origin)


def _after(position: Position, since: Position) -> bool:
    try:
        return bool(position > since)  # type: ignore[operator]
    except TypeError:
        return True
