"""The emulator's Change Data Capture event bus (spec §4).

The org calls `publish` once per committed transaction; the bus turns it into change
events (`cdc_events.build_events`), gives each a global replay id, keeps them for the
retention window (driven by the emulator clock) and wakes long-polling CometD clients.

Defaults, chosen so tests need no setup: every object is CDC-enabled unless `disable`d
(`select` switches to an explicit list, as the Setup page does in a real org); replay ids
grow by a random stride of 1..`max_stride` because real ids are not contiguous and
clients must not compute them. With a `data_dir` the log is append-only JSON lines and
replay ids continue after a restart.
"""

from __future__ import annotations

import bisect
import copy
import random
import threading
import uuid
from collections.abc import Callable, Collection, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from syncswim_lib.sandbox.salesforce.cdc_events import (
    ALL_CHANNEL,
    channel_for,
    entity_for,
)
from syncswim_lib.sandbox.salesforce.cdc_events import build_events as _build
from syncswim_lib.sandbox.salesforce.cdc_log import EventLog, StoredEvent
from syncswim_lib.sandbox.salesforce.contract import (
    CallContext,
    Clock,
    CommittedTransaction,
    RecordChange,
)

__all__ = ["ChangeEventBus", "ReplayIdInvalid", "StoredEvent"]


class ReplayIdInvalid(Exception):
    """A subscribe asked for a replay id outside the retained window (spec §4.5)."""

    def __init__(self, replay_id: int) -> None:
        super().__init__(replay_id)
        self.replay_id = replay_id


