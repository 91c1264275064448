"""Dagster wiring of polled sources (docs/polling.md): for each sync with a polled
endpoint, a polling sensor `<sync>__poll` (adaptive interval, `poll: {interval: ...}`,
the default) or a schedule `<sync>__poll_schedule` (`poll: {cron: ...}`) in place of the
capture sensor. Either one captures the streamed side as the capture sensor does, polls
the polled side (the sensor when its interval is due, the schedule at every tick), runs
the due key-set comparisons, and requests a run of the entities with pending changes
and their descendants: the same assets, journal, merge and audit as a streamed sync.

The sensor keeps its interval decisions in its cursor (JSON: per polled endpoint the
interval, the reason, when the next poll is due, how long the poll took); each run it
requests carries the current interval, reason and poll time as tags, and each skip says
the interval and reason.
"""

# no `from __future__ import annotations`: Dagster reads the functions' annotations

import json
import time
from typing import Any

from dagster import (
    AssetSelection,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    schedule,
    sensor,
)

from syncswim_defs.naming import SYNC_TAG, entity_key
from syncswim_defs.resources import SyncSwimResource
from syncswim_lib.config import Project
from syncswim_lib.config.models import Sync
from syncswim_lib.connectors.polling.interval import Decision
from syncswim_lib.connectors.polling.runner import TickResult, tick
from syncswim_lib.pipeline.maintenance import prune_markers
from syncswim_lib.pipeline.pausing import sensor_skip
from syncswim_lib.pipeline.runtime import Runtime
from syncswim_lib.pipeline.seed import unfinished

INTERVAL_TAG = "syncswim/poll_interval_s"
REASON_TAG = "syncswim/poll_reason"
TOOK_TAG = "syncswim/poll_took_s"  # how long the poll behind the decision took
PRUNE_EVERY_S = 24 * 3600

_ACTIVE = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def poll_sensor_name(sync: str) -> str:
    return f"{sync}__poll"


def poll_schedule_name(sync: str) -> str:
    return f"{sync}__poll_schedule"


def is_polled_sync(project: Project, sync: str) -> bool:
    decl = project.syncs[sync]
    return any(project.endpoints[e].polled for e in (decl.a, decl.b))


def _selection(decl: Sync, pending: dict[str, int]) -> list[Any]:
    wanted = {d for e in pending if e in decl.entities for d in (e, *decl.descendants(e))}
    return [entity_key(decl.name, e) for e in decl.apply_order() if e in wanted]


def _work(rt: Runtime, sync: str) -> dict[str, int]:
    """Entities with pending changes, or a `full` run left unfinished."""
    pending = rt.store.pending_counts(sync)
    for e in rt.project.syncs[sync].entities:
        if unfinished(rt.store, sync, e):
            pending.setdefault(e, 0)
    return pending


def _said(result: TickResult) -> str:
    return "; ".join(
        f"{e}: every {d.interval_s:g} s ({d.reason})" for e, d in sorted(result.decisions.items())
    )


def _busy(context: SensorEvaluationContext | ScheduleEvaluationContext, sync: str) -> bool:
    # one run at a time per sync: a second run would plan the same pending changes
    return bool(
        context.instance.get_run_records(
            RunsFilter(tags={SYNC_TAG: sync}, statuses=_ACTIVE), limit=1
        )
    )


def _poll_sensor(project: Project, sync: str) -> SensorDefinition:
    decl = project.syncs[sync]
    keys = [entity_key(sync, e) for e in decl.entities]
    cadence = decl.poll
    low = cadence.min_s if cadence is not None else 5.0
    high = cadence.max_s if cadence is not None else 300.0

    @sensor(
        name=poll_sensor_name(sync),
        minimum_interval_seconds=1,
        default_status=DefaultSensorStatus.RUNNING,
        asset_selection=keys,
        description=(
            f"Polls {sync}'s polled side every {low:g} to {high:g} s (faster while changes "
            "arrive, slower while idle, failing or slow to answer), captures its other side, "
            "and runs the entities with pending changes and their descendants."
        ),
    )
    def _sensor(
        context: SensorEvaluationContext, syncswim: SyncSwimResource
    ) -> RunRequest | SkipReason:
        cursor = json.loads(context.cursor) if context.cursor else {}
        decisions = {e: Decision.from_json(d) for e, d in cursor.get("decisions", {}).items()}
        now = time.time()
        with syncswim.runtime() as rt:
            paused = sensor_skip(rt.store, sync)  # an API budget spent: not even a poll
            if paused is not None:
                return SkipReason(paused)
            result = tick(rt, sync, decisions, time.time)
            pending = _work(rt, sync)
            pruned_at = float(cursor.get("pruned_at", 0))
            if now - pruned_at > PRUNE_EVERY_S:
                context.log.info(f"{sync}: pruned {prune_markers(rt, sync)} old apply markers")
                pruned_at = now
        for endpoint, error in result.errors.items():
            context.log.warning(f"{sync}: polling {endpoint} failed, backing off: {error}")
        context.update_cursor(
            json.dumps(
                {
                    "decisions": {e: d.to_json() for e, d in result.decisions.items()},
                    "pruned_at": pruned_at,
                }
            )
        )
        said = _said(result)
        if not pending:
            return SkipReason(f"no pending changes (captured {result.captured}); {said}")
        if _busy(context, sync):
            return SkipReason(f"{sum(pending.values())} pending, waiting for the active run")
        tags = {SYNC_TAG: sync}
        for endpoint, d in sorted(result.decisions.items()):
            tags[f"{INTERVAL_TAG}/{endpoint}"] = f"{d.interval_s:g}"
            tags[f"{REASON_TAG}/{endpoint}"] = d.reason[:200]
            tags[f"{TOOK_TAG}/{endpoint}"] = f"{d.took_s:.3g}"
        return RunRequest(asset_selection=_selection(decl, pending), tags=tags)

    return _sensor


def _poll_schedule(project: Project, sync: str, cron: str) -> ScheduleDefinition:
    decl = project.syncs[sync]
    keys = [entity_key(sync, e) for e in decl.entities]

    @schedule(
        name=poll_schedule_name(sync),
        cron_schedule=cron,
        target=AssetSelection.assets(*keys),
        default_status=DefaultScheduleStatus.RUNNING,
        description=(
            f"Polls {sync}'s polled side on the schedule {cron!r}, captures its other side, "
            "and runs the entities with pending changes and their descendants."
        ),
    )
    def _schedule(
        context: ScheduleEvaluationContext, syncswim: SyncSwimResource
    ) -> RunRequest | SkipReason:
        with syncswim.runtime() as rt:
            result = tick(rt, sync, {}, time.time, force=True)
            pending = _work(rt, sync)
        if not pending:
            return SkipReason(f"no pending changes (captured {result.captured})")
        if _busy(context, sync):
            return SkipReason(f"{sum(pending.values())} pending, waiting for the active run")
        return RunRequest(
            asset_selection=_selection(decl, pending), tags={SYNC_TAG: sync, REASON_TAG: "cron"}
        )

    return _schedule


def polling_parts(project: Project) -> tuple[list[SensorDefinition], list[ScheduleDefinition]]:
    """The polling sensors and schedules of the project's syncs with a polled side."""
    sensors: list[SensorDefinition] = []
    schedules: list[ScheduleDefinition] = []
    for sync, decl in project.syncs.items():
        if not is_polled_sync(project, sync):
            continue
        if decl.poll is not None and decl.poll.cron is not None:
            schedules.append(_poll_schedule(project, sync, decl.poll.cron))
        else:
            sensors.append(_poll_sensor(project, sync))
    return sensors, schedules
