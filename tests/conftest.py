"""Private database servers for the whole test session, a fresh database per test."""

from __future__ import annotations

import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pymysql
import pytest

from syncswim_lib.sandbox.servers import MariaDBServer, PostgresServer


@pytest.fixture(scope="session")
def server_root() -> Iterator[Path]:
    # not pytest's tmp_path: its clean-up of older runs' folders would pull the data
    # directories from under servers that another concurrent pytest run still uses
    root = Path(tempfile.mkdtemp(prefix="syncswim-test-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(server_root: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(server_root / "pg")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mysql_server(server_root: Path) -> Iterator[MariaDBServer]:
    server = MariaDBServer(server_root / "mysql")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pg_dsn(pg_server: PostgresServer) -> Iterator[str]:
    """A new, empty database on the private PostgreSQL server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql://postgres@127.0.0.1:{pg_server.port}/{name}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        for (slot,) in conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)
        ).fetchall():
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def mysql_dsn(mysql_server: MariaDBServer) -> Iterator[str]:
    """A new, empty database on the private MariaDB server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = pymysql.connect(host="127.0.0.1", port=mysql_server.port, user="root", autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    yield f"mysql://root@127.0.0.1:{mysql_server.port}/{name}"
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


@pytest.fixture(autouse=True)
def _no_dagster_instance_left_current() -> Iterator[None]:
    """Fail when a Dagster instance is left current after a test (an instance entered
    and not exited, or a schedule context opened from an instance ref and never closed):
    Dagster keeps it in a context variable, and every later definitions load in this
    process fails on the dead instance, far from the cause. An unclosed context resets
    the variable only when the garbage collector finalises it, so the failure may name
    the test after the one that left it open (a gc.collect() per test would cost a
    minute of suite time)."""
    yield
    if "dagster" not in sys.modules:  # not imported yet: nothing can be left
        return
    from dagster._core.storage.defs_state.base import _current_storage

    if _current_storage.get() is not None:
        _current_storage.set(None)  # so the tests after this one are not hit too
        pytest.fail(
            "a Dagster instance was left current by this test or the one before it: "
            "close every instance and schedule/sensor context a test opens"
        )
