"""The one place that decides asset keys, groups, kinds and tags."""

from __future__ import annotations

from dagster import AssetKey

SYNC_TAG = "syncswim/sync"


def entity_key(sync: str, entity: str) -> AssetKey:
    return AssetKey([sync, entity])


def group_name(sync: str) -> str:
    return sync


def sensor_name(sync: str) -> str:
    return f"{sync}__capture"


def pool_name(sync: str) -> str:
    """The Dagster concurrency pool of a sync's asset steps."""
    return f"syncswim_{sync}"
