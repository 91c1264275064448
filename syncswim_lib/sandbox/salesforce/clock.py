"""The org clock: real time shifted by an offset, or frozen, under the control plane's hand."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class EmulatorClock:
    """Satisfies contract.Clock. Tests set, advance or freeze it to make windows deterministic."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = timedelta(0)
        self._frozen: datetime | None = None

    def now(self) -> datetime:
        frozen = self._frozen
        if frozen is not None:
            return frozen
        return datetime.now(UTC) + self._offset

    def set(self, when: datetime, frozen: bool = False) -> None:
        if when.tzinfo is None:
            raise ValueError("clock time must be timezone-aware")
        with self._lock:
            when = when.astimezone(UTC)
            self._offset = when - datetime.now(UTC)
            self._frozen = when if frozen else None

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._offset += delta
            if self._frozen is not None:
                self._frozen += delta

    def freeze(self) -> None:
        with self._lock:
            self._frozen = self.now()

    def unfreeze(self) -> None:
        with self._lock:
            if self._frozen is not None:
                self._offset = self._frozen - datetime.now(UTC)
            self._frozen = None

    def reset(self) -> None:
        with self._lock:
            self._offset = timedelta(0)
            self._frozen = None

    def state(self) -> dict[str, object]:
        return {"now": self.now().isoformat(), "frozen": self._frozen is not None}
