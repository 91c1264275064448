"""The adaptive polling interval (`poll: {interval: {min, max}}` of a sync): when the next
poll of a polled endpoint is due, decided after each poll from what it found.

- changes arriving: a poll that found a full page goes back to `min` at once (more are
  waiting); one that found some halves the interval, down to `min`;
- idle: a poll that found nothing lengthens it by half, up to `max`, so an idle source
  costs one query per `max` and the first change after a quiet spell waits at most that;
- an error (the source down, a lock, a timeout) multiplies it by four, up to `max`: a
  struggling source is asked less often, and the step's own retries are not doubled by
  ours;
- load: a poll that took more than LOAD_SHARE of the interval that led to it (the source
  answers slowly: busy, or the table large for its index) sets the interval to its own
  time over LOAD_SHARE, up to `max`, whatever it found: polling never takes more than
  that share of the source's time, and a backlog on a slow source is not read faster.

Pure: the caller gives the clock and keeps the state (the polling sensor's cursor), so
tests check the recorded decisions without waiting for any of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from syncswim_lib.config.polling import PollCadence

BUSY_CHANGES = 1000  # a poll that found this many: changes are queued, poll again at once
IDLE_GROWTH = 1.5
BUSY_SHRINK = 0.5
ERROR_GROWTH = 4.0
# a poll that takes more than this share of its interval means a loaded source: the
# interval grows until the poll takes this share of it
LOAD_SHARE = 0.5


@dataclass(frozen=True)
class Decision:
    """One decision: the interval until the next poll, why, and when that poll is due
    (epoch seconds); `changes` is what the poll that led to it found (-1: an error),
    `took_s` how long that poll took."""

    interval_s: float
    reason: str
    due_at: float
    changes: int
    decided_at: float
    took_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> Decision:
        return Decision(
            float(data["interval_s"]),
            str(data["reason"]),
            float(data["due_at"]),
            int(data["changes"]),
            float(data["decided_at"]),
            float(data.get("took_s", 0.0)),  # a cursor kept before polls were timed
        )


def first(cadence: PollCadence, now: float) -> Decision:
    """Before any poll: due now, at the shortest interval."""
    return Decision(cadence.min_s, "first poll", now, 0, now)


def decide(
    cadence: PollCadence,
    prev: Decision | None,
    changes: int,
    now: float,
    error: str | None = None,
    took_s: float = 0.0,
) -> Decision:
    """The decision after a poll that found `changes` (or failed with `error`) and took
    `took_s` seconds."""
    low, high = cadence.min_s, cadence.max_s
    current = prev.interval_s if prev is not None else low
    if error is not None:
        interval = min(high, max(low, current * ERROR_GROWTH))
        reason = f"error, backing off: {error}"
        changes = -1
    elif took_s > LOAD_SHARE * current:
        interval = min(high, max(low, took_s / LOAD_SHARE))
        reason = (
            f"load: the poll took {took_s:.3g} s, {took_s / current:.0%} of the {current:g} s "
            "interval: backing off"
        )
    elif changes >= BUSY_CHANGES:
        interval, reason = low, f"{changes} changes: more are waiting, polling at the minimum"
    elif changes > 0:
        interval = max(low, current * BUSY_SHRINK)
        reason = f"{changes} changes: polling faster"
    else:
        interval = min(high, current * IDLE_GROWTH)
        reason = "idle: backing off" if interval < high else "idle: at the maximum"
    return Decision(interval, reason, now + interval, changes, now, took_s)
