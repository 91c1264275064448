"""One run of one entity: capture, (snapshot), plan, apply, record — the asset's body."""

from __future__ import annotations

import time

from syncswim_lib import failpoints
from syncswim_lib.pipeline.capture import capture_sync
from syncswim_lib.pipeline.engine import EntityEngine
from syncswim_lib.pipeline.report import EntityReport
from syncswim_lib.pipeline.runtime import Runtime
from syncswim_lib.pipeline.snapshot import snapshot_entity


def run_entity(rt: Runtime, sync: str, entity: str, full: bool = False) -> EntityReport:
    start = time.monotonic()
    report = EntityReport(sync, entity)
    report.captured = sum(capture_sync(rt, sync).values())
    if full:
        report.snapshot_rows = snapshot_entity(rt, sync, entity)
    failpoints.hit(failpoints.AFTER_CAPTURE)
    emap = rt.entity_map(sync, entity)
    engine = EntityEngine(emap, rt.store, rt.side_connectors(emap))
    engine.run(report, chunk_size=rt.project.syncs[sync].batch_size or 1000, full=full)
    decl = rt.project.syncs[sync]
    for endpoint in (decl.a, decl.b):
        pos = rt.store.get_position(sync, endpoint)
        if pos is not None:
            report.positions[endpoint] = str(pos.to_json())
    report.duration_s = time.monotonic() - start
    return report


def run_sync(rt: Runtime, sync: str, full: bool = False) -> list[EntityReport]:
    """Every entity of a sync, parents before children."""
    return [run_entity(rt, sync, name, full) for name in rt.project.syncs[sync].apply_order()]
