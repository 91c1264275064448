"""sObject CRUD, record shape, system fields, describe (spec §1.1, 1.2, 1.5, 3)."""

from __future__ import annotations

from typing import Any, cast

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.api import SFType
from simple_salesforce.exceptions import (
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)

from syncswim_lib.sandbox.salesforce.emulator import Emulator

pytestmark = pytest.mark.salesforce


def obj(sf: Salesforce, name: str) -> SFType:
    return cast(SFType, getattr(sf, name))


def error_of(exc: Any) -> dict[str, Any]:
    content = exc.value.content
    assert isinstance(content, list), "errors must be a JSON array"
    return cast(dict[str, Any], content[0])


def test_create_get_update_delete(sf: Salesforce, sf_emulator: Emulator) -> None:
    accounts = obj(sf, "Account")
    created = accounts.create({"Name": "Acme", "BillingCity": "Paris", "NumberOfEmployees": 5})
    assert dict(created) == {"id": created["id"], "success": True, "errors": []}
    rid = created["id"]
    assert len(rid) == 18 and rid.startswith("001")
    rec = accounts.get(rid)
    assert rec["attributes"] == {
        "type": "Account",
        "url": f"/services/data/v62.0/sobjects/Account/{rid}",
    }
    assert rec["Id"] == rid and rec["Name"] == "Acme" and rec["IsDeleted"] is False
    assert rec["Phone"] is None  # all fields, nulls included
    assert rec["BillingAddress"]["city"] == "Paris"
    integration = sf_emulator.users["integration"].user_id
    assert rec["OwnerId"] == rec["CreatedById"] == rec["LastModifiedById"] == integration
    assert rec["CreatedDate"].endswith(".000+0000")
    assert accounts.get(rid[:15])["Id"] == rid  # 15-char ids are accepted
    assert accounts.update(rid, {"Phone": "123", "NumberOfEmployees": None}) == 204
    rec = accounts.get(rid)
    assert rec["Phone"] == "123" and rec["NumberOfEmployees"] is None
    assert dict(accounts.get(rid, params={"fields": "Name,Phone"})) == {
        "attributes": rec["attributes"],
        "Name": "Acme",
        "Phone": "123",
    }
    assert accounts.delete(rid) == 204


def test_system_fields_follow_org_clock_and_user(
    sf: Salesforce, sf_human: Salesforce, sf_emulator: Emulator
) -> None:
    from datetime import UTC, datetime

    sf_emulator.control.clock_set(datetime(2024, 3, 1, 12, 0, 0, 750000, UTC), frozen=True)
    rid = obj(sf, "Account").create({"Name": "Clocked"})["id"]
    sf_emulator.control.clock_advance(3600)
    obj(sf_human, "Account").update(rid, {"Name": "By a human"})
    rec = obj(sf, "Account").get(rid)
    assert rec["CreatedDate"] == "2024-03-01T12:00:00.000+0000"
    assert rec["LastModifiedDate"] == rec["SystemModstamp"] == "2024-03-01T13:00:00.000+0000"
    assert rec["CreatedById"] == sf_emulator.users["integration"].user_id
    assert rec["LastModifiedById"] == sf_emulator.users["human"].user_id


def test_value_typing_round_trip(sf: Salesforce) -> None:
    emp = obj(sf, "Employee__c")
    rid = emp.create(
        {
            "Name": "E",
            "Salary__c": 1000,
            "Start__c": "2024-02-29",
            "Active__c": True,
            "Skills__c": "Python;SQL",
        }
    )["id"]
    assert rid.startswith("a")
    rec = emp.get(rid)
    assert rec["Salary__c"] == 1000.0 and rec["Start__c"] == "2024-02-29"
    assert rec["Active__c"] is True and rec["Skills__c"] == "Python;SQL"
    acc = obj(sf, "Account").create({"Name": "T", "Description": ""})["id"]
    assert obj(sf, "Account").get(acc)["Description"] is None  # empty text is stored as null


@pytest.mark.parametrize(
    ("body", "code", "fields"),
    [
        ({}, "REQUIRED_FIELD_MISSING", ["Name"]),
        ({"Name": "x", "Foo__c": 1}, "INVALID_FIELD", []),
        (
            {"Name": "x", "CreatedDate": "2020-01-01T00:00:00Z"},
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            ["CreatedDate"],
        ),
        ({"Name": "x", "Id": "001000000000001AAA"}, "INVALID_FIELD_FOR_INSERT_UPDATE", ["Id"]),
        ({"Name": "x", "NumberOfEmployees": "many"}, "JSON_PARSER_ERROR", []),
        ({"Name": "x" * 256}, "STRING_TOO_LONG", ["Name"]),
        (
            {"Name": "x", "Tier__c": "Bronze"},
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            ["Tier__c"],
        ),
        ({"Name": "x", "ParentId": "nope"}, "MALFORMED_ID", ["ParentId"]),
        (
            {"Name": "x", "ParentId": "0035e0000000999AAA"},
            "FIELD_INTEGRITY_EXCEPTION",
            ["ParentId"],
        ),
        (
            {"Name": "x", "ParentId": "0015e0000009999AAA"},
            "INVALID_CROSS_REFERENCE_KEY",
            ["ParentId"],
        ),
    ],
)
def test_create_errors(sf: Salesforce, body: dict[str, Any], code: str, fields: list[str]) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        obj(sf, "Account").create(body)
    err = error_of(exc)
    assert exc.value.status == 400
    assert err["errorCode"] == code
    assert err.get("fields", []) == fields


