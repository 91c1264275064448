"""Build Dagster `Definitions` from a validated sync declaration.

One asset per entity (key `[sync, entity]`, group = sync, kinds = both systems), one
capture sensor per sync. No sync logic lives here. Entities have no asset dependencies
yet: the loader refuses `references:` until foreign keys are translated.
"""

import json
import time
from pathlib import Path
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    Config,
    DagsterRunStatus,
    DefaultSensorStatus,
    Definitions,
    MaterializeResult,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    asset,
    in_process_executor,
    sensor,
)

from syncswim_defs.metadata import report_metadata
from syncswim_defs.naming import SYNC_TAG, entity_key, group_name, sensor_name
from syncswim_defs.resources import SyncSwimResource
from syncswim_lib.config import Project, load_project
from syncswim_lib.pipeline.capture import capture_sync
from syncswim_lib.pipeline.maintenance import prune_markers
from syncswim_lib.pipeline.run import run_entity


class EntityRunConfig(Config):
    """`full: true` snapshots both sides and reconciles them (initial sync, drift repair)."""

    full: bool = False


def _entity_asset(project: Project, sync: str, entity: str) -> AssetsDefinition:
    decl = project.syncs[sync]
    ent = decl.entities[entity]
    kinds = {project.endpoints[decl.a].kind, project.endpoints[decl.b].kind}
    a, b = ent.side_a, ent.side_b

    @asset(
        key=entity_key(sync, entity),
        group_name=group_name(sync),
        kinds=kinds,
        description=(
            f"`{a.endpoint}` {a.table} ⇄ `{b.endpoint}` {b.table} "
            f"({ent.mode.kind.replace('_', ' ')} mode)"
        ),
        tags={SYNC_TAG: sync},
    )
    def _asset(
        context: AssetExecutionContext, config: EntityRunConfig, syncswim: SyncSwimResource
    ) -> MaterializeResult[Any]:
        with syncswim.runtime() as rt:
            report = run_entity(rt, sync, entity, full=config.full)
        context.log.info(
            f"{sync}.{entity}: {report.writes} writes, {report.skipped_echoes} skipped, "
            f"{report.conflicts} conflicts, {report.waiting} waiting, {report.failed} failed"
        )
        return MaterializeResult(metadata=report_metadata(report))

    return _asset


PRUNE_EVERY_S = 24 * 3600

_ACTIVE = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def _capture_sensor(project: Project, sync: str) -> SensorDefinition:
    keys = [entity_key(sync, e) for e in project.syncs[sync].entities]

    @sensor(
        name=sensor_name(sync),
        minimum_interval_seconds=1,
        default_status=DefaultSensorStatus.RUNNING,
        asset_selection=keys,
        description=f"Captures {sync}'s change streams and runs the entities with pending changes.",
    )
    def _sensor(
        context: SensorEvaluationContext, syncswim: SyncSwimResource
    ) -> RunRequest | SkipReason:
        cursor = json.loads(context.cursor) if context.cursor else {}
        now = time.time()
        with syncswim.runtime() as rt:
            captured = capture_sync(rt, sync)
            pending = rt.store.pending_counts(sync)
            if now - float(cursor.get("pruned_at", 0)) > PRUNE_EVERY_S:
                pruned = prune_markers(rt, sync)
                context.log.info(f"{sync}: pruned {pruned} old apply markers")
                context.update_cursor(json.dumps({**cursor, "pruned_at": now}))
        if not pending:
            return SkipReason(f"no pending changes (captured {captured})")
        # one run at a time per sync: a second run would plan the same pending changes
        active = context.instance.get_run_records(
            RunsFilter(tags={SYNC_TAG: sync}, statuses=_ACTIVE), limit=1
        )
        if active:
            return SkipReason(f"{sum(pending.values())} pending, waiting for the active run")
        selection = [entity_key(sync, e) for e in project.syncs[sync].entities if e in pending]
        return RunRequest(asset_selection=selection, tags={SYNC_TAG: sync})

    return _sensor


def build_definitions(project_path: str | Path, state_url: str | None = None) -> Definitions:
    project = load_project(project_path)
    assets = [
        _entity_asset(project, sync, entity)
        for sync, decl in project.syncs.items()
        for entity in decl.entities
    ]
    sensors = [_capture_sensor(project, sync) for sync in project.syncs]
    return Definitions(
        assets=assets,
        sensors=sensors,
        resources={
            "syncswim": SyncSwimResource(
                project_path=str(Path(project_path).resolve()), state_url=state_url
            )
        },
        # steps run in the run's own process: the multiprocess executor costs ~1.4 s a step
        executor=in_process_executor,
    )
