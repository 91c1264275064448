"""The API budget end to end (PostgreSQL ⇄ the Salesforce emulator through `run_sync`):
with the org's count past the endpoint's api_budget_share, or the org answering
REQUEST_LIMIT_EXCEEDED, the run pauses instead of failing: what it applied is kept, the
rest stays in the journal, the run ends with the entities reported paused and when the
sync tries again; runs before the budget is back ask the org one `limits` question and
nothing else, the capture sensor starts none before the retry time, and the first run
after the count fell back writes every record once. Every run's API calls and the org's
count are in its report and the materialisation metadata."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    RunRequest,
    SkipReason,
    build_sensor_context,
    materialize,
)

from syncswim_defs.factory import build_definitions
from syncswim_defs.metadata import report_metadata
from syncswim_defs.naming import sensor_name
from syncswim_defs.resources import SyncSwimResource
from syncswim_lib.config import load_project
from syncswim_lib.pipeline import pausing
from syncswim_lib.pipeline.runtime import Runtime
from syncswim_lib.sandbox.salesforce.emulator import Emulator, start_emulator
from syncswim_lib.state.pauses import Pause, pauses, set_pause
from tests.connectors.salesforce.conftest import SCHEMA
from tests.e2e.test_salesforce_sync import SYNC, Sides

pytestmark = pytest.mark.integration

WRITES = r"/composite/|/jobs/ingest"


@pytest.fixture(scope="module")
def _emulator() -> Iterator[Emulator]:
    emu = start_emulator(schema=SCHEMA)
    yield emu
    emu.stop()


@pytest.fixture
def s(
    pg_dsn: str, _emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Sides]:
    _emulator.control.reset()
    sides = Sides(pg_dsn, _emulator, tmp_path)
    text = sides.yaml.read_text()
    shared = "    ca_bundle: {env: SFE_SF_CA}\n"
    assert shared in text
    sides.yaml.write_text(text.replace(shared, shared + "    api_budget_share: 0.5\n"))
    for k, v in sides.env.items():
        monkeypatch.setenv(k, v)
    yield sides
    sides.close()


def _ask_every_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A paused endpoint is asked again by every run, not once a minute: the tests' runs
    follow each other within a second."""
    monkeypatch.setattr(pausing, "CHECK_EVERY_S", 0.0)


def _small_batches(s: Sides) -> None:
    """Two customers a batch: a run of ten is five batches, so it can stop between them."""
    text = s.yaml.read_text()
    s.yaml.write_text(text.replace("    retry:", "    batch_size: 2\n    retry:", 1))


def _pending(s: Sides) -> dict[str, int]:
    with Runtime(load_project(s.yaml)) as rt:
        return rt.store.pending_counts(SYNC)


def _pauses(s: Sides) -> list[Pause]:
    with Runtime(load_project(s.yaml)) as rt:
        return pauses(rt.store, SYNC)


def _customers(s: Sides, n: int) -> None:
    s.pg.execute(
        "INSERT INTO customers (code, name) SELECT 'R' || g, 'n' || g "
        f"FROM generate_series(1, {n}) g"
    )


