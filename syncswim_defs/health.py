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

The sync's health sensor, `<sync>__health_sensor`, takes the same figures every
`health.check_every` (60 s by default) and records them as the same checks' results,
without a run: in streaming mode no asset is materialised, and between two micro-batch
runs a growing backlog or a slot filling the disk would otherwise go unseen. It is on by
default (it only reads); `check_every: null` leaves it out.
"""

# no `from __future__ import annotations`: Dagster reads the context parameter's
# annotation at definition time and needs the class itself, not a string
from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    DefaultSensorStatus,
    MetadataValue,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    multi_asset_check,
    sensor,
)

from syncswim_defs.naming import entity_key
from syncswim_defs.resources import SyncSwimResource
from syncswim_lib.config import Project
from syncswim_lib.config.health import Level
from syncswim_lib.errors import SyncSwimError
from syncswim_lib.pipeline.health import (
    EndpointHealth,
    EntityHealth,
    SyncHealth,
    sync_health,
    worst,
)

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


def health_sensor_name(sync: str) -> str:
    return f"{sync}__health_sensor"


def health_sensors(project: Project) -> list[SensorDefinition]:
    """A health sensor per sync whose `health.check_every` is set."""
    return [
        _health_sensor(project, sync)
        for sync, decl in project.syncs.items()
        if decl.health.check_every is not None
    ]


def _health_sensor(project: Project, sync: str) -> SensorDefinition:
    decl = project.syncs[sync]
    every = decl.health.check_every
    assert every is not None  # health_sensors leaves the others out

    @sensor(
        name=health_sensor_name(sync),
        minimum_interval_seconds=max(1, round(every)),
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            f"Takes {sync}'s health figures (journal backlog, change stream lag) every "
            f"{every:g} s and records them as its entities' health checks, without a run."
        ),
    )
    def _sensor(context: SensorEvaluationContext, syncswim: SyncSwimResource) -> SensorResult:
        try:
            with syncswim.runtime() as rt:
                health = sync_health(rt, sync)
        except SyncSwimError as exc:
            # the state store itself cannot be read: say so on the tick (a failed tick
            # shows in the UI), there is no figure to record
            raise SyncSwimError(f"{sync}: health figures not taken: {exc}") from exc
        events = list(_evaluations(decl.entities, sync, health))
        context.log.info(f"{sync}: {_summary(health)}")
        return SensorResult(asset_events=events)

    return _sensor


def _evaluations(entities: Any, sync: str, health: SyncHealth) -> Iterator[AssetCheckEvaluation]:
    for entity in entities:
        key = entity_key(sync, entity)
        for result in (
            _backlog_result(health.entity(entity), key),
            _lag_result(health.endpoints, key),
        ):
            yield AssetCheckEvaluation(
                asset_key=key,
                check_name=result.check_name or "",
                passed=result.passed,
                metadata=result.metadata,
                severity=result.severity,
                description=result.description,
            )


def _summary(health: SyncHealth) -> str:
    parts = [ep.text() for ep in health.endpoints]
    parts += [f"{e.entity}: {e.text()}" for e in health.entities]
    return "; ".join(parts) or "nothing to measure"


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
