"""Large writes through one Bulk API 2.0 ingest job per operation: a job costs a handful
of calls (create, upload, close, a few state polls, the result files) whatever its size,
where sObject Collections cost one call per 200 records.

A job's rows are CSV (`lineEnding: LF`); the result files echo the uploaded columns, so
each result row is matched back to its batch row by the column that names the record:
the external id of an upsert, the Id of an update or a delete. Inserts without an
external id have no such column (the org does not promise the result files keep the
upload order) and stay on collections, like rows a CSV cell cannot carry as they are
(text with a carriage return, which the job's LF line ending refuses, or the literal
`#N/A`, which Bulk reads as null).

Cells: an empty cell leaves a field as it is (an update's field outside `__set`, an
upsert's null: "no value", as collections skip nulls on create); `#N/A` sets null.

Each call carries `Sforce-Call-Options: client=<origin>` like every other write: the
emulator puts it into the change events' `changeOrigin` (`…/bulkapi/62.0;client=…`); see
docs/salesforce.md for what is known of a real org there.
"""

from __future__ import annotations

import csv
import io
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from syncswim_lib.connectors.salesforce.client import CALL_OPTIONS, Api, SalesforceApiError
from syncswim_lib.connectors.salesforce.types import to_salesforce
from syncswim_lib.errors import RetriableError
from syncswim_lib.values import ColumnInfo

WriteOp = Literal["upsert", "update", "delete"]
NULL_CELL = "#N/A"
# a job's state is first asked when a job of its size is likely done (RECORDS_PER_S, never
# sooner than FIRST_POLL_S), then when the rate seen so far says it will be (never sooner
# than MIN_POLL_S, never later than MAX_POLL_S): a poll or two a job instead of one every
# fraction of a second. A poll costs an API call, a second of waiting costs none
FIRST_POLL_S = 0.1
RECORDS_PER_S = 10_000.0
MIN_POLL_S = 0.05
MAX_POLL_S = 10.0
JOB_TIMEOUT_S = 3600.0
TERMINAL = frozenset({"JobComplete", "Failed", "Aborted"})


@dataclass(frozen=True)
class RowOutcome:
    """What the job did with one uploaded row."""

    ref: str
    ok: bool
    record_id: str | None = None
    created: bool = False
    error_code: str = ""
    error: str = ""  # `CODE: message (fields: A, B)`, as collections word it


def cell(value: Any, column: ColumnInfo) -> str:
    """One CSV cell of a value that is to be written (None clears the field)."""
    if value is None:
        return NULL_CELL
    out = to_salesforce(value, column)
    if isinstance(out, bool):
        return "true" if out else "false"
    if hasattr(out, "as_tuple"):  # a Decimal: exact, never in exponent form
        return f"{out:f}"
    return "" if out is None else str(out)


def csv_safe(value: Any) -> bool:
    """Whether a CSV cell carries `value` unchanged (see the module's note)."""
    return not (isinstance(value, str) and ("\r" in value or value == NULL_CELL))


def first_poll(total: int) -> float:
    """Seconds from a job's close to its first state poll: about when a job of `total`
    records is done."""
    return min(MAX_POLL_S, max(FIRST_POLL_S, total / RECORDS_PER_S))


