"""Background processing of Bulk API 2.0 jobs against the org: ingest rows and query snapshots."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from syncswim_lib.sandbox.salesforce import ids, soql_parse
from syncswim_lib.sandbox.salesforce.bulk_csv import (
    NULL_MARKER,
    CsvFormatError,
    parse_upload,
    query_table,
    sf_error,
)
from syncswim_lib.sandbox.salesforce.bulk_jobs import Job, JobState, JobStore, RowOutcome
from syncswim_lib.sandbox.salesforce.bulk_spec import select_columns
from syncswim_lib.sandbox.salesforce.contract import ApiError
from syncswim_lib.sandbox.salesforce.org import MultipleMatches

if TYPE_CHECKING:
    from syncswim_lib.sandbox.salesforce.org import Org

log = logging.getLogger(__name__)

# Salesforce applies Bulk data in transactions of 200 records (the trigger chunk size), so
# CDC subscribers see one event batch per 200 rows, not one per job or per row.
CHUNK_SIZE = 200

# Decimal for the fractional types: the CSV text is exact, and so is what the org keeps
_NUMBER_TYPES = {
    "int": int,
    "long": int,
    "double": Decimal,
    "currency": Decimal,
    "percent": Decimal,
}


@dataclass(frozen=True)
class Column:
    """One header column resolved against describe."""

    field: str  # canonical field name, or the relationship name for `Account.ExtId__c`
    type: str  # describe type of the field ("reference" for a relationship column)
    parent_key: str | None = None  # `ExtId__c` in `Account.ExtId__c`


def resolve_columns(describe: Mapping[str, Any], header: Sequence[str]) -> list[Column]:
    """Map header names (case-insensitive) to fields; an unknown name fails the whole job."""
    by_name = {f["name"].lower(): f for f in describe["fields"]}
    by_rel = {
        f["relationshipName"].lower(): f for f in describe["fields"] if f.get("relationshipName")
    }
    columns = []
    for name in header:
        head, _, tail = name.partition(".")
        if tail:
            rel = by_rel.get(head.lower())
            if rel is None or "." in tail:
                raise CsvFormatError(f"InvalidBatch : Field name not found : {name}")
            columns.append(Column(rel["relationshipName"], "reference", tail))
            continue
        spec = by_name.get(name.lower())
        if spec is None:
            raise CsvFormatError(f"InvalidBatch : Field name not found : {name}")
        columns.append(Column(spec["name"], spec["type"]))
    return columns


def convert(field_type: str, text: str) -> Any:
    """CSV text → the JSON value the org expects; unparsable text goes through for the org
    to reject with its own error."""
    if field_type == "boolean":
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        return text
    number = _NUMBER_TYPES.get(field_type)
    if number is not None:
        try:
            return number(text)
        except (ValueError, ArithmeticError):  # InvalidOperation is an ArithmeticError
            return text
    return text


def row_fields(columns: Sequence[Column], row: Sequence[str], skip: str | None) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for column, text in zip(columns, row, strict=True):
        if column.field == skip or text == "":
            continue  # empty cell: leave the field as it is
        value = None if text == NULL_MARKER else convert(column.type, text)
        fields[column.field] = {column.parent_key: value} if column.parent_key else value
    return fields


class IngestRunner:
    """Applies one job's rows to the org; one org transaction per CHUNK_SIZE rows."""

    def __init__(self, org: Org, job: Job, columns: list[Column]) -> None:
        self.org = org
        self.job = job
        self.columns = columns
        spec = job.spec
        names = [c.field for c in columns]
        self.id_index = names.index("Id") if "Id" in names else None
        self.key = "Id"
        if spec.operation == "upsert":
            ext = _canonical(names, spec.external_id_field or "")
            if ext is None:
                raise CsvFormatError(
                    f"InvalidBatch : External ID field {spec.external_id_field} "
                    "not found in the header"
                )
            self.key = ext
        elif spec.operation in ("update", "delete", "hardDelete") and self.id_index is None:
            raise CsvFormatError("InvalidBatch : Field name not found : Id")

    def chunk(self, rows: Sequence[tuple[str, ...]]) -> list[RowOutcome]:
        outcomes = []
        with self.org.transaction(self.job.ctx, all_or_none=False):
            for row in rows:
                outcomes.append(self._row(row))
        return outcomes

    def _row(self, row: tuple[str, ...]) -> RowOutcome:
        spec = self.job.spec
        given_id = row[self.id_index] if self.id_index is not None else ""
        record_id = ids.normalize(given_id) or given_id
        try:
            if spec.operation == "insert":
                new_id = self.org.create(
                    self.job.ctx, spec.sobject, row_fields(self.columns, row, None)
                )
                return RowOutcome(row, new_id, created=True)
            if spec.operation == "upsert":
                return self._upsert(row)
            if not given_id:
                return RowOutcome(
                    row,
                    error=sf_error(
                        "MISSING_ARGUMENT", f"Id not specified in an {spec.operation} call"
                    ),
                )
            if spec.operation == "update":
                self.org.update(
                    self.job.ctx, spec.sobject, record_id, row_fields(self.columns, row, "Id")
                )
            else:
                self._delete(record_id)
            return RowOutcome(row, record_id)
        except ApiError as exc:
            return RowOutcome(
                row,
                record_id if given_id else "",
                error=sf_error(exc.error_code, exc.message, exc.fields),
            )

    def _upsert(self, row: tuple[str, ...]) -> RowOutcome:
        spec = self.job.spec
        value = row[[c.field for c in self.columns].index(self.key)]
        if not value and self.key != "Id":  # a blank Id means "create", any other key is needed
            return RowOutcome(
                row, error=sf_error("MISSING_ARGUMENT", f"{self.key} not specified", [self.key])
            )
        fields = row_fields(self.columns, row, self.key)
        try:
            record_id, created = self.org.upsert(
                self.job.ctx, spec.sobject, self.key, value, fields
            )
        except MultipleMatches as exc:
            # REST answers 300; Bulk reports the row with this code instead.
            raise ApiError(
                400,
                "DUPLICATE_EXTERNAL_ID",
                f"{self.key}: more than one record found for external id field: "
                f"[{', '.join(exc.ids)}]",
                [self.key],
            ) from None
        return RowOutcome(row, record_id, created=created)

    def _delete(self, record_id: str) -> None:
        self.org.delete(self.job.ctx, self.job.spec.sobject, record_id)
        if self.job.spec.operation == "hardDelete":
            self.org.purge(self.job.ctx, [record_id])  # skip the recycle bin


