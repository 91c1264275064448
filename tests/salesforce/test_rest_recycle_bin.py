"""Soft delete, ENTITY_IS_DELETED, queryAll, undelete and cascade deletes with events."""

from __future__ import annotations

from typing import Any, cast

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.api import SFType
from simple_salesforce.exceptions import SalesforceResourceNotFound

from syncswim_lib.sandbox.salesforce.emulator import Emulator

pytestmark = pytest.mark.salesforce


def t(sf: Salesforce, name: str) -> SFType:
    return cast(SFType, getattr(sf, name))


def headers(emu: Emulator) -> list[dict[str, Any]]:
    return [e["data"]["payload"]["ChangeEventHeader"] for e in emu.bus.all_events()]


@pytest.fixture
def family(sf: Salesforce) -> dict[str, str]:
    acc = t(sf, "Account").create({"Name": "Parent"})["id"]
    return {
        "acc": acc,
        "c1": t(sf, "Contact").create({"LastName": "One", "AccountId": acc})["id"],
        "c2": t(sf, "Contact").create({"LastName": "Two", "AccountId": acc})["id"],
        "opp": t(sf, "Opportunity").create(
            {
                "Name": "Deal",
                "StageName": "Prospecting",
                "CloseDate": "2025-01-31",
                "AccountId": acc,
            }
        )["id"],
        "emp": t(sf, "Employee__c").create({"Name": "E", "Account__c": acc})["id"],
        "other": t(sf, "Contact").create({"LastName": "Elsewhere"})["id"],
    }


def test_deleted_record_errors(sf: Salesforce, family: dict[str, str]) -> None:
    c = t(sf, "Contact")
    assert c.delete(family["other"]) == 204
    for call in (
        lambda: c.get(family["other"]),
        lambda: c.update(family["other"], {"Title": "x"}),
        lambda: c.delete(family["other"]),
    ):
        with pytest.raises(SalesforceResourceNotFound) as exc:
            call()
        assert exc.value.content == [
            {"message": "entity is deleted", "errorCode": "ENTITY_IS_DELETED", "fields": []}
        ]


def test_cascade_delete_emits_events_and_undelete_restores(
    sf: Salesforce, sf_emulator: Emulator, family: dict[str, str]
) -> None:
    before = len(sf_emulator.bus.all_events())
    t(sf, "Account").delete(family["acc"])
    new = headers(sf_emulator)[before:]
    deleted = {rid for h in new if h["changeType"] == "DELETE" for rid in h["recordIds"]}
    assert deleted == {family[k] for k in ("acc", "c1", "c2", "opp", "emp")}
    assert len({h["transactionKey"] for h in new}) == 1
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 1
    gone = sf.query_all(
        "SELECT Id, IsDeleted FROM Contact WHERE IsDeleted = true", include_deleted=True
    )["records"]
    assert {r["Id"] for r in gone} == {family["c1"], family["c2"]}
    before = len(sf_emulator.bus.all_events())
    sf_emulator.control.undelete(family["acc"])
    restored = {
        rid
        for h in headers(sf_emulator)[before:]
        if h["changeType"] == "UNDELETE"
        for rid in h["recordIds"]
    }
    assert restored == deleted
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 3
    assert t(sf, "Contact").get(family["c1"])["IsDeleted"] is False


def test_child_deleted_alone_is_not_restored_with_parent(
    sf: Salesforce, sf_emulator: Emulator, family: dict[str, str]
) -> None:
    t(sf, "Contact").delete(family["c1"])
    t(sf, "Account").delete(family["acc"])
    sf_emulator.control.undelete(family["acc"])
    with pytest.raises(SalesforceResourceNotFound):
        t(sf, "Contact").get(family["c1"])
    assert t(sf, "Contact").get(family["c2"])["AccountId"] == family["acc"]


def test_purge_is_hard_and_silent(
    sf: Salesforce, sf_emulator: Emulator, family: dict[str, str]
) -> None:
    t(sf, "Contact").delete(family["other"])
    before = len(sf_emulator.bus.all_events())
    assert sf_emulator.control.purge([family["other"]]) == 1
    assert len(sf_emulator.bus.all_events()) == before
    with pytest.raises(SalesforceResourceNotFound) as exc:
        t(sf, "Contact").get(family["other"])
    assert exc.value.content[0]["errorCode"] == "NOT_FOUND"
    rows = sf.query_all("SELECT Id FROM Contact", include_deleted=True)["records"]
    assert family["other"] not in {r["Id"] for r in rows}


def test_parent_gone_from_query_after_delete(sf: Salesforce, family: dict[str, str]) -> None:
    t(sf, "Account").delete(family["acc"])
    rows = sf.query_all(
        f"SELECT Id, Account.Name FROM Contact WHERE Id = '{family['c1']}'", include_deleted=True
    )["records"]
    assert rows[0]["Account"]["Name"] == "Parent"  # queryAll still sees the deleted parent
