"""The API budget against the emulator: Sforce-Limit-Info read from every answer (Bulk
API 2.0 ones too), calls counted, writing stopped once the org's count reaches the
endpoint's api_budget_share of the daily allowance, and the org's REQUEST_LIMIT_EXCEEDED
the same error."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from syncswim_lib.connectors.base import ApplyBatch
from syncswim_lib.connectors.salesforce.client import ApiBudgetExhausted
from syncswim_lib.errors import RetriableError
from syncswim_lib.sandbox.salesforce.emulator import Emulator
from tests.connectors.salesforce.conftest import connector_for

pytestmark = pytest.mark.integration

STR = pa.string()


def _inserts(batch_id: str, n: int, first: int = 0) -> ApplyBatch:
    rows: list[dict[str, Any]] = [
        {"__ref": f"r{i}", "Name": f"a{i}", "Code__c": f"B{i}"} for i in range(first, first + n)
    ]
    schema = pa.schema([("__ref", STR), ("Name", STR), ("Code__c", STR)])
    return ApplyBatch(
        batch_id=batch_id,
        origin="app_crm",
        table="Account",
        key_columns=("Id",),
        inserts=pa.Table.from_pylist(rows, schema=schema),
        updates=pa.Table.from_pylist([], schema=pa.schema([("__ref", STR), ("Id", STR)])),
        deletes=pa.Table.from_pylist([], schema=pa.schema([("__ref", STR), ("Id", STR)])),
        insert_match=("Code__c",),
    )


def _data_calls(emu: Emulator) -> int:
    return sum(1 for r in emu.control.requests() if r["path"].startswith("/services/data/v"))


def test_every_call_is_counted_and_its_limit_info_read(emu: Emulator) -> None:
    emu.control.set_usage(used=100, limit=10_000)
    c = connector_for(emu, bulk_write_threshold="5")
    try:
        before = _data_calls(emu)
        c.apply(_inserts("b1", 3))  # collections
        c.apply(_inserts("b2", 8, first=3))  # a Bulk API 2.0 job
        got = c.usage()
    finally:
        c.close()
    assert got.calls == _data_calls(emu) - before and got.calls > 5
    state = emu.control.state()["usage"]
    # the last answer was a job's result file: the Bulk call's header was read as well
    assert (got.used, got.limit) == (state["used"], state["limit"]) == (100 + got.calls, 10_000)


def test_writing_stops_at_the_budget_share_and_goes_on_below_it(emu: Emulator) -> None:
    c = connector_for(emu, api_budget_share="0.5")
    try:
        emu.control.set_usage(used=4_990, limit=10_000)
        c.describe("Account")  # one call: the org now says 4991/10000
        assert c.apply(_inserts("b1", 2)).inserted == 2  # the write call makes it 4992
        emu.control.set_usage(used=5_000, limit=10_000)
        c.describe("Contact")  # 5001: past half the allowance
        sent = _data_calls(emu)
        with pytest.raises(ApiBudgetExhausted, match=r"5001/10000.*api_budget_share: 0.5") as e:
            c.apply(_inserts("b2", 2, first=2))
        assert isinstance(e.value, RetriableError) and (e.value.used, e.value.limit) == (
            5001,
            10_000,
        )
        assert _data_calls(emu) == sent  # nothing of the batch reached the org
        assert emu.client().query("SELECT COUNT() FROM Account")["totalSize"] == 2
        # the org's count falls back (a new day, other integrations quiet): writing resumes
        emu.control.set_usage(used=10, limit=10_000)
        c.fetch("Account", "Code__c", ["B0"])  # a read: the new count is seen
        assert c.apply(_inserts("b2", 2, first=2)).inserted == 2
    finally:
        c.close()


def test_the_orgs_request_limit_exceeded_is_the_same_error(emu: Emulator) -> None:
    c = connector_for(emu)
    try:
        emu.control.set_usage(used=0, limit=3)
        with pytest.raises(ApiBudgetExhausted, match="API request limit is exceeded"):
            for n in range(5):
                c.apply(_inserts(f"b{n}", 1, first=n))
    finally:
        c.close()
