"""Bulk API 2.0 job records and their state machine (in memory, thread-safe)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from syncswim_lib.sandbox.salesforce import ids
from syncswim_lib.sandbox.salesforce.contract import ApiError, CallContext, Clock

Kind = Literal["ingest", "query"]


class JobState(StrEnum):
    OPEN = "Open"
    UPLOAD_COMPLETE = "UploadComplete"
    IN_PROGRESS = "InProgress"
    JOB_COMPLETE = "JobComplete"
    FAILED = "Failed"
    ABORTED = "Aborted"


FINAL_STATES = frozenset({JobState.JOB_COMPLETE, JobState.FAILED, JobState.ABORTED})


@dataclass(frozen=True)
class JobSpec:
    kind: Kind
    operation: str
    sobject: str
    api_version: str  # e.g. "62.0", from the URL the job was created with
    column_delimiter: str = "COMMA"
    line_ending: str = "LF"
    external_id_field: str | None = None
    query: str | None = None
    assignment_rule_id: str | None = None


@dataclass(frozen=True)
class RowOutcome:
    """What happened to one uploaded row: success (error == "") or failure."""

    values: tuple[str, ...]
    record_id: str = ""
    created: bool = False
    error: str = ""


@dataclass
class Job:
    """Mutable job record; every field is read and written under JobStore.lock."""

    id: str
    spec: JobSpec
    ctx: CallContext
    created: datetime
    modstamp: datetime
    state: JobState = JobState.OPEN
    error_message: str = ""
    data: bytes | None = None
    outcomes: list[RowOutcome] = field(default_factory=list)
    result_header: list[str] = field(default_factory=list)
    result_rows: list[list[str]] = field(default_factory=list)
    processing_ms: int = 0

    @property
    def failed_count(self) -> int:
        return sum(1 for o in self.outcomes if o.error)

    def info(self, detailed: bool) -> dict[str, Any]:
        """Job info JSON; `detailed` adds the counters that GET job info returns."""
        spec = self.spec
        out: dict[str, Any] = {
            "id": self.id,
            "operation": spec.operation,
            "object": spec.sobject,
            "createdById": self.ctx.user_id,
            "createdDate": _stamp(self.created),
            "systemModstamp": _stamp(self.modstamp),
            "state": self.state.value,
        }
        if spec.external_id_field and spec.operation == "upsert":
            out["externalIdFieldName"] = spec.external_id_field
        if spec.assignment_rule_id:
            out["assignmentRuleId"] = spec.assignment_rule_id
        out.update(
            concurrencyMode="Parallel", contentType="CSV", apiVersion=float(spec.api_version)
        )
        if detailed:
            out["jobType"] = "V2Ingest" if spec.kind == "ingest" else "V2Query"
        if spec.kind == "ingest" and self.state == JobState.OPEN:
            # where to PUT the data; Salesforce shows it only while the job takes uploads
            out["contentUrl"] = f"services/data/v{spec.api_version}/jobs/ingest/{self.id}/batches"
        out.update(lineEnding=spec.line_ending, columnDelimiter=spec.column_delimiter)
        if not detailed:
            return out
        if spec.kind == "ingest":
            out["numberRecordsProcessed"] = len(self.outcomes)
            out["numberRecordsFailed"] = self.failed_count
        else:
            out["numberRecordsProcessed"] = len(self.result_rows)
        out.update(retries=0, totalProcessingTime=self.processing_ms)
        if spec.kind == "ingest":
            out.update(apiActiveProcessingTime=self.processing_ms, apexProcessingTime=0)
        if self.error_message:
            out["errorMessage"] = self.error_message
        return out


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


# Job ids share one counter per process so two emulators never hand out the same id.
_job_counter = itertools.count(1)


def new_job_id() -> str:
    return ids.to18("7505e0" + ids.base62(next(_job_counter), 9))  # 750: bulk job key prefix


def not_found() -> ApiError:
    return ApiError(404, "NOT_FOUND", "The requested resource does not exist")


def bad_state(message: str) -> ApiError:
    return ApiError(400, "INVALIDJOBSTATE", message)


# Allowed PATCH transitions, by kind: (from states, to state).
_PATCHABLE: dict[tuple[Kind, JobState], frozenset[JobState]] = {
    ("ingest", JobState.UPLOAD_COMPLETE): frozenset({JobState.OPEN}),
    ("ingest", JobState.ABORTED): frozenset(
        {JobState.OPEN, JobState.UPLOAD_COMPLETE, JobState.IN_PROGRESS}
    ),
    ("query", JobState.ABORTED): frozenset({JobState.UPLOAD_COMPLETE, JobState.IN_PROGRESS}),
}
# Deleting is only allowed once nothing can still be written into the job.
_DELETABLE: dict[Kind, frozenset[JobState]] = {
    "ingest": frozenset({JobState.UPLOAD_COMPLETE, *FINAL_STATES}),
    "query": frozenset({JobState.UPLOAD_COMPLETE, *FINAL_STATES}),
}


class JobStore:
    """All jobs of one emulated org; `processor` runs a job in a background thread."""

    def __init__(self, clock: Clock, processor: Callable[[JobStore, Job], None]) -> None:
        self.lock = threading.RLock()
        self._clock = clock
        self._processor = processor
        self._jobs: dict[str, Job] = {}
        self._threads: list[threading.Thread] = []
        self._gate = threading.Event()  # cleared by pause(): jobs wait InProgress
        self._gate.set()

    def create(self, spec: JobSpec, ctx: CallContext) -> dict[str, Any]:
        """Create a job; returns its info as of creation (before processing can move it)."""
        now = self._clock.now()
        job = Job(new_job_id(), spec, ctx, now, now)
        if spec.kind == "query":
            job.state = JobState.UPLOAD_COMPLETE  # a query job needs no upload: queued at once
        info = job.info(detailed=False)
        with self.lock:
            self._jobs[job.id] = job
        if spec.kind == "query":
            self._start(job)
        return info

    def get(self, kind: Kind, job_id: str) -> Job:
        with self.lock:
            job = self._jobs.get(job_id) or self._jobs.get(ids.to18(job_id[:15]))
        if job is None or job.spec.kind != kind:
            raise not_found()
        return job

    def list(self, kind: Kind) -> list[Job]:
        with self.lock:
            return sorted(
                (j for j in self._jobs.values() if j.spec.kind == kind),
                key=lambda j: (j.created, j.id),
            )

    def upload(self, job: Job, data: bytes) -> None:
        with self.lock:
            if job.state != JobState.OPEN:
                raise bad_state(f"Job {job.id} is not in Open state: {job.state.value}")
            if job.data is not None:
                # Bulk API 2.0 takes one upload per job.
                raise ApiError(
                    400,
                    "BULK_API_ERROR",
                    (
                        f"Found multiple contents for job: <{job.id}>, please 'Close' / 'Abort' /"
                        " 'Delete' the current Job then create a new Job and make sure you only do"
                        " 'PUT' once on a given Job."
                    ),
                )
            job.data = data
            job.modstamp = self._clock.now()

    def set_state(self, job: Job, target: str) -> dict[str, Any]:
        """PATCH state; returns the job info as of the change."""
        try:
            state = JobState(target)
        except ValueError:
            raise bad_state(f"Invalid state: {target}") from None
        with self.lock:
            allowed = _PATCHABLE.get((job.spec.kind, state))
            if allowed is None or job.state not in allowed:
                raise bad_state(
                    f"Cannot change state of job {job.id} from {job.state.value} to {target}"
                )
            if state == JobState.UPLOAD_COMPLETE and job.data is None:
                # Closing an empty job fails it, as Salesforce does.
                job.state = JobState.FAILED
                job.error_message = "InvalidBatch : No data found in job"
            else:
                job.state = state
            job.modstamp = self._clock.now()
            info = job.info(detailed=False)
        if info["state"] == JobState.UPLOAD_COMPLETE:
            self._start(job)
        return info

    def delete(self, job: Job) -> None:
        with self.lock:
            if job.state not in _DELETABLE[job.spec.kind]:
                raise bad_state(f"Cannot delete job {job.id} in state {job.state.value}")
            self._jobs.pop(job.id, None)

    def begin(self, job: Job) -> bool:
        """Move UploadComplete → InProgress and wait at the gate; False if aborted meanwhile."""
        with self.lock:
            if job.state != JobState.UPLOAD_COMPLETE:
                return False
            job.state = JobState.IN_PROGRESS
            job.modstamp = self._clock.now()
        self._gate.wait()
        return self.running(job)

    def running(self, job: Job) -> bool:
        with self.lock:
            return job.state == JobState.IN_PROGRESS

    def finish(
        self, job: Job, state: JobState, error_message: str = "", processing_ms: int = 0
    ) -> None:
        with self.lock:
            if job.state != JobState.IN_PROGRESS:
                return  # aborted while running: Aborted sticks
            job.state = state
            job.error_message = error_message
            job.processing_ms = processing_ms
            job.modstamp = self._clock.now()

    def pause(self) -> None:
        """Hold jobs in InProgress until resume(): lets tests observe and abort running jobs."""
        self._gate.clear()

    def resume(self) -> None:
        self._gate.set()

    def wait_idle(self, timeout: float) -> bool:
        """Join every processing thread started so far; False if one is still running."""
        with self.lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)
        return not any(t.is_alive() for t in threads)

    def _start(self, job: Job) -> None:
        thread = threading.Thread(
            target=self._processor, args=(self, job), name=f"bulk-{job.id}", daemon=True
        )
        with self.lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()
