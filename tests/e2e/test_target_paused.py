"""The target stops answering (SIGSTOP) in the middle of a run's apply: the run retries
within `retry:`'s bounds (the tries recorded with their waits) and completes once the
server answers again; paused for longer than all its tries, the run fails naming them
and the next run completes with nothing lost and nothing written twice. A private
MariaDB of this module is paused, never the shared one."""

from __future__ import annotations

import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from syncswim_lib import failpoints
from syncswim_lib.config import load_project
from syncswim_lib.errors import RetriableError
from syncswim_lib.pipeline.backoff import cap
from syncswim_lib.pipeline.report import EntityReport
from syncswim_lib.pipeline.run import run_sync
from syncswim_lib.pipeline.runtime import Runtime
from syncswim_lib.sandbox.servers import MariaDBServer
from tests.connectors.test_timeouts import _my_pid, _signal

pytestmark = pytest.mark.integration

YAML = """\
endpoints:
  app: {{kind: postgres, dsn: {pg!r}}}
  shop: {{kind: mysql, dsn: {my!r}, connect_timeout: 1, read_timeout: 1.5,
          write_timeout: 1.5, statement_timeout: 1}}
state: {state!r}
syncs:
  app_shop:
    between: [app, shop]
    run: micro_batch
    retry: {{attempts: {attempts}, base_seconds: 0.2, max_seconds: 0.8}}
    entities:
      customers:
        app: {{table: customers, key: [id]}}
        shop: {{table: customers, key: [id]}}
        mode: {{system_of_record: app, external_id: {{shop: app_id}}}}
        fields: {{name: name}}
"""
BOUND_S = 60.0


@pytest.fixture(scope="module")
def own_mariadb() -> Iterator[MariaDBServer]:
    server = MariaDBServer(Path(tempfile.mkdtemp(prefix="syncswim-paused-target-")))
    server.start()
    yield server
    server.stop()


class Setup:
    def __init__(self, pg_dsn: str, server: MariaDBServer, tmp: Path, attempts: int) -> None:
        self.server = server
        self.pg = psycopg.connect(pg_dsn, autocommit=True)
        self.pg.execute("CREATE TABLE customers (id bigserial PRIMARY KEY, name text)")
        self.db = f"t{time.monotonic_ns()}"
        self.my = pymysql.connect(host="127.0.0.1", port=server.port, user="root", autocommit=True)
        with self.my.cursor() as cur:
            cur.execute(f"CREATE DATABASE {self.db}")
            cur.execute(
                f"CREATE TABLE {self.db}.customers (id bigint AUTO_INCREMENT PRIMARY KEY,"
                " app_id bigint UNIQUE, name varchar(50))"
            )
        my_dsn = server.dsn.rsplit("/", 1)[0] + f"/{self.db}"
        self.path = tmp / "sync.yaml"
        self.path.write_text(
            YAML.format(
                pg=pg_dsn, my=my_dsn, state=f"sqlite:///{tmp / 'state.db'}", attempts=attempts
            )
        )
        with Runtime(load_project(self.path)) as rt:
            run_sync(rt, "app_shop", full=True)

    def shop(self) -> list[tuple[Any, ...]]:
        with self.my.cursor() as cur:
            cur.execute(f"SELECT app_id, name FROM {self.db}.customers ORDER BY app_id")
            return list(cur.fetchall())

    def app(self) -> list[tuple[Any, ...]]:
        return list(self.pg.execute("SELECT id, name FROM customers ORDER BY id").fetchall())

    def close(self) -> None:
        self.pg.close()
        self.my.close()


def _run_paused(s: Setup, resume_after_tries: int | None) -> tuple[Runtime, list[Any]]:
    """A run that pauses the target once capture is done; resumed once the run recorded
    `resume_after_tries` failed tries (None: only after the run ended)."""
    pids = _my_pid(s.server)
    rt = Runtime(load_project(s.path))
    outcome: list[Any] = []
    real_hit = failpoints.hit

    def hit(name: str) -> None:
        if name == failpoints.AFTER_CAPTURE:
            _signal(pids, signal.SIGSTOP)
        real_hit(name)

    def target() -> None:
        try:
            outcome.append(run_sync(rt, "app_shop"))
        except BaseException as exc:
            outcome.append(exc)

    failpoints.hit = hit  # type: ignore[assignment]
    thread = threading.Thread(target=target)
    try:
        thread.start()
        deadline = time.monotonic() + BOUND_S
        while resume_after_tries is not None and thread.is_alive():
            if len(rt.retrier("app_shop").attempts) >= resume_after_tries:
                break
            assert time.monotonic() < deadline, "the run recorded no failed try"
            time.sleep(0.05)
        if resume_after_tries is not None:
            _signal(pids, signal.SIGCONT)
        thread.join(BOUND_S)
        assert not thread.is_alive(), "the run hung on the paused target"
    finally:
        failpoints.hit = real_hit  # type: ignore[assignment]
        _signal(pids, signal.SIGCONT)
    rt.close()
    return rt, outcome


@pytest.fixture
def setup(pg_dsn: str, own_mariadb: MariaDBServer, tmp_path: Path) -> Iterator[Setup]:
    s = Setup(pg_dsn, own_mariadb, tmp_path, attempts=8)
    yield s
    s.close()


def test_a_target_paused_during_apply_is_retried_until_it_answers(setup: Setup) -> None:
    setup.pg.execute("INSERT INTO customers (name) SELECT 'n' || g FROM generate_series(1, 50) g")
    _, (reports,) = _run_paused(setup, resume_after_tries=2)
    assert isinstance(reports, list), reports
    assert [(app_id, name) for app_id, name in setup.shop()] == setup.app()
    (report,) = reports
    assert isinstance(report, EntityReport)
    assert report.side("shop").inserted == 50 and report.failed == 0
    tries = report.retries
    assert len(tries) >= 2
    for t in tries:
        assert "shop" in str(t["error"])
        # each wait within the exponential bound of its try
        assert 0 <= float(t["waited_s"]) <= cap(int(t["try"]), 0.2, 0.8)  # type: ignore[arg-type]


def test_a_target_paused_past_every_try_fails_the_run_and_the_next_completes(
    pg_dsn: str, own_mariadb: MariaDBServer, tmp_path: Path
) -> None:
    s = Setup(pg_dsn, own_mariadb, tmp_path, attempts=2)
    try:
        s.pg.execute("INSERT INTO customers (name) SELECT 'n' || g FROM generate_series(1, 20) g")
        rt, (err,) = _run_paused(s, resume_after_tries=None)
        assert isinstance(err, RetriableError), err
        assert "gave up after 2 tries (retry.attempts)" in str(err)
        assert len(rt.retrier("app_shop").attempts) == 2
        with Runtime(load_project(s.path)) as again:
            (report,) = run_sync(again, "app_shop")
        assert [(a, n) for a, n in s.shop()] == s.app() and len(s.app()) == 20
        assert report.side("shop").inserted + report.recovered_batches >= 1
        # written once: no row twice on the target
        with s.my.cursor() as cur:
            cur.execute(f"SELECT COUNT(*), COUNT(DISTINCT app_id) FROM {s.db}.customers")
            assert cur.fetchone() == (20, 20)
    finally:
        s.close()
