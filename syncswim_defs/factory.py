"""Build Dagster `Definitions` from a validated sync declaration.

One asset per entity (key `[sync, entity]`, group = sync, kinds = both systems), one
capture sensor per sync. No sync logic lives here. An entity's asset depends on the assets
of its parents (`references:`) that come before it in the sync's apply order, so a run
applies parents first. A self-reference, and the reference that closes a cycle, are left
out of the graph (Dagster's must be acyclic; the run sets them in a second pass) and named
in the asset's description.
"""

import json
import random
import time
from collections.abc import Iterable
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Config,
    DagsterRunStatus,
    DefaultSensorStatus,
    Definitions,
    MaterializeResult,
    RetryRequested,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    asset,
    in_process_executor,
    sensor,
)

from syncswim_defs.health import all_health_checks, health_sensors
from syncswim_defs.metadata import check_results, check_specs, log_events, report_metadata
from syncswim_defs.naming import SYNC_TAG, entity_key, group_name, pool_name, sensor_name
from syncswim_defs.polling import is_polled_sync, polling_parts
from syncswim_defs.resources import SyncSwimResource
from syncswim_defs.streaming import asset_lease, streaming_parts
from syncswim_lib.config import Project, load_project
from syncswim_lib.config.models import Reference, Sync
from syncswim_lib.errors import Paused, RetriableError
from syncswim_lib.pipeline.backoff import full_jitter
from syncswim_lib.pipeline.capture import capture_sync
from syncswim_lib.pipeline.maintenance import prune_markers
from syncswim_lib.pipeline.pausing import record as record_pause
from syncswim_lib.pipeline.pausing import sensor_skip
from syncswim_lib.pipeline.run import run_entity
from syncswim_lib.pipeline.runtime import Runtime
from syncswim_lib.pipeline.seed import unfinished

# a step that still fails with a retriable error after the run's own tries (`retry:`) is
# run again by Dagster this many times, after a jittered wait growing from max_seconds
STEP_RETRIES = 2

# tags Dagster puts on runs a sensor or a schedule asked for: any other run of an asset
# is a person's materialisation, which also tries parked records again
_AUTOMATIC = ("dagster/sensor_name", "dagster/schedule_name")


class EntityRunConfig(Config):
    """`full: true` snapshots both sides and reconciles them (initial sync, drift repair)."""

    full: bool = False


def _parent_deps(decl: Sync, entity: str) -> tuple[list[AssetKey], list[Reference]]:
    """The parents' asset keys that come strictly before `entity` in apply order, and the
    references left out of the graph (self-references, the forward edges of cycles)."""
    order = decl.apply_order()
    deps: list[AssetKey] = []
    left_out: list[Reference] = []
    for ref in decl.entities[entity].references.values():
        if order.index(ref.parent) < order.index(entity):
            key = entity_key(decl.name, ref.parent)
            if key not in deps:
                deps.append(key)
        else:
            left_out.append(ref)
    return deps, left_out


def _entity_asset(project: Project, sync: str, entity: str) -> AssetsDefinition:
    decl = project.syncs[sync]
    ent = decl.entities[entity]
    kinds = {project.endpoints[decl.a].kind, project.endpoints[decl.b].kind}
    a, b = ent.side_a, ent.side_b
    deps, left_out = _parent_deps(decl, entity)
    # plain words: the UI shows descriptions in places that do not render markdown
    description = (
        f"{a.endpoint}: {a.table} ⇄ {b.endpoint}: {b.table} "
        f"({ent.mode.kind.replace('_', ' ')} mode)"
    )
    if left_out:
        refs = ", ".join(f"{r.column} → {r.parent}" for r in left_out)
        description += (
            f". References left out of the asset dependencies, as they close a cycle (the "
            f"run sets them in a second pass): {refs}"
        )

    key = entity_key(sync, entity)

    @asset(
        key=key,
        group_name=group_name(sync),
        kinds=kinds,
        description=description,
        tags={SYNC_TAG: sync},
        deps=deps,
        check_specs=check_specs(key),
        # one step of a sync at a time across runs, where the instance limits pools
        # (dagster.yaml: concurrency.pools.default_limit 1): a second run's step waits
        # in Dagster, saying so, before it would wait on the writer lease
        pool=pool_name(sync),
    )
    def _asset(
        context: AssetExecutionContext, config: EntityRunConfig, syncswim: SyncSwimResource
    ) -> MaterializeResult:  # type: ignore[type-arg]
        manual = not any(tag in context.run.tags for tag in _AUTOMATIC)
        try:
            # one writer per sync: waits for (or names) a streaming run or another step
            with syncswim.runtime() as rt, asset_lease(rt, sync, entity, context.run_id):
                rt.run_id = context.run_id
                if manual:
                    # what the polling tick does besides polling, as `syncswim sync` does:
                    # a person's re-materialisation finds the deletes that are due
                    _compare_due_keysets(context, rt, sync, entity)
                report = run_entity(rt, sync, entity, full=config.full, requeue=manual)
                unsettled = rt.store.status_counts(sync, entity)
                waiting = len(rt.store.conflicts(sync, entity, status="open"))
        except RetriableError as exc:
            r = decl.retry
            wait = full_jitter(
                context.retry_number + 1, r.max_seconds, 4 * r.max_seconds, random.random
            )
            context.log.warning(f"{sync}.{entity}: {exc}; the step runs again in {wait:.1f} s")
            raise RetryRequested(max_retries=STEP_RETRIES, seconds_to_wait=wait) from exc
        context.log.info(
            f"{sync}.{entity}: {report.writes} writes, {report.skipped_echoes} skipped, "
            f"{report.conflicts} conflicts, {report.waiting} waiting, {report.failed} failed"
            f" ({report.parked} parked)"
        )
        log_events(context.log, report)
        return MaterializeResult(
            metadata=report_metadata(report),
            check_results=check_results(key, report, unsettled, waiting),
        )

    return _asset


