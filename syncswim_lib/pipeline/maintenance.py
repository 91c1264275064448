"""Housekeeping the capture sensor does now and then."""

from __future__ import annotations

from datetime import timedelta

from syncswim_lib.connectors.base import markers_of
from syncswim_lib.pipeline.runtime import Runtime

# a batch marker is needed only until its batch is recorded in the state; a week leaves
# room for a run that crashed to be retried long after
MARKER_RETENTION = timedelta(days=7)


def prune_markers(rt: Runtime, sync: str, retention: timedelta = MARKER_RETENTION) -> int:
    """Delete old apply markers on both endpoints of `sync`; returns how many went.

    Skipped while any entity has a batch in flight: its replay relies on finding the
    marker of what it already wrote."""
    decl = rt.project.syncs[sync]
    if any(rt.store.in_flight_batches(sync, e) for e in decl.entities):
        return 0
    total = 0
    for endpoint in (decl.a, decl.b):
        markers = markers_of(rt.connector(endpoint))
        if markers is not None:  # a target without markers (Salesforce) has none to prune
            total += markers.prune_markers(retention)
    return total
