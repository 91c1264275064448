"""The memory database's apply markers: one per committed batch (id, origin, result,
creation time by the database clock), written in the batch's own commit.

`prune` deletes old ones in chunks of PRUNE_CHUNK, each chunk a commit of its own that
emits no change (capture steps over it), as the SQL connectors' marker tables do."""

from __future__ import annotations

from datetime import timedelta

from syncswim_lib.connectors.base import ApplyResult
from syncswim_lib.connectors.memory.database import MemoryDatabase, Transaction
from syncswim_lib.errors import ConfigError

# Markers deleted per commit.
PRUNE_CHUNK = 5000


def applied_result(db: MemoryDatabase, sync: str, batch_id: str) -> ApplyResult | None:
    with db._cond:
        marker = (db._markers or {}).get(batch_id)
        return marker.result if marker is not None and marker.origin == sync else None


def prune(db: MemoryDatabase, older_than: timedelta) -> int:
    """Delete the markers created before the database clock's now - `older_than`."""
    if older_than < timedelta(0):
        raise ConfigError(f"older_than must not be negative, got {older_than}")
    total = 0
    with db._cond:
        if db._markers is None:
            return 0  # never set up: no markers to prune
        cutoff = db.now() - older_than
    while True:
        with db._cond:
            markers = db._markers
            if markers is None:
                return total  # torn down meanwhile
            old = [m.batch_id for m in markers.values() if m.created_at < cutoff]
            chunk = old[:PRUNE_CHUNK]
            if chunk:
                for batch_id in chunk:
                    del markers[batch_id]
                db._commit(Transaction(db, None, object()))  # a commit of its own, no change
        total += len(chunk)
        if len(chunk) < PRUNE_CHUNK:
            return total
