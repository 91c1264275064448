"""A stream position lost at the source is answered, not a silent gap: a MariaDB binlog
purged past the stored position, and a PostgreSQL slot the server invalidated
(max_slot_wal_keep_size). The next run captures again from the current position and
reconciles the endpoint's entities with a `full` run, so the changes made while capture
could not see them still arrive; later changes are captured as usual."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from syncswim_lib.sandbox.servers import PostgresServer
from tests.e2e.merge_harness import ENV, MergeDbs

pytestmark = pytest.mark.integration

YAML = """\
endpoints:
  app: {{kind: postgres, dsn: {{env: {pg}}}}}
  shop: {{kind: mysql, dsn: {{env: {my}}}}}
state: {{env: {state}}}
syncs:
  app_shop:
    between: [app, shop]
    run: micro_batch
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
    " email varchar(100), name varchar(100)) AUTO_INCREMENT = 1001"
)


def _start(m: MergeDbs) -> None:
    m.pg.execute(PG)
    m.my_exec(MY)
    m.pg.execute("INSERT INTO customers (email, name) VALUES ('ann@x', 'Ann'), ('bob@x', 'Bob')")
    m.yaml_path.write_text(YAML.format(pg=ENV["pg"], my=ENV["my"], state=ENV["state"]))
    _run(m, full=True)


def _run(m: MergeDbs, full: bool = False) -> None:
    from syncswim_lib.pipeline.admin import run_once

    assert run_once(m.yaml_path, full=full) == 0


def _names(m: MergeDbs) -> tuple[list[Any], list[Any]]:
    app = [r["name"] for r in m.pg.execute("SELECT name FROM customers ORDER BY name")]
    with m.my.cursor() as cur:
        cur.execute("SELECT name FROM customers ORDER BY name")
        return app, [r["name"] for r in cur.fetchall()]


def _unfinished(m: MergeDbs) -> bool:
    from syncswim_lib.config import load_project
    from syncswim_lib.pipeline.runtime import Runtime
    from syncswim_lib.pipeline.seed import unfinished

    with Runtime(load_project(m.yaml_path)) as rt:
        return unfinished(rt.store, "app_shop", "customers")


@pytest.fixture
def m(
    pg_dsn: str, mysql_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MergeDbs]:
    dbs = MergeDbs(pg_dsn, mysql_dsn, tmp_path)
    for k, v in dbs.env().items():
        monkeypatch.setenv(k, v)
    yield dbs
    dbs.close()


def _purge_binlogs(m: MergeDbs) -> None:
    """Every binlog file before a new one gone (MariaDB keeps a file until its binlog
    checkpoint passes it: purge until it is)."""
    with m.my.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        old = cur.fetchone()["File"]
        cur.execute("FLUSH BINARY LOGS")
        cur.execute("SHOW MASTER STATUS")
        current = cur.fetchone()["File"]
        deadline = time.monotonic() + 20
        while True:
            cur.execute("SHOW BINARY LOGS")
            if all(r["Log_name"] != old for r in cur.fetchall()):
                return
            assert time.monotonic() < deadline, f"{old} was never purged"
            cur.execute(f"PURGE BINARY LOGS TO '{current}'")
            time.sleep(0.05)


def test_purged_binlog_is_reconciled(m: MergeDbs, caplog: pytest.LogCaptureFixture) -> None:
    _start(m)
    # changes the sync will never read from the binlog: a new customer, a new name
    m.my_exec("INSERT INTO customers (email, name) VALUES ('cy@x', 'Cy')")
    m.my_exec("UPDATE customers SET name = 'Robert' WHERE email = 'bob@x'")
    _purge_binlogs(m)
    with caplog.at_level(logging.WARNING):
        _run(m)
    assert "cannot read binlog file" in caplog.text and "reconciles" in caplog.text
    assert _names(m) == (["Ann", "Cy", "Robert"], ["Ann", "Cy", "Robert"])
    assert not _unfinished(m)
    # capture goes on from where the server is now
    m.my_exec("UPDATE customers SET name = 'Anne' WHERE email = 'ann@x'")
    _run(m)
    assert _names(m) == (["Anne", "Cy", "Robert"], ["Anne", "Cy", "Robert"])


@pytest.fixture
def small_wal_pg(server_root: Path) -> Iterator[str]:
    """A PostgreSQL of its own: the test lowers max_slot_wal_keep_size, server-wide."""
    server = PostgresServer(server_root / "pg-small-wal")
    server.start()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as c:
            c.execute("CREATE DATABASE lost")
        yield f"postgresql://postgres@127.0.0.1:{server.port}/lost"
    finally:
        server.stop()


def _invalidate_slot(dsn: str, slot: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
        c.execute("SELECT pg_reload_conf()")
        c.execute("CREATE TABLE junk (v text)")
        deadline = time.monotonic() + 60
        while True:
            row = c.execute(
                "SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
            if row is not None and row[0] == "lost":
                return
            assert time.monotonic() < deadline, f"slot {slot} is {row} after a minute"
            c.execute("INSERT INTO junk SELECT repeat('x', 200) FROM generate_series(1, 20000)")
            c.execute("SELECT pg_switch_wal()")
            c.execute("CHECKPOINT")


def test_invalidated_slot_is_reconciled(
    small_wal_pg: str,
    mysql_dsn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    m = MergeDbs(small_wal_pg, mysql_dsn, tmp_path)
    try:
        for k, v in m.env().items():
            monkeypatch.setenv(k, v)
        _start(m)
        m.pg.execute("INSERT INTO customers (email, name) VALUES ('cy@x', 'Cy')")
        m.pg.execute("UPDATE customers SET name = 'Robert' WHERE email = 'bob@x'")
        _invalidate_slot(small_wal_pg, "syncswim_app_shop")
        with caplog.at_level(logging.WARNING):
            _run(m)
        assert "was invalidated by the server" in caplog.text and "reconciles" in caplog.text
        assert _names(m) == (["Ann", "Cy", "Robert"], ["Ann", "Cy", "Robert"])
        assert not _unfinished(m)
        m.pg.execute("UPDATE customers SET name = 'Anne' WHERE email = 'ann@x'")
        _run(m)
        assert _names(m) == (["Anne", "Cy", "Robert"], ["Anne", "Cy", "Robert"])
    finally:
        m.close()


def test_the_capture_sensor_asks_for_the_reconciling_run(m: MergeDbs) -> None:
    """Under Dagster, the lost position is noticed by the capture sensor; the changes it
    missed are in no journal, so nothing is pending, yet the sensor asks for the run that
    reconciles (it would otherwise wait for some unrelated change)."""
    from dagster import AssetKey, DagsterInstance, RunRequest, build_sensor_context

    from syncswim_defs.factory import build_definitions
    from syncswim_defs.naming import sensor_name
    from syncswim_defs.resources import SyncSwimResource

    _start(m)
    m.my_exec("UPDATE customers SET name = 'Robert' WHERE email = 'bob@x'")
    _purge_binlogs(m)
    defs = build_definitions(m.yaml_path, state_url=m.state_url)
    sensor_def = defs.resolve_sensor_def(sensor_name("app_shop"))
    resource = SyncSwimResource(project_path=str(m.yaml_path), state_url=m.state_url)
    with DagsterInstance.ephemeral() as instance:
        req = sensor_def(build_sensor_context(instance=instance, resources={"syncswim": resource}))
        assert isinstance(req, RunRequest), req
        assert req.asset_selection == [AssetKey(["app_shop", "customers"])]
    assert _unfinished(m)
    _run(m)  # what the requested run does
    assert _names(m) == (["Ann", "Robert"], ["Ann", "Robert"])
