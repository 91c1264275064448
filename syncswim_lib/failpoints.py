"""Crash points for the crash-safety tests.

`SYNCSWIM_FAILPOINT=<name>` makes the process SIGKILL itself when it reaches that point,
which is how a test proves that a crash there loses and duplicates nothing. Unset (always,
outside those tests) it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

AFTER_CAPTURE = "after_capture"  # journal committed, nothing applied yet
AFTER_APPLY = "after_apply"  # target written, state not recorded yet


def hit(name: str) -> None:
    if os.environ.get("SYNCSWIM_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
