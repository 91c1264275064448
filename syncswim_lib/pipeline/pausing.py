"""A run that pauses on an endpoint's API budget instead of failing.

When a target raises `errors.Paused` (Salesforce: the endpoint's `api_budget_share` of the
org's daily allowance is used, or the org answers REQUEST_LIMIT_EXCEEDED), the run is not
retried: it stops there, what its earlier batches applied is already recorded (each batch
records journal statuses and links in one state transaction), the batch that was stopped
stays in flight in the journal exactly as after a crash (the next run finishes it:
pipeline/engine.py `recover`), and the run ends successfully with its entities reported
paused and when the sync will try again.

The pause is stored per sync and endpoint (state/pauses.py). Until its retry time the
sync's sensors start no run. Any run that does start (a schedule, a person's
materialisation, `syncswim sync`, each batch of a streaming run) first asks each paused
endpoint one cheap question (`budget_open`: Salesforce's `limits` resource), at most once
every CHECK_EVERY_S per endpoint (a streaming run's batches come many times a second), and
calls nothing else while the answer is no or was no within that time; once it is yes the
pause is cleared and the run applies everything pending, once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from syncswim_lib.errors import Paused
from syncswim_lib.pipeline.report import EntityReport
from syncswim_lib.pipeline.runtime import Runtime
from syncswim_lib.redact import redact
from syncswim_lib.state.base import StateStore
from syncswim_lib.state.pauses import Pause, clear_pause, pauses, set_pause

# the wait before the first try after a pause, doubling with each pause in a row up to
# the last: Salesforce counts its allowance over a rolling 24 hours, so calls made a day
# ago drop out of the count continuously
FIRST_WAIT_S = 300.0
MAX_WAIT_S = 3600.0
# a paused endpoint is asked at most this often whether it may be called again
CHECK_EVERY_S = 60.0


def wait_s(times: int) -> float:
    return min(MAX_WAIT_S, FIRST_WAIT_S * 2.0 ** max(0, min(times, 30) - 1))


def held(rt: Runtime, sync: str, endpoints: Sequence[str]) -> Pause | None:
    """The pause still in force for the run about to start, or None to run. Each paused
    endpoint not asked within CHECK_EVERY_S is asked whether it may be called again (one
    call); a yes clears its pause, a no past the retry time waits longer."""
    for p in pauses(rt.store, sync, endpoints):
        if time.time() - p.checked_at < CHECK_EVERY_S:
            return p  # its answer is recent: no call at all
        check = getattr(rt.connector(p.endpoint), "budget_open", None)
        try:
            is_open = bool(check()) if callable(check) else True
        except Paused:
            is_open = False
        if is_open:
            clear_pause(rt.store, sync, p.endpoint)
            continue
        now = time.time()
        p = replace(p, checked_at=now)
        if now >= p.retry_at:  # still spent at its retry time: wait longer
            p = replace(p, paused_at=now, retry_at=now + wait_s(p.times + 1), times=p.times + 1)
        set_pause(rt.store, p)
        return p
    return None


def record(rt: Runtime, sync: str, exc: Paused) -> Pause:
    """Store the pause `exc` asks for (the wait doubles while pauses follow each other);
    the refusal itself counts as the endpoint's latest answer."""
    before = pauses(rt.store, sync, [exc.endpoint])
    times = before[0].times + 1 if before else 1
    now = time.time()
    message = redact(str(exc))
    pause = Pause(sync, exc.endpoint, exc.reason, message, now, now + wait_s(times), now, times)
    set_pause(rt.store, pause)
    return pause


def describe(pause: Pause) -> dict[str, Any]:
    """What an entity's report (and its materialisation) says about the pause."""
    return {
        "reason": pause.reason,
        "endpoint": pause.endpoint,
        "retry_at": _iso(pause.retry_at),
        "message": pause.message,
    }


def mark(reports: dict[str, EntityReport], pause: Pause) -> None:
    for r in reports.values():
        r.paused = describe(pause)
        r.note_event(
            "warning",
            f"{r.sync}.{r.entity} paused: {pause.reason} of endpoint {pause.endpoint}; "
            f"pending changes stay in the journal, tried again from "
            f"{_iso(pause.retry_at)}: {pause.message}",
        )


def sensor_skip(store: StateStore, sync: str, now: float | None = None) -> str | None:
    """A sensor's skip reason while one of the sync's endpoints is paused, else None."""
    now = time.time() if now is None else now
    waiting = [p for p in pauses(store, sync) if p.retry_at > now]
    if not waiting:
        return None
    p = max(waiting, key=lambda p: p.retry_at)
    return (
        f"paused: {p.reason} of endpoint {p.endpoint}; no run before {_iso(p.retry_at)} "
        f"({p.retry_at - now:.0f} s; a run started by hand asks the org's budget first, at "
        f"most every {CHECK_EVERY_S:g} s)"
    )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