PRUNE_EVERY_S = 24 * 3600

_ACTIVE = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def run_selection(decl: Sync, pending: Iterable[str]) -> list[AssetKey]:
    """The entities with pending changes and all their descendants, in apply order: a child
    waiting for its parent is retried by the run that links the parent."""
    wanted = {d for e in pending if e in decl.entities for d in (e, *decl.descendants(e))}
    return [entity_key(decl.name, e) for e in decl.apply_order() if e in wanted]


def _compare_due_keysets(
    context: AssetExecutionContext, rt: Runtime, sync: str, entity: str
) -> None:
    """The entity's due key-set comparisons on its polled sides (docs/polling.md); the
    deletes they find are journaled, and the run applies them."""
    from syncswim_lib.connectors.polling.runner import compare_due_keysets, polled_endpoints

    for endpoint in polled_endpoints(rt, sync):
        for name, found in compare_due_keysets(rt, sync, endpoint, [entity]).items():
            context.log.info(
                f"{sync}.{name}: key-set comparison on {endpoint}: {found.compared} linked "
                f"rows looked up, {found.gone} gone"
            )


def _capture_sensor(project: Project, sync: str) -> SensorDefinition:
    keys = [entity_key(sync, e) for e in project.syncs[sync].entities]

    @sensor(
        name=sensor_name(sync),
        minimum_interval_seconds=1,
        default_status=DefaultSensorStatus.RUNNING,
        asset_selection=keys,
        description=(
            f"Captures {sync}'s change streams and runs the entities with pending changes "
            "and their descendants."
        ),
    )
    def _sensor(
        context: SensorEvaluationContext, syncswim: SyncSwimResource
    ) -> RunRequest | SkipReason:
        cursor = json.loads(context.cursor) if context.cursor else {}
        now = time.time()
        with syncswim.runtime() as rt:
            paused = sensor_skip(rt.store, sync)  # an API budget spent: not even a capture
            if paused is not None:
                return SkipReason(paused)
            try:
                captured = capture_sync(rt, sync)
            except Paused as exc:  # the org refused a capture's call for its API limit
                record_pause(rt, sync, exc)
                return SkipReason(sensor_skip(rt.store, sync) or str(exc))
            pending = rt.store.pending_counts(sync)
            # a `full` run left unfinished (a crash, or a lost stream position marked for
            # reconciliation) is work too, even when no change is pending
            for e in project.syncs[sync].entities:
                if unfinished(rt.store, sync, e):
                    pending.setdefault(e, 0)
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
        selection = run_selection(project.syncs[sync], pending)
        return RunRequest(asset_selection=selection, tags={SYNC_TAG: sync})

    return _sensor


def build_definitions(project_path: str | Path, state_url: str | None = None) -> Definitions:
    project = load_project(project_path)
    assets = [
        _entity_asset(project, sync, entity)
        for sync, decl in project.syncs.items()
        for entity in decl.entities
    ]
    sensors = [
        _capture_sensor(project, sync)
        for sync, decl in project.syncs.items()
        if decl.run == "micro_batch" and not is_polled_sync(project, sync)
    ]
    jobs, keepers = streaming_parts(project)  # run: streaming (syncswim_defs/streaming.py)
    pollers, schedules = polling_parts(project)  # polled sides (syncswim_defs/polling.py)
    return Definitions(
        assets=assets,
        asset_checks=all_health_checks(project),  # syncswim_defs/health.py
        jobs=jobs,
        sensors=[*sensors, *keepers, *pollers, *health_sensors(project)],
        schedules=schedules,
        resources={
            "syncswim": SyncSwimResource(
                project_path=str(Path(project_path).resolve()), state_url=state_url
            )
        },
        # steps run in the run's own process: the multiprocess executor costs ~1.4 s a step
        executor=in_process_executor,
    )
