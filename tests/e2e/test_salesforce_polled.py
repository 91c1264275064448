"""PostgreSQL ⇄ Salesforce objects polled by SystemModstamp instead of Change Data
Capture, which the org does not publish for them: a whole endpoint declared
`capture: poll`, and a streamed endpoint with one object without change events (polled
by itself), end to end through the library path (`run_sync`), the emulator reached
through the unmodified simple-salesforce client. The same entities as
tests/e2e/test_salesforce_sync.py: customers ⇄ Account in external-id mode, contacts ⇄
Contact in SOR mode with the lookup.

Each run opens a new runtime, as separate processes would: the polling cursor comes from
the state store."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syncswim_lib.config import load_project
from syncswim_lib.config.cli_validate import run_validate
from syncswim_lib.envelope import WatermarkPosition
from syncswim_lib.pipeline.runtime import Runtime
from syncswim_lib.sandbox.salesforce.emulator import Emulator, start_emulator
from tests.connectors.salesforce.conftest import SCHEMA
from tests.e2e.test_salesforce_sync import YAML, Sides

pytestmark = pytest.mark.integration

SYNC = "app_crm"
POLL = "        poll: {crm: {column: SystemModstamp, deleted: {column: IsDeleted}}}\n"
POLLED_YAML = (
    YAML.replace("RUN_MODE", "micro_batch")
    .replace(
        "    ca_bundle: {env: SFE_SF_CA}\n", "    ca_bundle: {env: SFE_SF_CA}\n    capture: poll\n"
    )
    .replace(
        "        fields: {name: Name, tier: Tier__c, credit: Credit__c}\n",
        "        fields: {name: Name, tier: Tier__c, credit: Credit__c}\n" + POLL,
    )
    .replace(
        "        references: {customer_id: customers}\n",
        "        references: {customer_id: customers}\n" + POLL,
    )
)


class Polled(Sides):
    def __init__(self, pg_dsn: str, emu: Emulator, workdir: Path) -> None:
        super().__init__(pg_dsn, emu, workdir)
        self.yaml.write_text(POLLED_YAML)
        for name in ("Account", "Contact"):
            emu.bus.disable(name)  # no change events: only a poll can see changes

    def captured(self) -> dict[str, int]:
        return {name: r.captured for name, r in self.run().items()}


@pytest.fixture(scope="module")
def _emulator() -> Iterator[Emulator]:
    emu = start_emulator(schema=SCHEMA)
    yield emu
    emu.stop()


@pytest.fixture
def s(
    pg_dsn: str, _emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Polled]:
    _emulator.control.reset()
    sides = Polled(pg_dsn, _emulator, tmp_path)
    for k, v in sides.env.items():
        monkeypatch.setenv(k, v)
    yield sides
    sides.close()


def test_inserts_updates_and_deletes_both_ways(s: Polled) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run_validate(str(s.yaml), live=True, out=out, err=err) == 0, err.getvalue()
    s.run()  # setup: the cursors start now
    s.pg.execute("INSERT INTO customers (code, name, tier) VALUES ('C1', 'Acme', 'Gold')")
    [cust] = s.pg_rows("customers")
    s.pg.execute("INSERT INTO contacts (last_name, customer_id) VALUES ('Ada', %s)", (cust["id"],))
    s.run()
    acme = s.accounts()["C1"]
    assert (acme["Name"], acme["Tier__c"]) == ("Acme", "Gold")
    [ada] = s.contacts()
    assert (ada["LastName"], ada["AccountId"]) == ("Ada", acme["Id"])
    s.settled()  # the poll reads our writes back: equal to the shadow, nothing written
    # Salesforce -> PostgreSQL
    s.human.Account.update(acme["Id"], {"Name": "Acme Corp"})
    s.human.Account.create({"Name": "Globex", "Code__c": "C2"})
    s.run()
    assert {r["code"]: r["name"] for r in s.pg_rows("customers")} == {
        "C1": "Acme Corp",
        "C2": "Globex",
    }
    s.settled()
    # PostgreSQL -> Salesforce, then deletes both ways
    s.pg.execute("UPDATE customers SET tier = 'Silver' WHERE code = 'C1'")
    s.pg.execute("DELETE FROM contacts")
    s.run()
    assert s.accounts()["C1"]["Tier__c"] == "Silver"
    assert s.contacts() == []
    s.settled()  # our delete is in the recycle bin, read back: nothing to do
    s.human.Account.delete(s.accounts()["C2"]["Id"])
    s.run()
    assert [r["code"] for r in s.pg_rows("customers")] == ["C1"]
    s.settled()


def test_a_change_is_captured_once_and_a_new_process_resumes_from_the_cursor(
    s: Polled,
) -> None:
    s.run()
    s.human.Account.create({"Name": "Initech", "Code__c": "I1"})
    assert s.captured()["customers"] == 1
    # the record is still inside the safety lag, so each poll reads it again; the
    # boundary de-duplication keeps it from being journaled twice, across processes
    assert s.captured()["customers"] == 0
    with Runtime(load_project(s.yaml)) as rt:
        stored = rt.store.get_position(SYNC, "crm")
    assert isinstance(stored, WatermarkPosition) and stored.seen_keys
    s.human.Account.create({"Name": "Hooli", "Code__c": "H1"})
    assert s.captured()["customers"] == 1
    assert sorted(r["code"] for r in s.pg_rows("customers")) == ["H1", "I1"]
    s.settled()


def test_records_sharing_one_stamp_across_runs_are_captured_once(s: Polled) -> None:
    """The org's clock stopped: every record it writes carries the same SystemModstamp,
    as records written within one second do on a real org."""
    s.emu.control.clock_set(datetime.now(UTC).replace(microsecond=0), frozen=True)
    s.run()
    s.human.Account.create({"Name": "First", "Code__c": "S1"})
    assert s.captured()["customers"] == 1
    s.human.Account.create({"Name": "Second", "Code__c": "S2"})  # the same stamp
    assert s.captured()["customers"] == 1
    assert s.captured()["customers"] == 0
    stamps = {r["SystemModstamp"] for r in s.sf_rows("SELECT SystemModstamp FROM Account")}
    assert len(stamps) == 1
    assert sorted(r["code"] for r in s.pg_rows("customers")) == ["S1", "S2"]
    s.settled()


def test_a_restart_of_the_org_resumes_from_the_stored_cursor(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "org"
    first = start_emulator(schema=SCHEMA, data_dir=data)
    s = Polled(pg_dsn, first, tmp_path)
    for k, v in s.env.items():
        monkeypatch.setenv(k, v)
    try:
        s.run()
        s.pg.execute("INSERT INTO customers (code, name) VALUES ('C1', 'Before')")
        s.run()
        s.human.Account.create({"Name": "While we were away", "Code__c": "H1"})
        s.human.session.close()
    finally:
        first.stop()
    second = start_emulator(schema=SCHEMA, data_dir=data, port=first.port)
    try:
        s.human = second.client(user="human")
        s.run()
        assert sorted(r["code"] for r in s.pg_rows("customers")) == ["C1", "H1"]
        assert sorted(s.accounts()) == ["C1", "H1"]
        s.settled()
    finally:
        s.close()
        second.stop()


def test_the_polling_sensor_serves_the_sync(s: Polled) -> None:
    from syncswim_defs.polling import polling_parts

    sensors, schedules = polling_parts(load_project(s.yaml))
    assert [x.name for x in sensors] == [f"{SYNC}__poll"] and schedules == []


def _until(check: Callable[[], bool], run: Callable[[], object], timeout: float = 60.0) -> None:
    """Run the sync until `check` holds: a polled object is read when its interval is
    due (5 s after a poll that found changes), not at every run."""
    deadline = time.monotonic() + timeout
    while True:
        run()
        if check():
            return
        assert time.monotonic() < deadline, "the polled change did not arrive in time"


def test_an_object_without_change_events_on_a_streamed_endpoint_is_polled(
    pg_dsn: str, _emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _emulator.control.reset()
    s = Sides(pg_dsn, _emulator, tmp_path)  # capture: stream, the default
    for k, v in s.env.items():
        monkeypatch.setenv(k, v)
    try:
        _emulator.bus.disable("Contact")  # Account publishes its changes, Contact does not
        out, err = io.StringIO(), io.StringIO()
        assert run_validate(str(s.yaml), live=True, out=out, err=err) == 0, err.getvalue()
        assert "Change Data Capture is not enabled for Contact" in err.getvalue()
        s.run()
        s.pg.execute("INSERT INTO customers (code, name) VALUES ('C1', 'Acme')")
        [cust] = s.pg_rows("customers")
        s.pg.execute(
            "INSERT INTO contacts (last_name, customer_id) VALUES ('Ada', %s)", (cust["id"],)
        )
        s.run()
        [ada] = s.contacts()
        assert ada["AccountId"] == s.accounts()["C1"]["Id"]
        # a person's edits: the Account's arrives by its change event at once, the
        # Contact's when the next poll is due
        s.human.Contact.update(ada["Id"], {"LastName": "Lovelace"})
        s.human.Account.update(ada["AccountId"], {"Name": "Acme Corp"})
        s.run()
        assert s.pg_rows("customers")[0]["name"] == "Acme Corp"
        _until(lambda: s.pg_rows("contacts")[0]["last_name"] == "Lovelace", s.run)
        with Runtime(load_project(s.yaml)) as rt:
            stored = rt.store.get_position(SYNC, "crm")
        assert isinstance(stored, WatermarkPosition) and '"replay"' in stored.watermark
        s.human.Contact.delete(ada["Id"])
        _until(lambda: s.pg_rows("contacts") == [], s.run)
        s.settled()
    finally:
        s.close()
