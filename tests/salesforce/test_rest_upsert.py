"""Upsert and get by external id: 201 / 200 / 204 (≤45.0) / 300 / 404 (spec §1.3)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.api import SFType
from simple_salesforce.exceptions import (
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceResourceNotFound,
)

from syncswim_lib.sandbox.salesforce.emulator import Emulator
from tests.salesforce.conftest import make_client

pytestmark = pytest.mark.salesforce


def accounts(sf: Salesforce) -> SFType:
    return cast(SFType, sf.Account)


def test_upsert_creates_then_updates(sf: Salesforce) -> None:
    resp = accounts(sf).upsert("ExtId__c/A-1", {"Name": "Acme"}, raw_response=True)
    assert resp.status_code == 201
    body = resp.json()
    assert body == {"id": body["id"], "success": True, "errors": [], "created": True}
    again = accounts(sf).upsert("ExtId__c/a-1", {"Name": "Acme 2"}, raw_response=True)
    assert again.status_code == 200  # case-insensitive match, API >= 46.0
    assert again.json() == {"id": body["id"], "success": True, "errors": [], "created": False}
    rec = accounts(sf).get(body["id"])
    assert rec["Name"] == "Acme 2" and rec["ExtId__c"] == "A-1"
    assert accounts(sf).upsert("ExtId__c/A-1", {"Name": "Acme 3"}) == 200


def test_upsert_on_old_api_returns_204(sf_emulator: Emulator) -> None:
    old = make_client(sf_emulator, version="45.0")
    created = accounts(old).upsert("ExtId__c/B-1", {"Name": "B"}, raw_response=True)
    assert created.status_code == 201 and "created" not in created.json()
    assert accounts(old).upsert("ExtId__c/B-1", {"Name": "B2"}) == 204


def test_upsert_multiple_matches_is_300_with_urls(sf: Salesforce) -> None:
    a = accounts(sf).create({"Name": "x", "Region__c": "EU"})["id"]
    b = accounts(sf).create({"Name": "y", "Region__c": "EU"})["id"]
    with pytest.raises(SalesforceMoreThanOneRecord) as exc:
        accounts(sf).upsert("Region__c/EU", {"Name": "z"})
    assert exc.value.status == 300
    assert sorted(exc.value.content) == sorted(
        [f"/services/data/v62.0/sobjects/Account/{a}", f"/services/data/v62.0/sobjects/Account/{b}"]
    )
    with pytest.raises(SalesforceMoreThanOneRecord):
        accounts(sf).get_by_custom_id("Region__c", "EU")


def test_upsert_bad_field_is_404(sf: Salesforce) -> None:
    for field in ("Nope__c", "Name"):  # missing, and not an external id
        with pytest.raises(SalesforceResourceNotFound) as exc:
            accounts(sf).upsert(f"{field}/1", {"Name": "z"})
        assert exc.value.content[0]["errorCode"] == "NOT_FOUND"


def test_upsert_update_only_and_body_rules(sf: Salesforce, sf_emulator: Emulator) -> None:
    base = f"{sf_emulator.url}/services/data/v62.0/sobjects/Account/ExtId__c/"
    with pytest.raises(SalesforceResourceNotFound):
        sf._call_salesforce("PATCH", base + "U-1?updateOnly=true", data='{"Name": "n"}')
    assert sf_emulator.org.count("Account") == 0
    # repeating the key in the body with the same value is tolerated, a different one is not
    assert accounts(sf).upsert("ExtId__c/U-1", {"Name": "n", "ExtId__c": "U-1"}) == 201
    with pytest.raises(SalesforceMalformedRequest) as exc:
        accounts(sf).upsert("ExtId__c/U-1", {"Name": "n", "ExtId__c": "U-2"})
    assert exc.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_get_by_external_id_and_encoding(sf: Salesforce) -> None:
    rid = accounts(sf).create({"Name": "Slash", "ExtId__c": "A/B 1"})["id"]
    assert accounts(sf).get_by_custom_id("ExtId__c", "A/B 1")["Id"] == rid  # quote_plus
    with pytest.raises(SalesforceResourceNotFound):
        accounts(sf).get_by_custom_id("ExtId__c", "missing")


def test_create_by_id_field_and_upsert_by_id(sf: Salesforce, sf_emulator: Emulator) -> None:
    resp = sf._call_salesforce(
        "POST",
        f"{sf_emulator.url}/services/data/v62.0/sobjects/Account/Id",
        data='{"Name": "via Id"}',
    )
    assert resp.status_code == 201 and resp.json()["created"] is True
    rid = resp.json()["id"]
    assert accounts(sf).upsert(f"Id/{rid}", {"Name": "renamed"}) == 200
    assert accounts(sf).get(rid)["Name"] == "renamed"


def test_relationship_by_parent_external_id(sf: Salesforce) -> None:
    acc = accounts(sf).create({"Name": "Parent", "ExtId__c": "P-1"})["id"]
    contact = cast(SFType, sf.Contact).create({"LastName": "Kid", "Account": {"ExtId__c": "P-1"}})[
        "id"
    ]
    assert cast(SFType, sf.Contact).get(contact)["AccountId"] == acc
    with pytest.raises(SalesforceMalformedRequest) as exc:
        cast(SFType, sf.Contact).create({"LastName": "Kid", "Account": {"ExtId__c": "none"}})
    assert exc.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_contact_ext_id_case_sensitive(sf: Salesforce) -> None:
    contacts = cast(SFType, sf.Contact)
    assert contacts.upsert("App_Id__c/abc", {"LastName": "a"}) == 201
    assert contacts.upsert("App_Id__c/ABC", {"LastName": "b"}) == 201
    assert contacts.upsert("App_Id__c/abc", {"LastName": "c"}) == 200


def upsert_status(sf: Salesforce, path: str, body: dict[str, Any]) -> int:
    return cast(int, accounts(sf).upsert(path, body))


def test_non_unique_ext_id_matches_case_sensitively(sf: Salesforce) -> None:
    # Only a Unique, case-insensitive external id matches "ABC" with "abc"; Region__c is an
    # external id without Unique.
    fields = accounts(sf).describe()["fields"]
    region = next(f for f in fields if f["name"] == "Region__c")
    assert (region["externalId"], region["unique"]) == (True, False)
    eu = accounts(sf).create({"Name": "upper", "Region__c": "EU"})["id"]
    with pytest.raises(SalesforceResourceNotFound):
        accounts(sf).get_by_custom_id("Region__c", "eu")
    created = accounts(sf).upsert("Region__c/eu", {"Name": "lower"}, raw_response=True)
    assert created.status_code == 201
    lower = created.json()["id"]
    assert lower != eu
    assert accounts(sf).upsert("Region__c/EU", {"Name": "upper 2"}) == 200
    assert accounts(sf).get(eu)["Name"] == "upper 2"
    assert accounts(sf).get(lower)["Name"] == "lower"
    contact = cast(SFType, sf.Contact).create({"LastName": "k", "Account": {"Region__c": "eu"}})
    assert cast(SFType, sf.Contact).get(contact["id"])["AccountId"] == lower