def _csv(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _error(text: str) -> tuple[str, str]:
    """(code, `CODE: message (fields: …)`) of a failedResults `sf__Error` cell,
    `CODE:message:Field1,Field2 --`."""
    body = text.strip().removesuffix("--").strip()
    code, _, rest = body.partition(":")
    message, sep, fields = rest.rpartition(":")
    if not sep:
        message, fields = rest, ""
    out = f"{code}: {message}".rstrip(": ")
    if fields.strip():
        out += f" (fields: {', '.join(f.strip() for f in fields.split(','))})"
    return code, out


class BulkJob:
    """One ingest job of one operation, from create to its result files."""

    def __init__(self, api: Api, sobject: str, origin: str, what: str) -> None:
        # the client's job-level calls (create, upload, close, state, result files):
        # its one-call `upsert(...)` polls the state on its own schedule, a poll every
        # half second or so, which costs more calls than the job itself
        from simple_salesforce.bulk2 import SFBulk2Handler, _Bulk2Client

        handler = api.sf.bulk2
        assert isinstance(handler, SFBulk2Handler)
        self.api = api
        self.what = what
        headers = {**handler.headers, CALL_OPTIONS: f"client={origin}"}
        self.client = _Bulk2Client(sobject, handler.bulk2_url, headers, handler.session)
        self.sleep: Callable[[float], None] = time.sleep

    def run(
        self,
        operation: WriteOp,
        header: Sequence[str],
        rows: Sequence[tuple[str, str, Sequence[str]]],
        external_id: str | None = None,
    ) -> list[RowOutcome]:
        """`rows`: (ref, match text, cells). The outcome of every row, in `rows` order."""
        api, what, c = self.api, self.what, self.client
        from simple_salesforce.bulk2 import Operation

        op = Operation(operation)
        job = api.call(what, lambda: c.create_job(op, external_id_field=external_id))
        job_id = str(job["id"])
        data = _csv(header, [cells for _, _, cells in rows])
        api.call(what, lambda: c.upload_job_data(job_id, data))
        api.call(what, lambda: c.close_job(job_id))
        info = self._wait(job_id, len(rows))
        pending: dict[str, deque[str]] = defaultdict(deque)
        for ref, match, _ in rows:
            pending[match].append(ref)
        # the result files echo the uploaded columns under the uploaded names
        match_name = external_id if operation == "upsert" and external_id else "Id"
        out: dict[str, RowOutcome] = {}

        def take(row: dict[str, str]) -> str | None:
            refs = pending.get(row.get(match_name) or "")
            return refs.popleft() if refs else None

        if int(info.get("numberRecordsProcessed") or 0) > int(info.get("numberRecordsFailed") or 0):
            for row in self._results(job_id, "successfulResults"):
                got = take(row)
                if got is not None:
                    created = (row.get("sf__Created") or "").lower() == "true"
                    out[got] = RowOutcome(got, True, row.get("sf__Id") or None, created)
        if int(info.get("numberRecordsFailed") or 0):
            for row in self._results(job_id, "failedResults"):
                got = take(row)
                if got is not None:
                    code, error = _error(row.get("sf__Error") or "")
                    out[got] = RowOutcome(got, False, error_code=code, error=error)
        if len(out) < len(rows):
            # the job ended before these (aborted, or failed as a whole): nothing was
            # done with them; they are reported like a refused record, so the pipeline
            # tries them again after its record backoff while the others are recorded
            state = info.get("state")
            reason = info.get("errorMessage") or f"the job ended {state}"
            for ref, _, _ in rows:
                if ref not in out:
                    text = f"BULK_UNPROCESSED: bulk job {job_id} did not process it ({reason})"
                    out[ref] = RowOutcome(ref, False, error_code="BULK_UNPROCESSED", error=text)
        return [out[ref] for ref, _, _ in rows]

    def _results(self, job_id: str, kind: str) -> list[dict[str, str]]:
        text = self.api.call(self.what, lambda: self.client.get_ingest_results(job_id, kind))
        return list(csv.DictReader(io.StringIO(str(text))))

    def _wait(self, job_id: str, total: int) -> dict[str, Any]:
        started = time.monotonic()
        delay = first_poll(total)
        while True:
            self.sleep(delay)
            info = self.api.call(self.what, lambda: self.client.get_job(job_id, False))
            if info.get("state") in TERMINAL:
                if info.get("state") == "Failed" and not info.get("numberRecordsProcessed"):
                    # refused as a whole (a header the object lacks, bad CSV): our data
                    # is wrong, and sending it again would be refused again
                    raise SalesforceApiError(
                        f"{self.what}: bulk job {job_id} failed: {info.get('errorMessage')}",
                        "BULK_JOB_FAILED",
                        0,
                    )
                return dict(info)
            elapsed = time.monotonic() - started
            if elapsed > JOB_TIMEOUT_S:
                raise RetriableError(
                    f"{self.what}: bulk job {job_id} still {info.get('state')} after "
                    f"{elapsed:.0f} s (tried again with backoff)"
                )
            done = int(info.get("numberRecordsProcessed") or 0)
            if done:  # when the rate so far says the rest will be done
                delay = (total - done) * elapsed / done * 1.1
            else:
                delay *= 2
            delay = min(MAX_POLL_S, max(MIN_POLL_S, delay))
