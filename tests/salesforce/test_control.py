"""The control plane: faults, human edits, clock, users, logs, over Python and HTTP (§7)."""

from __future__ import annotations

import time
from typing import Any, cast

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.api import SFType
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)

from syncswim_lib.sandbox.salesforce.emulator import Emulator

pytestmark = pytest.mark.salesforce


def accounts(sf: Salesforce) -> SFType:
    return cast(SFType, sf.Account)


def http(emu: Emulator) -> requests.Session:
    return emu.session()


@pytest.mark.parametrize(
    ("kind", "options", "exc_type", "status", "code"),
    [
        ("limit", {}, SalesforceRefusedRequest, 403, "REQUEST_LIMIT_EXCEEDED"),
        ("lock", {}, SalesforceMalformedRequest, 400, "UNABLE_TO_LOCK_ROW"),
        ("lock", {"status": 409}, SalesforceGeneralError, 409, "UNABLE_TO_LOCK_ROW"),
        ("session", {}, SalesforceExpiredSession, 401, "INVALID_SESSION_ID"),
        ("error", {"status": 500}, SalesforceGeneralError, 500, "UNKNOWN_EXCEPTION"),
        ("error", {"status": 503}, SalesforceGeneralError, 503, "SERVER_UNAVAILABLE"),
    ],
)
def test_fault_responses(
    sf: Salesforce,
    sf_emulator: Emulator,
    kind: str,
    options: dict[str, Any],
    exc_type: type[Exception],
    status: int,
    code: str,
) -> None:
    sf_emulator.control.add_fault(kind, method="POST", path=r"/sobjects/Account/?$", **options)
    with pytest.raises(exc_type) as exc:
        accounts(sf).create({"Name": "faulted"})
    err = cast(Any, exc.value)
    assert err.status == status and err.content[0]["errorCode"] == code
    assert sf_emulator.org.count("Account") == 0  # nothing happened
    accounts(sf).create({"Name": "fine"})  # times=1 by default


def test_fault_counts_skip_and_method(sf: Salesforce, sf_emulator: Emulator) -> None:
    sf_emulator.control.add_fault("lock", path="/query", method="GET", skip=1, times=2)
    sf.query("SELECT Id FROM Account")
    for _ in range(2):
        with pytest.raises(SalesforceMalformedRequest):
            sf.query("SELECT Id FROM Account")
    sf.query("SELECT Id FROM Account")
    accounts(sf).create({"Name": "POST is not matched"})
    fault = sf_emulator.control.policy.faults()[0]
    assert (fault["seen"], fault["fired"]) == (4, 2)


def test_latency_drop_and_lost_response(sf: Salesforce, sf_emulator: Emulator) -> None:
    sf_emulator.control.add_fault("latency", path="/query", seconds=0.3)
    started = time.monotonic()
    sf.query("SELECT Id FROM Account")
    assert time.monotonic() - started >= 0.3
    sf_emulator.control.add_fault("drop", method="POST", path="/sobjects/Account")
    with pytest.raises(requests.ConnectionError):
        accounts(sf).create({"Name": "never"})
    assert sf_emulator.org.count("Account") == 0
    sf_emulator.control.add_fault("drop_after", method="POST", path="/sobjects/Account")
    with pytest.raises(requests.ConnectionError):
        accounts(sf).create({"Name": "applied but unanswered"})
    assert sf.query("SELECT Name FROM Account")["records"][0]["Name"] == "applied but unanswered"


def test_human_edits_and_seed(sf: Salesforce, sf_emulator: Emulator) -> None:
    ids = sf_emulator.control.seed(
        "Account",
        [
            {
                "Name": "old",
                "CreatedDate": "2020-01-01T00:00:00Z",
                "LastModifiedDate": "2020-01-02T00:00:00Z",
                "SystemModstamp": "2020-01-02T00:00:00Z",
            }
        ],
    )
    rec = accounts(sf).get(ids[0])
    assert rec["CreatedDate"] == "2020-01-01T00:00:00.000+0000"
    assert rec["LastModifiedDate"] == "2020-01-02T00:00:00.000+0000"
    new = sf_emulator.control.human_create("Contact", {"LastName": "Typed in the UI"})
    assert cast(SFType, sf.Contact).get(new)["CreatedById"] == sf_emulator.users["human"].user_id
    sf_emulator.control.human_delete("Contact", new)
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 0


def test_http_control_plane(sf: Salesforce, sf_emulator: Emulator) -> None:
    s, base = http(sf_emulator), f"{sf_emulator.url}/__emu__"
    ids = s.post(
        f"{base}/seed", json={"sobject": "Account", "records": [{"Name": "seeded"}]}
    ).json()["ids"]
    assert accounts(sf).get(ids[0])["Name"] == "seeded"
    made = s.post(
        f"{base}/human/create", json={"sobject": "Account", "fields": {"Name": "ui"}}
    ).json()
    s.post(
        f"{base}/human/update",
        json={"sobject": "Account", "id": made["id"], "fields": {"Name": "ui2"}},
    ).raise_for_status()
    assert accounts(sf).get(made["id"])["Name"] == "ui2"
    events = s.get(f"{base}/events").json()
    assert [e["data"]["payload"]["ChangeEventHeader"]["changeType"] for e in events] == [
        "CREATE",
        "CREATE",
        "UPDATE",
    ]
    clock = s.post(
        f"{base}/clock", json={"set": "2030-01-01T00:00:00+00:00", "frozen": True}
    ).json()
    assert clock["now"].startswith("2030-01-01T00:00:00") and clock["frozen"] is True
    s.post(f"{base}/clock", json={"advance_seconds": 60}).raise_for_status()
    rid = accounts(sf).create({"Name": "future"})["id"]
    assert accounts(sf).get(rid)["CreatedDate"] == "2030-01-01T00:01:00.000+0000"
    user = s.post(
        f"{base}/users", json={"key": "bob", "first_name": "Bob", "last_name": "Builder"}
    ).json()
    assert user["user_id"].startswith("005") and user["token"]
    s.post(f"{base}/users/bob/revoke").raise_for_status()
    assert s.post(f"{base}/faults", json={"kind": "limit", "path": "/query"}).json()["id"] >= 1
    with pytest.raises(SalesforceRefusedRequest):
        sf.query("SELECT Id FROM Account")
    s.delete(f"{base}/faults").raise_for_status()
    usage = s.post(f"{base}/usage", json={"limit": 100}).json()
    assert usage["limit"] == 100
    log = s.get(f"{base}/requests").json()
    assert any(e["path"].endswith("/query/") and e["status"] == 403 for e in log)
    assert s.post(f"{base}/schema", json={"objects": [{"name": "Widget__c"}]}).json() == {
        "objects": ["Widget__c"]
    }
    assert s.post(f"{base}/reset").json() == {"ok": True}
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0
    assert "Widget__c" not in {o["name"] for o in sf.describe()["sobjects"]}
    bad = s.post(f"{base}/faults", json={"kind": "nope"})
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_CONTROL_REQUEST"


def test_reset_is_complete(sf: Salesforce, sf_emulator: Emulator) -> None:
    accounts(sf).create({"Name": "x"})
    sf_emulator.control.add_fault("limit", path="/nothing-matches")
    sf_emulator.control.reset()
    assert sf_emulator.control.policy.faults() == []
    assert sf_emulator.bus.all_events() == []
    assert sf_emulator.usage.used == 0
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0
