"""Initial sync and drift repair: both sides' current rows go through the normal pipeline.

Each side is read as a stream of Arrow record batches (bounded memory) and journaled as
`snapshot` changes; the planner then matches them by key or external id exactly as it
matches live changes, inserts what a side lacks and records links and shadows. Capture is
set up (and its position stored) *before* the snapshot, so whatever is written while the
snapshot runs is captured afterwards; replaying it is harmless because the shadows make
an already-agreed value a no-op.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from syncswim_lib.envelope import Change, Op, WatermarkPosition
from syncswim_lib.pipeline.capture import ensure_setup
from syncswim_lib.pipeline.mapping import SideView
from syncswim_lib.pipeline.runtime import Runtime

BATCH_ROWS = 5000


def _canonical(row: dict[str, Any], side: SideView) -> dict[str, Any]:
    for name, value in row.items():
        col = side.info.column(name)
        if col is not None and col.family == "json" and isinstance(value, str):
            row[name] = json.loads(value)
    return row


def snapshot_entity(rt: Runtime, sync: str, entity: str) -> int:
    """Journal every current row of both sides; returns the number of rows read."""
    ensure_setup(rt, sync)
    emap = rt.entity_map(sync, entity)
    run = uuid.uuid4().hex[:12]
    total = 0
    for side in (emap.a, emap.b):
        conn = rt.connector(side.endpoint)
        columns = list(dict.fromkeys([*side.key, *side.tracked()]))
        n = 0
        for batch in conn.snapshot(side.table, columns, list(side.key), BATCH_ROWS):
            now = datetime.now(UTC)
            entries = []
            for row in batch.to_pylist():
                row = _canonical(row, side)
                n += 1
                # a position of its own per snapshot run, so a second run is not deduplicated
                pos = WatermarkPosition(f"snapshot:{run}:{n:012d}")
                key = {k: row[k] for k in side.key}
                entries.append(
                    (entity, Change(Op.SNAPSHOT, side.table, key, row, None, pos, None, now))
                )
            rt.store.append_changes(sync, side.endpoint, entries, None)
        total += n
    return total
