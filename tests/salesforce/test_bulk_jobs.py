"""Bulk API 2.0 job protocol through raw calls: states, aborts, errors."""

from __future__ import annotations

import uuid
from typing import Any, cast

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceResourceNotFound

from syncswim_lib.sandbox.salesforce.bulk import job_store
from tests.salesforce.bulk_helpers import (
    count,
    open_job,
    put_csv,
    raw,
    rows,
    wait_for_state,
)

pytestmark = pytest.mark.salesforce


@pytest.fixture
def tag() -> str:
    return f"bk{uuid.uuid4().hex[:10]}"


def test_aborted_jobs(sf: Salesforce, sf_emulator: Any, tag: str) -> None:
    data = "Name\n" + "".join(f"{tag}-{i}\n" for i in range(5))
    job = open_job(sf)
    assert job["state"] == "Open"
    assert job["contentUrl"] == f"services/data/v62.0/jobs/ingest/{job['id']}/batches"
    assert put_csv(sf, job["id"], data).status_code == 201
    aborted = sf.restful(f"jobs/ingest/{job['id']}", method="PATCH", json={"state": "Aborted"})
    assert isinstance(aborted, dict) and aborted["state"] == "Aborted"
    info = sf.restful(f"jobs/ingest/{job['id']}")
    assert isinstance(info, dict)
    assert (info["state"], info["numberRecordsProcessed"]) == ("Aborted", 0)
    left = raw(sf, "GET", f"jobs/ingest/{job['id']}/unprocessedrecords/")
    assert [r["Name"] for r in rows(left.text)] == [f"{tag}-{i}" for i in range(5)]
    with pytest.raises(SalesforceMalformedRequest) as closed:
        sf.restful(f"jobs/ingest/{job['id']}", method="PATCH", json={"state": "UploadComplete"})
    assert cast(list[dict[str, Any]], closed.value.content)[0]["errorCode"] == "INVALIDJOBSTATE"

    # abort while InProgress: hold processing so the state can be seen, then abort it
    store = job_store(sf_emulator.org)
    store.pause()
    try:
        job = open_job(sf)
        put_csv(sf, job["id"], data)
        closing = sf.restful(
            f"jobs/ingest/{job['id']}", method="PATCH", json={"state": "UploadComplete"}
        )
        assert isinstance(closing, dict) and closing["state"] == "UploadComplete"
        wait_for_state(sf, "ingest", job["id"], {"InProgress"})
        sf.restful(f"jobs/ingest/{job['id']}", method="PATCH", json={"state": "Aborted"})
    finally:
        store.resume()
    assert store.wait_idle(30)
    info = wait_for_state(sf, "ingest", job["id"], {"Aborted", "JobComplete", "Failed"})
    assert (info["state"], info["numberRecordsProcessed"]) == ("Aborted", 0)
    assert count(sf, f"Name LIKE '{tag}-%'") == 0
    assert raw(sf, "DELETE", f"jobs/ingest/{job['id']}").status_code == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.restful(f"jobs/ingest/{job['id']}")


def test_job_definition_and_protocol_errors(sf: Salesforce) -> None:
    def error_of(method: str, path: str, **kwargs: Any) -> tuple[int, str]:
        response = raw(sf, method, path, **kwargs)
        return response.status_code, response.json()[0]["errorCode"]

    assert error_of("GET", "jobs/ingest/7505e000000zzzzAAA") == (404, "NOT_FOUND")
    assert error_of("POST", "jobs/ingest", json={"object": "Account", "operation": "upsert"}) == (
        400,
        "INVALIDJOB",
    )
    assert error_of("POST", "jobs/ingest", json={"object": "Nope", "operation": "insert"}) == (
        400,
        "INVALIDJOB",
    )
    assert error_of("POST", "jobs/ingest", json={"object": "Account", "operation": "merge"}) == (
        400,
        "JSON_PARSER_ERROR",
    )
    assert (
        error_of(
            "POST",
            "jobs/query",
            json={"operation": "query", "query": "SELECT COUNT() FROM Account"},
        )[0]
        == 400
    )
    assert error_of(
        "POST", "jobs/query", json={"operation": "query", "query": "SELECT Nope FROM Account"}
    ) == (400, "INVALID_FIELD")
    assert error_of("PUT", "jobs/ingest") == (405, "METHOD_NOT_ALLOWED")

    job = open_job(sf)
    assert put_csv(sf, job["id"], "Name\nA\n").status_code == 201
    second = put_csv(sf, job["id"], "Name\nB\n")
    assert (second.status_code, second.json()[0]["errorCode"]) == (400, "BULK_API_ERROR")
    assert error_of("DELETE", f"jobs/ingest/{job['id']}") == (400, "INVALIDJOBSTATE")
    listed = sf.restful("jobs/ingest")
    assert isinstance(listed, dict) and listed["done"] is True
    assert job["id"] in {j["id"] for j in listed["records"]}
    sf.restful(f"jobs/ingest/{job['id']}", method="PATCH", json={"state": "Aborted"})
