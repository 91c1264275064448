"""Dagster wiring of `run: streaming`: one job and one keeper sensor per streaming sync,
and the writer lease an asset step takes. The loop itself is `pipeline/streaming.py`.

- The job `<sync>__streaming` has one op that runs the long-lived `StreamingRun` and
  logs an `AssetMaterialization` of each entity's asset for its applied batches (the
  metadata of a micro-batch run's materialisation; at most one every `report_every_ms`,
  the batches that closed meanwhile in one: syncswim_defs/reporting.py), so every asset's
  history shows every batch.
- The sensor `<sync>__streaming_sensor` keeps one such run alive: it starts one when none
  is active, relaunches a failed one with backoff (at once after the first failure, then
  5 s, 10 s, ... up to 5 minutes), marks a run whose process died (its writer lease left
  by a dead process) failed and starts the next, and starts none while a `syncswim stop`
  request stands. Turning the sensor off stops the run at its next batch boundary (the
  run looks at the sensor's state about once a second).
"""

# no `from __future__ import annotations`: Dagster reads the op's `context` annotation

import logging
import time
from typing import Any

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    JobDefinition,
    OpExecutionContext,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    in_process_executor,
    job,
    op,
    sensor,
)

from syncswim_defs.naming import SYNC_TAG
from syncswim_defs.reporting import Reporter
from syncswim_defs.resources import SyncSwimResource
from syncswim_lib.config import Project
from syncswim_lib.pipeline.runtime import Runtime
from syncswim_lib.pipeline.streaming import StreamingRun
from syncswim_lib.state import leases

RUN_TAG = "syncswim/run"
STREAMING = "streaming"
BACKOFF_S = (0, 5, 10, 20, 40, 80, 160, 300)
SENSOR_CHECK_S = 1.0
# how long an asset step or `syncswim sync` waits for another writer of its sync
ASSET_WAIT_S = 10.0
READY = "streaming from"  # the run's log line once both change streams are open

_ACTIVE = {
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
}


def job_name(sync: str) -> str:
    return f"{sync}__streaming"


def sensor_name(sync: str) -> str:
    return f"{sync}__streaming_sensor"


def holder_of(run_id: str) -> str:
    return f"run:{run_id}"


def sensor_stopped(instance: Any, name: str) -> bool:
    """Whether the sensor `name` was turned off (in the UI or with `dagster sensor stop`)."""
    from dagster._core.scheduler.instigation import InstigatorStatus, InstigatorType

    if instance.schedule_storage is None:  # an ephemeral instance keeps no sensor states
        return False
    states = instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
    return any(s.instigator_name == name and s.status == InstigatorStatus.STOPPED for s in states)


def _interruptible(body: Any) -> str:
    """The run's result; a stop signal to the run's process (the deployment or `dagster dev`
    shutting down) is a clean end, not a failure that would count towards the backoff: the
    readers are closed and the lease released on the way out, and a batch it cut short is
    finished by the next run from the journal."""
    from dagster._core.errors import DagsterExecutionInterruptedError

    try:
        return str(body())
    except DagsterExecutionInterruptedError:
        return "interrupted: the run's process was asked to stop"


class _ToDagsterLog(logging.Handler):
    def __init__(self, reporter: Reporter) -> None:
        super().__init__(logging.WARNING)
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        self.reporter.warning(record.getMessage())


def streaming_job(project: Project, sync: str) -> JobDefinition:
    sensor = sensor_name(sync)

    @op(name=f"{sync}__stream", description=f"Streams {sync} until stopped or rotated.")
    def _stream(context: OpExecutionContext, syncswim: SyncSwimResource) -> None:
        checked = [0.0]

        def should_stop() -> str | None:
            now = time.monotonic()
            if now - checked[0] < SENSOR_CHECK_S:
                return None
            checked[0] = now
            if sensor_stopped(context.instance, sensor):
                return f"sensor {sensor} was turned off"
            return None

        # Dagster's log is written by the reporter's thread (syncswim_defs/reporting.py):
        # a materialisation costs as much as a batch, and the loop does not wait for it
        every_s = project.syncs[sync].streaming.report_every_ms / 1000
        reporter = Reporter(context, sync, every_s)
        # the readers' warnings (a reconnect, a slot still held) into the run's log
        forward = _ToDagsterLog(reporter)
        library_log = logging.getLogger("syncswim_lib")
        library_log.addHandler(forward)
        try:
            with syncswim.runtime() as rt:
                rt.run_id = context.run_id
                reason = _interruptible(
                    lambda: StreamingRun(
                        rt,
                        sync,
                        holder=holder_of(context.run_id),
                        purpose=f"streaming run {context.run_id}",
                        on_batch=reporter.batch,
                        should_stop=should_stop,
                        on_ready=lambda at: reporter.info(f"{sync}: {READY} {at}"),
                    ).run()
                )
        finally:
            library_log.removeHandler(forward)
            reporter.close()
        context.log.info(f"{sync}: the streaming run ended at a batch boundary: {reason}")

    @job(
        name=job_name(sync),
        executor_def=in_process_executor,
        tags={SYNC_TAG: sync, RUN_TAG: STREAMING},
        description=f"The long-lived streaming run of sync {sync} (docs/streaming.md).",
    )
    def _job() -> None:
        _stream()

    return _job


