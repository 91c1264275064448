"""The SOQL subset through sf.query (spec §1.4)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.api import SFType
from simple_salesforce.exceptions import SalesforceMalformedRequest

from syncswim_lib.sandbox.salesforce.emulator import Emulator

pytestmark = pytest.mark.salesforce


@pytest.fixture
def data(sf: Salesforce, sf_emulator: Emulator) -> dict[str, str]:
    sf_emulator.control.clock_set(datetime(2024, 5, 10, 12, 0, tzinfo=UTC), frozen=True)
    acc = cast(SFType, sf.Account)
    ids = {
        "acme": acc.create(
            {"Name": "Acme", "Industry": "Banking", "NumberOfEmployees": 50, "ExtId__c": "A-1"}
        )["id"],
        "beta": acc.create({"Name": "beta", "Industry": "Retail", "NumberOfEmployees": 5})["id"],
        "gamma": acc.create({"Name": "Gamma 100%", "NumberOfEmployees": None})["id"],
    }
    sf_emulator.control.clock_advance(86400 * 3)
    ids["late"] = acc.create({"Name": "Late", "Industry": "Banking"})["id"]
    c = cast(SFType, sf.Contact)
    ids["c1"] = c.create({"LastName": "Smith", "FirstName": "Ann", "AccountId": ids["acme"]})["id"]
    ids["c2"] = c.create({"LastName": "Jones", "AccountId": ids["acme"]})["id"]
    ids["c3"] = c.create({"LastName": "Orphan"})["id"]
    return ids


def names(sf: Salesforce, soql: str) -> list[str]:
    return [r["Name"] for r in sf.query(soql)["records"]]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Name = 'acme'", {"Acme"}),
        ("Name != 'Acme'", {"beta", "Gamma 100%", "Late"}),
        ("NumberOfEmployees > 5", {"Acme"}),
        ("NumberOfEmployees >= 5", {"Acme", "beta"}),
        ("NumberOfEmployees < 50", {"beta"}),
        ("NumberOfEmployees <= 50 AND Industry = 'Banking'", {"Acme"}),
        ("Industry IN ('Banking', 'Retail')", {"Acme", "beta", "Late"}),
        ("Industry NOT IN ('Banking')", {"beta", "Gamma 100%"}),
        ("Name LIKE 'a%'", {"Acme"}),
        ("Name LIKE '%100\\%'", {"Gamma 100%"}),
        ("Name LIKE '_eta'", {"beta"}),
        ("Industry = null", {"Gamma 100%"}),
        ("Industry != null AND NOT Name = 'Late'", {"Acme", "beta"}),
        ("(Industry = 'Retail' OR Industry = null) AND Name != 'beta'", {"Gamma 100%"}),
        ("CreatedDate > 2024-05-11T00:00:00Z", {"Late"}),
        ("CreatedDate <= 2024-05-10T12:00:00.000+00:00", {"Acme", "beta", "Gamma 100%"}),
        ("CreatedDate = TODAY", {"Late"}),
        ("CreatedDate = LAST_N_DAYS:1", {"Late"}),
        ("CreatedDate < LAST_N_DAYS:2", {"Acme", "beta", "Gamma 100%"}),
        ("CreatedDate = N_DAYS_AGO:3", {"Acme", "beta", "Gamma 100%"}),
        ("CreatedDate = YESTERDAY", set()),
        ("IsDeleted = false AND ExtId__c = 'a-1'", {"Acme"}),
    ],
)
def test_where(sf: Salesforce, data: dict[str, str], where: str, expected: set[str]) -> None:
    assert set(names(sf, f"SELECT Name FROM Account WHERE {where}")) == expected


def test_id_filters_accept_15_chars(sf: Salesforce, data: dict[str, str]) -> None:
    assert names(sf, f"SELECT Name FROM Account WHERE Id = '{data['acme'][:15]}'") == ["Acme"]
    got = names(sf, f"SELECT Name FROM Account WHERE Id IN ('{data['acme']}', '{data['beta']}')")
    assert sorted(got) == ["Acme", "beta"]


def test_order_limit_offset(sf: Salesforce, data: dict[str, str]) -> None:
    q = "SELECT Name FROM Account ORDER BY Name"
    assert names(sf, q) == ["Acme", "beta", "Gamma 100%", "Late"]  # case-insensitive
    assert names(sf, q + " DESC LIMIT 2") == ["Late", "Gamma 100%"]
    assert names(sf, q + " LIMIT 2 OFFSET 1") == ["beta", "Gamma 100%"]
    emp = "SELECT Name FROM Account ORDER BY NumberOfEmployees"
    assert names(sf, emp + " ASC NULLS FIRST, Name")[:2] == ["Gamma 100%", "Late"]
    assert names(sf, emp + " DESC NULLS LAST, Name") == ["Acme", "beta", "Gamma 100%", "Late"]
    assert names(sf, emp + " NULLS LAST, Name DESC") == ["beta", "Acme", "Late", "Gamma 100%"]


def test_order_by_picklist_follows_its_defined_order(sf: Salesforce) -> None:
    fields = cast(SFType, sf.Account).describe()["fields"]
    defined = [
        v["value"] for v in next(f for f in fields if f["name"] == "Rating")["picklistValues"]
    ]
    assert defined == ["Hot", "Warm", "Cold"]  # not alphabetical, or the test proves nothing
    acc = cast(SFType, sf.Account)
    for rating in ("Cold", "Lukewarm", "Hot", None, "Blazing", "Warm"):
        parent = acc.create({"Name": f"r-{rating}", "Rating": rating})["id"]
        cast(SFType, sf.Contact).create({"LastName": f"c-{rating}", "AccountId": parent})
    ratings = [
        r["Rating"] for r in sf.query("SELECT Rating FROM Account ORDER BY Rating")["records"]
    ]
    # values the picklist does not define come after the defined ones, alphabetically
    assert ratings == [None, "Hot", "Warm", "Cold", "Blazing", "Lukewarm"]
    desc = sf.query("SELECT Rating FROM Account ORDER BY Rating DESC NULLS LAST")["records"]
    assert [r["Rating"] for r in desc] == ["Lukewarm", "Blazing", "Cold", "Warm", "Hot", None]
    kids = sf.query("SELECT LastName FROM Contact ORDER BY Account.Rating NULLS LAST")
    assert [r["LastName"] for r in kids["records"]] == [
        "c-Hot",
        "c-Warm",
        "c-Cold",
        "c-Blazing",
        "c-Lukewarm",
        "c-None",
    ]


@pytest.mark.parametrize("sobject", ["Account", "Contact", "Employee__c"])
def test_describe_filterable_and_sortable_hold_in_soql(sf: Salesforce, sobject: str) -> None:
    def accepted(soql: str) -> bool:
        try:
            sf.query(soql)
        except SalesforceMalformedRequest:
            return False
        return True

    for f in cast(SFType, getattr(sf, sobject)).describe()["fields"]:
        name = f["name"]
        assert accepted(f"SELECT Id FROM {sobject} WHERE {name} = null") == f["filterable"], name
        assert accepted(f"SELECT Id FROM {sobject} ORDER BY {name}") == f["sortable"], name


def test_multipicklist_filters(sf: Salesforce) -> None:
    emp = cast(SFType, sf.Employee__c)
    for name, skills in (("ps", "Python;SQL"), ("s", "SQL"), ("ap", "Apex;Python")):
        emp.create({"Name": name, "Skills__c": skills})

    def where(cond: str) -> set[str]:
        return set(names(sf, f"SELECT Name FROM Employee__c WHERE {cond}"))

    # '=' with ';' means exactly these values selected, in any order
    assert where("Skills__c = 'SQL;Python'") == {"ps"}
    assert where("Skills__c != 'SQL;Python'") == {"s", "ap"}
    assert where("Skills__c INCLUDES ('Python')") == {"ps", "ap"}
    assert where("Skills__c INCLUDES ('SQL;Python', 'Apex')") == {"ps", "ap"}
    assert where("Skills__c EXCLUDES ('SQL')") == {"ap"}


def test_parent_fields_nested(sf: Salesforce, data: dict[str, str]) -> None:
    res = sf.query(
        "SELECT Id, LastName, Account.Name, Account.Owner.Name FROM Contact ORDER BY LastName"
    )
    rows = {r["LastName"]: r for r in res["records"]}
    smith = rows["Smith"]
    assert list(smith) == ["attributes", "Id", "LastName", "Account"]
    assert smith["attributes"]["type"] == "Contact"
    assert smith["Account"]["attributes"] == {
        "type": "Account",
        "url": f"/services/data/v62.0/sobjects/Account/{data['acme']}",
    }
    assert smith["Account"]["Name"] == "Acme"
    assert smith["Account"]["Owner"]["Name"] == "Integration User"
    assert rows["Orphan"]["Account"] is None
    assert names(sf, "SELECT Name FROM Contact WHERE Account.Name = 'Acme' ORDER BY Name") == [
        "Ann Smith",
        "Jones",
    ]


def test_child_subquery_and_semi_join(sf: Salesforce, data: dict[str, str]) -> None:
    res = sf.query(
        "SELECT Name, (SELECT LastName FROM Contacts ORDER BY LastName) FROM Account "
        "WHERE Name IN ('Acme', 'beta') ORDER BY Name"
    )
    acme, beta = res["records"]
    assert acme["Contacts"]["totalSize"] == 2 and acme["Contacts"]["done"] is True
    assert [r["LastName"] for r in acme["Contacts"]["records"]] == ["Jones", "Smith"]
    assert beta["Contacts"] is None
    assert names(sf, "SELECT Name FROM Account WHERE Id IN (SELECT AccountId FROM Contact)") == [
        "Acme"
    ]


def test_count(sf: Salesforce, data: dict[str, str]) -> None:
    res = sf.query("SELECT COUNT() FROM Account WHERE Industry = 'Banking'")
    assert (res["totalSize"], res["done"], res["records"]) == (2, True, [])
    agg = sf.query("SELECT COUNT(Id) cnt, COUNT(Industry) FROM Account")["records"][0]
    assert agg["attributes"] == {"type": "AggregateResult"}
    assert agg["cnt"] == 4 and agg["expr1"] == 3


def test_case_insensitive_names_canonical_keys(sf: Salesforce, data: dict[str, str]) -> None:
    rec = sf.query("select name, INDUSTRY from account where NAME = 'Acme'")["records"][0]
    assert rec["Name"] == "Acme" and rec["Industry"] == "Banking"


def test_string_escapes(sf: Salesforce, data: dict[str, str]) -> None:
    cast(SFType, sf.Account).create({"Name": "O'Brien \\ Co"})
    assert names(sf, "SELECT Name FROM Account WHERE Name = 'O\\'Brien \\\\ Co'") == [
        "O'Brien \\ Co"
    ]


@pytest.mark.parametrize(
    ("soql", "code", "fragment"),
    [
        (
            "SELECT Foo FROM Account",
            "INVALID_FIELD",
            "\nSELECT Foo FROM Account\n       ^\nERROR at Row:1:Column:8\nNo such column 'Foo' "
            "on entity 'Account'. If you are attempting to use a custom field, be sure to append "
            "the '__c'",
        ),
        ("SELECT Id FROM Foo__c", "INVALID_TYPE", "sObject type 'Foo__c' is not supported."),
        ("SELECT Id FRM Account", "MALFORMED_QUERY", "unexpected token: 'FRM'"),
        ("SELECT Id FROM Account WHERE", "MALFORMED_QUERY", "unexpected token: '<EOF>'"),
        (
            "SELECT Id FROM Account WHERE CreatedDate > '2024-01-01'",
            "INVALID_FIELD",
            "must be of type dateTime and should not be enclosed in quotes",
        ),
        (
            "SELECT Id FROM Account WHERE Id = 'x'",
            "INVALID_QUERY_FILTER_OPERATOR",
            "invalid ID field: x",
        ),
        (
            "SELECT Id, Foo.Name FROM Contact",
            "INVALID_FIELD",
            "Didn't understand relationship 'Foo'",
        ),
        ("SELECT Id FROM Account OFFSET 2001", "NUMBER_OUTSIDE_VALID_RANGE", "2000"),
        (
            "SELECT Id FROM Account WHERE Description = 'x'",
            "INVALID_FIELD",
            "ERROR at Row:1:Column:30\nfield 'Description' can not be filtered in query call",
        ),
        (
            "SELECT Id FROM Employee__c WHERE Name != null AND notes__c LIKE 'x%'",
            "INVALID_FIELD",
            "field 'Notes__c' can not be filtered in query call",
        ),
        (
            "SELECT Id FROM Account ORDER BY Description",
            "INVALID_FIELD",
            "ERROR at Row:1:Column:33\nfield 'Description' can not be sorted in a query call",
        ),
        (
            "SELECT Id FROM Employee__c ORDER BY Name, Skills__c DESC",
            "INVALID_FIELD",
            "field 'Skills__c' can not be sorted in a query call",
        ),
        (
            "SELECT Id FROM Employee__c WHERE Skills__c LIKE 'Py%'",
            "INVALID_QUERY_FILTER_OPERATOR",
            "ERROR at Row:1:Column:34\ninvalid operator on multipicklist field",
        ),
        (
            "SELECT Id FROM Employee__c WHERE Skills__c > 'A'",
            "INVALID_QUERY_FILTER_OPERATOR",
            "invalid operator on multipicklist field",
        ),
        (
            "SELECT Id FROM Account WHERE Industry INCLUDES ('Banking')",
            "INVALID_QUERY_FILTER_OPERATOR",
            "ERROR at Row:1:Column:30\n"
            "includes or excludes operator only valid on multipicklist field",
        ),
        (
            "SELECT Id FROM Account WHERE Name = 'a' AND Name = 'b' OR Name = 'c'",
            "MALFORMED_QUERY",
            "ERROR at Row:1:Column:56\nunexpected token: 'OR'",
        ),
        (
            "SELECT Id FROM Account WHERE Name = 'a' OR (Name = 'b' OR Name = 'c') AND Name = 'd'",
            "MALFORMED_QUERY",
            "unexpected token: 'AND'",
        ),
    ],
)
def test_errors(sf: Salesforce, soql: str, code: str, fragment: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query(soql)
    err: dict[str, Any] = exc.value.content[0]
    assert err["errorCode"] == code
    assert fragment in err["message"]
