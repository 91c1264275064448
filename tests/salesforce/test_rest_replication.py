"""getUpdated / getDeleted: windows, minute flooring, validation (spec §1.7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.api import SFType
from simple_salesforce.exceptions import SalesforceMalformedRequest

from syncswim_lib.sandbox.salesforce.emulator import Emulator

pytestmark = pytest.mark.salesforce
T0 = datetime(2024, 6, 1, 10, 0, 30, tzinfo=UTC)


@pytest.fixture
def clocked(sf_emulator: Emulator) -> Emulator:
    sf_emulator.control.clock_set(T0, frozen=True)
    return sf_emulator


def accounts(sf: Salesforce) -> SFType:
    return cast(SFType, sf.Account)


def test_updated_window(sf: Salesforce, clocked: Emulator) -> None:
    a = accounts(sf).create({"Name": "a"})["id"]  # 10:00:30
    clocked.control.clock_advance(120)  # 10:02:30
    b = accounts(sf).create({"Name": "b"})["id"]
    clocked.control.clock_advance(300)  # 10:07:30
    res = accounts(sf).updated(T0 - timedelta(minutes=1), T0 + timedelta(minutes=3))
    assert res == {"ids": [a, b], "latestDateCovered": "2024-06-01T10:03:00.000+0000"}
    # seconds are floored to the minute: a start of 10:00:45 still covers 10:00:30
    res = accounts(sf).updated(T0 + timedelta(seconds=15), T0 + timedelta(minutes=1))
    assert res["ids"] == [a]
    accounts(sf).update(a, {"Name": "a2"})  # 10:07:30
    res = accounts(sf).updated(T0 + timedelta(minutes=5), T0 + timedelta(hours=5))
    assert res["ids"] == [] and res["latestDateCovered"] == "2024-06-01T10:07:00.000+0000"
    clocked.control.clock_advance(60)
    res = accounts(sf).updated(T0 + timedelta(minutes=5), T0 + timedelta(hours=5))
    assert res["ids"] == [a]


def test_system_touch_counts_as_update(sf: Salesforce, clocked: Emulator) -> None:
    a = accounts(sf).create({"Name": "a"})["id"]
    clocked.control.clock_advance(3600)
    clocked.control.system_touch("Account", a)
    rec = accounts(sf).get(a)
    assert rec["SystemModstamp"] > rec["LastModifiedDate"]
    clocked.control.clock_advance(120)
    res = accounts(sf).updated(T0 + timedelta(minutes=30), T0 + timedelta(hours=2))
    assert res["ids"] == [a]


def test_deleted_window_and_purge(sf: Salesforce, clocked: Emulator) -> None:
    a = accounts(sf).create({"Name": "a"})["id"]
    b = accounts(sf).create({"Name": "b"})["id"]
    accounts(sf).delete(a)
    accounts(sf).delete(b)
    clocked.control.clock_advance(120)
    res = accounts(sf).deleted(T0 - timedelta(minutes=5), T0 + timedelta(minutes=1))
    assert res["deletedRecords"] == [
        {"id": a, "deletedDate": "2024-06-01T10:00:30.000+0000"},
        {"id": b, "deletedDate": "2024-06-01T10:00:30.000+0000"},
    ]
    assert res["latestDateCovered"] == "2024-06-01T10:01:00.000+0000"
    assert res["earliestDateAvailable"] <= "2024-05-17T10:02:00.000+0000"
    clocked.control.purge([a])
    clocked.control.clock_advance(120)
    with pytest.raises(SalesforceMalformedRequest) as exc:  # the purge lost history
        accounts(sf).deleted(T0 - timedelta(minutes=5), T0 + timedelta(minutes=10))
    assert exc.value.content[0]["errorCode"] == "INVALID_REPLICATION_DATE"
    res = accounts(sf).deleted(T0 + timedelta(minutes=2), T0 + timedelta(minutes=4))
    assert res["earliestDateAvailable"] == "2024-06-01T10:02:00.000+0000"


@pytest.mark.parametrize(
    ("start", "end", "days"),
    [
        (T0, T0 - timedelta(minutes=5), 30),  # start after end
        (T0, T0 + timedelta(seconds=20), 30),  # same minute once floored
        (T0 - timedelta(days=31), T0, 30),  # outside the 30-day window
    ],
)
def test_updated_rejects(
    sf: Salesforce, clocked: Emulator, start: datetime, end: datetime, days: int
) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        accounts(sf).updated(start, end)
    assert exc.value.content[0]["errorCode"] == "INVALID_REPLICATION_DATE"


def test_deleted_window_is_15_days(sf: Salesforce, clocked: Emulator) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        accounts(sf).deleted(T0 - timedelta(days=16), T0)
    assert exc.value.content[0]["errorCode"] == "INVALID_REPLICATION_DATE"
    assert accounts(sf).deleted(T0 - timedelta(days=14), T0)["deletedRecords"] == []


def test_naive_datetimes_are_rejected(sf: Salesforce, clocked: Emulator) -> None:
    naive = datetime(2024, 6, 1, 9, 0)  # simple-salesforce renders this as '...T09%3A00%3A00%3A'
    with pytest.raises(SalesforceMalformedRequest) as exc:
        accounts(sf).updated(naive, naive + timedelta(hours=1))
    assert exc.value.content[0]["errorCode"] == "INVALID_REPLICATION_DATE"


def test_unknown_object(sf: Salesforce, clocked: Emulator) -> None:
    from simple_salesforce.exceptions import SalesforceResourceNotFound

    with pytest.raises(SalesforceResourceNotFound):
        cast(SFType, sf.Nope__c).updated(T0 - timedelta(hours=1), T0)
