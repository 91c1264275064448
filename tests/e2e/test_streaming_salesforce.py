"""The streaming run (`run: streaming`) between PostgreSQL and the Salesforce emulator: the
replication stream on one side, one CometD session long-polling Change Data Capture on the
other (connectors/salesforce/stream.py), through the same loop as two databases."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncswim_lib.config import load_project
from syncswim_lib.config.cli_validate import run_validate
from syncswim_lib.connectors.salesforce.stream import SalesforceStream
from syncswim_lib.envelope import ReplayPosition, WatermarkPosition
from syncswim_lib.errors import ConfigError, FatalError
from syncswim_lib.pipeline.runtime import Runtime
from syncswim_lib.pipeline.streaming import Batch, StreamingRun
from syncswim_lib.sandbox.salesforce import cometd
from syncswim_lib.sandbox.salesforce.emulator import Emulator, start_emulator
from syncswim_lib.state import leases
from tests.connectors.salesforce.conftest import SCHEMA
from tests.e2e.harness import wait_for
from tests.e2e.test_salesforce_sync import SYNC, YAML, Sides

pytestmark = pytest.mark.integration

STREAMING_YAML = YAML.replace("    run: RUN_MODE\n", "    run: streaming\n")


class Streamer:
    """A StreamingRun in a thread of the test process, with its batches recorded."""

    def __init__(self, yaml: Path) -> None:
        self.rt = Runtime(load_project(yaml))
        self.batches: list[Batch] = []
        self.error: BaseException | None = None
        self.result: str | None = None
        self.run = StreamingRun(self.rt, SYNC, on_batch=self.batches.append)
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        try:
            self.result = self.run.run()
        except BaseException as exc:  # reported by the test
            self.error = exc

    @property
    def crm(self) -> SalesforceStream:
        stream = self.run.streams["crm"]
        assert isinstance(stream, SalesforceStream)
        return stream

    def start(self) -> Streamer:
        self.thread.start()
        wait_for(lambda: len(self.run.streams) == 2 or self.error, 30, "both streams open")
        assert self.error is None, self.error
        # the CometD session subscribed and its first connect answered: a change from
        # now on is in an event the session receives
        self.crm_stream = self.crm  # kept after the run ends (it forgets its streams)
        wait_for(lambda: self.crm.connected.is_set() or self.error, 20, "the CometD session")
        return self

    def stop(self, timeout: float = 30) -> str:
        leases.request_stop(self.rt.store, SYNC, "test")
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the streaming run did not stop"
        leases.clear_stop(self.rt.store, SYNC)
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def close(self) -> None:
        if self.thread.is_alive():
            self.stop()
        self.rt.close()


@pytest.fixture(scope="module")
def _emulator() -> Iterator[Emulator]:
    emu = start_emulator(schema=SCHEMA)
    yield emu
    emu.stop()


def _sides(pg_dsn: str, emu: Emulator, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Sides:
    sides = Sides(pg_dsn, emu, workdir)
    sides.yaml.write_text(STREAMING_YAML)
    for k, v in sides.env.items():
        monkeypatch.setenv(k, v)
    return sides


@pytest.fixture
def s(
    pg_dsn: str, _emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Sides]:
    _emulator.control.reset()
    sides = _sides(pg_dsn, _emulator, tmp_path, monkeypatch)
    yield sides
    sides.close()


def names(s: Sides) -> list[str]:
    return sorted(str(r["name"]) for r in s.pg_rows("customers"))


def replay_of(st: Streamer, endpoint: str) -> int:
    position = st.rt.store.get_position(SYNC, endpoint)
    return position.replay_id if isinstance(position, ReplayPosition) else -2


def writes(batches: list[Batch]) -> int:
    return sum(
        r.side(side).inserted + r.side(side).updated + r.side(side).deleted
        for b in batches
        for r in b.reports.values()
        for side in ("app", "crm")
    )


def test_streaming_is_the_default_and_changes_flow_both_ways(s: Sides) -> None:
    """Both endpoints stream, so the sync without `run:` is a streaming one; changes on
    either side arrive while the run goes on; our own writes come back only as echoes."""
    s.yaml.write_text(YAML.replace("    run: RUN_MODE\n", ""))
    assert load_project(s.yaml).syncs[SYNC].run == "streaming"
    st = Streamer(s.yaml).start()
    try:
        s.pg.execute("INSERT INTO customers (code, name) VALUES ('C1', 'From pg')")
        wait_for(lambda: "C1" in s.accounts(), 20, "pg -> salesforce")
        s.human.Account.create({"Name": "From crm", "Code__c": "H1"})
        wait_for(lambda: names(s) == ["From crm", "From pg"], 20, "salesforce -> pg")
        account = s.accounts()["C1"]
        s.human.Account.update(account["Id"], {"Name": "Renamed in crm"})
        wait_for(lambda: "Renamed in crm" in names(s), 20, "an update salesforce -> pg")
        s.pg.execute("UPDATE customers SET tier = 'Gold' WHERE code = 'H1'")
        wait_for(lambda: s.accounts()["H1"]["Tier__c"] == "Gold", 20, "an update pg -> sf")
        # the echo of our last write to the org reaches the journal's position (and is
        # left out: it writes nothing back)
        latest = s.emu.bus.latest_replay_id()
        wait_for(lambda: replay_of(st, "crm") >= latest, 20, "the org's last event journaled")
        assert st.thread.is_alive() and st.error is None
        assert st.crm.sessions == 1  # one CometD session all along
        done = writes(st.batches)
        assert "stop requested" in st.stop()
    finally:
        st.close()
    assert done == 4  # each change written once, nothing bounced back
    assert names(s) == ["From crm", "Renamed in crm"]
    s.settled()


def test_stopping_ends_at_a_batch_boundary_with_everything_journaled(s: Sides) -> None:
    st = Streamer(s.yaml).start()
    try:
        for i in range(5):
            s.human.Account.create({"Name": f"n{i}", "Code__c": f"K{i}"})
        wait_for(lambda: len(s.pg_rows("customers")) == 5, 20, "five accounts in pg")
        assert "stop requested" in st.stop()
        # nothing journaled and left: the last batch applied what its capture took
        assert st.rt.store.pending_counts(SYNC) == {}
        assert len(st.crm_stream.buffer) == 0  # the journal confirmed all it had
        stored = st.rt.store.get_position(SYNC, "crm")
    finally:
        st.close()
    again = Streamer(s.yaml).start()  # the next run resumes at the stored replay id
    try:
        assert again.crm.capture(SYNC, ["Account"], stored, 100).changes == ()
        s.human.Account.create({"Name": "after", "Code__c": "K9"})
        wait_for(lambda: len(s.pg_rows("customers")) == 6, 20, "the next run goes on")
    finally:
        again.close()


def test_a_gap_event_leads_to_a_reconciliation(s: Sides) -> None:
    st = Streamer(s.yaml).start()
    try:
        # a record the org changed without describing it, then the gap event
        [quiet] = s.emu.control.seed("Account", [{"Name": "Quiet", "Code__c": "Q1"}], publish=False)
        user = s.emu.users["integration"].user_id
        s.emu.bus.inject("Account", "GAP_UPDATE", [quiet], user)
        wait_for(lambda: names(s) == ["Quiet"], 20, "the entity reconciled from a snapshot")
        s.human.Account.create({"Name": "Later", "Code__c": "L1"})
        wait_for(lambda: names(s) == ["Later", "Quiet"], 20, "the stream going on")
        assert st.thread.is_alive() and st.error is None
    finally:
        st.close()
    s.settled()


def test_an_expired_replay_id_leads_to_a_reconciliation(s: Sides) -> None:
    st = Streamer(s.yaml).start()
    try:
        s.human.Account.create({"Name": "First", "Code__c": "F1"})
        wait_for(lambda: names(s) == ["First"], 20, "a replay id journaled")
    finally:
        st.close()
    # while no run streams: a change, then the org forgets every event (the stored
    # replay id falls out of the retention window)
    s.human.Account.create({"Name": "Meanwhile", "Code__c": "M1"})
    s.emu.bus.expire(datetime.now(UTC) + timedelta(days=1))
    st = Streamer(s.yaml).start()
    try:
        wait_for(lambda: names(s) == ["First", "Meanwhile"], 20, "the entity reconciled")
        s.human.Account.create({"Name": "Next", "Code__c": "N1"})
        wait_for(lambda: names(s) == ["First", "Meanwhile", "Next"], 20, "a new session")
        assert st.crm.sessions == 1  # the refused subscription is not one: then the new id
    finally:
        st.close()


def test_an_emulator_restart_resumes_from_the_stored_replay_id(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The org goes away mid-stream and comes back (records and events on disk): the
    session is opened again after the replay id journaled; what was published before and
    after arrives once."""
    data = tmp_path / "org"
    first = start_emulator(schema=SCHEMA, data_dir=data)
    s = _sides(pg_dsn, first, tmp_path, monkeypatch)
    second: Emulator | None = None
    st = Streamer(s.yaml).start()
    try:
        s.human.Account.create({"Name": "Before", "Code__c": "B1"})
        wait_for(lambda: names(s) == ["Before"], 20, "the first account")
        s.human.session.close()
        first.stop()
        second = start_emulator(schema=SCHEMA, data_dir=data, port=first.port)
        # CometD refused (503) while the Account is created: its event can only come by
        # the new session's replay from the journaled replay id
        second.control.add_fault("error", method="POST", path="^/cometd", times=None, status=503)
        s.human = second.client(user="human")
        s.human.Account.create({"Name": "While reconnecting", "Code__c": "W1"})
        sessions = st.crm_stream.sessions
        second.control.clear_faults()
        wait_for(lambda: names(s) == ["Before", "While reconnecting"], 30, "after the restart")
        assert st.crm_stream.sessions > sessions
        s.pg.execute("INSERT INTO customers (code, name) VALUES ('P1', 'From pg')")
        wait_for(lambda: "P1" in s.accounts(), 20, "pg -> the restarted org")
        assert st.crm.sessions >= 2 and st.error is None
        assert "stop requested" in st.stop()
        assert sorted(s.accounts()) == ["B1", "P1", "W1"]
        assert len(s.pg_rows("customers")) == 3
        s.settled()
    finally:
        st.close()
        s.close()
        if second is not None:
            second.stop()


