"""The health figures of each sync (syncswim_lib/pipeline/health.py) as asset checks.

Every entity asset gets two checks, computed together by one multi-asset check per sync
so the figures are read once:

- `journal_backlog`: the entity's captured changes not applied yet and the age of the
  oldest (`health.backlog`, `health.oldest_pending_s`);
- `change_stream_lag`: how far capture is behind both endpoints' change streams (a
  PostgreSQL slot's unconfirmed and retained WAL, a binlog's bytes and files behind);
  every entity of a sync reads the same two streams, so each carries the same figures.

A check fails with severity WARN when a figure reaches its `warn` level and ERROR when it
reaches `error`; the figures are the check's metadata either way. Selected with their
assets (a materialisation also runs them) or on their own.
"""

# no `from __future__ import annotations`: Dagster reads the context parameter's
# annotation at definition time and needs the class itself, not a string
from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    MetadataValue,
    multi_asset_check,
)

from syncswim_defs.naming import entity_key
from syncswim_defs.resources import SyncSwimResource
from syncswim_lib.config import Project
from syncswim_lib.config.health import Level
from syncswim_lib.pipeline.health import EndpointHealth, EntityHealth, sync_health, worst

BACKLOG_CHECK = "journal_backlog"
LAG_CHECK = "change_stream_lag"


def health_checks(project: Project, sync: str) -> list[AssetChecksDefinition]:
    """The health checks of one sync's entities."""
    decl = project.syncs[sync]
    specs: list[AssetCheckSpec] = []
    for entity in decl.entities:
        key = entity_key(sync, entity)
        specs.append(
            AssetCheckSpec(
                BACKLOG_CHECK,
                asset=key,
                description="Changes captured and not applied yet, and how long the oldest "
                "has waited (thresholds: `health.backlog`, `health.oldest_pending_s`).",
            )
        )
        specs.append(
            AssetCheckSpec(
                LAG_CHECK,
                asset=key,
                description=f"How far capture is behind the change streams of `{decl.a}` and "
                f"`{decl.b}` (thresholds: `health.slot_lag_bytes`, "
                "`health.retained_wal_bytes`, `health.binlog_lag_bytes`).",
            )
        )

    @multi_asset_check(
        name=f"{sync}__health",
        specs=specs,
        can_subset=True,
        description=f"Health figures of sync {sync}",
    )
    def _health(
        context: AssetCheckExecutionContext, syncswim: SyncSwimResource
    ) -> Iterator[AssetCheckResult]:
        wanted: set[AssetCheckKey] = set(context.selected_asset_check_keys)
        streams = any(k.name == LAG_CHECK for k in wanted)
        with syncswim.runtime() as rt:
            health = sync_health(rt, sync, streams=streams)
        for entity in decl.entities:
            key = entity_key(sync, entity)
            if AssetCheckKey(key, BACKLOG_CHECK) in wanted:
                yield _backlog_result(health.entity(entity), key)
            if AssetCheckKey(key, LAG_CHECK) in wanted:
                yield _lag_result(health.endpoints, key)

    return [_health]


def all_health_checks(project: Project) -> list[AssetChecksDefinition]:
    """The health checks of every sync: what `build_definitions` hands to Dagster."""
    return [check for sync in project.syncs for check in health_checks(project, sync)]


_SEVERITY = {"warn": AssetCheckSeverity.WARN, "error": AssetCheckSeverity.ERROR}


def _result(
    key: Any, name: str, level: Level, description: str, metadata: dict[str, Any]
) -> AssetCheckResult:
    return AssetCheckResult(
        asset_key=key,
        check_name=name,
        passed=level == "ok",
        severity=_SEVERITY.get(level, AssetCheckSeverity.WARN),
        description=description,
        metadata=metadata,
    )


def _backlog_result(health: EntityHealth, key: Any) -> AssetCheckResult:
    meta: dict[str, Any] = {"backlog": health.backlog}
    if health.oldest_pending_s is not None:
        meta["oldest_pending_s"] = round(health.oldest_pending_s, 3)
    return _result(key, BACKLOG_CHECK, health.level, health.text(), meta)


def _lag_result(endpoints: tuple[EndpointHealth, ...], key: Any) -> AssetCheckResult:
    meta: dict[str, Any] = {}
    for ep in endpoints:
        if ep.problem is not None:
            meta[f"{ep.endpoint}/error"] = ep.problem
        if ep.lag is None:
            continue
        meta[f"{ep.endpoint}/status"] = ep.lag.status
        for f in ep.figures:
            if f.value is not None:
                meta[f"{ep.endpoint}/{f.name}"] = int(f.value)
        if ep.lag.files_behind is not None:
            meta[f"{ep.endpoint}/binlog_files_behind"] = ep.lag.files_behind
        positions = {"current": ep.lag.current, "confirmed": ep.lag.confirmed}
        meta[f"{ep.endpoint}/position"] = MetadataValue.json(positions)
    level = worst([ep.level for ep in endpoints])
    return _result(key, LAG_CHECK, level, "; ".join(ep.text() for ep in endpoints), meta)
