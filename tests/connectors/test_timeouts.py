"""A server that stops answering (SIGSTOP) fails the operation within the endpoint's
timeouts with a RetriableError, instead of hanging the run; after SIGCONT the same
connector works again. Each test pauses a private server of its own, never the shared one."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pymysql
import pytest

from syncswim_lib.config import parse_project
from syncswim_lib.config.timeouts import Timeouts
from syncswim_lib.connectors.mysql import MySQLConnector
from syncswim_lib.connectors.postgres import PostgresConnector
from syncswim_lib.connectors.postgres.connection import prepare_dsn
from syncswim_lib.errors import ConfigError, RetriableError
from syncswim_lib.sandbox.servers import MariaDBServer, PostgresServer

pytestmark = pytest.mark.integration

# the bounds the tests configure, and the slack allowed over them for the machine
READ_S = 2.0
SLACK_S = 4.0


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(") ", 1)[1].split()[1]) == pid:
                    out.append(int(entry))
    return out


def _signal(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        # a backend listed a moment ago may have ended since (its session closed)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@contextlib.contextmanager
def paused(pids: list[int]) -> Iterator[None]:
    _signal(pids, signal.SIGSTOP)
    try:
        yield
    finally:
        _signal(pids, signal.SIGCONT)


def fails_within(call: Callable[[], object], bound: float, pids: list[int]) -> RetriableError:
    """`call` raises a RetriableError within `bound` (plus slack) while `pids` are paused;
    a call still waiting then fails the test (the servers are resumed so that it ends)."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            call()
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    start = time.monotonic()
    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(bound + SLACK_S)
    elapsed = time.monotonic() - start
    if worker.is_alive():
        _signal(pids, signal.SIGCONT)
        worker.join(30)
        pytest.fail(f"still waiting after {elapsed:.1f} s (bound {bound} s)")
    assert isinstance(outcome[0], RetriableError), outcome
    return outcome[0]


@pytest.fixture(scope="module")
def own_pg() -> Iterator[PostgresServer]:
    root = Path(tempfile.mkdtemp(prefix="syncswim-pause-pg-"))
    server = PostgresServer(root)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def own_mariadb() -> Iterator[MariaDBServer]:
    root = Path(tempfile.mkdtemp(prefix="syncswim-pause-my-"))
    server = MariaDBServer(root)
    server.start()
    yield server
    server.stop()


def _pg_pids(server: PostgresServer) -> list[int]:
    postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    return [postmaster, *_children(postmaster)]


def _pg_table(server: PostgresServer) -> None:
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY, v text)")
        conn.execute("CREATE TABLE IF NOT EXISTS u (id int PRIMARY KEY, v text)")


PG_TIMEOUTS = {"connect_timeout": "2", "statement_timeout": "1", "read_timeout": str(READ_S)}
MY_TIMEOUTS = {**PG_TIMEOUTS, "write_timeout": str(READ_S)}


def test_postgres_paused_at_connect(own_pg: PostgresServer) -> None:
    _pg_table(own_pg)
    connector = PostgresConnector(own_pg.dsn, "e", PG_TIMEOUTS)
    with paused(pids := _pg_pids(own_pg)):
        err = fails_within(lambda: connector.describe("t"), 2, pids)
    assert "cannot connect to PostgreSQL" in str(err)
    assert connector.describe("t").primary_key == ("id",)
    connector.close()


def test_postgres_paused_in_a_session(own_pg: PostgresServer) -> None:
    _pg_table(own_pg)
    connector = PostgresConnector(own_pg.dsn, "e", PG_TIMEOUTS)
    connector.describe("t")  # connected
    with paused(pids := _pg_pids(own_pg)):
        err = fails_within(lambda: connector.describe("u"), READ_S, pids)
    assert "read_timeout" in str(err)
    # the session given up is replaced at the next call
    assert connector.describe("u").primary_key == ("id",)
    connector.close()