def test_objects_without_change_data_capture_cannot_stream(s: Sides) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run_validate(str(s.yaml), live=True, out=out, err=err) == 0, err.getvalue()
    s.emu.bus.disable("Contact")
    out, err = io.StringIO(), io.StringIO()
    assert run_validate(str(s.yaml), live=True, out=out, err=err) == 2
    assert "run: streaming cannot read Contact" in err.getvalue()
    assert "use run: micro_batch" in err.getvalue()
    st = Streamer(s.yaml)
    st.thread.start()
    st.thread.join(30)
    assert isinstance(st.error, ConfigError)
    assert "Change Data Capture is not enabled for it" in str(st.error)
    st.rt.close()


def test_a_polled_salesforce_endpoint_is_refused_for_streaming(s: Sides) -> None:
    polled = STREAMING_YAML.replace(
        "    ca_bundle: {env: SFE_SF_CA}\n", "    ca_bundle: {env: SFE_SF_CA}\n    capture: poll\n"
    )
    s.yaml.write_text(polled)
    with pytest.raises(ConfigError, match="not supported yet for polled endpoints"):
        load_project(s.yaml)


def test_a_refused_token_fails_the_run_after_one_new_login(s: Sides) -> None:
    """A session token (no login form to get a new one): logging in again gives the
    same refused token, and the run fails instead of reconnecting forever."""
    st = Streamer(s.yaml).start()
    try:
        s.emu.control.revoke(token=s.env["SFE_SF_TOKEN"])
        cometd.sessions(s.emu.bus).drop()  # the next connect handshakes again
        st.thread.join(30)
        assert not st.thread.is_alive()
        assert isinstance(st.error, FatalError)
        assert "refused the change stream's token" in str(st.error)
    finally:
        st.rt.close()


