"""Values a real org refuses or reshapes on write, by REST, Collections and Bulk API 2.0."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any, cast

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.api import SFType
from simple_salesforce.exceptions import SalesforceMalformedRequest

from tests.salesforce.bulk_helpers import bulk2, rows

pytestmark = pytest.mark.salesforce

OUT_OF_RANGE = "NUMBER_OUTSIDE_VALID_RANGE"
NUMERIC_FIELDS = ("Bonus__c", "Rate__c", "Score__c")  # currency, percent, double


def sobject(sf: Salesforce, name: str) -> SFType:
    return cast(SFType, getattr(sf, name))


def describe_field(sf: Salesforce, sobject_name: str, field: str) -> dict[str, Any]:
    fields = sobject(sf, sobject_name).describe()["fields"]
    return cast(dict[str, Any], next(f for f in fields if f["name"] == field))


def bounds(sf: Salesforce, field: str) -> tuple[float, float]:
    """(largest value the describe allows, smallest one past it), from precision and scale."""
    spec = describe_field(sf, "Employee__c", field)
    whole = Decimal(10) ** (spec["precision"] - spec["scale"])
    step = Decimal(10) ** -spec["scale"]
    return float(whole - step), float(whole)


def refused(exc: pytest.ExceptionInfo[SalesforceMalformedRequest]) -> dict[str, Any]:
    assert exc.value.status == 400
    content = exc.value.content
    assert isinstance(content, list) and len(content) == 1
    return cast(dict[str, Any], content[0])


def assert_out_of_range(
    exc: pytest.ExceptionInfo[SalesforceMalformedRequest], field: str, label: str
) -> None:
    err = refused(exc)
    assert err["errorCode"] == OUT_OF_RANGE
    assert err["fields"] == [field]
    assert err["message"].startswith(f"{label}: value outside of valid range on numeric field: ")


@pytest.mark.parametrize("field", NUMERIC_FIELDS)
def test_number_beyond_precision_is_refused_on_create_update_upsert(
    sf: Salesforce, field: str
) -> None:
    largest, beyond = bounds(sf, field)
    label = describe_field(sf, "Employee__c", field)["label"]
    emp = sobject(sf, "Employee__c")
    rid = emp.create({"Name": "edge", field: largest})["id"]
    assert emp.get(rid)[field] == largest
    for value in (beyond, -beyond):
        with pytest.raises(SalesforceMalformedRequest) as exc:
            emp.create({"Name": "over", field: value})
        assert_out_of_range(exc, field, label)
        with pytest.raises(SalesforceMalformedRequest) as exc:
            emp.update(rid, {field: value})
        assert_out_of_range(exc, field, label)
        with pytest.raises(SalesforceMalformedRequest) as exc:
            emp.upsert("Badge__c/B-1", {"Name": "over", field: value})
        assert_out_of_range(exc, field, label)
    assert emp.get(rid)[field] == largest
    assert sf.query("SELECT COUNT() FROM Employee__c")["totalSize"] == 1


def test_integer_beyond_its_digits_is_refused(sf: Salesforce) -> None:
    digits = describe_field(sf, "Account", "NumberOfEmployees")["digits"]
    assert digits == 8  # Account.NumberOfEmployees in a real org
    accounts = sobject(sf, "Account")
    rid = accounts.create({"Name": "big", "NumberOfEmployees": 10**digits - 1})["id"]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        accounts.update(rid, {"NumberOfEmployees": 10**digits})
    label = describe_field(sf, "Account", "NumberOfEmployees")["label"]
    assert_out_of_range(exc, "NumberOfEmployees", label)
    with pytest.raises(SalesforceMalformedRequest) as exc:
        accounts.create({"Name": "huge", "NumberOfEmployees": -(10**digits)})
    assert_out_of_range(exc, "NumberOfEmployees", label)
    assert accounts.get(rid)["NumberOfEmployees"] == 10**digits - 1


def test_decimals_beyond_scale_are_rounded_half_up(sf: Salesforce) -> None:
    emp = sobject(sf, "Employee__c")
    rid = emp.create({"Name": "r", "Bonus__c": 12.345, "Rate__c": 0.25, "Score__c": 2.5})["id"]
    rec = emp.get(rid)
    assert (rec["Bonus__c"], rec["Rate__c"], rec["Score__c"]) == (12.35, 0.3, 3.0)
    # 999.995 rounds to 1000.00, which no longer fits Number(5, 2)
    with pytest.raises(SalesforceMalformedRequest) as exc:
        emp.update(rid, {"Bonus__c": 999.995})
    assert_out_of_range(exc, "Bonus__c", "Bonus")


def test_number_out_of_range_in_collections(sf: Salesforce) -> None:
    _largest, beyond = bounds(sf, "Bonus__c")
    records = [
        {"attributes": {"type": "Employee__c"}, "Name": "ok", "Bonus__c": 1},
        {"attributes": {"type": "Employee__c"}, "Name": "bad", "Bonus__c": beyond},
    ]
    res = sf.restful(
        "composite/sobjects", method="POST", json={"allOrNone": False, "records": records}
    )
    assert res[0]["success"] is True
    assert res[1]["success"] is False
    [error] = res[1]["errors"]
    assert error["statusCode"] == OUT_OF_RANGE and error["fields"] == ["Bonus__c"]
    rid = res[0]["id"]
    res = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={"records": [{"attributes": {"type": "Employee__c"}, "id": rid, "Score__c": 1e4}]},
    )
    assert res[0]["errors"][0]["statusCode"] == OUT_OF_RANGE
    res = sf.restful(
        "composite/sobjects/Employee__c/Badge__c",
        method="PATCH",
        json={
            "records": [{"attributes": {"type": "Employee__c"}, "Badge__c": "C-1", "Rate__c": 100}]
        },
    )
    assert res[0]["errors"][0]["statusCode"] == OUT_OF_RANGE


def test_number_out_of_range_in_bulk_ingest(sf: Salesforce) -> None:
    tag = f"nr{uuid.uuid4().hex[:8]}"
    records = [
        {"Name": f"{tag}-ok", "Bonus__c": "999.99"},
        {"Name": f"{tag}-bad", "Bonus__c": "1000"},
    ]
    [result] = bulk2(sf, "Employee__c").insert(records=records, wait=0)
    assert (result["numberRecordsProcessed"], result["numberRecordsFailed"]) == (2, 1)
    [failed] = rows(bulk2(sf, "Employee__c").get_failed_records(str(result["job_id"])))
    assert failed["Name"] == f"{tag}-bad"
    assert failed["sf__Error"].startswith(f"{OUT_OF_RANGE}:Bonus: value outside of valid range")
    assert failed["sf__Error"].endswith(":Bonus__c --")
    [result] = bulk2(sf, "Account").insert(
        records=[{"Name": f"{tag}-emp", "NumberOfEmployees": "100000000"}], wait=0
    )
    [failed] = rows(bulk2(sf, "Account").get_failed_records(str(result["job_id"])))
    assert failed["sf__Error"].startswith(f"{OUT_OF_RANGE}:")
    assert failed["sf__Error"].endswith(":NumberOfEmployees --")


@pytest.mark.parametrize(
    "address", ["not-an-email", "two@@example.com", "no spaces@example.com", "a@nodot"]
)
def test_invalid_email_is_refused(sf: Salesforce, address: str) -> None:
    contacts = sobject(sf, "Contact")
    with pytest.raises(SalesforceMalformedRequest) as exc:
        contacts.create({"LastName": "mail", "Email": address})
    err = refused(exc)
    assert err == {
        "message": f"Email: invalid email address: {address}",
        "errorCode": "INVALID_EMAIL_ADDRESS",
        "fields": ["Email"],
    }
    rid = contacts.create({"LastName": "mail", "Email": "Ann.O-Neil+sync@mail.example.co.uk"})["id"]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        contacts.update(rid, {"Email": address})
    assert refused(exc)["errorCode"] == "INVALID_EMAIL_ADDRESS"
    assert contacts.get(rid)["Email"] == "Ann.O-Neil+sync@mail.example.co.uk"


def test_restricted_multipicklist_refuses_undefined_values(sf: Salesforce) -> None:
    emp = sobject(sf, "Employee__c")
    rid = emp.create({"Name": "m", "Shifts__c": "Early;Night", "Skills__c": "Python;Cobol"})["id"]
    rec = emp.get(rid)
    assert (rec["Shifts__c"], rec["Skills__c"]) == ("Early;Night", "Python;Cobol")
    with pytest.raises(SalesforceMalformedRequest) as exc:
        emp.update(rid, {"Shifts__c": "Early;Weekend"})
    err = refused(exc)
    assert err["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert err["fields"] == ["Shifts__c"]
    assert "Weekend" in err["message"]
    assert emp.get(rid)["Shifts__c"] == "Early;Night"
