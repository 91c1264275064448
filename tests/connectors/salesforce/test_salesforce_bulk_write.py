"""Writes above bulk_write_threshold through Bulk API 2.0 ingest jobs, against the
emulator through the unmodified simple-salesforce client: upserts on the external id,
updates of the merge's fields only, deletes, per-record errors and gone records mapped
like collections map them, exact numbers in CSV, the origin tag on every job call and
in the change events, and how many calls a job costs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from syncswim_lib.connectors.base import ApplyBatch
from syncswim_lib.connectors.salesforce.connector import SalesforceConnector
from syncswim_lib.envelope import Op
from syncswim_lib.sandbox.salesforce.emulator import Emulator
from tests.connectors.salesforce.conftest import connector_for

pytestmark = pytest.mark.integration

SYNC = "app_crm"
STR = pa.string()
TYPES: dict[str, pa.DataType] = {
    "__set": pa.list_(STR),
    "Revenue__c": pa.decimal128(18, 2),
    "Seats__c": pa.int64(),
}


def _table(rows: list[dict[str, Any]], names: list[str]) -> pa.Table:
    schema = pa.schema([("__ref", STR)] + [(n, TYPES.get(n, STR)) for n in names])
    return pa.Table.from_pylist(rows, schema=schema)


def _batch(
    batch_id: str,
    inserts: list[dict[str, Any]] | None = None,
    updates: list[dict[str, Any]] | None = None,
    deletes: list[dict[str, Any]] | None = None,
    update_cols: tuple[str, ...] = ("Id", "__set", "Name", "Tier__c", "Revenue__c"),
) -> ApplyBatch:
    return ApplyBatch(
        batch_id=batch_id,
        origin=SYNC,
        table="Account",
        key_columns=("Id",),
        inserts=_table(inserts or [], ["Name", "Code__c", "Tier__c", "Revenue__c", "Seats__c"]),
        updates=_table(updates or [], list(update_cols)),
        deletes=_table(deletes or [], ["Id"]),
        insert_match=("Code__c",),
    )


def _calls(emu: Emulator) -> list[dict[str, Any]]:
    return [r for r in emu.control.requests() if r["path"].startswith("/services/data/")]


@pytest.fixture
def bulk(emu: Emulator) -> Any:
    c = connector_for(emu, bulk_write_threshold="5")
    yield c
    c.close()


def _accounts(emu: Emulator) -> dict[str, dict[str, Any]]:
    """The org's Accounts by code, numbers exact (read with a connector of its own)."""
    c = connector_for(emu)
    try:
        names = ["Id", "Name", "Code__c", "Tier__c", "Revenue__c", "Seats__c"]
        return {
            r["Code__c"]: r for b in c.snapshot("Account", names, [], 1000) for r in b.to_pylist()
        }
    finally:
        c.close()


def test_upserts_updates_and_deletes_above_the_threshold_go_through_bulk_jobs(
    emu: Emulator, bulk: SalesforceConnector
) -> None:
    bulk.setup(SYNC, ["Account"])
    start = bulk.current_position(SYNC)
    old = emu.control.seed("Account", [{"Name": "was here", "Code__c": "C0003"}])[0]
    rows = [
        {
            "__ref": f"r{i}",
            "Name": f"acct {i}",
            "Code__c": f"C{i:04d}",
            "Tier__c": "Gold" if i % 2 else None,
            "Revenue__c": Decimal("9876543210987654.32") + i,
            "Seats__c": i,
        }
        for i in range(12)
    ]
    rows[7]["Tier__c"] = "Bronze"  # not a value of the restricted picklist
    emu.control.requests()  # (the log is read, not cleared: counted from here)
    before = len(_calls(emu))
    made = bulk.apply(_batch("b-ins", inserts=rows))
    job_calls = _calls(emu)[before:]
    assert {c["path"].split("/jobs/")[0].rsplit("/", 1)[-1] for c in job_calls} == {"v62.0"}
    assert all("/jobs/ingest" in c["path"] for c in job_calls), [c["path"] for c in job_calls]
    # create, upload, close, a few polls, the success and failure files
    assert len(job_calls) <= 9, [(c["method"], c["path"]) for c in job_calls]
    assert all(c["headers"].get("sforce-call-options") == f"client={SYNC}" for c in job_calls)
    assert set(made.rejected) == {"r7"}
    assert made.rejected["r7"].startswith("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST: ")
    assert "(fields: Tier__c)" in made.rejected["r7"]
    assert made.inserted == 10 and made.updated == 1  # C0003 existed: matched by its code
    assert made.keys["r3"] == {"Id": old}
    org = _accounts(emu)
    assert {ref: k["Id"] for ref, k in made.keys.items()} == {
        f"r{i}": org[f"C{i:04d}"]["Id"] for i in range(12) if i != 7
    }
    assert org["C0005"]["Revenue__c"] == Decimal("9876543210987659.32")  # exact, via CSV
    assert org["C0004"]["Tier__c"] is None and org["C0005"]["Tier__c"] == "Gold"

    ids = {ref: k["Id"] for ref, k in made.keys.items()}
    ups = [
        # only the merge's fields: the Name stays, Tier__c is cleared, Revenue__c set
        {
            "__ref": f"u{i}",
            "Id": ids[f"r{i}"],
            "__set": ["Tier__c", "Revenue__c"],
            "Name": "not written",
            "Tier__c": None,
            "Revenue__c": Decimal("0.01"),
        }
        for i in (1, 3, 5, 9, 11)
    ]
    gone = emu.control.seed("Account", [{"Name": "gone", "Code__c": "G"}])[0]
    emu.client().Account.delete(gone)
    ups.append({"__ref": "ug", "Id": gone, "__set": ["Name"], "Name": "x"})
    changed = bulk.apply(_batch("b-upd", updates=ups))
    assert changed.updated == 5 and changed.missing == ("ug",) and not changed.rejected
    org = _accounts(emu)
    assert org["C0003"]["Name"] == "acct 3" and org["C0003"]["Tier__c"] is None
    assert org["C0009"]["Revenue__c"] == Decimal("0.01")

    dels = [{"__ref": f"d{i}", "Id": ids[f"r{i}"]} for i in (0, 2, 4, 6, 8)]
    dels.append({"__ref": "dg", "Id": gone})
    removed = bulk.apply(_batch("b-del", deletes=dels))
    assert removed.deleted == 5 and removed.missing == ("dg",)
    assert set(_accounts(emu)) == {f"C{i:04d}" for i in (1, 3, 5, 9, 10, 11)}

    # the job's writes are our own: the change events carry the client id
    got = bulk.capture(SYNC, ["Account"], start, 1000, skip_origin=SYNC)
    mine = [c for c in got.changes if c.key["Id"] not in (gone,) and c.op != Op.INSERT]
    assert mine == [] and got.echoes["Account"] >= 11 + 5 + 5
    events = [e for e in emu.control.events() if "bulkapi" in str(e)]
    assert events and all(f";client={SYNC}" in str(e) for e in events)


