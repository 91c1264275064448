"""sObject Collections: create/update/upsert/delete/retrieve, partial failures (spec §1.6)."""

from __future__ import annotations

from typing import Any

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from syncswim_lib.sandbox.salesforce.emulator import Emulator

pytestmark = pytest.mark.salesforce
ROLLED_BACK = "ALL_OR_NONE_OPERATION_ROLLED_BACK"


def acc(**fields: Any) -> dict[str, Any]:
    return {"attributes": {"type": "Account"}, **fields}


def post(sf: Salesforce, records: list[dict[str, Any]], all_or_none: bool = False) -> Any:
    return sf.restful(
        "composite/sobjects", method="POST", json={"allOrNone": all_or_none, "records": records}
    )


def test_create_mixed_types_in_order_with_partial_failure(
    sf: Salesforce, sf_emulator: Emulator
) -> None:
    before = sf_emulator.org.commit_number
    res = post(sf, [acc(Name="A"), acc(), {"attributes": {"type": "Contact"}, "LastName": "C"}])
    assert res[0]["success"] is True and res[0]["id"].startswith("001")
    assert res[0]["errors"] == []
    assert res[1] == {
        "success": False,
        "errors": [
            {
                "statusCode": "REQUIRED_FIELD_MISSING",
                "message": "Required fields are missing: [Name]",
                "fields": ["Name"],
            }
        ],
    }
    assert res[2]["success"] is True and res[2]["id"].startswith("003")
    assert sf_emulator.org.commit_number == before + 1  # one transaction
    events = [
        e
        for e in sf_emulator.bus.all_events()
        if e["data"]["payload"]["ChangeEventHeader"]["commitNumber"] == before + 1
    ]
    keys = {e["data"]["payload"]["ChangeEventHeader"]["transactionKey"] for e in events}
    assert len(events) == 2 and len(keys) == 1


def test_all_or_none_rolls_back(sf: Salesforce, sf_emulator: Emulator) -> None:
    events_before = len(sf_emulator.bus.all_events())
    res = post(sf, [acc(Name="A"), acc(Name="B", Foo__c=1), acc(Name="C")], all_or_none=True)
    assert [r["success"] for r in res] == [False, False, False]
    assert res[0]["errors"][0]["statusCode"] == ROLLED_BACK
    assert res[1]["errors"][0]["statusCode"] == "INVALID_FIELD"
    assert res[2]["errors"][0]["statusCode"] == ROLLED_BACK
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0
    assert len(sf_emulator.bus.all_events()) == events_before


def test_update_upsert_delete_retrieve(sf: Salesforce) -> None:
    ids = [r["id"] for r in post(sf, [acc(Name=f"n{i}", ExtId__c=f"E{i}") for i in range(3)])]
    res = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={"records": [acc(id=ids[0], Name="u0"), acc(Name="no id"), acc(id=ids[1], Name=None)]},
    )
    assert res[0] == {"id": ids[0], "success": True, "errors": []}
    assert res[1]["errors"][0]["statusCode"] == "MISSING_ARGUMENT"
    assert res[2]["id"] == ids[1] and res[2]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    up = sf.restful(
        "composite/sobjects/Account/ExtId__c",
        method="PATCH",
        json={
            "allOrNone": False,
            "records": [acc(ExtId__c="E0", Name="again"), acc(ExtId__c="E9", Name="new")],
        },
    )
    assert up[0] == {"id": ids[0], "success": True, "errors": [], "created": False}
    assert up[1]["created"] is True and up[1]["success"] is True
    got = sf.restful(
        "composite/sobjects/Account",
        params={"ids": f"{ids[0]},{ids[1]},0015e0000009999AAA", "fields": "Id,Name"},
    )
    assert got[0]["Name"] == "again" and got[1]["Name"] == "n1" and got[2] is None
    dele = sf.restful(
        "composite/sobjects",
        method="DELETE",
        params={"ids": f"{ids[2]},0015e0000009999AAA", "allOrNone": "false"},
    )
    assert dele[0] == {"id": ids[2], "success": True, "errors": []}
    assert dele[1]["id"] == "0015e0000009999AAA" and dele[1]["success"] is False
    assert dele[1]["errors"][0]["statusCode"] == "NOT_FOUND"


def test_delete_all_or_none(sf: Salesforce) -> None:
    ids = [r["id"] for r in post(sf, [acc(Name="a"), acc(Name="b")])]
    res = sf.restful(
        "composite/sobjects",
        method="DELETE",
        params={"ids": f"{ids[0]},{ids[0]}", "allOrNone": "true"},
    )
    assert res[0]["errors"][0]["statusCode"] == ROLLED_BACK
    assert res[1]["errors"][0]["statusCode"] == "ENTITY_IS_DELETED"
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 2


def test_limits_and_malformed(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        post(sf, [acc(Name=str(i)) for i in range(201)])
    assert exc.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    res = post(sf, [acc(Name=str(i)) for i in range(200)])
    assert len(res) == 200 and all(r["success"] for r in res)
    with pytest.raises(SalesforceMalformedRequest) as exc:
        post(sf, [{"Name": "no type"}])
    assert exc.value.content[0]["errorCode"] == "INVALID_TYPE"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.restful("composite/sobjects", method="POST", json={"records": "nope"})
    assert exc.value.content[0]["errorCode"] == "JSON_PARSER_ERROR"