def test_a_refused_token_is_replaced_by_a_new_login(
    s: Sides, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a login form (OAuth username-password) the stream logs in again on its own
    and goes on from the replay id it had."""
    login = {
        "SFE_SF_LOGIN": s.emu.url,
        "SFE_SF_USER": "integration@syncswim.emulator",
        "SFE_SF_PASSWORD": "integration-password",
        "SFE_SF_KEY": "syncswim-emulator-key",
        "SFE_SF_SECRET": "syncswim-emulator-secret",
    }
    for k, v in login.items():
        monkeypatch.setenv(k, v)
    s.yaml.write_text(
        STREAMING_YAML.replace(
            "    token: {env: SFE_SF_TOKEN}\n",
            "    login_url: {env: SFE_SF_LOGIN}\n    username: {env: SFE_SF_USER}\n"
            "    password: {env: SFE_SF_PASSWORD}\n    consumer_key: {env: SFE_SF_KEY}\n"
            "    consumer_secret: {env: SFE_SF_SECRET}\n",
        )
    )
    st = Streamer(s.yaml).start()
    try:
        s.emu.control.revoke(token=st.rt.connector("crm").api.token())  # type: ignore[attr-defined]
        cometd.sessions(s.emu.bus).drop()  # the next connect handshakes with the old token
        s.human.Account.create({"Name": "After the new login", "Code__c": "A1"})
        wait_for(lambda: names(s) == ["After the new login"], 20, "the stream going on")
        assert st.crm.sessions == 2 and st.error is None
    finally:
        st.close()


def test_a_position_with_polling_cursors_moves_to_the_replay_id(s: Sides) -> None:
    """Micro-batch runs polled Contact (no change events): the stored position carries its
    cursor. Once Contact publishes events again, the streaming run's first capture reads
    it one last time and stores the plain replay id; then the stream carries it."""
    micro = YAML.replace("RUN_MODE", "micro_batch")
    s.yaml.write_text(micro)
    s.emu.bus.disable("Contact")
    s.run()
    s.pg.execute("INSERT INTO customers (code, name) VALUES ('C1', 'Acme')")
    s.run()
    with Runtime(load_project(s.yaml)) as rt:
        assert isinstance(rt.store.get_position(SYNC, "crm"), WatermarkPosition)
    account = s.accounts()["C1"]["Id"]
    s.human.Contact.create({"LastName": "Polled", "AccountId": account})  # no event
    s.emu.bus.enable("Contact")
    s.yaml.write_text(STREAMING_YAML)
    st = Streamer(s.yaml).start()
    try:
        s.human.Account.update(account, {"Name": "Acme Corp"})  # wakes the loop
        wait_for(lambda: names(s) == ["Acme Corp"], 20, "the Account's event")
        wait_for(lambda: len(s.pg_rows("contacts")) == 1, 20, "the last poll's Contact")
        assert isinstance(st.rt.store.get_position(SYNC, "crm"), ReplayPosition)
        s.human.Contact.create({"LastName": "Streamed", "AccountId": account})
        wait_for(lambda: len(s.pg_rows("contacts")) == 2, 20, "a Contact by its event")
    finally:
        st.close()
    s.settled()
