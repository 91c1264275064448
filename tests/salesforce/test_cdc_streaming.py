"""End to end: unmodified simple-salesforce writes → change events on our CometD client."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.api import SFType

from syncswim_lib.connectors.salesforce.cometd_client import (
    REPLAY_ALL,
    REPLAY_NEW,
    ChangeEvent,
    CometdClient,
    CometdSubscribeError,
    ReplayIdInvalidError,
)
from syncswim_lib.sandbox.salesforce.emulator import Emulator, start_emulator

pytestmark = pytest.mark.salesforce

ORIGIN = "syncswim"


def client_for(emu: Any, origin: str = ORIGIN) -> Salesforce:
    session = requests.Session()
    session.verify = str(emu.ca_path)
    session.trust_env = False  # a machine-wide REQUESTS_CA_BUNDLE would override verify
    sf = Salesforce(instance_url=emu.url, session_id=emu.token(), version="62.0", session=session)
    if origin:
        sf.session.headers["Sforce-Call-Options"] = f"client={origin}"
    return sf


def sobject(sf: Salesforce, name: str) -> SFType:
    return cast(SFType, getattr(sf, name))


def streaming_for(emu: Any, **kwargs: Any) -> CometdClient:
    return CometdClient(emu.url, emu.token(), ca_path=str(emu.ca_path), poll_timeout=5.0, **kwargs)


def collect(
    client: CometdClient, done: Callable[[list[ChangeEvent]], bool], timeout_polls: int = 20
) -> list[ChangeEvent]:
    """Poll until `done(events)`; each poll returns as soon as events arrive (long poll)."""
    events: list[ChangeEvent] = []
    for _ in range(timeout_polls):
        events += client.poll()
        if done(events):
            return events
    raise AssertionError(f"condition not met; got {[e.header for e in events]}")


def ids_of(events: list[ChangeEvent]) -> list[str]:
    return [rid for e in events for rid in e.header["recordIds"]]


@pytest.fixture
def emu(sf_emulator: Emulator) -> Emulator:
    """The session's shared emulator (tests/salesforce/conftest.py), reset for each test."""
    return sf_emulator


@pytest.fixture
def sf(emu: Any) -> Iterator[Salesforce]:
    """Overrides conftest's `sf`: our writes carry `Sforce-Call-Options: client=syncswim`."""
    client = client_for(emu)
    yield client
    client.session.close()


@pytest.fixture
def stream(emu: Any) -> Iterator[CometdClient]:
    with streaming_for(emu) as client:
        yield client


def test_rest_writes_arrive_with_full_headers(
    emu: Any, sf: Salesforce, stream: CometdClient
) -> None:
    stream.subscribe("/data/AccountChangeEvent", REPLAY_NEW)
    stream.poll()  # the first connect returns at once
    name = f"cdc-{uuid.uuid4().hex[:8]}"
    rid = sobject(sf, "Account").create({"Name": name, "Industry": "Retail"})["id"]
    sobject(sf, "Account").update(rid, {"Industry": None, "Phone": "555"})
    sobject(sf, "Account").delete(rid)
    emu.control.undelete(rid)
    events = collect(stream, lambda ev: len(ev) >= 4)
    assert [e.header["changeType"] for e in events] == ["CREATE", "UPDATE", "DELETE", "UNDELETE"]
    assert all(
        e.header["recordIds"] == [rid] and e.header["entityName"] == "Account" for e in events
    )
    assert all(e.channel == "/data/AccountChangeEvent" for e in events)
    created, updated, deleted, undeleted = events
    rest_origin = f"com/salesforce/api/rest/62.0;client={ORIGIN}"
    assert [e.header["changeOrigin"] for e in events[:3]] == [rest_origin] * 3
    user = emu.org.get("Account", rid)["CreatedById"]
    assert created.header["commitUser"] == user
    assert created.fields["Name"] == name and created.fields["Industry"] == "Retail"
    assert created.fields["CreatedDate"].endswith("Z") and "Id" not in created.fields
    assert "Phone" not in created.fields and "SystemModstamp" not in created.fields
    assert set(updated.header["changedFields"]) == {"Industry", "Phone", "LastModifiedDate"}
    assert updated.fields["Industry"] is None and updated.fields["Phone"] == "555"
    assert "Name" not in updated.fields
    assert deleted.fields == {} and deleted.header["changedFields"] == []
    assert undeleted.fields["Name"] == name
    for e in events:
        assert isinstance(e.header["commitTimestamp"], int)
        assert isinstance(e.header["commitNumber"], int) and e.header["transactionKey"]
        assert e.header["sequenceNumber"] == 1
    replay = [e.replay_id for e in events]
    assert replay == sorted(set(replay))


