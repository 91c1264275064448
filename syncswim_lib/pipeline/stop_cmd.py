"""What `syncswim stop PATH SYNC` does: end a sync's streaming run at its next batch
boundary and keep its sensor from starting another until `--resume`.

The request is a row in the state store (`state/leases.py`), so it reaches a streaming run
on any machine that shares the store; the command then waits (up to `--wait` seconds)
for the run to give its writer lease back and says how it went.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from syncswim_lib.config import load_project
from syncswim_lib.pipeline.runtime import Runtime
from syncswim_lib.state import leases

DEFAULT_WAIT_S = 60.0


def _streaming(rt: Runtime, sync: str) -> list[leases.LeaseInfo]:
    return [h for h in leases.holders(rt.store, sync) if h.purpose.startswith("streaming run")]


def stop(
    path: str | Path, sync: str, *, resume: bool = False, wait_s: float = DEFAULT_WAIT_S
) -> int:
    project = load_project(path)
    if sync not in project.syncs:
        print(f"unknown sync {sync!r} (syncs: {', '.join(project.syncs)})", file=sys.stderr)
        return 2
    if wait_s < 0:
        print(f"--wait must be 0 or more seconds, got {wait_s:g}", file=sys.stderr)
        return 2
    with Runtime(project) as rt:
        if resume:
            if leases.clear_stop(rt.store, sync):
                print(f"{sync}: stop request cleared; its sensor starts a streaming run again")
            else:
                print(f"{sync}: no stop request to clear")
            return 0
        if project.syncs[sync].run != "streaming":
            print(f"{sync}: runs micro_batch, there is no streaming run to stop", file=sys.stderr)
            return 2
        when = datetime.now(UTC).isoformat(timespec="seconds")
        leases.request_stop(rt.store, sync, f"syncswim stop at {when}")
        running = _streaming(rt, sync)
        if not running:
            print(f"{sync}: no streaming run is active; none starts until `--resume`")
            return 0
        deadline = time.monotonic() + wait_s
        while running and time.monotonic() < deadline:
            time.sleep(0.2)
            running = _streaming(rt, sync)
        if running:
            print(
                f"{sync}: asked {running[0].describe()} to stop; it has not reached a batch "
                f"boundary within {wait_s:g} s (it stops there; no other starts meanwhile)",
                file=sys.stderr,
            )
            return 1
        print(
            f"{sync}: the streaming run stopped at a batch boundary; none starts until "
            "`syncswim stop --resume`"
        )
        return 0
