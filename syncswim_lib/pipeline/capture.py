"""Capture: read each side's change stream into the journal, then release the source.

The order is the at-least-once contract: journal (with the position, one transaction)
first, `confirm` second. A crash between the two re-reads changes the journal already
holds, and the journal ignores them by position.
"""

from __future__ import annotations

from syncswim_lib.pipeline.runtime import Runtime

MAX_CHANGES = 5000


def sync_tables(rt: Runtime, sync: str, endpoint: str) -> dict[str, str]:
    """Source table name (as the connector spells it) -> entity, for one side of a sync."""
    out: dict[str, str] = {}
    for name in rt.project.syncs[sync].entities:
        emap = rt.entity_map(sync, name)
        for side in (emap.a, emap.b):
            if side.endpoint == endpoint:
                out[side.table] = name
    return out


def ensure_setup(rt: Runtime, sync: str) -> None:
    """Create slots/publications/markers and record the starting positions, once."""
    decl = rt.project.syncs[sync]
    for endpoint in (decl.a, decl.b):
        if rt.store.get_position(sync, endpoint) is not None:
            continue
        conn = rt.connector(endpoint)
        conn.setup(sync, sorted(sync_tables(rt, sync, endpoint)))
        rt.store.set_position(sync, endpoint, conn.current_position(sync))


def capture_sync(rt: Runtime, sync: str, max_rounds: int = 100) -> dict[str, int]:
    """Drain both sides' change streams into the journal; returns new changes per side."""
    ensure_setup(rt, sync)
    decl = rt.project.syncs[sync]
    counts: dict[str, int] = {}
    for endpoint in (decl.a, decl.b):
        conn = rt.connector(endpoint)
        tables = sync_tables(rt, sync, endpoint)
        total = 0
        for _ in range(max_rounds):
            since = rt.store.get_position(sync, endpoint)
            batch = conn.capture(sync, sorted(tables), since, MAX_CHANGES)
            entries = [(tables[c.table], c) for c in batch.changes if c.table in tables]
            if batch.end_position is not None and batch.end_position != since:
                total += rt.store.append_changes(sync, endpoint, entries, batch.end_position)
                conn.confirm(sync, batch.end_position)
            if len(batch.changes) < MAX_CHANGES:
                break
        counts[endpoint] = total
    return counts