def test_collections_and_cascades_publish_every_record(
    emu: Any, sf: Salesforce, stream: CometdClient
) -> None:
    stream.subscribe("/data/ChangeEvents", REPLAY_NEW)
    stream.poll()
    tag = uuid.uuid4().hex[:8]
    result = sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "allOrNone": True,
            "records": [
                {"attributes": {"type": "Account"}, "Name": f"{tag}-{i}"} for i in range(3)
            ],
        },
    )
    assert isinstance(result, list)
    account_ids = [r["id"] for r in result]
    contact_ids = [
        sobject(sf, "Contact").create({"LastName": f"{tag}-c{i}", "AccountId": account_ids[0]})[
            "id"
        ]
        for i in range(2)
    ]
    sobject(sf, "Account").delete(account_ids[0])
    wanted = set(account_ids) | set(contact_ids)
    events = collect(
        stream,
        lambda ev: (
            {r for e in ev if e.header["changeType"] == "DELETE" for r in e.header["recordIds"]}
            >= {account_ids[0], *contact_ids}
        ),
    )
    creates = [e for e in events if e.header["changeType"] == "CREATE"]
    assert set(ids_of(creates)) == wanted
    batch = [e for e in creates if e.header["entityName"] == "Account"]
    assert len({e.header["transactionKey"] for e in batch}) == 1
    assert sorted(e.header["sequenceNumber"] for e in batch) == [1, 2, 3]
    deletes = [e for e in events if e.header["changeType"] == "DELETE"]
    assert len({e.header["transactionKey"] for e in deletes}) == 1  # one cascade transaction
    assert {e.header["entityName"] for e in deletes} == {"Account", "Contact"}
    contact_delete = next(e for e in deletes if e.header["entityName"] == "Contact")
    assert sorted(contact_delete.header["recordIds"]) == sorted(contact_ids)  # merged
    contact = next(e for e in creates if e.header["entityName"] == "Contact")
    assert contact.fields["Name"] == {"LastName": contact.fields["Name"]["LastName"]}


def test_channels_follow_cdc_selection(emu: Any, sf: Salesforce) -> None:
    with streaming_for(emu) as stream:
        stream.subscribe("/data/ContactChangeEvent")
        emu.bus.disable("Contact")
        try:
            with pytest.raises(CometdSubscribeError) as info:
                stream.subscribe("/data/ContactChangeEvent")
            assert info.value.error == (
                "400::The channel you requested to subscribe to "
                "doesn't exist /data/ContactChangeEvent"
            )
            with pytest.raises(CometdSubscribeError):
                stream.subscribe("/data/accountchangeevent")  # channel names are case-sensitive
        finally:
            emu.bus.enable("Contact")


def test_custom_object_channel_and_human_edit_origin(
    emu: Any, sf: Salesforce, stream: CometdClient
) -> None:
    emu.control.add_objects(
        [{"name": "Employee__c", "fields": [{"name": "Level__c", "type": "double"}]}]
    )
    stream.subscribe("/data/Employee__ChangeEvent", REPLAY_NEW)
    stream.poll()
    rid = sobject(sf, "Employee__c").create({"Name": "Ada", "Level__c": 3})["id"]
    emu.control.human_update("Employee__c", rid, {"Level__c": 4})
    events = collect(stream, lambda ev: len(ev) >= 2)
    assert [e.header["entityName"] for e in events] == ["Employee__c"] * 2
    assert events[0].fields["Level__c"] == 3
    human = events[1]
    assert ";client=" not in human.header["changeOrigin"]
    assert human.header["commitUser"] != events[0].header["commitUser"]
    assert human.fields["LastModifiedById"] == human.header["commitUser"]