def streaming_sensor(project: Project, sync: str, target: JobDefinition) -> SensorDefinition:
    @sensor(
        name=sensor_name(sync),
        job_name=target.name,
        minimum_interval_seconds=5,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            f"Keeps one streaming run of {sync} alive (relaunched with backoff after a "
            "failure); turning it off stops the run at a batch boundary."
        ),
    )
    def _sensor(
        context: SensorEvaluationContext, syncswim: SyncSwimResource
    ) -> RunRequest | SkipReason:
        with syncswim.runtime() as rt:
            stop = leases.stop_request(rt.store, sync)
            held = leases.holders(rt.store, sync, dead_too=True)
        if stop is not None:
            return SkipReason(
                f"stopped with `syncswim stop` ({stop[1]}); `syncswim stop --resume` lets "
                "it start again"
            )
        records = context.instance.get_run_records(
            RunsFilter(job_name=job_name(sync), tags={SYNC_TAG: sync}), limit=len(BACKOFF_S)
        )
        now = time.time()
        for record in records:
            run = record.dagster_run
            if run.status not in _ACTIVE:
                continue
            lease = next((h for h in held if h.holder == holder_of(run.run_id)), None)
            if lease is None or lease.alive(now):
                return SkipReason(f"streaming run {run.run_id} is {run.status.value.lower()}")
            context.instance.report_run_failed(
                run, f"the process of streaming run {run.run_id} died (pid {lease.pid})"
            )
            context.log.warning(f"{sync}: streaming run {run.run_id} died; starting another")
        failures = 0
        last_end: float | None = None
        for record in context.instance.get_run_records(
            RunsFilter(job_name=job_name(sync), tags={SYNC_TAG: sync}), limit=len(BACKOFF_S)
        ):
            if record.dagster_run.status != DagsterRunStatus.FAILURE:
                break
            if last_end is None:
                last_end = record.end_time or now
            failures += 1
        if failures and last_end is not None:
            wait = BACKOFF_S[min(failures, len(BACKOFF_S)) - 1]
            if wait and now - last_end < wait:
                return SkipReason(
                    f"{failures} failed streaming run(s) in a row; the next starts in "
                    f"{wait - (now - last_end):.0f} s"
                )
        return RunRequest(tags={SYNC_TAG: sync, RUN_TAG: STREAMING})

    return _sensor


def streaming_parts(project: Project) -> tuple[list[JobDefinition], list[SensorDefinition]]:
    """The job and sensor of every sync that runs streaming."""
    jobs: list[JobDefinition] = []
    sensors: list[SensorDefinition] = []
    for sync, decl in project.syncs.items():
        if decl.run == STREAMING:
            j = streaming_job(project, sync)
            jobs.append(j)
            sensors.append(streaming_sensor(project, sync, j))
    return jobs, sensors


def asset_lease(rt: Runtime, sync: str, entity: str, run_id: str) -> Any:
    """The writer lease an asset step holds while it runs: every entity of the sync (its
    capture reads the whole sync's streams), waiting up to ASSET_WAIT_S for another writer
    (a streaming run holds it as long as it streams: stop it first)."""
    return leases.hold(
        rt.store,
        sync,
        rt.project.syncs[sync].apply_order(),
        holder_of(run_id),
        f"asset step {sync}.{entity} of run {run_id}",
        wait_s=ASSET_WAIT_S,
    )
