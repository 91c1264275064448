"""Bulk API 2.0 routes: ingest jobs under {DATA}/jobs/ingest, query jobs under {DATA}/jobs/query.

Decisions where Salesforce's documentation is silent are listed in docs/salesforce-bulk.md.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import re
import weakref
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from syncswim_lib.sandbox.salesforce.bulk_csv import write_csv
from syncswim_lib.sandbox.salesforce.bulk_jobs import (
    FINAL_STATES,
    Job,
    JobState,
    JobStore,
    Kind,
    bad_state,
)
from syncswim_lib.sandbox.salesforce.bulk_process import process, uploaded_rows
from syncswim_lib.sandbox.salesforce.bulk_spec import job_spec, json_body
from syncswim_lib.sandbox.salesforce.contract import (
    DATA,
    ApiError,
    CallContext,
    Request,
    Response,
    Router,
)

if TYPE_CHECKING:
    from syncswim_lib.sandbox.salesforce.org import Org

# Without ?maxRecords= Salesforce returns "as many rows as can be listed"; we cut pages at
# this many rows so clients that ignore Sforce-Locator are caught on big results.
DEFAULT_MAX_RECORDS = 50_000
CSV_TYPE = "text/csv; charset=UTF-8"

_JOB = r"(?P<job>[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?)"
_stores: dict[int, JobStore] = {}

Endpoint = Callable[[Request, "re.Match[str]"], Response]


def job_store(org: Org) -> JobStore:
    """The job store serving `org` (tests use it to pause processing or wait for it)."""
    return _stores[id(org)]


def register(router: Router, org: Org) -> None:
    store = JobStore(org.clock, partial(process, org))
    _stores[id(org)] = store
    with contextlib.suppress(TypeError):  # forget the store with its org (id() is recycled)
        weakref.finalize(org, _stores.pop, id(org), None)
    api = _Api(org, store)
    base = DATA + "/jobs/(?P<kind>ingest|query)"
    routes: list[tuple[str, dict[str, Endpoint]]] = [
        (base + "/?", {"POST": api.create, "GET": api.list_jobs}),
        (base + "/" + _JOB + "/?", {"GET": api.info, "PATCH": api.patch, "DELETE": api.delete}),
        (DATA + "/jobs/(?P<kind>ingest)/" + _JOB + "/batches/?", {"PUT": api.upload}),
        (
            DATA
            + "/jobs/(?P<kind>ingest)/"
            + _JOB
            + "/(?P<results>successfulResults|failedResults|(?i:unprocessedrecords))/?",
            {"GET": api.ingest_results},
        ),
        (DATA + "/jobs/(?P<kind>query)/" + _JOB + "/results/?", {"GET": api.query_results}),
    ]
    for pattern, methods in routes:
        router.add("*", pattern, partial(_dispatch, methods))


def _dispatch(methods: dict[str, Endpoint], request: Request, match: re.Match[str]) -> Response:
    endpoint = methods.get(request.method)
    if endpoint is None:
        allowed = ",".join(sorted(methods))
        return Response.error(
            405,
            "METHOD_NOT_ALLOWED",
            f"HTTP Method '{request.method}' not allowed. Allowed are {allowed}",
        )
    try:
        return endpoint(request, match)
    except ApiError as exc:
        return exc.response()


def _kind(match: re.Match[str]) -> Kind:
    return "ingest" if match.group("kind") == "ingest" else "query"


class _Api:
    def __init__(self, org: Org, store: JobStore) -> None:
        self.org = org
        self.store = store

    def _job(self, match: re.Match[str]) -> Job:
        return self.store.get(_kind(match), match.group("job"))

    def create(self, request: Request, match: re.Match[str]) -> Response:
        spec = job_spec(self.org, _kind(match), match.group("version"), json_body(request))
        ctx = request.ctx or CallContext(user_id="")
        # CDC changeOrigin says bulkapi, with the job's API version, as Salesforce's does.
        ctx = dataclasses.replace(ctx, api="bulkapi", api_version=spec.api_version)
        return Response.of_json(200, self.store.create(spec, ctx))

    def list_jobs(self, request: Request, match: re.Match[str]) -> Response:
        with self.store.lock:
            records = [
                job.info(detailed=False)
                | {"jobType": "V2Ingest" if job.spec.kind == "ingest" else "V2Query"}
                for job in self.store.list(_kind(match))
            ]
        return Response.of_json(200, {"done": True, "records": records, "nextRecordsUrl": None})

    def info(self, request: Request, match: re.Match[str]) -> Response:
        job = self._job(match)
        with self.store.lock:
            return Response.of_json(200, job.info(detailed=True))

    def patch(self, request: Request, match: re.Match[str]) -> Response:
        job = self._job(match)
        state = json_body(request).get("state")
        if not isinstance(state, str):
            raise bad_state("InvalidJobState : Missing required field: state")
        return Response.of_json(200, self.store.set_state(job, state))

    def delete(self, request: Request, match: re.Match[str]) -> Response:
        self.store.delete(self._job(match))
        return Response(204)

    def upload(self, request: Request, match: re.Match[str]) -> Response:
        self.store.upload(self._job(match), request.body)
        return Response(201)

    def ingest_results(self, request: Request, match: re.Match[str]) -> Response:
        job = self._job(match)
        which = match.group("results").lower()
        with self.store.lock:
            if which != "unprocessedrecords" and job.state not in FINAL_STATES:
                raise bad_state(f"Job {job.id} is not complete: {job.state.value}")
            header, rows = uploaded_rows(job)
            outcomes = list(job.outcomes)
        if which == "successfulresults":
            body = write_csv(
                ("sf__Id", "sf__Created", *header),
                (
                    (o.record_id, "true" if o.created else "false", *o.values)
                    for o in outcomes
                    if not o.error
                ),
            )
        elif which == "failedresults":
            body = write_csv(
                ("sf__Id", "sf__Error", *header),
                ((o.record_id, o.error, *o.values) for o in outcomes if o.error),
            )
        else:  # rows are applied in upload order, so the unprocessed ones are the tail
            body = write_csv(header, rows[len(outcomes) :]) if header else b""
        return Response(200, body, {"Content-Type": CSV_TYPE})

    def query_results(self, request: Request, match: re.Match[str]) -> Response:
        job = self._job(match)
        if match.group("version") != job.spec.api_version:
            raise ApiError(
                409,
                "API_ERROR",
                (
                    f"Results must be read with the API version the job was created with: "
                    f"v{job.spec.api_version}"
                ),
            )
        with self.store.lock:
            if job.state != JobState.JOB_COMPLETE:
                raise bad_state(f"Job {job.id} is not complete: {job.state.value}")
            header, rows = job.result_header, job.result_rows
        limit = _max_records(request)
        start = _decode_locator(request.query.get("locator", [""])[0], len(rows))
        page = rows[start : start + limit]
        end = start + len(page)
        locator = _encode_locator(end) if end < len(rows) else "null"
        body = write_csv(header, page, job.spec.column_delimiter, job.spec.line_ending)
        return Response(
            200,
            body,
            {
                "Content-Type": CSV_TYPE,
                "Sforce-Locator": locator,
                "Sforce-NumberOfRecords": str(len(page)),
            },
        )


def _max_records(request: Request) -> int:
    raw = request.query.get("maxRecords", [""])[0]
    if not raw:
        return DEFAULT_MAX_RECORDS
    if not raw.isdigit() or int(raw) <= 0:
        raise ApiError(400, "INVALIDPARAMETER", f"Invalid value for maxRecords: {raw}")
    return int(raw)


def _encode_locator(offset: int) -> str:
    # Opaque to clients, like Salesforce's base64-looking locators.
    return base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")


def _decode_locator(locator: str, total: int) -> int:
    if not locator:
        return 0
    try:
        text = base64.urlsafe_b64decode(locator + "=" * (-len(locator) % 4)).decode()
        offset = int(text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        offset = -1
    if not 0 < offset < total or _encode_locator(offset) != locator:
        raise ApiError(400, "INVALID_QUERY_LOCATOR", f"Invalid locator: {locator}")
    return offset


__all__ = ["job_store", "register"]