def test_replay_all_and_expiry_follow_the_clock(emu: Any, sf: Salesforce) -> None:
    rid = sobject(sf, "Account").create({"Name": f"old-{uuid.uuid4().hex[:6]}"})["id"]
    with streaming_for(emu) as stream:
        stream.subscribe("/data/AccountChangeEvent", REPLAY_ALL)
        old = collect(stream, lambda ev: rid in ids_of(ev))
        old_id = next(e.replay_id for e in old if rid in e.header["recordIds"])
    emu.control.clock_advance(timedelta(hours=73).total_seconds())
    fresh = sobject(sf, "Account").create({"Name": "fresh"})["id"]
    with streaming_for(emu) as stream:
        with pytest.raises(ReplayIdInvalidError) as info:
            stream.subscribe("/data/AccountChangeEvent", old_id)
        assert info.value.error == (
            f"400::The replayId {old_id} you provided was invalid. Please provide a valid ID, "
            "-2 to replay all events, or -1 to replay only new events."
        )
        stream.subscribe("/data/AccountChangeEvent", REPLAY_ALL)
        events = collect(stream, lambda ev: fresh in ids_of(ev))
        assert rid not in ids_of(events)


def test_replay_survives_restart_with_a_data_dir(tmp_path: Path) -> None:
    first = start_emulator(data_dir=tmp_path)
    try:
        sf = client_for(first)
        ids = [sobject(sf, "Account").create({"Name": f"r{i}"})["id"] for i in range(3)]
        with streaming_for(first) as stream:
            stream.subscribe("/data/AccountChangeEvent", REPLAY_ALL)
            events = collect(stream, lambda ev: len(ev) >= 3)
        stored = events[0].replay_id  # as if the consumer had committed the first event
        last_before = events[-1].replay_id
        sf.session.close()
    finally:
        first.stop()
    second = start_emulator(data_dir=tmp_path)
    try:
        sf = client_for(second)
        later = sobject(sf, "Account").create({"Name": "after restart"})["id"]
        with streaming_for(second) as stream:
            stream.subscribe("/data/AccountChangeEvent", stored)
            resumed = collect(stream, lambda ev: later in ids_of(ev))
        assert ids_of(resumed) == [*ids[1:], later]
        assert resumed[-1].replay_id > last_before
        with streaming_for(second) as stream:
            stream.subscribe("/data/AccountChangeEvent", REPLAY_ALL)
            everything = collect(stream, lambda ev: later in ids_of(ev))
        assert ids_of(everything) == [*ids, later]
        with streaming_for(second) as stream:
            stream.subscribe("/data/AccountChangeEvent", REPLAY_NEW)
            assert stream.poll() == []
        sf.session.close()
    finally:
        second.stop()


def test_live_client_resumes_across_a_restart(tmp_path: Path) -> None:
    first = start_emulator(data_dir=tmp_path)
    port = first.port
    stream = streaming_for(first, retry_delay=0.05)
    try:
        sf = client_for(first)
        stream.subscribe("/data/AccountChangeEvent", REPLAY_NEW)
        stream.poll()
        before = sobject(sf, "Account").create({"Name": "before"})["id"]
        assert ids_of(collect(stream, lambda ev: len(ev) >= 1)) == [before]
        sf.session.close()
        # Published while nobody listens, then the server goes away.
        missed = sobject(client_for(first), "Account").create({"Name": "missed"})["id"]
    finally:
        first.stop()
    second = start_emulator(port=port, data_dir=tmp_path)
    try:
        sf = client_for(second)
        after = sobject(sf, "Account").create({"Name": "after"})["id"]
        # 403::Unknown client → re-handshake → re-subscribe after the last event seen.
        events = collect(stream, lambda ev: after in ids_of(ev))
        assert ids_of(events) == [missed, after]
        sf.session.close()
    finally:
        stream.close()
        second.stop()
