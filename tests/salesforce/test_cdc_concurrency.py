"""Several clients writing at once: no record and no change event is lost, replay ids
strictly increase, and every subscriber sees the same stream in commit order."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.api import SFType

from syncswim_lib.connectors.salesforce.cometd_client import REPLAY_NEW, ChangeEvent, CometdClient
from syncswim_lib.sandbox.salesforce.emulator import Emulator

pytestmark = pytest.mark.salesforce

WRITERS = 6
PER_WRITER = 15
CONSUMERS = 2


def client_for(emu: Any) -> Salesforce:
    session = requests.Session()
    session.verify = str(emu.ca_path)
    session.trust_env = False
    sf = Salesforce(instance_url=emu.url, session_id=emu.token(), version="62.0", session=session)
    sf.session.headers["Sforce-Call-Options"] = "client=syncswim"
    return sf


class Consumer:
    """A CometD subscriber on a background thread, as the product runs it."""

    def __init__(self, emu: Any) -> None:
        self.client = CometdClient(emu.url, emu.token(), ca_path=str(emu.ca_path), poll_timeout=1.0)
        self.client.subscribe("/data/ChangeEvents", REPLAY_NEW)
        self.client.poll()  # the handshake's immediate connect; later ones are long polls
        self.events: list[ChangeEvent] = []
        self.error: BaseException | None = None
        self.changed = threading.Condition()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for event in self.client.events(self.stop):
                with self.changed:
                    self.events.append(event)
                    self.changed.notify_all()
        except BaseException as exc:  # surfaced by the test, not swallowed
            self.error = exc
            with self.changed:
                self.changed.notify_all()

    def wait_for(self, deletes: int, timeout: float) -> None:
        def done() -> bool:
            n = sum(
                len(e.header["recordIds"])
                for e in self.events
                if e.header["changeType"] == "DELETE"
            )
            return self.error is not None or n >= deletes

        with self.changed:
            assert self.changed.wait_for(done, timeout), f"only {len(self.events)} events"
        assert self.error is None, self.error

    def close(self) -> None:
        self.stop.set()
        self.thread.join(15)
        self.client.close()


@pytest.fixture
def emu(sf_emulator: Emulator) -> Emulator:
    """The session's shared emulator (tests/salesforce/conftest.py), reset for each test."""
    return sf_emulator


def test_concurrent_writers_lose_no_event(emu: Any) -> None:
    consumers = [Consumer(emu) for _ in range(CONSUMERS)]
    tag = uuid.uuid4().hex[:8]
    start = threading.Barrier(WRITERS + 1)

    def writer(index: int) -> list[str]:
        sf = client_for(emu)
        start.wait(timeout=30)
        ids = []
        for n in range(PER_WRITER):
            rid = cast(SFType, sf.Account).create({"Name": f"{tag}-{index}-{n}"})["id"]
            cast(SFType, sf.Account).update(rid, {"NumberOfEmployees": n + 1})
            ids.append(rid)
        sf.session.close()
        return ids

    def collection_writer() -> list[str]:
        sf = client_for(emu)
        start.wait(timeout=30)
        ids = []
        for n in range(5):
            body = {
                "allOrNone": True,
                "records": [
                    {"attributes": {"type": "Account"}, "Name": f"{tag}-col-{n}-{i}"}
                    for i in range(4)
                ],
            }
            result = sf.restful("composite/sobjects", method="POST", json=body)
            assert isinstance(result, list)
            ids += [r["id"] for r in result]
        sf.session.close()
        return ids

    with ThreadPoolExecutor(WRITERS + 1) as pool:
        futures = [pool.submit(writer, i) for i in range(WRITERS)]
        futures.append(pool.submit(collection_writer))
        created = [rid for f in futures for rid in f.result(timeout=120)]
    assert len(set(created)) == WRITERS * PER_WRITER + 20
    sf = client_for(emu)
    for rid in created:  # one final delete each, so the end of the stream is known
        cast(SFType, sf.Account).delete(rid)
    sf.session.close()

    try:
        for consumer in consumers:
            consumer.wait_for(deletes=len(created), timeout=60)
    finally:
        for consumer in consumers:
            consumer.stop.set()  # all at once: each ends after its current long poll
        for consumer in consumers:
            consumer.close()

    streams = [c.events for c in consumers]
    replay_ids = [e.replay_id for e in streams[0]]
    assert all(a < b for a, b in itertools.pairwise(replay_ids))
    for other in streams[1:]:
        assert [e.replay_id for e in other] == replay_ids
    on_bus = [m["data"]["event"]["replayId"] for m in emu.bus.all_events()]
    assert on_bus[-len(replay_ids) :] == replay_ids  # what the bus holds is what arrived

    per_type: dict[str, Counter[str]] = {t: Counter() for t in ("CREATE", "UPDATE", "DELETE")}
    order: dict[str, list[str]] = {}
    for event in streams[0]:
        kind = event.header["changeType"]
        for rid in event.header["recordIds"]:
            per_type[kind][rid] += 1
            order.setdefault(rid, []).append(kind)
    assert set(per_type["CREATE"]) == set(created)
    assert all(n == 1 for n in per_type["CREATE"].values())
    assert all(n == 1 for n in per_type["DELETE"].values())
    assert set(per_type["DELETE"]) == set(created)
    updated = {rid for rid, kinds in order.items() if "UPDATE" in kinds}
    assert len(updated) == WRITERS * PER_WRITER
    for rid, kinds in order.items():
        assert kinds[0] == "CREATE" and kinds[-1] == "DELETE", (rid, kinds)

    commit_numbers = [e.header["commitNumber"] for e in streams[0]]
    assert commit_numbers == sorted(commit_numbers)
    keys = Counter(e.header["transactionKey"] for e in streams[0])
    assert len(keys) == len(
        {(e.header["transactionKey"], e.header["commitNumber"]) for e in streams[0]}
    )
    origins = {e.header["changeOrigin"] for e in streams[0]}
    assert origins == {"com/salesforce/api/rest/62.0;client=syncswim"}
