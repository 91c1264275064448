"""Unit tests of the change event bus: a fake transaction stream and a hand-driven clock."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncswim_lib.sandbox.salesforce.cdc import ChangeEventBus, ReplayIdInvalid
from syncswim_lib.sandbox.salesforce.cdc_events import channel_for, entity_for
from syncswim_lib.sandbox.salesforce.cdc_log import LOG_NAME
from syncswim_lib.sandbox.salesforce.contract import (
    CallContext,
    ChangeType,
    CommittedTransaction,
    RecordChange,
)

USER = "005000000000001AAA"
OTHER_USER = "005000000000002AAA"
T0 = datetime(2024, 4, 9, 20, 26, 27, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


_numbers = itertools.count(1000)


def tx(
    *changes: RecordChange, ctx: CallContext | None = None, when: datetime = T0
) -> CommittedTransaction:
    n = next(_numbers)
    return CommittedTransaction(changes, ctx or CallContext(USER, "syncswim"), when, f"tx-{n}", n)


def change(
    kind: ChangeType,
    rid: str,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    sobject: str = "Account",
) -> RecordChange:
    return RecordChange(sobject, kind, rid, before, after)


def account(rid: str, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "Id": rid,
        "IsDeleted": False,
        "Name": name,
        "Industry": None,
        "CreatedDate": "2024-04-09T20:26:27.000+0000",
        "CreatedById": USER,
        "LastModifiedDate": "2024-04-09T20:26:27.000+0000",
        "LastModifiedById": USER,
        "SystemModstamp": "2024-04-09T20:26:27.000+0000",
        **extra,
    }


def payloads(bus: ChangeEventBus, channel: str = "/data/ChangeEvents") -> list[dict[str, Any]]:
    return [d["payload"] for d in bus.read(channel, 0, limit=1000)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def bus(clock: FakeClock) -> ChangeEventBus:
    return ChangeEventBus(clock, None, seed=7)


def test_create_event_carries_header_and_non_null_fields(bus: ChangeEventBus) -> None:
    bus.publish(tx(change("CREATE", "001A", None, account("001A", "Acme"))))
    [data] = bus.read("/data/AccountChangeEvent", 0)
    header = data["payload"]["ChangeEventHeader"]
    assert header["entityName"] == "Account"
    assert header["recordIds"] == ["001A"]
    assert header["changeType"] == "CREATE"
    assert header["changeOrigin"] == "com/salesforce/api/rest/62.0;client=syncswim"
    assert header["sequenceNumber"] == 1
    assert header["commitTimestamp"] == int(T0.timestamp() * 1000)
    assert header["commitUser"] == USER
    assert header["changedFields"] == []
    assert header["transactionKey"].startswith("tx-")
    body = {k: v for k, v in data["payload"].items() if k != "ChangeEventHeader"}
    assert body == {
        "Name": "Acme",
        "CreatedDate": "2024-04-09T20:26:27.000Z",
        "CreatedById": USER,
        "LastModifiedDate": "2024-04-09T20:26:27.000Z",
        "LastModifiedById": USER,
    }
    assert data["event"]["replayId"] == bus.latest_replay_id() > 0
    assert isinstance(data["schema"], str) and data["schema"]


def test_update_carries_changed_fields_only(bus: ChangeEventBus) -> None:
    before = account("001A", "Acme", Industry="Retail", Phone="1")
    after = {
        **before,
        "Name": "Acme 2",
        "Industry": None,
        "LastModifiedDate": "2024-04-09T21:00:00.000+0000",
        "SystemModstamp": "2024-04-09T21:00:00.000+0000",
    }
    bus.publish(tx(change("UPDATE", "001A", before, after)))
    [p] = payloads(bus)
    assert p["ChangeEventHeader"]["changedFields"] == ["Name", "Industry", "LastModifiedDate"]
    assert {k: v for k, v in p.items() if k != "ChangeEventHeader"} == {
        "Name": "Acme 2",
        "Industry": None,
        "LastModifiedDate": "2024-04-09T21:00:00.000Z",
    }


def test_update_names_last_modified_by_only_when_user_changes(bus: ChangeEventBus) -> None:
    before = account("001A", "Acme")
    bus.publish(tx(change("UPDATE", "001A", before, {**before, "Name": "B"})))
    bus.publish(
        tx(
            change(
                "UPDATE", "001A", before, {**before, "Name": "C", "LastModifiedById": OTHER_USER}
            )
        )
    )
    first, second = payloads(bus)
    assert "LastModifiedById" not in first
    assert "LastModifiedDate" in first["ChangeEventHeader"]["changedFields"]
    assert second["LastModifiedById"] == OTHER_USER


def test_delete_is_header_only_and_undelete_carries_everything(bus: ChangeEventBus) -> None:
    rec = account("001A", "Acme")
    bus.publish(tx(change("DELETE", "001A", rec, None)))
    bus.publish(tx(change("UNDELETE", "001A", {**rec, "IsDeleted": True}, rec)))
    deleted, undeleted = payloads(bus)
    assert list(deleted) == ["ChangeEventHeader"]
    assert deleted["ChangeEventHeader"]["changeType"] == "DELETE"
    assert undeleted["ChangeEventHeader"]["changeType"] == "UNDELETE"
    assert undeleted["Name"] == "Acme" and "IsDeleted" not in undeleted


def test_compound_fields_are_nested(bus: ChangeEventBus) -> None:
    before = account(
        "001A", "Acme", BillingCity="Paris", BillingStreet="1 rue", BillingAddress={"city": "Paris"}
    )
    after = {**before, "BillingCity": "Lyon", "BillingAddress": {"city": "Lyon"}}
    bus.publish(tx(change("UPDATE", "001A", before, after)))
    contact = {
        "Id": "003A",
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "Name": "Ada Lovelace",
        "MailingCity": None,
    }
    bus.publish(tx(change("CREATE", "003A", None, contact, sobject="Contact")))
    upd, created = payloads(bus)
    assert upd["BillingAddress"] == {"City": "Lyon"}
    assert upd["ChangeEventHeader"]["changedFields"] == ["BillingAddress.City", "LastModifiedDate"]
    assert created["Name"] == {"FirstName": "Ada", "LastName": "Lovelace"}
    assert "MailingAddress" not in created


def test_same_change_to_several_records_is_merged(bus: ChangeEventBus) -> None:
    recs = [account(f"001{i}", f"A{i}") for i in range(3)]
    bus.publish(
        tx(
            *(change("DELETE", r["Id"], r, None) for r in recs),
            change("CREATE", "001X", None, account("001X", "X")),
            change("CREATE", "001Y", None, account("001Y", "Y")),
        )
    )
    events = payloads(bus)
    assert [e["ChangeEventHeader"]["recordIds"] for e in events] == [
        ["0010", "0011", "0012"],
        ["001X"],
        ["001Y"],
    ]
    assert [e["ChangeEventHeader"]["sequenceNumber"] for e in events] == [1, 2, 3]
    assert len({e["ChangeEventHeader"]["transactionKey"] for e in events}) == 1
    bus.merge_same_changes = False
    bus.publish(tx(*(change("DELETE", r["Id"], r, None) for r in recs)))
    assert len(payloads(bus)) == 6


def test_channels_filter_by_object(bus: ChangeEventBus) -> None:
    bus.publish(
        tx(
            change("CREATE", "001A", None, account("001A", "Acme")),
            change("CREATE", "a00A", None, {"Id": "a00A", "Name": "E"}, sobject="Employee__c"),
        )
    )
    assert channel_for("Employee__c") == "/data/Employee__ChangeEvent"
    assert entity_for("/data/Employee__ChangeEvent") == "Employee__c"
    assert entity_for("/data/AccountChangeEvent") == "Account"
    assert entity_for("/topic/Foo") is None
    assert [
        p["ChangeEventHeader"]["entityName"] for p in payloads(bus, "/data/Employee__ChangeEvent")
    ] == ["Employee__c"]
    assert len(payloads(bus, "/data/AccountChangeEvent")) == 1
    assert len(payloads(bus)) == 2


def test_replay_ids_increase_and_are_not_contiguous(bus: ChangeEventBus) -> None:
    for i in range(40):
        bus.publish(tx(change("CREATE", f"001{i}", None, account(f"001{i}", str(i)))))
    ids = [d["event"]["replayId"] for d in bus.read("/data/ChangeEvents", 0, limit=100)]
    assert ids == sorted(set(ids)) and len(ids) == 40
    assert any(b - a > 1 for a, b in itertools.pairwise(ids))
    after = bus.read("/data/ChangeEvents", ids[9], limit=5)
    assert [d["event"]["replayId"] for d in after] == ids[10:15]


def test_change_origin_by_api(bus: ChangeEventBus) -> None:
    rec = account("001A", "Acme")
    bus.publish(tx(change("CREATE", "001A", None, rec), ctx=CallContext(USER, "", "59.0")))
    bus.publish(
        tx(change("DELETE", "001A", rec, None), ctx=CallContext(USER, "etl", "62.0", api="bulkapi"))
    )
    bus.publish(tx(change("UNDELETE", "001A", rec, rec), ctx=CallContext(USER, api="")))
    assert [p["ChangeEventHeader"]["changeOrigin"] for p in payloads(bus)] == [
        "com/salesforce/api/rest/59.0",
        "com/salesforce/api/bulkapi/62.0;client=etl",
        "",
    ]


def test_retention_follows_the_clock(bus: ChangeEventBus, clock: FakeClock) -> None:
    bus.publish(tx(change("CREATE", "001A", None, account("001A", "old")), when=clock.now()))
    old_id = bus.latest_replay_id()
    clock.advance(timedelta(hours=48))
    bus.publish(tx(change("CREATE", "001B", None, account("001B", "new")), when=clock.now()))
    new_id = bus.latest_replay_id()
    assert bus.start_after(old_id) == old_id
    clock.advance(timedelta(hours=25))  # the first event is now 73 h old
    assert [p["Name"] for p in payloads(bus)] == ["new"]
    with pytest.raises(ReplayIdInvalid):
        bus.start_after(old_id)
    with pytest.raises(ReplayIdInvalid):
        bus.start_after(new_id + 1000)
    assert bus.start_after(new_id) == new_id
    assert bus.read("/data/ChangeEvents", bus.start_after(-2))[0]["payload"]["Name"] == "new"
    assert bus.start_after(-1) == new_id
    assert bus.expire(clock.now()) == 1 and bus.all_events() == []


def test_disabled_objects_publish_nothing(bus: ChangeEventBus) -> None:
    bus.disable("Account")
    bus.publish(
        tx(
            change("CREATE", "001A", None, account("001A", "x")),
            change("CREATE", "003A", None, {"Id": "003A", "LastName": "L"}, sobject="Contact"),
        )
    )
    assert [p["ChangeEventHeader"]["entityName"] for p in payloads(bus)] == ["Contact"]
    assert not bus.channel_exists("/data/AccountChangeEvent")
    bus.select(["Account"])
    assert bus.channel_exists("/data/AccountChangeEvent")
    assert not bus.channel_exists("/data/ContactChangeEvent")
    assert bus.channel_exists("/data/ChangeEvents")
    bus.attach_catalog(lambda: ["Account", "Contact"])
    bus.enable("Contact")
    assert bus.enabled() == {"Account", "Contact"}


def test_wait_for_wakes_on_publish_and_times_out(bus: ChangeEventBus) -> None:
    assert bus.wait_for(0, timeout=0.05) is False
    started = threading.Event()

    def writer() -> None:
        started.wait(5)
        bus.publish(tx(change("CREATE", "001A", None, account("001A", "x"))))

    t = threading.Thread(target=writer)
    t.start()
    started.set()
    assert bus.wait_for(0, timeout=10) is True
    t.join(5)


def test_injected_gap_event_is_header_only(bus: ChangeEventBus) -> None:
    replay_id = bus.inject("Account", "GAP_UPDATE", ["001A", "001B"], USER)
    [data] = bus.read("/data/AccountChangeEvent", 0)
    assert data["event"]["replayId"] == replay_id
    assert list(data["payload"]) == ["ChangeEventHeader"]
    header = data["payload"]["ChangeEventHeader"]
    assert header["changeType"] == "GAP_UPDATE" and header["recordIds"] == ["001A", "001B"]
    assert header["changeOrigin"] == "" and header["commitUser"] == USER


def test_pause_holds_events_back(bus: ChangeEventBus) -> None:
    bus.set_paused(True)
    bus.publish(tx(change("CREATE", "001A", None, account("001A", "x"))))
    assert payloads(bus) == [] and bus.latest_replay_id() == 0
    bus.set_paused(False)
    assert len(payloads(bus)) == 1


def test_reset_invalidates_old_ids(bus: ChangeEventBus) -> None:
    bus.publish(tx(change("CREATE", "001A", None, account("001A", "x"))))
    before = bus.latest_replay_id()
    bus.disable("Contact")
    bus.reset()
    assert bus.all_events() == [] and bus.is_enabled("Contact")
    with pytest.raises(ReplayIdInvalid):
        bus.start_after(before)
    bus.publish(tx(change("CREATE", "001B", None, account("001B", "y"))))
    assert bus.latest_replay_id() > before


def test_log_survives_restart(clock: FakeClock, tmp_path: Path) -> None:
    first = ChangeEventBus(clock, tmp_path)
    first.disable("Contact")
    for i in range(5):
        first.publish(tx(change("CREATE", f"001{i}", None, account(f"001{i}", str(i)))))
    ids = [d["event"]["replayId"] for d in first.read("/data/ChangeEvents", 0)]
    with (tmp_path / LOG_NAME).open("a", encoding="utf-8") as f:
        f.write('{"t": "e", "replayId": 99')  # a crash in the middle of an append
    second = ChangeEventBus(clock, tmp_path)
    assert [d["event"]["replayId"] for d in second.read("/data/ChangeEvents", 0)] == ids
    assert second.start_after(ids[2]) == ids[2]
    assert not second.is_enabled("Contact")
    second.publish(tx(change("CREATE", "001X", None, account("001X", "x"))))
    assert second.latest_replay_id() > ids[-1]


def test_expired_events_stay_expired_after_restart_and_compaction(
    clock: FakeClock, tmp_path: Path
) -> None:
    first = ChangeEventBus(clock, tmp_path)
    for i in range(1200):
        first.publish(
            tx(change("CREATE", f"001{i}", None, account(f"001{i}", str(i))), when=clock.now())
        )
        clock.advance(timedelta(minutes=5))  # 1200 x 5 min = 100 h: old ones expire
    live = first.all_events()
    assert 0 < len(live) < 1200
    lines = (tmp_path / LOG_NAME).read_text(encoding="utf-8").count("\n")
    assert lines < 2 * len(live) + 1100  # compacted at least once
    second = ChangeEventBus(clock, tmp_path)
    assert second.all_events() == live
    assert second.latest_replay_id() == first.latest_replay_id()