def test_duplicate_value(sf: Salesforce) -> None:
    accounts = obj(sf, "Account")
    first = accounts.create({"Name": "A", "ExtId__c": "K-1"})["id"]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        accounts.create({"Name": "B", "ExtId__c": "k-1"})  # case-insensitive unique
    err = error_of(exc)
    assert err["errorCode"] == "DUPLICATE_VALUE"
    assert err["message"] == (
        f"duplicate value found: ExtId__c duplicates value on record with id: {first}"
    )


def test_update_and_read_errors(sf: Salesforce) -> None:
    accounts = obj(sf, "Account")
    rid = accounts.create({"Name": "A"})["id"]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        accounts.update(rid, {"Name": None})
    assert error_of(exc)["errorCode"] == "REQUIRED_FIELD_MISSING"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        accounts.update(rid, {"LastModifiedDate": "2020-01-01T00:00:00Z"})
    assert error_of(exc)["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    with pytest.raises(SalesforceResourceNotFound) as nf:
        accounts.get("0015e00000ZZZZZAAA")
    assert error_of(nf)["errorCode"] == "NOT_FOUND"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        accounts.get(obj(sf, "Contact").create({"LastName": "C"})["id"])
    assert error_of(exc)["errorCode"] == "MALFORMED_ID"
    with pytest.raises(SalesforceResourceNotFound) as nf:
        obj(sf, "Nope__c").get(rid)
    assert error_of(nf)["message"] == "The requested resource does not exist"
    assert error_of(nf)["errorCode"] == "NOT_FOUND"


def test_bad_json_and_methods(sf: Salesforce, sf_emulator: Emulator) -> None:
    base = f"{sf_emulator.url}/services/data/v62.0"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf._call_salesforce("POST", base + "/sobjects/Account/", data="{not json")
    assert error_of(exc)["errorCode"] == "JSON_PARSER_ERROR"
    with pytest.raises(SalesforceGeneralError) as gen:
        sf._call_salesforce("PUT", base + "/sobjects/Account/0015e0000000001AAA", data="{}")
    assert gen.value.status == 405
    assert error_of(gen)["errorCode"] == "METHOD_NOT_ALLOWED"


def test_any_api_version_and_versions_list(sf_emulator: Emulator) -> None:
    from tests.salesforce.conftest import make_client

    old = make_client(sf_emulator, version="45.0")
    rid = obj(old, "Account").create({"Name": "v45"})["id"]
    rec = obj(old, "Account").get(rid)
    assert rec["attributes"]["url"] == f"/services/data/v45.0/sobjects/Account/{rid}"
    s = requests.Session()
    s.verify, s.trust_env = str(sf_emulator.ca_path), False
    resp = s.get(f"{sf_emulator.url}/services/data/")  # no token needed
    assert resp.status_code == 200 and "Sforce-Limit-Info" not in resp.headers
    versions = {v["version"]: v for v in resp.json()}
    assert versions["59.0"] == {
        "label": "Winter '24",
        "url": "/services/data/v59.0",
        "version": "59.0",
    }
    assert resp.headers["Content-Type"] == "application/json;charset=UTF-8"


def test_describe_reflects_schema(sf: Salesforce) -> None:
    glob = sf.describe()
    assert glob["encoding"] == "UTF-8" and glob["maxBatchSize"] == 200
    entries = {o["name"]: o for o in glob["sobjects"]}
    assert {"Account", "Contact", "Opportunity", "Lead", "User", "Employee__c"} <= set(entries)
    assert entries["Account"]["keyPrefix"] == "001" and entries["Lead"]["keyPrefix"] == "00Q"
    assert entries["Employee__c"]["custom"] is True
    d = obj(sf, "Account").describe()
    fields = {f["name"]: f for f in d["fields"]}
    assert fields["Id"]["type"] == "id" and fields["Id"]["idLookup"] is True
    assert fields["ExtId__c"]["externalId"] and fields["ExtId__c"]["unique"]
    assert fields["ExtId__c"]["custom"] is True and fields["ExtId__c"]["length"] == 64
    owner = fields["OwnerId"]
    assert (owner["referenceTo"], owner["relationshipName"], owner["defaultedOnCreate"]) == (
        ["User"],
        "Owner",
        True,
    )
    assert (
        fields["CreatedDate"]["createable"] is False and fields["CreatedDate"]["type"] == "datetime"
    )
    assert fields["Name"]["nillable"] is False
    children = {c["relationshipName"]: c for c in d["childRelationships"]}
    assert children["Contacts"]["cascadeDelete"] is True
    assert children["Employees__r"]["childSObject"] == "Employee__c"
    contact = {f["name"]: f for f in obj(sf, "Contact").describe()["fields"]}
    assert contact["AccountId"]["relationshipName"] == "Account"
    assert "Prospecting" in [
        p["value"]
        for p in {f["name"]: f for f in obj(sf, "Opportunity").describe()["fields"]}["StageName"][
            "picklistValues"
        ]
    ]
    meta = obj(sf, "Account").metadata()
    assert meta["objectDescribe"]["name"] == "Account" and meta["recentItems"] == []


def test_control_plane_schema_shows_in_describe(sf: Salesforce, sf_emulator: Emulator) -> None:
    sf_emulator.control.add_objects(
        [
            {
                "name": "Invoice__c",
                "fields": [
                    {"name": "Number__c", "type": "string", "externalId": True, "unique": True}
                ],
            }
        ]
    )
    sf_emulator.control.add_field("Account", {"name": "Score__c", "type": "double"})
    names = {o["name"] for o in sf.describe()["sobjects"]}
    assert "Invoice__c" in names
    assert "Score__c" in {f["name"] for f in obj(sf, "Account").describe()["fields"]}
    rid = obj(sf, "Invoice__c").create({"Name": "I-1", "Number__c": "1"})["id"]
    assert obj(sf, "Invoice__c").get(rid)["Number__c"] == "1"
