"""Unit tests for the Bulk API 2.0 CSV helpers and the job state machine (no server)."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from syncswim_lib.sandbox.salesforce.bulk_csv import (
    CsvFormatError,
    parse_upload,
    query_table,
    render_value,
    sf_error,
    write_csv,
)
from syncswim_lib.sandbox.salesforce.bulk_jobs import Job, JobSpec, JobState, JobStore
from syncswim_lib.sandbox.salesforce.bulk_process import Column, resolve_columns, row_fields
from syncswim_lib.sandbox.salesforce.contract import ApiError, CallContext

DESCRIBE = {
    "name": "Contact",
    "fields": [
        {"name": "Id", "type": "id"},
        {"name": "LastName", "type": "string"},
        {"name": "DoNotCall", "type": "boolean"},
        {"name": "Score__c", "type": "double"},
        {"name": "AccountId", "type": "reference", "relationshipName": "Account"},
    ],
}


def test_parse_upload_keeps_quoted_newlines_and_delimiters() -> None:
    data = b'Name,Note\n"Acme, Inc.","line one\nline two"\nBeta,\n'
    table = parse_upload(data, "COMMA", "LF")
    assert table.header == ("Name", "Note")
    assert table.rows == (("Acme, Inc.", "line one\nline two"), ("Beta", ""))


def test_parse_upload_other_delimiter_crlf_and_bom() -> None:
    data = "\ufeffName|City\r\nA|Paris\r\nB|Lyon\r\n".encode()
    table = parse_upload(data, "PIPE", "CRLF")
    assert table.header == ("Name", "City")
    assert table.rows == (("A", "Paris"), ("B", "Lyon"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"Name\r\nA\r\n", "LineEnding is invalid on user data"),
        (b"", "No data found"),
        (b"Name,name\nA,B\n", "Duplicate field name: name"),
        (b"Name,\nA,B\n", "Field name not found"),
        (b"Name,City\nA\n", "Record 1 has 1 columns"),
        (b"Name\n\xff\n", "Invalid UTF-8"),
    ],
)
def test_parse_upload_rejects_bad_data(data: bytes, message: str) -> None:
    with pytest.raises(CsvFormatError, match=message):
        parse_upload(data, "COMMA", "LF")


def test_write_csv_quotes_everything_and_round_trips() -> None:
    body = write_csv(["sf__Id", "Name"], [["001", 'say "hi", ok'], ["002", ""]], "SEMICOLON")
    assert body.decode().splitlines()[0] == '"sf__Id";"Name"'
    rows = list(csv.reader(io.StringIO(body.decode()), delimiter=";"))
    assert rows == [["sf__Id", "Name"], ["001", 'say "hi", ok'], ["002", ""]]


def test_sf_error_format() -> None:
    assert sf_error("REQUIRED_FIELD_MISSING", "Required fields are missing: [Name]", ["Name"]) == (
        "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --"
    )
    assert sf_error("NOT_FOUND", "gone") == "NOT_FOUND:gone: --"


def test_render_value() -> None:
    assert render_value(None) == ""
    assert render_value(True) == "true"
    assert render_value(12.5) == "12.5"
    assert render_value("2024-01-02T03:04:05.000+0000") == "2024-01-02T03:04:05.000Z"
    with pytest.raises(CsvFormatError, match="compound"):
        render_value({"city": "Paris"})


def test_query_table_flattens_parents_and_nulls() -> None:
    records: list[dict[str, Any]] = [
        {"attributes": {"type": "Contact"}, "Id": "003A", "Account": None, "LastName": "X"},
        {
            "attributes": {"type": "Contact"},
            "Id": "003B",
            "Account": {"attributes": {"type": "Account"}, "Name": "Acme"},
            "LastName": None,
        },
    ]
    header, rows = query_table(records, ["id", "account.name", "LastName"])
    assert header == ["Id", "Account.Name", "LastName"]
    assert rows == [["003A", "", "X"], ["003B", "Acme", ""]]


def test_resolve_columns_and_row_fields() -> None:
    columns = resolve_columns(DESCRIBE, ("lastname", "DoNotCall", "Score__c", "Account.Ext__c"))
    assert columns[0] == Column("LastName", "string")
    assert columns[3] == Column("Account", "reference", "Ext__c")
    fields = row_fields(columns, ("Smith", "1", "2.5", "A-1"), None)
    assert fields == {
        "LastName": "Smith",
        "DoNotCall": True,
        "Score__c": 2.5,
        "Account": {"Ext__c": "A-1"},
    }
    # empty leaves a field alone, #N/A nulls it
    assert row_fields(columns, ("", "#N/A", "", ""), None) == {"DoNotCall": None}
    with pytest.raises(CsvFormatError, match="Field name not found : Nope"):
        resolve_columns(DESCRIBE, ("LastName", "Nope"))


def _poll(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


class _FixedClock:
    def now(self) -> datetime:
        return datetime(2024, 5, 1, tzinfo=UTC)


def _store(ran: list[str]) -> JobStore:
    def processor(store: JobStore, job: Job) -> None:
        if store.begin(job):
            ran.append(job.id)
            store.finish(job, JobState.JOB_COMPLETE)

    return JobStore(_FixedClock(), processor)


def test_job_state_machine() -> None:
    ran: list[str] = []
    store = _store(ran)
    spec = JobSpec(kind="ingest", operation="insert", sobject="Contact", api_version="62.0")
    info = store.create(spec, CallContext(user_id="005000000000001AAA"))
    job = store.get("ingest", info["id"])
    assert info["state"] == "Open"
    assert info["contentUrl"].endswith(f"/jobs/ingest/{job.id}/batches")
    with pytest.raises(ApiError) as wrong_kind:
        store.get("query", job.id)
    assert wrong_kind.value.status == 404
    with pytest.raises(ApiError, match="INVALIDJOBSTATE"):
        store.delete(job)  # still Open
    store.upload(job, b"LastName\nA\n")
    with pytest.raises(ApiError, match="BULK_API_ERROR"):
        store.upload(job, b"LastName\nB\n")
    assert store.set_state(job, "UploadComplete")["state"] == "UploadComplete"
    assert store.wait_idle(10)
    assert ran == [job.id]
    assert job.state is JobState.JOB_COMPLETE
    with pytest.raises(ApiError, match="INVALIDJOBSTATE"):
        store.set_state(job, "Aborted")
    store.delete(job)
    with pytest.raises(ApiError, match="NOT_FOUND"):
        store.get("ingest", job.id)


def test_closing_an_empty_job_fails_it_and_pause_holds_in_progress() -> None:
    ran: list[str] = []
    store = _store(ran)
    ctx = CallContext(user_id="005000000000001AAA")
    spec = JobSpec(kind="ingest", operation="insert", sobject="Contact", api_version="62.0")
    empty = store.get("ingest", store.create(spec, ctx)["id"])
    assert store.set_state(empty, "UploadComplete")["state"] == "Failed"
    assert empty.info(detailed=True)["errorMessage"].startswith("InvalidBatch")

    store.pause()
    job = store.get("ingest", store.create(spec, ctx)["id"])
    store.upload(job, b"LastName\nA\n")
    store.set_state(job, "UploadComplete")
    assert _poll(lambda: job.state is JobState.IN_PROGRESS, 10)  # held at the gate
    assert store.set_state(job, "Aborted")["state"] == "Aborted"
    store.resume()
    assert store.wait_idle(10)
    assert job.state is JobState.ABORTED
    assert ran == []