def test_below_the_threshold_collections_are_used(emu: Emulator, bulk: SalesforceConnector) -> None:
    rows = [{"__ref": f"r{i}", "Name": f"a{i}", "Code__c": f"S{i}"} for i in range(5)]
    before = len(_calls(emu))
    assert bulk.apply(_batch("b-small", inserts=rows)).inserted == 5
    paths = [c["path"] for c in _calls(emu)[before:]]
    assert paths and not any("/jobs/" in p for p in paths)


def test_a_row_a_csv_cell_cannot_carry_goes_through_collections(
    emu: Emulator, bulk: SalesforceConnector
) -> None:
    rows = [{"__ref": f"r{i}", "Name": f"a{i}", "Code__c": f"T{i}"} for i in range(8)]
    rows[2]["Name"] = "two\r\nlines"
    rows[4]["Name"] = "#N/A"
    made = bulk.apply(_batch("b-mixed", inserts=rows))
    assert made.inserted == 8 and not made.rejected
    org = _accounts(emu)
    assert org["T2"]["Name"] == "two\r\nlines" and org["T4"]["Name"] == "#N/A"
    assert any("/jobs/ingest" in c["path"] for c in _calls(emu))


def test_a_job_retried_after_a_lost_answer_writes_once(
    emu: Emulator, bulk: SalesforceConnector
) -> None:
    """The results file's answer is lost once: the pipeline's retry of the batch finds the
    job's outcome remembered, or (a new process) upserts by external id again."""
    rows = [{"__ref": f"r{i}", "Name": f"a{i}", "Code__c": f"L{i}"} for i in range(8)]
    emu.control.add_fault("error", method="GET", path="successfulResults", times=1, status=503)
    from syncswim_lib.errors import RetriableError

    with pytest.raises(RetriableError):
        bulk.apply(_batch("b-lost", inserts=rows))
    again = bulk.apply(_batch("b-lost", inserts=rows))
    assert again.inserted + again.updated == 8 and len(_accounts(emu)) == 8
    fresh = connector_for(emu, bulk_write_threshold="5")
    try:
        replay = fresh.apply(_batch("b-lost", inserts=rows))
    finally:
        fresh.close()
    assert replay.updated == 8 and replay.inserted == 0 and len(_accounts(emu)) == 8


def test_a_job_is_first_polled_when_a_job_of_its_size_is_likely_done(
    emu: Emulator, bulk: SalesforceConnector
) -> None:
    """The first state poll waits for about what the job's size takes (a poll is an API
    call, waiting is not); then polls follow the rate seen. No failed-results file is
    asked for when the job reports no failure."""
    from syncswim_lib.connectors.salesforce.bulk_write import (
        FIRST_POLL_S,
        MAX_POLL_S,
        RECORDS_PER_S,
        first_poll,
    )

    assert first_poll(1) == FIRST_POLL_S and first_poll(10**9) == MAX_POLL_S
    assert first_poll(5000) == pytest.approx(5000 / RECORDS_PER_S)
    n = 3000
    rows = [{"__ref": f"r{i}", "Name": f"a{i}", "Code__c": f"P{i}"} for i in range(n)]
    before = len(_calls(emu))
    made = bulk.apply(_batch("b-polls", inserts=rows))
    calls = [c for c in _calls(emu)[before:] if "/jobs/ingest" in c["path"]]
    assert made.inserted == n
    kinds = [(c["method"], c["path"].rsplit("/", 1)[-1]) for c in calls]
    close = next(c["time"] for c in calls if c["method"] == "PATCH")
    polls = [c for c in calls if c["method"] == "GET" and "Results" not in c["path"]]
    assert polls and polls[0]["time"] - close >= first_poll(n) * 0.95, kinds
    assert not [k for k in kinds if k[1] in ("failedResults", "unprocessedrecords")], kinds
    assert len(calls) <= 4 + 3, kinds  # create, upload, close, results; a few polls
