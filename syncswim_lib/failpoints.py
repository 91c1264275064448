"""Crash points for the crash-safety tests.

`SYNCSWIM_FAILPOINT=<name>` makes the process SIGKILL itself when it reaches that point,
which is how a test proves that a crash there loses and duplicates nothing;
`<name>@<n>` at its n-th time there (a point inside a loop: the third chunk, the second
side's apply of a later batch). Unset (always, outside those tests) it costs one
dictionary lookup.
"""

from __future__ import annotations

import os
import signal

AFTER_CAPTURE = "after_capture"  # journal committed, nothing applied yet
AFTER_APPLY = "after_apply"  # target written, state not recorded yet
CAPTURE_JOURNALED = "capture_journaled"  # changes journaled, the source not confirmed yet
AFTER_CLAIM = "after_claim"  # entries claimed for a batch, no plan saved, nothing written
AFTER_PLAN_SAVED = "after_plan_saved"  # a batch's plan saved, no target written yet
BETWEEN_SIDES = "between_sides"  # one side of a batch committed, the other not written
BEFORE_WRITE_BACK = "before_write_back"  # both sides written, SOR keys not written back
AFTER_WRITE_BACK = "after_write_back"  # keys written back, the batch's state not recorded
MID_STATE_COMMIT = "mid_state_commit"  # inside the state transaction of a batch, uncommitted
IN_BULK = "in_bulk"  # a `full` run's bulk part: a chunk created and linked, the rest not

ALL = (
    AFTER_CAPTURE,
    AFTER_APPLY,
    CAPTURE_JOURNALED,
    AFTER_CLAIM,
    AFTER_PLAN_SAVED,
    BETWEEN_SIDES,
    BEFORE_WRITE_BACK,
    AFTER_WRITE_BACK,
    MID_STATE_COMMIT,
    IN_BULK,
)

_hits: dict[str, int] = {}  # point -> times reached in this process


def hit(name: str) -> None:
    wanted = os.environ.get("SYNCSWIM_FAILPOINT")
    if not wanted:
        return
    point, _, nth = wanted.partition("@")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
