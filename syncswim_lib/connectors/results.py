"""An `ApplyResult` as the JSON the marker row keeps, for every connector with markers.

Generated keys keep their canonical type through the state codec's tagged JSON, so a
replayed batch hands back exactly the keys the first delivery produced."""

from __future__ import annotations

import json
from typing import Any

from syncswim_lib.connectors.base import ApplyResult
from syncswim_lib.state.codec import decode, encode


def result_to_data(result: ApplyResult) -> dict[str, Any]:
    return {
        "batch_id": result.batch_id,
        "keys": {ref: encode(key) for ref, key in result.keys.items()},
        "inserted": result.inserted,
        "updated": result.updated,
        "deleted": result.deleted,
        "missing": list(result.missing),
        "rejected": dict(result.rejected),
    }


def result_from_data(data: dict[str, Any] | str | bytes) -> ApplyResult:
    if isinstance(data, str | bytes):
        data = json.loads(data)
    assert isinstance(data, dict)
    return ApplyResult(
        batch_id=str(data["batch_id"]),
        keys={ref: decode(key) for ref, key in data["keys"].items()},
        inserted=int(data["inserted"]),
        updated=int(data["updated"]),
        deleted=int(data["deleted"]),
        missing=tuple(data["missing"]),
        rejected=dict(data["rejected"]),
    )
