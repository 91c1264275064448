"""What the `syncswim setup|teardown|sync` commands do (exit codes returned); `audit` is
in `audit_cmd`."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from syncswim_lib.config import load_project
from syncswim_lib.errors import SyncSwimError
from syncswim_lib.pipeline.capture import ensure_setup, sync_tables
from syncswim_lib.pipeline.run import run_sync, run_with_parents
from syncswim_lib.pipeline.runtime import Runtime
from syncswim_lib.state import leases

# how long `syncswim sync` waits for another writer of a sync (a streaming run holds it
# as long as it streams: `syncswim stop` first)
SYNC_WAIT_S = 10.0


def setup(path: str | Path) -> int:
    """Create slots, publications and marker tables, and record the start positions."""
    with Runtime(load_project(path)) as rt:
        for sync in rt.project.syncs:
            ensure_setup(rt, sync, explicit=True)
            print(f"{sync}: capture set up on {', '.join(_endpoints(rt, sync))}")
    return 0


def teardown(path: str | Path) -> int:
    """Drop what `setup` created (slots, publications); the journal and links stay."""
    with Runtime(load_project(path)) as rt:
        for sync, decl in rt.project.syncs.items():
            for endpoint in (decl.a, decl.b):
                rt.connector(endpoint).teardown(sync)
            print(f"{sync}: capture removed")
    return 0


def _endpoints(rt: Runtime, sync: str) -> list[str]:
    decl = rt.project.syncs[sync]
    return [f"{e} ({len(sync_tables(rt, sync, e))} tables)" for e in (decl.a, decl.b)]


def _compare_keysets(rt: Runtime, sync: str, entities: list[str] | None) -> None:
    """The due key-set comparisons of the sync's polled sides (docs/polling.md), whose
    deletes the run then applies."""
    from syncswim_lib.connectors.polling.runner import compare_due_keysets, polled_endpoints

    for endpoint in polled_endpoints(rt, sync):
        for name, found in compare_due_keysets(rt, sync, endpoint, entities).items():
            print(
                f"{sync}.{name}: key-set comparison on {endpoint}: {found.compared} linked "
                f"rows looked up, {found.gone} gone"
            )


def run_once(path: str | Path, entity: str | None = None, full: bool = False) -> int:
    """One micro-batch run outside Dagster (the same library code the assets call), every
    sync's entities in apply order; `entity`: that entity, after its ancestors."""
    failed = 0
    with Runtime(load_project(path)) as rt:
        rt.run_id = f"cli:{os.getpid()}"
        syncs = rt.project.syncs
        if entity is not None and not any(entity in d.entities for d in syncs.values()):
            known = ", ".join(e for d in syncs.values() for e in d.entities)
            print(f"unknown entity {entity!r} (entities: {known})", file=sys.stderr)
            return 2
        for sync, decl in syncs.items():
            if entity is not None and entity not in decl.entities:
                continue
            try:
                # one writer per sync: a streaming run or a Dagster step holds it meanwhile
                with leases.hold(
                    rt.store,
                    sync,
                    decl.apply_order(),
                    f"cli:{os.getpid()}:{time.time()}",
                    "syncswim sync",  # the pid and host are in the lease itself
                    wait_s=SYNC_WAIT_S,
                ):
                    # what a polling tick does besides polling, which the run does
                    names = None if entity is None else [*decl.ancestors(entity), entity]
                    _compare_keysets(rt, sync, names)
                    if entity is None:
                        reports = run_sync(rt, sync, full=full)
                    else:
                        reports = run_with_parents(rt, sync, entity, full=full)
            except SyncSwimError as exc:
                print(f"{sync}: {exc}", file=sys.stderr)
                failed += 1
                continue
            for r in reports:
                sides = ", ".join(
                    f"{ep} +{c.inserted} ~{c.updated} -{c.deleted}" for ep, c in r.sides.items()
                )
                extra = "".join(
                    f", {label} {n}"
                    for label, n in (
                        ("waiting for a parent", r.waiting_parent),
                        ("references translated", r.translated),
                        ("children cleared", r.cascaded),
                        ("adopted by match_on", r.adopted),
                        ("created in bulk", r.created_in_bulk),
                        ("already in step", r.in_step),
                    )
                    if n
                )
                if r.paused:  # the API budget: the rest waits in the journal
                    extra += (
                        f"; paused: {r.paused['reason']} of endpoint {r.paused['endpoint']}, "
                        f"tried again from {r.paused['retry_at']}"
                    )
                print(
                    f"{sync}.{r.entity}: {sides or 'no writes'}; skipped {r.skipped_echoes}, "
                    f"conflicts {r.conflicts}, waiting {r.waiting}, failed {r.failed}{extra}"
                )
                failed += r.failed
    return 1 if failed else 0