class ChangeEventBus:
    def __init__(
        self,
        clock: Clock,
        data_dir: Path | None,
        retention: timedelta = timedelta(hours=72),
        max_stride: int = 5,
        seed: int | None = None,
    ) -> None:
        self.clock = clock
        self.retention = retention
        self.merge_same_changes = True
        self._log = EventLog(data_dir) if data_dir is not None else None
        self._rng = random.Random(seed)
        self._max_stride = max(1, max_stride)
        self._cond = threading.Condition()
        self._events: list[StoredEvent] = []
        self._latest = 0  # last replay id handed out
        self._visible = 0  # last replay id readers may see (frozen while paused)
        self._horizon = 0  # events with replay id <= horizon are gone (expired or reset)
        self._paused = False
        self._all_by_default = True
        self._explicit: set[str] = set()
        self._disabled: set[str] = set()
        self._catalog: Callable[[], Iterable[str]] | None = None
        self._excluded: Callable[[str], Collection[str]] | None = None
        self._commit_number = 0
        if self._log is not None:
            self._load(self._log)

    # -- CDC selection -------------------------------------------------------------
    def attach_catalog(
        self,
        objects: Callable[[], Iterable[str]],
        excluded_fields: Callable[[str], Collection[str]] | None = None,
    ) -> None:
        """Where the org's object names come from, and per object the fields a change
        event never carries (formula fields, compound wrappers)."""
        self._catalog = objects
        self._excluded = excluded_fields

    def enable(self, sobject: str) -> None:
        with self._cond:
            self._explicit.add(sobject)
            self._disabled.discard(sobject)
            self._save_settings()

    def disable(self, sobject: str) -> None:
        with self._cond:
            self._disabled.add(sobject)
            self._explicit.discard(sobject)
            self._save_settings()

    def select(self, sobjects: Iterable[str] | None) -> None:
        """Exactly these objects (None: every object, the default)."""
        with self._cond:
            self._all_by_default = sobjects is None
            self._explicit = set(sobjects or ())
            self._disabled.clear()
            self._save_settings()

    def is_enabled(self, sobject: str) -> bool:
        if sobject in self._disabled:
            return False
        return self._all_by_default or sobject in self._explicit

    def enabled(self) -> set[str]:
        known = set(self._catalog()) if self._catalog else set()
        return {o for o in known | self._explicit if self.is_enabled(o)}

    def channel_exists(self, channel: str) -> bool:
        if channel == ALL_CHANNEL:
            return True
        entity = entity_for(channel)
        if entity is None or not self.is_enabled(entity):
            return False
        # Only objects the org knows have a channel; without a catalog trust the name.
        return self._catalog is None or entity in self._explicit or entity in self._catalog()

    # -- writing ---------------------------------------------------------------------
    def publish(self, tx: CommittedTransaction) -> None:
        if any(self.is_enabled(ch.sobject) for ch in tx.changes):
            events = _build(tx, self.merge_same_changes, self._excluded)
            built = [e for e in events if self.is_enabled(e.entity)]
        else:  # no event to keep: skip building them (sequence numbers need the full set)
            built = []
        with self._cond:
            self._commit_number = max(self._commit_number, tx.commit_number)
            self._prune_locked()
            for event in built:
                self._append_locked(event.entity, event.commit_ms, event.data)
            self._publish_visible_locked()

    def inject(self, entity: str, change_type: str, record_ids: list[str], user_id: str) -> int:
        """A header-only event (GAP_CREATE, GAP_OVERFLOW, ...; spec §4.4); its replay id."""
        with self._cond:
            self._commit_number += 1
            # Built as a merged header-only DELETE (no body), then retyped.
            changes = tuple(RecordChange(entity, "DELETE", r, None, None) for r in record_ids)
            tx = CommittedTransaction(
                changes,
                CallContext(user_id, api=""),
                self.clock.now(),
                str(uuid.uuid4()),
                self._commit_number,
            )
            [event] = _build(tx, merge=True)
            event.data["payload"]["ChangeEventHeader"]["changeType"] = change_type
            replay_id = self._append_locked(entity, event.commit_ms, event.data)
            self._publish_visible_locked()
            return replay_id

    def _append_locked(self, entity: str, commit_ms: int, data: dict[str, Any]) -> int:
        self._latest += self._rng.randint(1, self._max_stride)
        stored = StoredEvent(
            self._latest,
            entity,
            channel_for(entity),
            commit_ms,
            {**data, "event": {"replayId": self._latest}},
        )
        self._events.append(stored)
        if self._log is not None:
            self._log.append(stored.line())
        return self._latest

    def _publish_visible_locked(self) -> None:
        if not self._paused:
            self._visible = self._latest
            self._cond.notify_all()

    # -- reading ---------------------------------------------------------------------
    def read(self, channel: str, after_replay_id: int, limit: int = 100) -> list[dict[str, Any]]:
        return self.read_batch(channel, after_replay_id, limit)[0]

    def read_batch(
        self, channel: str, after_replay_id: int, limit: int = 100
    ) -> tuple[list[dict[str, Any]], int]:
        """Events on `channel` after the id, and the id a reader may resume after (all
        visible events up to it were examined, so quiet channels do not rescan)."""
        with self._cond:
            self._prune_locked()
            out: list[dict[str, Any]] = []
            cursor = max(after_replay_id, 0)
            start = bisect.bisect_right(self._events, after_replay_id, key=_replay_id)
            for event in self._events[start:]:
                if event.replay_id > self._visible:
                    break
                if len(out) == limit:
                    return out, cursor
                cursor = event.replay_id
                if channel in (ALL_CHANNEL, event.channel):
                    out.append(copy.deepcopy(event.data))
            return out, max(cursor, self._visible)

    def start_after(self, replay: int) -> int:
        """The cursor a subscription with this `ext.replay` value starts after."""
        with self._cond:
            self._prune_locked()
            if replay == -1:
                return self._visible
            if replay == -2:
                return self._horizon
            if replay < 0 or replay > self._latest or (self._horizon and replay <= self._horizon):
                raise ReplayIdInvalid(replay)
            return replay

    def latest_replay_id(self) -> int:
        with self._cond:
            return self._visible

    def wait_for(self, after_replay_id: int, timeout: float) -> bool:
        return self.wait_until(lambda latest: latest > after_replay_id, timeout)

    def wait_until(self, predicate: Callable[[int], bool], timeout: float) -> bool:
        """Block until `predicate(latest visible id)` holds, or `timeout` seconds pass.
        `wake()` re-evaluates predicates that also look at other state."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self._visible), timeout)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def all_events(self) -> list[dict[str, Any]]:
        """Every retained event as a Bayeux message {"channel", "data"} (inspection)."""
        with self._cond:
            self._prune_locked()
            return [{"channel": e.channel, "data": copy.deepcopy(e.data)} for e in self._events]

    # -- control ---------------------------------------------------------------------
    def set_paused(self, paused: bool) -> None:
        """Pause delivery: events are kept but readers see none until resumed."""
        with self._cond:
            self._paused = paused
            self._publish_visible_locked()

    def expire(self, older_than: datetime | None = None) -> int:
        """Drop events committed before `older_than` (default: the retention edge)."""
        with self._cond:
            return self._prune_locked(older_than)

    def reset(self) -> None:
        """Back to the start state (no events, every object selected); ids keep growing
        so ids stored before the reset are refused rather than silently reused."""
        with self._cond:
            self._all_by_default, self._explicit, self._disabled = True, set(), set()
            self._save_settings()
            self._events.clear()
            self._horizon = self._latest
            self._log_horizon_locked()
            self._publish_visible_locked()

    def _prune_locked(self, older_than: datetime | None = None) -> int:
        edge = older_than or (self.clock.now() - self.retention)
        edge_ms = int(edge.timestamp() * 1000)
        gone = 0
        while gone < len(self._events) and self._events[gone].commit_ms < edge_ms:
            gone += 1
        if gone:
            self._horizon = self._events[gone - 1].replay_id
            del self._events[:gone]
            self._log_horizon_locked()
        return gone

    def _log_horizon_locked(self) -> None:
        if self._log is not None:
            self._log.horizon(self._horizon, self._latest, self._events)

    def _save_settings(self) -> None:
        if self._log is not None:
            self._log.save_settings(
                {
                    "all": self._all_by_default,
                    "explicit": sorted(self._explicit),
                    "disabled": sorted(self._disabled),
                }
            )

    def _load(self, log: EventLog) -> None:
        loaded = log.load()
        if loaded.settings is not None:
            self._all_by_default = bool(loaded.settings["all"])
            self._explicit = set(loaded.settings["explicit"])
            self._disabled = set(loaded.settings["disabled"])
        self._events = loaded.events
        self._horizon = loaded.horizon
        self._latest = self._visible = loaded.latest
        for ev in self._events:
            header = ev.data["payload"]["ChangeEventHeader"]
            self._commit_number = max(self._commit_number, int(header["commitNumber"]))


def _replay_id(event: StoredEvent) -> int:
    return event.replay_id
