"""A streamed Salesforce endpoint with an object the org publishes no change events for:
that object is polled by SystemModstamp beside the CometD capture of the others
(fallback.py), at an adaptive interval, in one position that a new process resumes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from simple_salesforce.api import Salesforce

from syncswim_lib.connectors.salesforce.connector import SalesforceConnector
from syncswim_lib.connectors.salesforce.fallback import Mixed
from syncswim_lib.envelope import Op, ReplayPosition, WatermarkPosition, position_from_json
from syncswim_lib.sandbox.salesforce.emulator import Emulator
from tests.connectors.salesforce.conftest import connector_for

pytestmark = pytest.mark.integration

SYNC = "app_crm"
BOTH = ["Account", "Contact"]


class Clock:
    """The connector's polling clock, moved by the test (the interval's decisions)."""

    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _connector(emu: Emulator, clock: Clock) -> SalesforceConnector:
    c = connector_for(emu)
    c.fallback.now = clock
    return c


@pytest.fixture
def sfc(emu: Emulator, clock: Clock) -> Iterator[SalesforceConnector]:
    emu.bus.disable("Contact")  # Account publishes its change events, Contact does not
    c = _connector(emu, clock)
    yield c
    c.close()


def _ops(changes: object) -> list[tuple[str, Op, str, str]]:
    return sorted(
        (c.table, c.op, c.key["Id"], type(c.position).__name__)  # type: ignore[attr-defined]
        for c in changes  # type: ignore[attr-defined]
    )


def test_the_unpublished_object_is_polled_beside_the_stream(
    emu: Emulator, sfc: SalesforceConnector, human: Salesforce, clock: Clock
) -> None:
    sfc.setup(SYNC, BOTH)  # no refusal
    start = sfc.current_position(SYNC)
    assert isinstance(start, WatermarkPosition) and Mixed.decode(start).replay is not None
    acc = human.Account.create({"Name": "Streamed"})["id"]
    kid = human.Contact.create({"LastName": "Polled", "AccountId": acc})["id"]
    first = sfc.capture(SYNC, BOTH, start, 100)
    assert _ops(first.changes) == [
        ("Account", Op.INSERT, acc, "ReplayPosition"),
        ("Contact", Op.UPDATE, kid, "WatermarkPosition"),
    ]
    # the next poll is not due yet: the stream is read, the org is not asked
    human.Contact.update(kid, {"LastName": "Renamed"})
    human.Account.update(acc, {"Name": "Renamed too"})
    queries = len(emu.control.requests(path="/queryAll"))
    second = sfc.capture(SYNC, BOTH, first.end_position, 100)
    assert _ops(second.changes) == [("Account", Op.UPDATE, acc, "ReplayPosition")]
    assert len(emu.control.requests(path="/queryAll")) == queries
    decision = Mixed.decode(second.end_position).decision
    assert decision is not None and decision.interval_s == 5.0
    clock.t = decision.due_at
    third = sfc.capture(SYNC, BOTH, second.end_position, 100)
    assert _ops(third.changes) == [("Contact", Op.UPDATE, kid, "WatermarkPosition")]
    assert third.changes[0].after is not None
    assert third.changes[0].after["LastName"] == "Renamed"
    # idle polls back off, up to five minutes, and find nothing twice
    end = third.end_position
    intervals = []
    for _ in range(12):
        d = Mixed.decode(end).decision
        assert d is not None
        clock.t = d.due_at
        batch = sfc.capture(SYNC, BOTH, end, 100)
        assert batch.changes == ()
        end = batch.end_position
        intervals.append(d.interval_s)
    assert intervals == sorted(intervals) and intervals[-1] == 300.0
    # a delete of the polled object comes from the recycle bin
    human.Contact.delete(kid)
    d = Mixed.decode(end).decision
    assert d is not None
    clock.t = d.due_at
    gone = sfc.capture(SYNC, BOTH, end, 100)
    assert _ops(gone.changes) == [("Contact", Op.DELETE, kid, "WatermarkPosition")]


def test_a_new_process_resumes_both_from_the_stored_position(
    emu: Emulator, sfc: SalesforceConnector, human: Salesforce, clock: Clock
) -> None:
    sfc.setup(SYNC, BOTH)
    start = sfc.current_position(SYNC)
    human.Contact.create({"LastName": "Before"})
    first = sfc.capture(SYNC, BOTH, start, 100)
    assert len(first.changes) == 1
    stored = first.end_position
    assert stored is not None
    sfc.close()
    acc = human.Account.create({"Name": "While away"})["id"]
    kid = human.Contact.create({"LastName": "While away"})["id"]
    again = _connector(emu, clock)
    try:
        d = Mixed.decode(stored).decision
        assert d is not None
        clock.t = d.due_at
        resumed = again.capture(SYNC, BOTH, position_from_json(stored.to_json()), 100)
        assert _ops(resumed.changes) == [
            ("Account", Op.INSERT, acc, "ReplayPosition"),
            ("Contact", Op.UPDATE, kid, "WatermarkPosition"),
        ]
        again.confirm(SYNC, resumed.end_position)  # type: ignore[arg-type]
    finally:
        again.close()


def test_with_every_object_published_the_position_is_the_replay_id(
    emu: Emulator, clock: Clock, human: Salesforce
) -> None:
    c = _connector(emu, clock)
    try:
        c.setup(SYNC, BOTH)
        assert c.check_server({SYNC: BOTH}) == []
        start = c.current_position(SYNC)
        assert isinstance(start, ReplayPosition)
        human.Contact.create({"LastName": "Streamed"})
        got = c.capture(SYNC, BOTH, start, 100)
        assert isinstance(got.end_position, ReplayPosition) and len(got.changes) == 1
        assert not emu.control.requests(path="/queryAll")
    finally:
        c.close()


def test_a_failing_poll_backs_off_and_the_stream_still_counts(
    emu: Emulator, sfc: SalesforceConnector, human: Salesforce, clock: Clock
) -> None:
    sfc.setup(SYNC, BOTH)
    start = sfc.current_position(SYNC)
    acc = human.Account.create({"Name": "Streamed"})["id"]
    kid = human.Contact.create({"LastName": "Polled"})["id"]
    emu.control.add_fault("limit", path="/queryAll", times=None)  # REQUEST_LIMIT_EXCEEDED
    first = sfc.capture(SYNC, BOTH, start, 100)
    assert _ops(first.changes) == [("Account", Op.INSERT, acc, "ReplayPosition")]
    decision = Mixed.decode(first.end_position).decision
    assert decision is not None and decision.changes == -1
    assert decision.reason.startswith("error, backing off") and decision.interval_s == 20.0
    emu.control.clear_faults()
    clock.t = decision.due_at
    second = sfc.capture(SYNC, BOTH, first.end_position, 100)
    assert _ops(second.changes) == [("Contact", Op.UPDATE, kid, "WatermarkPosition")]


def test_an_object_whose_events_are_published_again_is_polled_once_more(
    emu: Emulator, sfc: SalesforceConnector, human: Salesforce, clock: Clock
) -> None:
    sfc.setup(SYNC, BOTH)
    start = sfc.current_position(SYNC)
    kid = human.Contact.create({"LastName": "Polled"})["id"]
    first = sfc.capture(SYNC, BOTH, start, 100)
    assert len(first.changes) == 1
    # changed before the admin selects Contact for Change Data Capture: no event has it
    human.Contact.update(kid, {"LastName": "Before the events"})
    emu.bus.enable("Contact")
    later = _connector(emu, clock)  # a new process asks the org again
    try:
        moved = later.capture(SYNC, BOTH, first.end_position, 100)
        assert [(c.key["Id"], c.after and c.after["LastName"]) for c in moved.changes] == [
            (kid, "Before the events")
        ]
        assert isinstance(moved.end_position, ReplayPosition)
        human.Contact.update(kid, {"LastName": "By its event"})
        streamed = later.capture(SYNC, BOTH, moved.end_position, 100)
        assert _ops(streamed.changes) == [("Contact", Op.UPDATE, kid, "ReplayPosition")]
    finally:
        later.close()
