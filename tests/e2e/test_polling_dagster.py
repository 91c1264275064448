"""Polled syncs in the Dagster definitions: the polling sensor (adaptive interval) or the
schedule (cron) in place of the capture sensor, each starting runs of the same assets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    RunRequest,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
    materialize,
)

from syncswim_defs.factory import build_definitions
from syncswim_defs.naming import sensor_name
from syncswim_defs.polling import (
    INTERVAL_TAG,
    REASON_TAG,
    TOOK_TAG,
    poll_schedule_name,
    poll_sensor_name,
)
from syncswim_defs.resources import SyncSwimResource
from tests.connectors.polling.harness import PolledPair

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

KEY = AssetKey(["app_legacy", "customers"])


def test_the_polling_sensor_replaces_the_capture_sensor_and_starts_runs(
    pg_dsn: str, tmp_path: Path
) -> None:
    pair = PolledPair(pg_dsn, tmp_path)
    # the sensor times its polls by the real clock: with a 10 s minimum a poll would
    # have to take 5 s for the decision to read "load" instead of what is asserted
    text = pair.yaml_path.read_text().replace(
        "poll: {interval: {min: 1s, max: 30s}}", "poll: {interval: {min: 10s, max: 60s}}"
    )
    assert text != pair.yaml_path.read_text()
    pair.yaml_path.write_text(text)
    pair.run(full=True)
    defs = build_definitions(pair.yaml_path, state_url=pair.state_url)
    assert KEY in set(defs.resolve_asset_graph().get_all_asset_keys())
    with pytest.raises(Exception):  # noqa: B017 - Dagster's own error for an unknown name
        defs.resolve_sensor_def(sensor_name("app_legacy"))
    sensor_def = defs.resolve_sensor_def(poll_sensor_name("app_legacy"))
    resource = SyncSwimResource(project_path=str(pair.yaml_path), state_url=pair.state_url)
    with DagsterInstance.ephemeral() as instance:
        ctx = build_sensor_context(instance=instance, resources={"syncswim": resource})
        skipped = sensor_def(ctx)
        assert isinstance(skipped, SkipReason)
        cursor = json.loads(ctx.cursor or "{}")
        decision = cursor["decisions"]["legacy"]
        assert decision["reason"] == "idle: backing off" and decision["interval_s"] == 15
        assert "legacy: every 15 s (idle: backing off)" in (skipped.skip_message or "")

        pair.lite("INSERT INTO customers (name) VALUES ('via the sensor')")
        # the cursor says the next poll is due in 15 s: make it due now
        cursor["decisions"]["legacy"]["due_at"] = 0
        ctx = build_sensor_context(
            instance=instance, resources={"syncswim": resource}, cursor=json.dumps(cursor)
        )
        req = sensor_def(ctx)
        assert isinstance(req, RunRequest)
        assert req.asset_selection == [KEY]
        assert req.tags[f"{INTERVAL_TAG}/legacy"] == "10"
        assert req.tags[f"{REASON_TAG}/legacy"] == "1 changes: polling faster"
        assert float(req.tags[f"{TOOK_TAG}/legacy"]) >= 0  # the poll's own time

        assets = [a for a in defs.assets if KEY in a.keys]
        result = materialize(assets, instance=instance, resources={"syncswim": resource})
        assert result.success
        meta = result.asset_materializations_for_node("app_legacy__customers")[0].metadata
        assert meta["app/inserted"].value == 1
    assert [r["name"] for r in pair.pg_rows()] == ["via the sensor"]


def test_a_cron_poll_is_a_schedule_that_starts_runs(pg_dsn: str, tmp_path: Path) -> None:
    pair = PolledPair(pg_dsn, tmp_path)
    text = pair.yaml_path.read_text().replace(
        "poll: {interval: {min: 1s, max: 30s}}", "poll: {cron: '*/5 * * * *'}"
    )
    pair.yaml_path.write_text(text)
    defs = build_definitions(pair.yaml_path, state_url=pair.state_url)
    with pytest.raises(Exception):  # noqa: B017
        defs.resolve_sensor_def(poll_sensor_name("app_legacy"))
    schedule_def = defs.resolve_schedule_def(poll_schedule_name("app_legacy"))
    assert schedule_def.cron_schedule == "*/5 * * * *"
    resource = SyncSwimResource(project_path=str(pair.yaml_path), state_url=pair.state_url)
    pair.run(full=True)
    pair.lite("INSERT INTO customers (name) VALUES ('via the schedule')")
    # a schedule's context needs an instance it can refer to (not an ephemeral one)
    with instance_for_test() as instance:

        def tick() -> list[RunRequest]:
            # a schedule context opens an instance of its own from the ref and sets it as
            # Dagster's current one until it is closed: left open, it outlives that
            # instance and breaks every later definitions load in this process
            with build_schedule_context(instance=instance, resources={"syncswim": resource}) as ctx:
                return list(schedule_def.evaluate_tick(ctx).run_requests or [])

        (req,) = tick()
        assert isinstance(req, RunRequest) and req.asset_selection == [KEY]
        assets = [a for a in defs.assets if KEY in a.keys]
        assert materialize(assets, instance=instance, resources={"syncswim": resource}).success
        # the next tick reads our key write-back into app_id: one more run, which finds
        # it agreed and writes nothing; after it nothing is pending
        assert len(tick()) == 1
        echo = materialize(assets, instance=instance, resources={"syncswim": resource})
        meta = echo.asset_materializations_for_node("app_legacy__customers")[0].metadata
        written = [k for k in meta if k.endswith(("/inserted", "/updated", "/deleted"))]
        assert sum(meta[k].value for k in written) == 0  # type: ignore[misc]
        assert not tick()
    assert [r["name"] for r in pair.pg_rows()] == ["via the schedule"]
