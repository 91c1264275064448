"""How many calls the connector's lookups cost (counted from the emulator's request log):
records by Id through sObject Collections retrieve, 2,000 a call, for the pipeline's
lookups of linked records and apply's compare-and-set reads; by another field through
SOQL `IN` lists as long as a GET's URL allows."""

from __future__ import annotations

from typing import Any

import pytest
from simple_salesforce.api import Salesforce

from syncswim_lib.connectors.salesforce.connector import SalesforceConnector
from syncswim_lib.sandbox.salesforce.emulator import Emulator
from tests.connectors.salesforce.conftest import connector_for
from tests.connectors.salesforce.test_salesforce_connector import _seed, batch

pytestmark = pytest.mark.integration


def _data_calls(emu: Emulator) -> list[dict[str, Any]]:
    return [r for r in emu.control.requests() if r["path"].startswith("/services/data/v")]


def test_records_by_id_cost_one_call_per_2000(
    emu: Emulator, sfc: SalesforceConnector, human: Salesforce
) -> None:
    ids = _seed(emu, 2500)
    sfc.describe("Account")
    human.Account.delete(ids[0])
    before = len(_data_calls(emu))
    # 15- and 18-character forms of one Id, a deleted record, an Id of nobody
    wanted = [*ids, ids[1][:15], "001000000000000AAA"]
    rows = sfc.fetch("Account", "Id", wanted)
    calls = _data_calls(emu)[before:]
    assert sorted(r["Id"] for r in rows) == sorted(ids[1:])
    assert {r["Seats__c"] for r in rows} == set(range(1, 2500))
    assert [(c["method"], c["path"].rsplit("/", 1)[-1]) for c in calls] == [
        ("POST", "Account"),
        ("POST", "Account"),
    ]


def test_compare_and_set_reads_1500_records_in_one_call(
    emu: Emulator, sfc: SalesforceConnector, human: Salesforce
) -> None:
    ids = _seed(emu, 1500)
    human.Account.update(ids[7], {"Name": "changed by a person"})
    updates = [
        {"__ref": f"u{i}", "Id": x, "Name": "ours", "__set": ["Name"]} for i, x in enumerate(ids)
    ]
    expected = [
        {"__ref": f"u{i}", "__check": ["Name"], "Name": f"acct {i:04d}"} for i in range(1500)
    ]
    sfc.describe("Account")
    before = len(_data_calls(emu))
    res = sfc.apply(batch("b-cas-1500", updates=updates, expected=expected))
    calls = _data_calls(emu)[before:]
    assert res.stale == ("u7",) and res.updated == 1499
    reads = [c for c in calls if c["method"] in ("GET", "POST")]
    assert len(reads) == 1, reads  # then eight collections of 200 (PATCH)
    assert len(calls) == 9


def test_a_long_lookup_by_another_field_goes_through_one_bulk_query(
    emu: Emulator, sfc: SalesforceConnector, human: Salesforce
) -> None:
    ids = _seed(emu, 6000)
    human.Account.update(ids[3], {"Tier__c": "Gold", "Active__c": True})
    codes = [f"C{i:04d}" for i in range(6000)]
    sfc.describe("Account")
    before = len(_data_calls(emu))
    rows = sfc.fetch("Account", "Code__c", [*codes, "nobody"])
    calls = _data_calls(emu)[before:]
    assert len(rows) == 6000 and {r["Code__c"] for r in rows} == set(codes)
    assert calls[0]["path"].endswith("/jobs/query")
    assert len(calls) <= 5, [c["path"] for c in calls]  # six or more GETs by SOQL
    # the same values as the SOQL path gives for a short list (CSV cells converted)
    few = codes[:5]
    by_soql = {r["Code__c"]: r for r in sfc.fetch("Account", "Code__c", few)}
    by_bulk = {r["Code__c"]: r for r in rows if r["Code__c"] in few}
    assert by_bulk == by_soql
    assert by_bulk["C0003"]["Tier__c"] == "Gold" and by_bulk["C0000"]["Tier__c"] is None


def _kind(path: str) -> str:
    """`query` (a SOQL query's first page), `more` (a page after it), else the path."""
    if path.rstrip("/") == "query":
        return "query"
    return "more" if path.startswith("query/") else path


@pytest.mark.parametrize(
    ("records", "threshold", "want"),
    [
        (0, "10", [("GET", "query")]),  # empty: the first page says so, no count
        (30, "100", [("GET", "query")]),  # one page
        (450, "1000", [("GET", "query")] + [("GET", "more")] * 2),  # SOQL pages
        # above the threshold: the first page (what the count cost before), then one job
        (450, "100", [("GET", "query"), ("POST", "jobs/query")]),
    ],
)
def test_a_snapshot_asks_no_count(
    emu: Emulator, records: int, threshold: str, want: list[tuple[str, str]]
) -> None:
    ids = _seed(emu, records) if records else []
    emu.control.set_page_size(200)
    c = connector_for(emu, bulk_threshold=threshold)
    try:
        c.describe("Account")
        before = len(_data_calls(emu))
        got = [r["Id"] for b in c.snapshot("Account", ["Id"], ["Id"], 100) for r in b.to_pylist()]
        calls = _data_calls(emu)[before:]
    finally:
        c.close()
    assert got == sorted(ids)
    soql = [str((x.get("query") or {}).get("q")) for x in calls]
    assert not [q for q in soql if "COUNT()" in q], soql
    kinds = [(x["method"], _kind(x["path"].split("/v62.0/")[-1])) for x in calls]
    assert kinds[: len(want)] == want
    if threshold == "100" and records > 100:
        assert len(calls) <= 6, kinds  # the job: create, a poll or two, its results
    else:
        assert len(calls) == len(want), kinds
