"""Health asset checks through the Dagster definitions, against the private PostgreSQL and
MariaDB: a backlog over its threshold fails `journal_backlog` with the configured severity
and passes once applied; `change_stream_lag` carries the slot's and the binlog's real
figures, which grow with WAL and binlog that capture has not read and fall once it has;
the health sensor records the same checks between runs, without one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    SensorResult,
    build_sensor_context,
)

from tests.e2e.merge_harness import ENV, MergeDbs

pytestmark = pytest.mark.integration

SYNC, ENTITY = "app_shop", "customers"
KEY = AssetKey([SYNC, ENTITY])

YAML = """\
endpoints:
  app: {{kind: postgres, dsn: {{env: {pg}}}}}
  shop: {{kind: mysql, dsn: {{env: {my}}}}}
state: {{env: {state}}}
syncs:
  app_shop:
    between: [app, shop]
    run: micro_batch
    health:
      backlog: {{warn: 2, error: 4}}
      slot_lag_bytes: {{warn: 100KiB, error: null}}
      binlog_lag_bytes: {{warn: 4KiB, error: 1GiB}}
    entities:
      customers:
        app: {{table: customers, key: [id]}}
        shop: {{table: customers, key: [id]}}
        mode: {{system_of_record: app, external_id: {{shop: app_id}}}}
        fields: {{email: email, name: name}}