def _canonical(names: Sequence[str], wanted: str) -> str | None:
    return next((n for n in names if n.lower() == wanted.lower()), None)


def uploaded_rows(job: Job) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """(header, rows) of the job's upload; empty when there is none or it cannot be parsed."""
    if job.data is None:
        return (), []
    try:
        table = parse_upload(job.data, job.spec.column_delimiter, job.spec.line_ending)
    except CsvFormatError:
        return (), []
    return table.header, list(table.rows)


def process(org: Org, store: JobStore, job: Job) -> None:
    """Thread body: UploadComplete → InProgress → JobComplete | Failed (Aborted sticks)."""
    if not store.begin(job):
        return
    started = time.monotonic()
    state, message = JobState.JOB_COMPLETE, ""
    try:
        if job.spec.kind == "ingest":
            _ingest(org, store, job)
        else:
            _query(org, store, job)
    except CsvFormatError as exc:
        state, message = JobState.FAILED, str(exc)
    except ApiError as exc:
        state, message = JobState.FAILED, f"{exc.error_code} : {exc.message}"
    except Exception as exc:  # an emulator bug: fail the job visibly rather than hang clients
        log.exception("bulk job %s crashed", job.id)
        state, message = JobState.FAILED, f"UNKNOWN_EXCEPTION : {exc!r}"
    store.finish(job, state, message, int((time.monotonic() - started) * 1000))


def _ingest(org: Org, store: JobStore, job: Job) -> None:
    spec = job.spec
    table = parse_upload(job.data or b"", spec.column_delimiter, spec.line_ending)
    runner = IngestRunner(org, job, resolve_columns(org.describe(spec.sobject), table.header))
    for start in range(0, len(table.rows), CHUNK_SIZE):
        if not store.running(job):
            return  # aborted: the rest shows up in unprocessedrecords
        outcomes = runner.chunk(table.rows[start : start + CHUNK_SIZE])
        with store.lock:
            job.outcomes.extend(outcomes)


def _query(org: Org, store: JobStore, job: Job) -> None:
    spec = job.spec
    columns = select_columns(soql_parse.parse(spec.query or ""))
    records = org.query(job.ctx, spec.query or "", include_deleted=spec.operation == "queryAll")
    header, rows = query_table(records, columns)
    with store.lock:
        job.result_header, job.result_rows = header, rows