def test_postgres_statement_timeout_is_set(own_pg: PostgresServer) -> None:
    from syncswim_lib.connectors.postgres.connection import connect

    conn = connect(prepare_dsn(own_pg.dsn, "e", {"statement_timeout": "1.5"}))
    try:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("1500ms",)
        # the server cancels the statement: a retriable error of its own (57014)
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(5)")
    finally:
        conn.close()


def _my_pid(server: MariaDBServer) -> list[int]:
    pid = server.pid()
    assert pid is not None
    return [pid]


def _my_db(server: MariaDBServer) -> str:
    conn = pymysql.connect(host="127.0.0.1", port=server.port, user="root", autocommit=True)
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS pause")
        cur.execute("CREATE TABLE IF NOT EXISTS pause.t (id int PRIMARY KEY, v text)")
        cur.execute("CREATE TABLE IF NOT EXISTS pause.u (id int PRIMARY KEY, v text)")
    conn.close()
    return f"mysql://root@127.0.0.1:{server.port}/pause"


def test_mariadb_paused_at_connect(own_mariadb: MariaDBServer) -> None:
    connector = MySQLConnector(_my_db(own_mariadb), "e", MY_TIMEOUTS)
    with paused(pids := _my_pid(own_mariadb)):
        # the TCP connection is accepted by the kernel; the greeting never comes
        err = fails_within(lambda: connector.describe("t"), READ_S, pids)
    assert "connecting to endpoint e" in str(err)
    assert connector.describe("t").primary_key == ("id",)
    connector.close()


def test_mariadb_paused_in_a_session(own_mariadb: MariaDBServer) -> None:
    connector = MySQLConnector(_my_db(own_mariadb), "e", MY_TIMEOUTS)
    connector.describe("t")
    with paused(pids := _my_pid(own_mariadb)):
        fails_within(lambda: connector.describe("u"), READ_S, pids)
    assert connector.describe("u").primary_key == ("id",)
    connector.close()


def test_mariadb_statement_timeout_is_set(own_mariadb: MariaDBServer) -> None:
    from syncswim_lib.connectors.mysql.connection import connect, parse_dsn

    conn = connect(parse_dsn(_my_db(own_mariadb), "e", {"statement_timeout": "1.5"}), "e")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@SESSION.max_statement_time")
            assert cur.fetchone() == (1.5,)
    finally:
        conn.close()


def test_defaults_and_declared_keys() -> None:
    dsn = prepare_dsn("postgresql://u@h/db", "e")
    assert dsn.read_timeout == Timeouts.read
    assert "connect_timeout=10" in dsn and "statement_timeout=120000" in dsn
    assert "tcp_user_timeout=150000" in dsn and "keepalives=1" in dsn
    # the DSN's own value over the default, the endpoint's key over the DSN
    assert "connect_timeout=3" in prepare_dsn("postgresql://u@h/db?connect_timeout=3", "e")
    declared = prepare_dsn("postgresql://u@h/db?connect_timeout=3", "e", {"connect_timeout": "7"})
    assert "connect_timeout=7" in declared


def _load(settings: str) -> None:
    parse_project(
        f"""
version: 1
endpoints:
  app_db: {{kind: postgres, dsn: postgresql://u@h/db, {settings}}}
  shop_db: {{kind: mysql, dsn: mysql://u@h/db}}
syncs:
  s:
    between: [app_db, shop_db]
    entities:
      customers:
        app_db: {{table: public.customers, key: [id]}}
        shop_db: {{table: customers, key: [id]}}
        mode: {{system_of_record: app_db, external_id: {{shop_db: app_id}}}}
        fields: {{name: name}}
""",
        "sync.yaml",
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ("read_timeout: soon", "endpoints.app_db.read_timeout: expected a positive number"),
        ("connect_timeout: -1", "endpoints.app_db.connect_timeout: expected a positive"),
        ("statement_timeout: 200", "must be longer than statement_timeout"),
        ("read_timeoutt: 3", "read_timeoutt"),
    ],
)
def test_bad_timeout_keys_are_refused_at_load(settings: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(settings)


def test_timeouts_are_accepted_at_load() -> None:
    _load("connect_timeout: 5, statement_timeout: 30, read_timeout: 45.5")
