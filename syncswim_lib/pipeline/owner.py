"""One state store per change stream: who owns a sync's slot or binlog position.

Reading a PostgreSQL slot consumes it, and a binlog position only means something to the
store that recorded it. A second store (another folder's default, a copied declaration)
capturing the same sync would swallow changes the first never sees. So `setup` records
the owning store in the source itself (`syncswim.owners` on PostgreSQL, `_syncswim_owners`
on MySQL), and every capture checks that record before reading.

A store's identity is a random id it keeps among its own positions, under a name no sync
can have (sync names are lower-case identifiers): that keeps it in the same durable place
as the positions it vouches for, on both backends, without a schema change. Moving or
copying the store's file keeps its id, so a restored backup still owns its streams.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from syncswim_lib.connectors.ownership import OwnedStream, StreamOwner
from syncswim_lib.envelope import WatermarkPosition
from syncswim_lib.errors import FatalError
from syncswim_lib.pipeline.statehome import redact_url

if TYPE_CHECKING:
    from syncswim_lib.state.base import StateStore

IDENTITY_SYNC = "@syncswim"
IDENTITY_SIDE = "state_id"


def store_identity(store: StateStore, url: str) -> StreamOwner:
    """This store's owner record, its id created on first use."""
    found = store.get_position(IDENTITY_SYNC, IDENTITY_SIDE)
    if found is None:
        store.set_position(IDENTITY_SYNC, IDENTITY_SIDE, WatermarkPosition(uuid.uuid4().hex))
        found = store.get_position(IDENTITY_SYNC, IDENTITY_SIDE)
    if not isinstance(found, WatermarkPosition):
        raise FatalError(f"the state store {redact_url(url)} holds no usable identity")
    return StreamOwner(found.watermark, redact_url(url))


def _refusal(sync: str, endpoint: str, owner: StreamOwner, me: StreamOwner) -> FatalError:
    return FatalError(
        f"sync {sync} on endpoint {endpoint}: its change stream belongs to the state store "
        f"{owner.state} (id {owner.state_id[:8]}), not to this one, {me.state} (id "
        f"{me.state_id[:8]}); run with the state store that owns it (the declaration's "
        "`state:`), or run `syncswim teardown` with that store to release the stream"
    )


def check_free(conn: OwnedStream, sync: str, endpoint: str, me: StreamOwner) -> None:
    """Refuse before `setup` changes anything when another store owns the stream."""
    owner = conn.stream_owner(sync)
    if owner is not None and owner.state_id != me.state_id:
        raise _refusal(sync, endpoint, owner, me)


def claim(conn: OwnedStream, sync: str, endpoint: str, me: StreamOwner, *, adopt: bool) -> None:
    """Check that `me` owns the stream; `adopt`: record `me` where no owner is recorded
    (setup). A capture finding no record refuses: the stream was torn down, or the
    endpoint now points to another database than the one this store's position is from."""
    owner = conn.stream_owner(sync) if not adopt else conn.claim_stream(sync, me)
    if owner is None:
        raise FatalError(
            f"sync {sync} on endpoint {endpoint}: the state store {me.state} has a position "
            "for it, but the endpoint has no record of this sync's capture (it was torn "
            "down, or the endpoint is another database now); `syncswim setup` on the "
            "declaration sets it up again and records this store as its owner (then "
            "`syncswim sync --full` reconciles what changed in between)"
        )
    if owner.state_id != me.state_id:
        raise _refusal(sync, endpoint, owner, me)
