"""Bulk API 2.0 end to end: the unmodified simple-salesforce client against the emulator."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceOperationError,
)

from tests.salesforce.bulk_helpers import (
    bulk2,
    count,
    open_job,
    put_csv,
    raw,
    rest,
    rows,
    wait_for_state,
)

pytestmark = pytest.mark.salesforce

EXT_FIELD = "ExtId__c"  # an external id on Account in conftest.TEST_SCHEMA


@pytest.fixture
def tag() -> str:
    return f"bk{uuid.uuid4().hex[:10]}"


@pytest.mark.slow
def test_insert_10000_rows(sf: Salesforce, sf_emulator: Any, tag: str) -> None:
    records = [{"Name": f"{tag}-{i:05d}", "NumberOfEmployees": str(i)} for i in range(10_000)]
    commits_before = sf_emulator.org.commit_number
    [result] = bulk2(sf, "Account").insert(records=records, wait=0)
    assert result["numberRecordsProcessed"] == 10_000
    assert result["numberRecordsFailed"] == 0
    assert count(sf, f"Name LIKE '{tag}-%'") == 10_000
    # written 200 rows per org transaction, so CDC sees 50 commits, not 1 or 10,000
    assert sf_emulator.org.commit_number - commits_before == 50

    done = rows(bulk2(sf, "Account").get_successful_records(str(result["job_id"])))
    assert len(done) == 10_000
    assert len({r["sf__Id"] for r in done}) == 10_000
    assert {r["sf__Created"] for r in done} == {"true"}
    assert done[123]["Name"] == f"{tag}-00123"
    assert rows(bulk2(sf, "Account").get_failed_records(str(result["job_id"]))) == []
    sample = rest(sf, "Account").get(done[123]["sf__Id"])
    assert sample["NumberOfEmployees"] == 123


def test_changes_reach_cdc_per_chunk_with_bulk_origin(
    sf: Salesforce, sf_emulator: Any, tag: str
) -> None:
    sf_emulator.bus.enable("Account")
    # bulk2 sends its own headers, so the call option goes on the session (platform notes)
    sf.session.headers["Sforce-Call-Options"] = "client=SyncSwim"
    [result] = bulk2(sf, "Account").insert(
        records=[{"Name": f"{tag}-{i}"} for i in range(450)], wait=0
    )
    assert result["numberRecordsFailed"] == 0
    headers = [
        e["data"]["payload"]["ChangeEventHeader"]
        for e in sf_emulator.bus.all_events()
        if e["data"]["payload"].get("Name", "").startswith(tag)
    ]
    assert {h["changeOrigin"] for h in headers} == {
        "com/salesforce/api/bulkapi/62.0;client=SyncSwim"
    }
    per_tx: dict[str, int] = {}
    for h in headers:
        per_tx[h["transactionKey"]] = per_tx.get(h["transactionKey"], 0) + len(h["recordIds"])
    assert sorted(per_tx.values()) == [50, 200, 200]


def test_upsert_by_external_id(sf: Salesforce, tag: str) -> None:
    ext_field = EXT_FIELD
    existing = {
        f"{tag}-{i}": rest(sf, "Account").create({"Name": f"old {i}", ext_field: f"{tag}-{i}"})[
            "id"
        ]
        for i in range(3)
    }
    records = [{ext_field: f"{tag}-{i}", "Name": f"{tag} new {i}"} for i in range(5)]
    [result] = bulk2(sf, "Account").upsert(records=records, external_id_field=ext_field, wait=0)
    assert (result["numberRecordsProcessed"], result["numberRecordsFailed"]) == (5, 0)

    by_key = {
        r[ext_field]: r
        for r in rows(bulk2(sf, "Account").get_successful_records(str(result["job_id"])))
    }
    for key, record_id in existing.items():
        assert by_key[key]["sf__Id"] == record_id
        assert by_key[key]["sf__Created"] == "false"
    assert [by_key[f"{tag}-{i}"]["sf__Created"] for i in (3, 4)] == ["true", "true"]
    names = sf.query(f"SELECT Name FROM Account WHERE {ext_field} LIKE '{tag}-%' ORDER BY Name")
    assert [r["Name"] for r in names["records"]] == [f"{tag} new {i}" for i in range(5)]


def test_upsert_by_non_unique_external_id_is_case_sensitive(sf: Salesforce, tag: str) -> None:
    upper = rest(sf, "Account").create({"Name": f"{tag} upper", "Region__c": f"{tag}-EU"})["id"]
    records = [{"Region__c": f"{tag}-eu", "Name": f"{tag} lower"}]
    [result] = bulk2(sf, "Account").upsert(records=records, external_id_field="Region__c", wait=0)
    [done] = rows(bulk2(sf, "Account").get_successful_records(str(result["job_id"])))
    assert done["sf__Created"] == "true" and done["sf__Id"] != upper
    assert rest(sf, "Account").get(upper)["Name"] == f"{tag} upper"


def test_failures_are_reported_in_failed_results(sf: Salesforce, tag: str) -> None:
    records = [
        {"Name": f"{tag}-ok", "Phone": "1"},
        {"Name": "", "Phone": "2"},  # empty cell = no Name at all
        {"Name": f"{tag}-ok2", "Phone": "3"},
    ]
    [result] = bulk2(sf, "Account").insert(records=records, wait=0)
    assert (result["numberRecordsProcessed"], result["numberRecordsFailed"]) == (3, 1)
    [failed] = rows(bulk2(sf, "Account").get_failed_records(str(result["job_id"])))
    assert failed["sf__Id"] == ""
    assert failed["sf__Error"].startswith("REQUIRED_FIELD_MISSING:")
    assert failed["sf__Error"].endswith(":Name --")
    assert failed["Phone"] == "2"
    assert count(sf, f"Name LIKE '{tag}-%'") == 2

    good = rest(sf, "Account").create({"Name": f"{tag}-upd"})["id"]
    gone = rest(sf, "Account").create({"Name": f"{tag}-gone"})["id"]
    rest(sf, "Account").delete(gone)
    [result] = bulk2(sf, "Account").update(
        records=[{"Id": good, "Name": f"{tag}-upd2"}, {"Id": gone, "Name": "x"}], wait=0
    )
    assert result["numberRecordsFailed"] == 1
    [failed] = rows(bulk2(sf, "Account").get_failed_records(str(result["job_id"])))
    assert failed["sf__Id"] == gone
    assert failed["sf__Error"].startswith("ENTITY_IS_DELETED:")
    assert rest(sf, "Account").get(good)["Name"] == f"{tag}-upd2"


def test_query_job_pages_with_locators(sf: Salesforce, tag: str) -> None:
    names = [f"{tag}-{i:04d}" for i in range(2_500)]
    bulk2(sf, "Account").insert(records=[{"Name": n} for n in names], wait=0)
    soql = f"SELECT Id, Name FROM Account WHERE Name LIKE '{tag}-%' ORDER BY Name"
    pages = list(bulk2(sf, "Account").query(soql, max_records=1_000, wait=0))
    assert len(pages) == 3
    assert [r["Name"] for page in pages for r in rows(str(page))] == names

    # the same through raw calls: headers, re-reading a page, a bad locator
    job = sf.restful("jobs/query", method="POST", json={"operation": "query", "query": soql})
    assert isinstance(job, dict) and job["state"] == "UploadComplete"
    wait_for_state(sf, "query", job["id"], {"JobComplete"})
    results = f"jobs/query/{job['id']}/results"
    first = raw(sf, "GET", results, params={"maxRecords": 1_000})
    assert first.status_code == 200
    assert first.headers["Sforce-NumberOfRecords"] == "1000"
    locator = first.headers["Sforce-Locator"]
    second = raw(sf, "GET", results, params={"maxRecords": 1_000, "locator": locator})
    again = raw(sf, "GET", results, params={"maxRecords": 1_000, "locator": locator})
    assert second.content == again.content
    third = raw(
        sf,
        "GET",
        results,
        params={"maxRecords": 1_000, "locator": second.headers["Sforce-Locator"]},
    )
    assert third.headers["Sforce-NumberOfRecords"] == "500"
    assert third.headers["Sforce-Locator"] == "null"
    bad = raw(sf, "GET", results, params={"locator": "not-a-locator"})
    assert bad.status_code == 400
    assert bad.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_query_job_parent_columns_and_nulls(sf: Salesforce, tag: str) -> None:
    parent = rest(sf, "Account").create({"Name": f"{tag}-parent"})["id"]
    rest(sf, "Contact").create(
        {"LastName": f"{tag}-a", "AccountId": parent, "Email": "a@example.com"}
    )
    rest(sf, "Contact").create({"LastName": f"{tag}-b"})
    soql = (
        f"SELECT LastName, Email, Account.Name FROM Contact "
        f"WHERE LastName LIKE '{tag}-%' ORDER BY LastName"
    )
    [page] = list(bulk2(sf, "Contact").query(soql, wait=0))
    lines = str(page).splitlines()
    assert lines[0] == '"LastName","Email","Account.Name"'
    assert rows(str(page)) == [
        {"LastName": f"{tag}-a", "Email": "a@example.com", "Account.Name": f"{tag}-parent"},
        {"LastName": f"{tag}-b", "Email": "", "Account.Name": ""},
    ]


def test_invalid_csv_header_fails_the_job(sf: Salesforce, tag: str) -> None:
    with pytest.raises(SalesforceOperationError, match="Field name not found : Bogus__c"):
        bulk2(sf, "Account").insert(records=[{"Name": f"{tag}-x", "Bogus__c": "y"}], wait=0)
    assert count(sf, f"Name LIKE '{tag}-%'") == 0

    job = open_job(sf, lineEnding="LF")
    put_csv(sf, job["id"], f"Name\r\n{tag}-crlf\r\n")
    sf.restful(f"jobs/ingest/{job['id']}", method="PATCH", json={"state": "UploadComplete"})
    info = wait_for_state(sf, "ingest", job["id"], {"JobComplete", "Failed"})
    assert info["state"] == "Failed"
    assert "LineEnding is invalid on user data" in info["errorMessage"]


def test_delete_and_hard_delete(sf: Salesforce, tag: str) -> None:
    ids = [rest(sf, "Account").create({"Name": f"{tag}-{i}"})["id"] for i in range(4)]
    [soft] = bulk2(sf, "Account").delete(records=[{"Id": i} for i in ids[:2]], wait=0)
    [hard] = bulk2(sf, "Account").hard_delete(records=[{"Id": i} for i in ids[2:]], wait=0)
    assert soft["numberRecordsFailed"] == hard["numberRecordsFailed"] == 0
    assert count(sf, f"Name LIKE '{tag}-%'") == 0
    everything = sf.query_all(
        f"SELECT Id FROM Account WHERE Name LIKE '{tag}-%'", include_deleted=True
    )
    assert sorted(r["Id"] for r in everything["records"]) == sorted(ids[:2])
