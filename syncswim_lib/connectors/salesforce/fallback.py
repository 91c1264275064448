"""Objects of a streamed Salesforce endpoint whose change events the org does not publish
(not selected for Change Data Capture): polled by SystemModstamp instead, automatically,
beside the CometD capture of the others (docs/salesforce.md, "Objects without Change Data
Capture").

- Which objects: those whose channel refuses a subscription (`CdcReader.disabled`), asked
  once per connector (a CometD session; not an API call) for the set of objects a
  capture names. `setup` no longer refuses them; `validate` and `doctor` warn.
- How: the polling machinery of `connectors/polling/` over `SalesforcePollSource`, with
  `FALLBACK_SPEC` (SystemModstamp, deletes from the recycle bin, the default safety lag).
- How often: the adaptive interval of `polling/interval.py` between `CADENCE`'s bounds
  (5 s while changes arrive, backing off to 5 min while idle, faster than that never):
  the capture sensor calls capture every few seconds, and every poll is an API call, so
  the interval, not the sensor, decides when a poll is due.
- Position: the endpoint keeps one position per sync. With no polled object it stays the
  replay id (`ReplayPosition`); with one it is a `WatermarkPosition` whose JSON carries
  the polling cursors (`cursors`, as `polling/cursor.py` writes them), the replay id
  (`replay`) and the interval's last decision (`poll`), so a new process resumes both
  and keeps the interval. An object whose change events stop being published while a
  sync runs has no cursor yet and is read whole at its first poll (nothing it changed
  in between is lost; the merge writes only what differs); one whose events are
  published again is polled once more, then left to the stream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from syncswim_lib.config.polling import DeleteDetection, PollCadence, PollSpec, poll_key
from syncswim_lib.connectors.base import CaptureBatch
from syncswim_lib.connectors.polling.capture import Poller
from syncswim_lib.connectors.polling.cursor import CursorState
from syncswim_lib.connectors.polling.interval import Decision, decide
from syncswim_lib.connectors.salesforce.capture import CdcReader
from syncswim_lib.connectors.salesforce.describe import ObjectInfo
from syncswim_lib.connectors.salesforce.poll import DELETED, SalesforcePollSource
from syncswim_lib.envelope import Position, ReplayPosition, WatermarkPosition
from syncswim_lib.errors import FatalError, RetriableError

if TYPE_CHECKING:
    from syncswim_lib.connectors.salesforce.connector import SalesforceConnector

FALLBACK_SPEC = PollSpec("SystemModstamp", DeleteDetection(column=DELETED))
CADENCE = PollCadence(min_s=5.0, max_s=300.0)
REPLAY_ALL = -2  # "everything retained": where a replay id is not known yet
UNBOUNDED = 1 << 60  # a last poll reads to the end of its range, whatever it finds


@dataclass(frozen=True)
class Mixed:
    """A streamed endpoint's position decoded: the replay id, the polled objects'
    cursors (None: no object polled yet) and the interval's last decision."""

    replay: int | None
    cursors: WatermarkPosition | None = None
    decision: Decision | None = None

    def encode(self) -> Position:
        if self.cursors is None:
            return ReplayPosition(REPLAY_ALL if self.replay is None else self.replay)
        data = json.loads(self.cursors.watermark)
        data["replay"] = REPLAY_ALL if self.replay is None else self.replay
        if self.decision is not None:
            data["poll"] = self.decision.to_json()
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return WatermarkPosition(text, self.cursors.seen_keys)

    @staticmethod
    def decode(position: Position | None) -> Mixed:
        if position is None:
            return Mixed(None)
        if isinstance(position, ReplayPosition):
            return Mixed(position.replay_id)
        if isinstance(position, WatermarkPosition) and position.watermark.startswith("{"):
            data = json.loads(position.watermark)
            if "replay" in data:
                poll = data.get("poll")
                # the cursor code reads its own keys and ignores ours
                return Mixed(
                    int(data["replay"]),
                    position,
                    None if poll is None else Decision.from_json(poll),
                )
        raise FatalError(
            f"a Salesforce change stream cannot resume from a {position.kind} position"
        )