"""
PG = "CREATE TABLE customers (id bigserial PRIMARY KEY, email text, name text)"
MY = (
    "CREATE TABLE customers (id bigint AUTO_INCREMENT PRIMARY KEY, app_id bigint UNIQUE,"
    " email varchar(100), name varchar(200)) AUTO_INCREMENT = 1001"
)


@pytest.fixture
def m(
    pg_dsn: str, mysql_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MergeDbs]:
    dbs = MergeDbs(pg_dsn, mysql_dsn, tmp_path)
    for k, v in dbs.env().items():
        monkeypatch.setenv(k, v)
    dbs.pg.execute(PG)
    dbs.my_exec(MY)
    dbs.yaml_path.write_text(YAML.format(pg=ENV["pg"], my=ENV["my"], state=ENV["state"]))
    yield dbs
    dbs.close()


class Check:
    def __init__(self, evaluation: Any) -> None:
        self.passed: bool = evaluation.passed
        self.severity: AssetCheckSeverity = evaluation.severity
        self.description: str = evaluation.description or ""
        self.meta: dict[str, Any] = {k: v.value for k, v in evaluation.metadata.items()}


def checks(m: MergeDbs, *names: str) -> dict[str, Check]:
    """Execute the named health checks of the entity, alone, through the definitions."""
    from syncswim_defs.factory import build_definitions

    defs = build_definitions(m.yaml_path, state_url=m.state_url)
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(), asset_check_selection={AssetCheckKey(KEY, n) for n in names}
    )
    result = job.execute_in_process()
    assert result.success
    return {e.check_name: Check(e) for e in result.get_asset_check_evaluations()}


def capture(m: MergeDbs) -> None:
    """Both change streams read into the journal, nothing applied."""
    from syncswim_lib.config import load_project
    from syncswim_lib.pipeline.capture import capture_sync
    from syncswim_lib.pipeline.runtime import Runtime

    with Runtime(load_project(m.yaml_path), m.state_url) as rt:
        capture_sync(rt, SYNC)


def add_app(m: MergeDbs, n: int, size: int = 10) -> None:
    m.pg.execute(
        "INSERT INTO customers (email, name) SELECT 'c' || i || '@x', repeat('n', %s) "
        "FROM generate_series(1, %s) AS i",
        (size, n),
    )


def test_backlog_over_its_levels_warns_then_errors_and_passes_once_applied(
    m: MergeDbs,
) -> None:
    m.run()  # sets capture up
    before = checks(m, "journal_backlog")["journal_backlog"]
    assert before.passed, before.description
    assert before.meta == {"backlog": 0}

    add_app(m, 3)
    capture(m)
    got = checks(m, "journal_backlog")["journal_backlog"]
    assert not got.passed
    assert got.severity == AssetCheckSeverity.WARN
    assert got.meta["backlog"] == 3
    assert 0 <= got.meta["oldest_pending_s"] < 120  # seconds since detection, measured
    assert "backlog 3 ≥ warn 2" in got.description

    add_app(m, 2)
    capture(m)
    got = checks(m, "journal_backlog")["journal_backlog"]
    assert (got.passed, got.severity, got.meta["backlog"]) == (
        False,
        AssetCheckSeverity.ERROR,
        5,
    )
    assert "backlog 5 ≥ error 4" in got.description

    m.run()  # applies them
    assert len(m.rows("shop")) == 5
    after = checks(m, "journal_backlog")["journal_backlog"]
    assert after.passed and after.meta == {"backlog": 0}


def test_stream_lag_figures_are_the_servers(m: MergeDbs) -> None:
    m.run()
    capture(m)
    settled = checks(m, "change_stream_lag")["change_stream_lag"]
    assert settled.passed, settled.description
    assert settled.meta["app/status"] == "ok" and settled.meta["shop/status"] == "ok"
    for figure in ("app/slot_lag_bytes", "app/retained_wal_bytes", "shop/binlog_lag_bytes"):
        assert isinstance(settled.meta[figure], int) and settled.meta[figure] >= 0, figure
    assert settled.meta["app/slot_lag_bytes"] < 100 * 1024
    assert settled.meta["shop/binlog_lag_bytes"] < 4096

    # WAL and binlog written that capture has not read: at least the rows' own bytes
    add_app(m, 2000, size=200)
    with m.my.cursor() as cur:
        cur.executemany(
            "INSERT INTO customers (email, name) VALUES (%s, %s)",
            [(f"s{i}@x", "s" * 200) for i in range(50)],
        )
    behind = checks(m, "change_stream_lag")["change_stream_lag"]
    assert not behind.passed
    assert behind.severity == AssetCheckSeverity.WARN  # both warn levels, no error level hit
    assert behind.meta["app/slot_lag_bytes"] >= 2000 * 200
    assert behind.meta["app/retained_wal_bytes"] >= behind.meta["app/slot_lag_bytes"]
    assert behind.meta["shop/binlog_lag_bytes"] >= 50 * 200
    assert behind.meta["shop/binlog_files_behind"] == 0
    assert "app: slot_lag_bytes" in behind.description and "≥ warn 100 KiB" in behind.description
    assert "shop: binlog_lag_bytes" in behind.description

    # a new binlog file: one file behind, the bytes counted across it
    with m.my.cursor() as cur:
        cur.execute("FLUSH BINARY LOGS")
        cur.execute("INSERT INTO customers (email, name) VALUES ('t@x', 't')")
    across = checks(m, "change_stream_lag")["change_stream_lag"]
    assert across.meta["shop/binlog_files_behind"] == 1
    assert across.meta["shop/binlog_lag_bytes"] > behind.meta["shop/binlog_lag_bytes"]

    capture(m)
    caught_up = checks(m, "change_stream_lag")["change_stream_lag"]
    assert caught_up.passed, caught_up.description
    assert caught_up.meta["app/slot_lag_bytes"] < 100 * 1024
    assert caught_up.meta["shop/binlog_files_behind"] == 0


def test_checks_before_setup_and_with_the_defaults(m: MergeDbs) -> None:
    # nothing set up yet: no slot, no stored position; said, and only a warning
    got = checks(m, "change_stream_lag", "journal_backlog")
    lag = got["change_stream_lag"]
    assert (lag.passed, lag.severity) == (False, AssetCheckSeverity.WARN)
    assert lag.meta["app/status"] == "missing" and lag.meta["shop/status"] == "not started"
    assert "replication slot syncswim_app_shop missing" in lag.description
    assert got["journal_backlog"].passed


def test_the_health_sensor_records_the_checks_without_a_run(m: MergeDbs) -> None:
    from syncswim_defs.factory import build_definitions
    from syncswim_defs.health import health_sensor_name
    from syncswim_defs.resources import SyncSwimResource

    m.run()
    add_app(m, 3)
    capture(m)  # three changes pending: backlog over warn 2
    defs = build_definitions(m.yaml_path, state_url=m.state_url)
    sensor_def = defs.resolve_sensor_def(health_sensor_name(SYNC))
    assert sensor_def.minimum_interval_seconds == 60  # check_every's default
    resource = SyncSwimResource(project_path=str(m.yaml_path), state_url=m.state_url)
    with DagsterInstance.ephemeral() as instance:
        result = sensor_def(
            build_sensor_context(instance=instance, resources={"syncswim": resource})
        )
        assert isinstance(result, SensorResult) and not result.run_requests
        got = {e.check_name: e for e in result.asset_events if isinstance(e, AssetCheckEvaluation)}
        assert sorted(got) == ["change_stream_lag", "journal_backlog"]
        assert all(e.asset_key == KEY for e in got.values())
        backlog = Check(got["journal_backlog"])
        assert (backlog.passed, backlog.severity) == (False, AssetCheckSeverity.WARN)
        assert backlog.meta["backlog"] == 3 and "backlog 3 ≥ warn 2" in backlog.description
        lag = Check(got["change_stream_lag"])
        assert lag.meta["app/status"] == "ok" and lag.meta["shop/status"] == "ok"
        # recorded as the daemon records a sensor's events: the asset's check shows it
        for event in result.asset_events:
            instance.report_runless_asset_event(event)  # type: ignore[arg-type]
        record = instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(KEY, "journal_backlog"), limit=1
        )[0]
        assert record.event is not None and record.event.asset_check_evaluation is not None
        assert record.event.asset_check_evaluation.passed is False

    m.run()  # applies them: the next tick passes
    with DagsterInstance.ephemeral() as instance:
        result = sensor_def(
            build_sensor_context(instance=instance, resources={"syncswim": resource})
        )
        assert isinstance(result, SensorResult)
        after = [e for e in result.asset_events if isinstance(e, AssetCheckEvaluation)]
        assert {(e.check_name, e.passed) for e in after} == {
            ("journal_backlog", True),
            ("change_stream_lag", True),
        }


def test_check_every_null_leaves_the_health_sensor_out(m: MergeDbs) -> None:
    from syncswim_defs.factory import build_definitions
    from syncswim_defs.health import health_sensor_name

    text = m.yaml_path.read_text().replace(
        "    health:\n", "    health:\n      check_every: null\n"
    )
    m.yaml_path.write_text(text)
    defs = build_definitions(m.yaml_path, state_url=m.state_url)
    names = {s.name for s in defs.sensors or []}
    assert health_sensor_name(SYNC) not in names
    assert names  # the capture sensor is still there
