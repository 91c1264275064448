"""query / queryAll paging through nextRecordsUrl, batch sizes, locators (spec §1.4)."""

from __future__ import annotations

from typing import cast

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.api import SFType
from simple_salesforce.exceptions import SalesforceMalformedRequest

from syncswim_lib.sandbox.salesforce.emulator import Emulator

pytestmark = pytest.mark.salesforce

N = 4500


@pytest.fixture
def many(sf_emulator: Emulator) -> list[str]:
    return sf_emulator.control.seed(
        "Account", [{"Name": f"acc-{i:05d}"} for i in range(N)], publish=False
    )


def test_pages_of_2000(sf: Salesforce, many: list[str]) -> None:
    first = sf.query("SELECT Id, Name FROM Account ORDER BY Name")
    assert first["totalSize"] == N and first["done"] is False
    assert len(first["records"]) == 2000
    url = first["nextRecordsUrl"]
    assert url.startswith("/services/data/v62.0/query/01g") and url.endswith("-2000")
    second = sf.query_more(url, identifier_is_url=True)
    assert len(second["records"]) == 2000 and second["totalSize"] == N
    third = sf.query_more(second["nextRecordsUrl"], identifier_is_url=True)
    assert len(third["records"]) == 500 and third["done"] is True
    assert "nextRecordsUrl" not in third
    got = [r["Name"] for r in first["records"] + second["records"] + third["records"]]
    assert got == [f"acc-{i:05d}" for i in range(N)]
    everything = sf.query_all("SELECT Id FROM Account")
    assert everything["totalSize"] == N and len(everything["records"]) == N
    assert {r["Id"] for r in everything["records"]} == set(many)


def test_snapshot_semantics(sf: Salesforce, many: list[str]) -> None:
    first = sf.query("SELECT Id FROM Account")
    cast(SFType, sf.Account).create({"Name": "later"})
    rest = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    rest2 = sf.query_more(rest["nextRecordsUrl"], identifier_is_url=True)
    assert rest2["totalSize"] == N  # the cursor does not see the later write


def test_batch_size_header(sf: Salesforce, many: list[str]) -> None:
    res = sf.query("SELECT Id FROM Account", headers={"Sforce-Query-Options": "batchSize=500"})
    assert len(res["records"]) == 500 and res["nextRecordsUrl"].endswith("-500")
    res = sf.query("SELECT Id FROM Account", headers={"Sforce-Query-Options": "batchSize=10"})
    assert len(res["records"]) == 200  # the minimum
    res = sf.query("SELECT Id FROM Account LIMIT 300")
    assert res["done"] is True and len(res["records"]) == 300 and res["totalSize"] == 300


def test_small_page_chaos_mode(sf: Salesforce, sf_emulator: Emulator) -> None:
    sf_emulator.control.seed("Account", [{"Name": f"x{i}"} for i in range(25)])
    sf_emulator.control.set_page_size(7)
    res = sf.query_all("SELECT Id FROM Account")
    assert len(res["records"]) == 25
    assert len(sf_emulator.control.requests(path=r"/query")) == 4


def test_query_all_sees_deleted_and_continues_as_query_all(
    sf: Salesforce, sf_emulator: Emulator, many: list[str]
) -> None:
    doomed = many[:10]
    res = sf.restful("composite/sobjects", method="DELETE", params={"ids": ",".join(doomed)})
    assert all(r["success"] for r in res)
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == N - 10
    first = sf.query("SELECT Id, IsDeleted FROM Account", include_deleted=True)
    assert first["totalSize"] == N
    assert "/query/" in first["nextRecordsUrl"]  # the path says query, the cursor is queryAll
    rows = sf.query_all("SELECT Id, IsDeleted FROM Account", include_deleted=True)["records"]
    assert {r["Id"] for r in rows if r["IsDeleted"]} == set(doomed)


def test_invalid_and_expired_locator(
    sf: Salesforce, sf_emulator: Emulator, many: list[str]
) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query_more("01g5e0000000zzzAAA-2000")
    assert exc.value.content[0]["errorCode"] == "INVALID_QUERY_LOCATOR"
    first = sf.query("SELECT Id FROM Account")
    sf_emulator.control.clock_advance(16 * 60)
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert exc.value.content[0]["errorCode"] == "INVALID_QUERY_LOCATOR"
