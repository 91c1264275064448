"""`syncswim sync --full --dry-run`: what a `full` run would do, with nothing written.

It reads both sides, the links and the journal, and decides as the bulk part of a `full`
run does (`seed.Reconciler`), then prints per entity: the pairs `match_on` would adopt,
the rows it would create on each side, the linked pairs already in step, and the rows
that would go to the field-by-field merge. The merge's own writes depend on values and
conflict rules and are not predicted: those rows are counted, not planned. Nothing is
captured, journaled or written, in the databases or in the state.
"""

from __future__ import annotations

import sys
from pathlib import Path

from syncswim_lib.config import load_project
from syncswim_lib.errors import SyncSwimError
from syncswim_lib.pipeline.report import EntityReport
from syncswim_lib.pipeline.runtime import Runtime
from syncswim_lib.pipeline.seed import Reconciler, SeedOutcome


def preview(path: str | Path, entity: str | None = None) -> int:
    """Exit code: 0, 1 when an entity cannot be decided (an ambiguous `match_on`), 2 for
    an unknown entity."""
    failed = 0
    with Runtime(load_project(path)) as rt:
        syncs = rt.project.syncs
        if entity is not None and not any(entity in d.entities for d in syncs.values()):
            known = ", ".join(e for d in syncs.values() for e in d.entities)
            print(f"unknown entity {entity!r} (entities: {known})", file=sys.stderr)
            return 2
        for sync, decl in syncs.items():
            for name in decl.apply_order():
                if entity is not None and name != entity:
                    continue
                emap = rt.entity_map(sync, name)
                chunk = decl.batch_size or 1000
                rec = Reconciler(emap, rt.store, rt.side_connectors(emap), chunk, dry_run=True)
                try:
                    out = rec.run(EntityReport(sync, name))
                except SyncSwimError as exc:
                    print(f"{sync}.{name}: {exc}", file=sys.stderr)
                    failed += 1
                    continue
                print(describe(sync, name, emap.a.endpoint, emap.b.endpoint, out, rec))
    return 1 if failed else 0


def describe(sync: str, entity: str, a: str, b: str, out: SeedOutcome, rec: Reconciler) -> str:
    parts = []
    notes = []
    adoption = rec.adoption
    if adoption is not None:
        parts.append(f"adopt {out.adopted} existing pairs by match_on")
        if adoption.no_identity:
            notes.append(f"{adoption.no_identity} pairs have no external id on either side")
        if adoption.different_ids:
            notes.append(f"{adoption.different_ids} pairs hold different external ids")
    parts.append(
        f"create {out.would_create.get('b', 0)} on {b} and {out.would_create.get('a', 0)} on {a}"
    )
    parts.append(f"leave {out.in_step} linked pairs in step")
    parts.append(f"merge {out.journaled} rows field by field (their writes are not predicted)")
    line = f"{sync}.{entity} (dry run, nothing written): would " + ", ".join(parts)
    if notes:
        line += "; match_on cannot adopt: " + ", ".join(notes)
    return line