def test_past_the_budget_share_the_run_pauses_and_a_later_run_resumes(
    s: Sides, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = s.run()["customers"]
    usage = first.api_usage["crm"]
    assert usage["calls"] and usage["calls"] > 0 and usage["limit"] == 15_000
    meta = report_metadata(first)
    assert meta["crm/api_calls"] == usage["calls"]
    assert meta["crm/api_usage"] == f"{usage['used']}/{usage['limit']}"
    assert "app/api_calls" not in meta and "paused" not in meta

    _customers(s, 5)
    s.emu.control.set_usage(used=7_600, limit=15_000)  # past half
    paused = s.run()  # ends, not raises
    report = paused["customers"]
    assert report.paused["reason"] == "api budget" and report.paused["endpoint"] == "crm"
    assert "api_budget_share: 0.5" in report.paused["message"]
    meta = report_metadata(report)
    assert meta["paused"] == "api budget" and meta["paused_endpoint"] == "crm"
    assert meta["paused_until"].endswith("UTC") and meta["crm/api_usage"].endswith("/15000")
    assert paused["contacts"].paused["reason"] == "api budget"
    assert s.emu.control.requests(WRITES) == [] and s.accounts() == {}
    assert _pending(s) == {"customers": 5}  # captured and kept in the journal
    (pause,) = _pauses(s)
    assert pause.times == 1 and pause.retry_at > pause.paused_at

    # within a minute of the org's last answer a run asks it nothing at all
    s.emu.control.policy.clear_requests()
    quiet = s.run()["customers"]
    assert quiet.paused["reason"] == "api budget" and quiet.api_usage["crm"]["calls"] == 0
    assert s.emu.control.requests() == []

    # later, still past the share: a run asks the org one question (limits), nothing else
    _ask_every_run(monkeypatch)
    again = s.run()["customers"]
    assert again.paused["reason"] == "api budget" and again.side("crm").inserted == 0
    asked = [(r["method"], r["path"]) for r in s.emu.control.requests("/services/")]
    assert asked == [("GET", "/services/data/v62.0/limits/")]
    assert again.api_usage["crm"]["calls"] == 1

    s.emu.control.set_usage(used=100, limit=15_000)  # the rolling count fell back
    resumed = s.run()["customers"]
    assert not resumed.paused and resumed.side("crm").inserted == 5
    assert sorted(s.accounts()) == [f"R{i}" for i in range(1, 6)]
    assert s.human.query("SELECT COUNT() FROM Account")["totalSize"] == 5
    assert resumed.api_usage["crm"]["used"] is not None
    assert _pauses(s) == [] and _pending(s) == {}
    s.settled()


def test_a_run_that_runs_out_mid_way_keeps_the_batches_it_applied(
    s: Sides, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ask_every_run(monkeypatch)
    _small_batches(s)
    s.run()
    _customers(s, 20)  # ten batches of two, each at least one write call
    # 8 calls short of half the allowance: the run's first calls and first batches go
    # through (about 3 calls before the first write, 2 a batch), then the count reaches
    # the share and the run stops between two batches
    s.emu.control.set_usage(used=7_500 - 8, limit=15_000)
    report = s.run()["customers"]
    done = report.side("crm").inserted
    assert report.paused["reason"] == "api budget"
    assert 0 < done < 20 and done % 2 == 0, done  # whole batches
    assert len(s.accounts()) == done  # what was applied is in the org, and linked
    assert _pending(s)["customers"] == 20 - done

    s.emu.control.set_usage(used=100, limit=15_000)
    resumed = s.run()["customers"]
    assert not resumed.paused and resumed.side("crm").inserted == 20 - done
    assert sorted(s.accounts()) == sorted(f"R{i}" for i in range(1, 21))
    assert s.human.query("SELECT COUNT() FROM Account")["totalSize"] == 20  # none twice
    s.settled()


def test_the_orgs_request_limit_exceeded_pauses_the_same_way(
    s: Sides, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ask_every_run(monkeypatch)
    _small_batches(s)
    s.run()
    _customers(s, 6)
    # the org refuses the second write call of the run: the first batch stays applied
    s.emu.control.add_fault("limit", method="*", path="/composite/sobjects", skip=1, times=1)
    report = s.run()["customers"]
    assert report.paused["reason"] == "api budget"
    assert (
        "REQUEST_LIMIT_EXCEEDED" in report.paused["message"]
        or "limit is exceeded" in (report.paused["message"])
    )
    assert report.side("crm").inserted == 2 and report.retries == []  # not retried in the run
    assert len(s.accounts()) == 2

    resumed = s.run()["customers"]  # the limits check finds the budget open again
    assert not resumed.paused and resumed.side("crm").inserted == 4
    assert s.human.query("SELECT COUNT() FROM Account")["totalSize"] == 6
    assert _pauses(s) == []
    s.settled()


def test_the_capture_sensor_starts_no_run_before_the_retry_time(
    s: Sides, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ask_every_run(monkeypatch)
    defs = build_definitions(s.yaml, state_url=s.env["SFE_STATE_URL"])
    sensor_def = defs.resolve_sensor_def(sensor_name(SYNC))
    resource = SyncSwimResource(project_path=str(s.yaml), state_url=s.env["SFE_STATE_URL"])
    s.run()
    _customers(s, 1)
    s.emu.control.set_usage(used=7_600, limit=15_000)
    assert s.run()["customers"].paused
    with DagsterInstance.ephemeral() as instance:
        s.emu.control.policy.clear_requests()
        skip = sensor_def(build_sensor_context(instance=instance, resources={"syncswim": resource}))
        assert isinstance(skip, SkipReason)
        assert skip.skip_message is not None
        assert skip.skip_message.startswith("paused: api budget of endpoint crm; no run before ")
        assert s.emu.control.requests() == []  # not even a capture
        # a materialisation by hand asks the budget, finds it spent, and succeeds paused
        key = AssetKey([SYNC, "customers"])
        assets = [a for a in defs.assets if key in a.keys]
        result = materialize(assets, instance=instance, resources={"syncswim": resource})
        assert result.success
        meta = result.asset_materializations_for_node(f"{SYNC}__customers")[0].metadata
        assert meta["paused"].value == "api budget" and meta["paused_endpoint"].value == "crm"
        assert [r["path"] for r in s.emu.control.requests("/services/data/")] == [
            "/services/data/v62.0/limits/"
        ]
        # past the retry time the sensor captures and starts the run again, whose first
        # question is the budget
        _past_retry_time(s)
        # the org refuses a call of the sensor's capture for its limit: paused again
        s.emu.control.add_fault("limit", method="GET", path="/describe", times=1)
        skip = sensor_def(build_sensor_context(instance=instance, resources={"syncswim": resource}))
        assert isinstance(skip, SkipReason) and skip.skip_message is not None
        assert skip.skip_message.startswith("paused: api budget of endpoint crm")
        assert _pauses(s)[0].times == 2  # the wait doubles
        _past_retry_time(s)
        req = sensor_def(build_sensor_context(instance=instance, resources={"syncswim": resource}))
        assert isinstance(req, RunRequest)


def _past_retry_time(s: Sides) -> None:
    (pause,) = _pauses(s)
    with Runtime(load_project(s.yaml)) as rt:
        set_pause(rt.store, Pause(**{**pause.__dict__, "retry_at": pause.paused_at}))
