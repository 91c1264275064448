"""The streaming run (`run: streaming`): one long-lived writer per sync reading both change
streams continuously, in the library and through the Dagster definitions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from syncswim_defs.streaming import READY
from syncswim_lib.config import load_project
from syncswim_lib.config.models import StreamingSettings
from syncswim_lib.pipeline.runtime import Runtime
from syncswim_lib.pipeline.streaming import Batch, StreamingRun
from syncswim_lib.state import leases, open_store
from tests.e2e.dagster_dev import DagsterDev
from tests.e2e.harness import TwoDbs, wait_for

SYNC = "app_shop"


def streaming_yaml(dbs: TwoDbs, **settings: int) -> None:
    extra = ""
    if settings:
        extra = "    streaming: {" + ", ".join(f"{k}: {v}" for k, v in settings.items()) + "}\n"
    text = dbs.yaml_path.read_text().replace(
        "    run: micro_batch\n", "    run: streaming\n" + extra
    )
    dbs.yaml_path.write_text(text)


class Streamer:
    """A StreamingRun in a thread of the test process, with its batches recorded."""

    def __init__(self, dbs: TwoDbs, **kwargs: Any) -> None:
        self.rt = Runtime(load_project(dbs.yaml_path), dbs.state_url)
        self.batches: list[Batch] = []
        self.error: BaseException | None = None
        self.result: str | None = None
        self.run = StreamingRun(self.rt, SYNC, on_batch=self.batches.append, **kwargs)
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        try:
            self.result = self.run.run()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def start(self) -> Streamer:
        self.thread.start()
        wait_for(lambda: len(self.run.streams) == 2 or self.error, 30, "both streams open")
        assert self.error is None, self.error
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


@pytest.fixture
def streaming(dbs: TwoDbs) -> Iterator[TwoDbs]:
    streaming_yaml(dbs)
    yield dbs


def test_changes_flow_both_ways_while_the_run_keeps_going(streaming: TwoDbs) -> None:
    dbs = streaming
    s = Streamer(dbs).start()
    try:
        dbs.pg.execute("INSERT INTO customers (name, n_int) VALUES ('ada', 1)")
        row = wait_for(
            lambda: [r for r in dbs.my_rows("customers") if r["name"] == "ada"], 20, "pg -> my"
        )[0]
        dbs.my_exec("UPDATE customers SET n_int = 2 WHERE id = %s", (row["id"],))
        wait_for(lambda: dbs.pg_rows("customers")[0]["n_int"] == 2, 20, "my -> pg")
        dbs.my_exec("INSERT INTO products (code, title) VALUES ('p-1', 'pen')")
        wait_for(lambda: len(dbs.pg_rows("products")) == 1, 20, "new product my -> pg")
        wait_for(lambda: len(s.batches) >= 3, 10, "three batches reported")
        assert s.thread.is_alive() and s.error is None
        assert "stop requested" in s.stop()
    finally:
        s.close()
    assert len(dbs.pg_rows("customers")) == 1 and len(dbs.my_rows("customers")) == 1


# --- through Dagster: the sensor daemon and real run processes ----------------------------

STREAM_JOB = "app_shop__streaming"
STREAM_SENSOR = "app_shop__streaming_sensor"


def streaming_lease(dbs: TwoDbs) -> leases.LeaseInfo | None:
    store = open_store(dbs.state_url)
    try:
        held = [h for h in leases.holders(store, SYNC) if h.purpose.startswith("streaming run")]
    finally:
        store.close()
    return held[0] if held else None


def materialisations(instance: Any, entity: str) -> int:
    from dagster import AssetKey

    result = instance.fetch_materializations(AssetKey([SYNC, entity]), limit=1000)
    return len(result.records)


def run_status(instance: Any, run_id: str) -> Any:
    run = instance.get_run_by_id(run_id)
    return None if run is None else run.status


def logged(instance: Any, run_id: str, text: str) -> bool:
    return any(text in (e.user_message or "") for e in instance.all_logs(run_id))


def blocked_statements(dbs: TwoDbs, locker_id: int) -> list[Any]:
    """Statements of other sessions running for a second or more (waiting on a lock)."""
    with dbs.my.cursor() as cur:
        cur.execute(
            "SELECT ID, STATE, INFO FROM information_schema.PROCESSLIST WHERE COMMAND = 'Query' "
            "AND TIME >= 1 AND ID NOT IN (CONNECTION_ID(), %s) AND INFO IS NOT NULL",
            (locker_id,),
        )
        return list(cur.fetchall())


def test_streaming_run_through_dagster(streaming: TwoDbs, tmp_path: Path) -> None:
    """The sensor keeps one streaming run up; changes flow both ways while it goes on and
    each asset's history grows; a kill of its process while a batch waits on a row lock in
    MariaDB loses and duplicates nothing and the sensor starts the next run; turning the
    sensor off ends that run at a batch boundary."""
    from dagster import DagsterRunStatus

    dbs = streaming
    dev = DagsterDev(tmp_path, dbs.yaml_path).start()
    try:
        instance = dev.instance()
        first = wait_for(
            lambda: streaming_lease(dbs) or (not dev.alive() and pytest.fail(dev.log())),
            240,
            "the sensor to start a streaming run",
        )
        run_id = first.holder.removeprefix("run:")
        wait_for(lambda: logged(instance, run_id, READY), 60, "both change streams open")
        assert run_status(instance, run_id) == DagsterRunStatus.STARTED

        dbs.pg.execute("INSERT INTO customers (name, n_int) VALUES ('ada', 1)")
        shop = wait_for(
            lambda: [r for r in dbs.my_rows("customers") if r["name"] == "ada"], 30, "pg -> my"
        )[0]
        dbs.my_exec("UPDATE customers SET n_int = 2 WHERE id = %s", (shop["id"],))
        wait_for(lambda: dbs.pg_rows("customers")[0]["n_int"] == 2, 30, "my -> pg")
        wait_for(lambda: materialisations(instance, "customers") >= 2, 30, "two materialisations")
        assert run_status(instance, run_id) == DagsterRunStatus.STARTED  # the same run goes on
        assert streaming_lease(dbs) == first or streaming_lease(dbs).holder == first.holder  # type: ignore[union-attr]

        # a batch in flight: its MariaDB apply waits on a row lock the test holds
        locker = pymysql.connect(**dbs.my_args)
        try:
            with locker.cursor() as cur:
                cur.execute("BEGIN")
                cur.execute("SELECT * FROM customers WHERE id = %s FOR UPDATE", (shop["id"],))
            with dbs.pg.transaction():
                dbs.pg.execute("UPDATE customers SET n_int = 3 WHERE name = 'ada'")
                dbs.pg.execute("INSERT INTO customers (name, n_int) VALUES ('grace', 7)")
            wait_for(
                lambda: blocked_statements(dbs, locker.thread_id()),
                30,
                "the run's apply to wait on the lock",
            )
            os.kill(first.pid, signal.SIGKILL)
        finally:
            locker.rollback()
            locker.close()

        second = wait_for(
            lambda: (le := streaming_lease(dbs)) is not None and le.holder != first.holder and le,
            120,
            "the sensor to start the next streaming run",
        )
        wait_for(
            lambda: (
                sorted((r["name"], r["n_int"]) for r in dbs.my_rows("customers"))
                == [("ada", 3), ("grace", 7)]
            ),
            60,
            "the killed batch applied by the next run",
        )
        assert run_status(instance, run_id) == DagsterRunStatus.FAILURE
        pg_rows = dbs.pg_rows("customers")
        assert [(r["name"], r["n_int"]) for r in pg_rows] == [("ada", 3), ("grace", 7)]
        apps = sorted(r["app_id"] for r in dbs.my_rows("customers"))
        assert apps == [r["id"] for r in pg_rows]  # each linked once: nothing duplicated

        done = dev.cli("sensor", "stop", STREAM_SENSOR)
        assert done.returncode == 0, done.stdout + done.stderr
        next_id = second.holder.removeprefix("run:")
        wait_for(
            lambda: run_status(instance, next_id) == DagsterRunStatus.SUCCESS,
            60,
            "the streaming run to end once its sensor is off",
        )
        assert streaming_lease(dbs) is None
        assert logged(instance, next_id, f"ended at a batch boundary: sensor {STREAM_SENSOR} was")
    finally:
        dev.stop()


def test_definitions_of_a_streaming_sync(streaming: TwoDbs) -> None:
    """A streaming sync gets its job and keeper sensor instead of the capture sensor."""
    from syncswim_defs.factory import build_definitions
    from syncswim_defs.naming import sensor_name

    defs = build_definitions(streaming.yaml_path, state_url=streaming.state_url)
    assert defs.resolve_job_def(STREAM_JOB) is not None
    assert defs.resolve_sensor_def(STREAM_SENSOR) is not None
    with pytest.raises(Exception, match="capture"):
        defs.resolve_sensor_def(sensor_name(SYNC))


# --- one writer: the streaming run against an asset step and `syncswim sync` -------------


def test_a_manual_materialisation_while_streaming_is_no_second_writer(
    streaming: TwoDbs, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster import AssetKey, DagsterInstance, materialize

    import syncswim_defs.streaming as defs_streaming
    from syncswim_defs.factory import build_definitions

    dbs = streaming
    monkeypatch.setattr(defs_streaming, "ASSET_WAIT_S", 0.5)
    s = Streamer(dbs).start()
    try:
        defs = build_definitions(dbs.yaml_path, state_url=dbs.state_url)
        asset = defs.resolve_assets_def(AssetKey([SYNC, "customers"]))
        with DagsterInstance.ephemeral() as instance:
            result = materialize([asset], instance=instance, raise_on_error=False)
        assert not result.success
        failure = result.failure_data_for_node("app_shop__customers")
        assert failure is not None
        text = str(failure.error)
        assert "WriterBusy" in text and "is being written by streaming run" in text
        assert "syncswim stop" in text
        # the streaming run goes on as the one writer
        dbs.pg.execute("INSERT INTO customers (name) VALUES ('still streaming')")
        wait_for(lambda: dbs.my_rows("customers"), 20, "the streaming run to carry on")
        assert s.error is None
    finally:
        s.close()
    # once it has stopped, the asset is free to run
    defs = build_definitions(dbs.yaml_path, state_url=dbs.state_url)
    asset = defs.resolve_assets_def(AssetKey([SYNC, "customers"]))
    with DagsterInstance.ephemeral() as instance:
        assert materialize([asset], instance=instance).success


def test_syncswim_sync_while_streaming_waits_then_names_the_writer(
    streaming: TwoDbs, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from syncswim_lib.cli import main
    from syncswim_lib.pipeline import admin

    monkeypatch.setattr(admin, "SYNC_WAIT_S", 0.3)
    s = Streamer(streaming).start()
    try:
        assert main(["sync", str(streaming.yaml_path)]) == 1
    finally:
        s.close()
    err = capsys.readouterr().err
    assert "app_shop: sync app_shop is being written by streaming run" in err
    assert main(["sync", str(streaming.yaml_path)]) == 0


def test_a_second_streaming_run_waits_for_the_first(streaming: TwoDbs) -> None:
    first = Streamer(streaming).start()
    second = Streamer(streaming, lease_wait_s=0.3)
    try:
        second.thread.start()
        second.thread.join(30)
        assert isinstance(second.error, leases.WriterBusy)
        assert second.run.streams == {}  # it never opened a reader
    finally:
        first.close()
        second.rt.close()


# --- stopping --------------------------------------------------------------------------------


def test_syncswim_stop_ends_the_run_at_a_batch_boundary_and_holds_it(
    streaming: TwoDbs, capsys: pytest.CaptureFixture[str]
) -> None:
    from syncswim_lib.cli import main

    dbs = streaming
    s = Streamer(dbs).start()
    try:
        dbs.pg.execute("INSERT INTO customers (name) VALUES ('before the stop')")
        wait_for(lambda: s.batches, 20, "a batch")
        assert main(["stop", str(dbs.yaml_path), SYNC, "--wait", "30"]) == 0
        s.thread.join(10)
        assert not s.thread.is_alive() and s.error is None
        assert s.result is not None and s.result.startswith("stop requested: syncswim stop at")
        out = capsys.readouterr().out
        assert "the streaming run stopped at a batch boundary" in out
        # everything journaled was applied: nothing pending is left behind
        assert s.rt.store.pending_counts(SYNC) == {}
        # the request stands: a new run stops at once, until --resume
        again = Streamer(dbs).start()
        again.thread.join(10)
        assert again.result is not None and again.result.startswith("stop requested")
        again.rt.close()
        assert main(["stop", str(dbs.yaml_path), SYNC, "--resume"]) == 0
        assert "stop request cleared" in capsys.readouterr().out
        assert main(["stop", str(dbs.yaml_path), SYNC, "--resume"]) == 0
        assert "no stop request to clear" in capsys.readouterr().out
    finally:
        s.close()


def test_syncswim_stop_errors(streaming: TwoDbs, capsys: pytest.CaptureFixture[str]) -> None:
    from syncswim_lib.cli import main

    path = str(streaming.yaml_path)
    assert main(["stop", path, "nope"]) == 2
    assert "unknown sync 'nope' (syncs: app_shop)" in capsys.readouterr().err
    assert main(["stop", path, SYNC, "--wait", "-1"]) == 2
    assert "--wait must be 0 or more seconds" in capsys.readouterr().err
    # nothing streaming: the request is recorded, nothing to wait for
    assert main(["stop", path, SYNC]) == 0
    assert "no streaming run is active" in capsys.readouterr().out
    assert main(["stop", path, SYNC, "--resume"]) == 0
    # a run that does not reach a batch boundary in time
    store = open_store(streaming.state_url)
    try:
        leases.acquire(store, SYNC, ["customers"], "run:stuck", "streaming run stuck", ttl_s=60)
        assert main(["stop", path, SYNC, "--wait", "0.3"]) == 1
        assert "has not reached a batch boundary within 0.3 s" in capsys.readouterr().err
        leases.release(store, SYNC, "run:stuck")
    finally:
        store.close()
    micro = streaming.yaml_path.read_text().replace("run: streaming", "run: micro_batch")
    streaming.yaml_path.write_text(micro)
    assert main(["stop", path, SYNC]) == 2
    assert "runs micro_batch, there is no streaming run to stop" in capsys.readouterr().err


def test_a_batch_closes_after_max_batch_ms_without_an_idle_gap(streaming: TwoDbs) -> None:
    """With an idle gap that never comes in time, the batch still closes `max_batch_ms`
    after its first change (what keeps latency bounded under a steady stream)."""
    settings = StreamingSettings(idle_gap_ms=600_000, max_batch_ms=50)
    s = Streamer(streaming, settings=settings).start()
    try:
        streaming.pg.execute("INSERT INTO customers (name) VALUES ('not kept waiting')")
        wait_for(lambda: streaming.my_rows("customers"), 20, "the batch to close and apply")
    finally:
        s.close()


def test_the_run_rotates_after_its_period(streaming: TwoDbs) -> None:
    s = Streamer(streaming, settings=StreamingSettings(rotate_every_s=1)).start()
    s.thread.join(30)
    assert s.error is None and s.result == "rotated after 1 s"
    s.rt.close()


# --- the keeper sensor, called directly -------------------------------------------------------


def test_the_sensor_keeps_one_run_and_backs_off_after_failures(streaming: TwoDbs) -> None:
    from dagster import (
        DagsterInstance,
        DagsterRunStatus,
        RunRequest,
        SkipReason,
        build_sensor_context,
    )
    from dagster._core.storage.dagster_run import DagsterRun

    from syncswim_defs.factory import build_definitions
    from syncswim_defs.resources import SyncSwimResource
    from syncswim_defs.streaming import holder_of

    dbs = streaming
    defs = build_definitions(dbs.yaml_path, state_url=dbs.state_url)
    sensor_def = defs.resolve_sensor_def(STREAM_SENSOR)
    resource = SyncSwimResource(project_path=str(dbs.yaml_path), state_url=dbs.state_url)
    store = open_store(dbs.state_url)

    def tick(instance: Any) -> Any:
        return sensor_def(build_sensor_context(instance=instance, resources={"syncswim": resource}))

    def add(instance: Any, status: DagsterRunStatus) -> DagsterRun:
        run = DagsterRun(job_name=STREAM_JOB, status=status, tags={"syncswim/sync": SYNC})
        return instance.add_run(run)

    try:
        with DagsterInstance.ephemeral() as instance:
            assert isinstance(tick(instance), RunRequest)  # none yet: start one
            live = add(instance, DagsterRunStatus.STARTED)
            skip = tick(instance)
            assert isinstance(skip, SkipReason) and f"{live.run_id} is started" in skip.skip_message
            # its process died: a lease of a pid that is gone
            child = subprocess.Popen([sys.executable, "-c", "pass"])
            child.wait()
            leases.acquire(store, SYNC, ["customers"], holder_of(live.run_id), "streaming run")
            with store._write() as cur:
                cur.execute("UPDATE writer_leases SET pid = ?", (child.pid,))
            assert isinstance(tick(instance), RunRequest)  # at once after one failure
            assert instance.get_run_by_id(live.run_id).status == DagsterRunStatus.FAILURE
            add(instance, DagsterRunStatus.FAILURE)
            backoff = tick(instance)
            assert isinstance(backoff, SkipReason)
            assert "2 failed streaming run(s) in a row; the next starts in 5 s" in (
                backoff.skip_message or ""
            )
            leases.request_stop(store, SYNC, "by a test")
            held = tick(instance)
            assert isinstance(held, SkipReason) and "stopped with `syncswim stop`" in (
                held.skip_message or ""
            )
    finally:
        store.close()