class Fallback:
    """The polled objects of one streamed endpoint (see the module's text)."""

    def __init__(
        self,
        conn: SalesforceConnector,
        reader: Callable[[], CdcReader],
        now: Callable[[], float] = time.time,
    ) -> None:
        self.conn = conn
        self.reader = reader
        self.now = now
        self._off: dict[frozenset[str], list[str]] = {}
        self._polled: dict[str, list[str]] = {}  # sync -> its polled objects, last seen

    def disabled(self, objects: Sequence[str]) -> list[str]:
        """The objects of `objects` whose change events the org does not publish."""
        key = frozenset(objects)
        if key not in self._off:
            self._off[key] = self.reader().disabled(sorted(key))
        return self._off[key]

    def note(self, sync: str, objects: Sequence[str]) -> list[str]:
        off = self.disabled(objects)
        self._polled[sync] = off
        return off

    def _poller(self, sync: str, objects: Sequence[str]) -> Poller:
        polls = {poll_key(sync, name): FALLBACK_SPEC for name in objects}
        return Poller(SalesforcePollSource(self.conn, polls), polls, self.now)

    def start(self, sync: str, replay: int) -> Position:
        """Where capture starts (at setup, after a lost position): the replay id given and
        the polled objects' cursors at the clock minus the safety lag."""
        off = self._polled.get(sync, [])
        if not off:
            return ReplayPosition(replay)
        cursors = self._poller(sync, off).current_position(sync)
        assert isinstance(cursors, WatermarkPosition)
        return Mixed(replay, cursors).encode()

    def capture(
        self,
        sync: str,
        objects: Mapping[str, ObjectInfo],
        since: Position | None,
        max_changes: int,
        skip_origin: str | None,
    ) -> CaptureBatch:
        off = self.note(sync, list(objects))
        old = Mixed.decode(since)
        streamed = {name: info for name, info in objects.items() if name not in off}
        start = None if old.replay is None else ReplayPosition(old.replay)
        cdc = self.reader().read(start, streamed, max(max_changes, 1), skip_origin)
        end = cdc.end_position
        replay = end.replay_id if isinstance(end, ReplayPosition) else old.replay
        if not off and old.cursors is None:
            return cdc  # every object streamed: the replay id alone, as ever
        changes = list(cdc.changes)
        echoes = dict(cdc.echoes)
        cursors = old.cursors or CursorState().to_position()
        state = CursorState.from_position(cursors)
        leaving = sorted(t for t in state.tables if t in objects and t not in off)
        if leaving:
            # their events are published now, but what changed between their last poll
            # and then is only in the records: read once more, then the stream takes over
            # (a change both read and published is journaled twice, written once)
            last = self._poller(sync, leaving).capture(
                sync, leaving, cursors, UNBOUNDED, skip_origin
            )
            changes.extend(last.changes)
            kept = {t: c for t, c in state.tables.items() if t not in leaving}
            cursors = CursorState(kept).to_position()
        if not off:
            # every object's events published again: the plain replay id from now on
            return CaptureBatch(tuple(changes), Mixed(replay).encode(), echoes)
        decision = old.decision
        at = self.now()
        due = decision is None or at >= decision.due_at
        if due and len(changes) + sum(echoes.values()) < max_changes:
            budget = max_changes - len(changes)
            try:
                polled = self._poller(sync, off).capture(sync, off, cursors, budget, skip_origin)
            except RetriableError as exc:  # the CDC part still counts; poll less often
                decision = decide(CADENCE, decision, 0, at, str(exc))
            else:
                assert isinstance(polled.end_position, WatermarkPosition)
                cursors = polled.end_position
                changes.extend(polled.changes)
                for table, n in polled.echoes.items():
                    echoes[table] = echoes.get(table, 0) + n
                decision = decide(CADENCE, decision, len(polled.changes), at)
        return CaptureBatch(tuple(changes), Mixed(replay, cursors, decision).encode(), echoes)
