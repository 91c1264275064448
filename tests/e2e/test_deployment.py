"""The deployment of deploy/: Dagster's instance on PostgreSQL, `dagster-webserver` and
`dagster-daemon` as two processes, the sync state on PostgreSQL, every secret from the
environment. A change made in PostgreSQL reaches MariaDB through the daemon's capture
sensor and a run; the run is recorded in the PostgreSQL instance and the webserver serves
it; the health sensor's checks are recorded there without a run; stopping leaves no
process behind."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import yaml

from syncswim_lib.sandbox.servers import PostgresServer, free_port, port_open

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
PASSWORD = "dg-Pw7s3cret"
START_TIMEOUT = 120.0  # webserver and daemon loading the code location on a loaded machine
SYNC_TIMEOUT = 60.0  # a sensor tick (>= 5 s), the run launch, the run
STOP_TIMEOUT = 30.0

DECLARATION = """
state: {{env: SYNCSWIM_STATE_URL}}
endpoints:
  app: {{kind: postgres, dsn: {{env: APP_DB_DSN}}}}
  shop: {{kind: mysql, dsn: {{env: SHOP_DB_DSN}}}}
syncs:
  app_shop:
    between: [app, shop]
    run: {run}
    health: {{check_every: 5s}}
    entities:
      customers:
        app: {{table: public.customers, key: [id]}}
        shop: {{table: customers, key: [id]}}
        mode: {{system_of_record: app, external_id: {{shop: app_id}}}}
        fields: {{email: email, name: name}}
"""


def wait_for(cond: Callable[[], Any], timeout: float, what: str, logs: list[Path]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            tails = "\n".join(
                f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-30:])
                for p in logs
                if p.exists()
            )
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")
        time.sleep(0.2)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of a live process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[2])


def _environ_has(pid: int, text: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return text in f.read()
    except OSError:
        return False


def leftovers(groups: set[int], marker: str) -> list[int]:
    """Live processes in our groups, or anywhere with our DAGSTER_HOME in the environment
    (a run or code server that left the group)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        st = _proc_stat(pid)
        if st is None or st[0] == "Z":
            continue
        if st[1] in groups or _environ_has(pid, marker.encode()):
            found.append(pid)
    return found


def stop(procs: list[subprocess.Popen[bytes]], marker: str) -> None:
    """SIGTERM to each process group we started, then SIGKILL to what is left of them."""
    groups = {p.pid for p in procs}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
        deadline = time.monotonic() + STOP_TIMEOUT
        while leftovers(groups, marker) and time.monotonic() < deadline:
            for p in procs:
                p.poll()
            time.sleep(0.2)
        if not leftovers(groups, marker):
            break
    for p in procs:
        p.wait(timeout=STOP_TIMEOUT)


def _default_signals() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)


def graphql(port: int, query: str) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture
def storage(pg_server: PostgresServer) -> Iterator[dict[str, str]]:
    """A database and a role with a password on the private server, for Dagster's instance
    and the sync state (its own schema there)."""
    name = f"dg_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD}'")
        conn.execute(f'CREATE DATABASE "{name}" OWNER {name}')
    yield {"db": name, "user": name, "port": str(pg_server.port)}
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f"DROP ROLE IF EXISTS {name}")


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.integration
@pytest.mark.parametrize("run", ["micro_batch", "streaming"])
def test_postgres_backed_deployment_syncs_a_change_through_webserver_and_daemon(
    pg_dsn: str, mysql_dsn: str, storage: dict[str, str], tmp_path: Path, run: str
) -> None:
    """micro_batch: the daemon's capture sensor starts a run per batch; streaming: its
    sensor keeps one long-lived run up, which applies the changes as they come."""
    app = psycopg.connect(pg_dsn, autocommit=True)
    app.execute("CREATE TABLE customers (id serial PRIMARY KEY, email text, name text)")
    rest, shop_db = mysql_dsn.rsplit("/", 1)
    host, port = rest.split("@", 1)[1].split(":")
    shop = pymysql.connect(
        host=host, port=int(port), user="root", database=shop_db, autocommit=True
    )
    with shop.cursor() as cur:
        cur.execute(
            "CREATE TABLE customers (id int AUTO_INCREMENT PRIMARY KEY, app_id int NULL UNIQUE, "
            "email varchar(200), name varchar(100))"
        )

    home = tmp_path / "dagster_home"  # the marker of every process of this deployment
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    project = tmp_path / "sync.yaml"
    project.write_text(DECLARATION.format(run=run))
    pg_port = storage["port"]
    store_url = f"postgresql://{storage['user']}:{PASSWORD}@127.0.0.1:{pg_port}/{storage['db']}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER", "SYNCSWIM"))},
        "DAGSTER_HOME": str(home),
        "SYNCSWIM_PROJECT": str(project),
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": pg_port,
        "DAGSTER_PG_USER": storage["user"],
        "DAGSTER_PG_PASSWORD": PASSWORD,
        "DAGSTER_PG_DB": storage["db"],
        "SYNCSWIM_STATE_URL": store_url,
        "APP_DB_DSN": pg_dsn,
        "SHOP_DB_DSN": mysql_dsn,
    }
    logs = [tmp_path / "webserver.log", tmp_path / "daemon.log"]
    procs: list[subprocess.Popen[bytes]] = []
    web_port = free_port()
    dagster_db = psycopg.connect(store_url, autocommit=True)
    try:
        # the instance's tables, made once before two processes race to create them
        subprocess.run(
            [sys.executable, "-c", "import dagster; dagster.DagsterInstance.get().dispose()"],
            env=env,
            check=True,
            timeout=120,
        )
        setup = subprocess.run(
            [str(BIN / "syncswim"), "setup", str(project), "-v"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert setup.returncode == 0, setup.stderr
        assert f"state store: postgresql://{storage['user']}:***@" in setup.stderr
        workspace = str(DEPLOY / "workspace.yaml")
        commands = [
            [
                str(BIN / "dagster-webserver"),
                "-w",
                workspace,
                "-h",
                "127.0.0.1",
                "-p",
                str(web_port),
            ],
            [str(BIN / "dagster-daemon"), "run", "-w", workspace],
        ]
        for command, log in zip(commands, logs, strict=True):
            with open(log, "wb") as out:
                procs.append(
                    subprocess.Popen(
                        command,
                        cwd=tmp_path,  # not the repository: nothing found by accident
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        # an ignored SIGTERM (a test runner may have one) would be inherited
                        preexec_fn=_default_signals,
                    )
                )

        def sensor_ticks() -> int:
            row = dagster_db.execute(
                "SELECT count(*) FROM job_ticks WHERE type = 'SENSOR'"
            ).fetchone()
            return int(row[0]) if row else 0

        wait_for(
            lambda: http_ok(f"http://127.0.0.1:{web_port}/server_info"),
            START_TIMEOUT,
            "the webserver",
            logs,
        )
        wait_for(sensor_ticks, START_TIMEOUT, "the daemon's first capture sensor tick", logs)
        assert all(p.poll() is None for p in procs)

        app.execute("INSERT INTO customers (email, name) VALUES ('ada@example.com', 'Ada')")

        def shop_rows() -> list[tuple[Any, ...]]:
            with shop.cursor() as cur:
                cur.execute("SELECT app_id, email, name FROM customers ORDER BY id")
                return list(cur.fetchall())

        rows = wait_for(shop_rows, SYNC_TIMEOUT, "the customer in MariaDB", logs)
        assert rows == [(1, "ada@example.com", "Ada")]

        # a micro-batch run ends once applied; the streaming run stays up
        status, job = (
            ("SUCCESS", "__ASSET_JOB")
            if run == "micro_batch"
            else (
                "STARTED",
                "app_shop__streaming",
            )
        )

        def recorded() -> list[str]:
            found = dagster_db.execute(
                "SELECT run_id FROM runs WHERE status = %s AND pipeline_name = %s ORDER BY id",
                (status, job),
            ).fetchall()
            return [r[0] for r in found]

        run_ids = wait_for(recorded, SYNC_TIMEOUT, f"a {status} {job} run in the instance", logs)
        # the webserver, another process, serves the same run from the same storage
        data = graphql(web_port, "{ runsOrError { ... on Runs { results { runId status } } } }")
        served = {r["runId"]: r["status"] for r in data["runsOrError"]["results"]}
        assert served[run_ids[0]] == status
        # and back: a row made in MariaDB reaches PostgreSQL, which gives it its key
        with shop.cursor() as cur:
            cur.execute("INSERT INTO customers (email, name) VALUES ('bob@example.com', 'Bob')")

        def written_back() -> bool:
            return shop_rows()[1:] == [(2, "bob@example.com", "Bob")]

        wait_for(written_back, SYNC_TIMEOUT, "Bob's PostgreSQL key in MariaDB", logs)
        assert app.execute("SELECT id, name FROM customers ORDER BY id").fetchall() == [
            (1, "Ada"),
            (2, "Bob"),
        ]

        # the daemon's health sensor records the entity's health checks in the instance,
        # without a run of its own (streaming mode materialises no asset)
        def health_recorded() -> list[tuple[Any, ...]]:
            return dagster_db.execute(
                "SELECT check_name, execution_status FROM asset_check_executions "
                "WHERE check_name IN ('journal_backlog', 'change_stream_lag') AND run_id = ''"
            ).fetchall()

        recorded_checks = wait_for(
            health_recorded, SYNC_TIMEOUT, "the health sensor's checks", logs
        )
        assert {name for name, _ in recorded_checks} == {"journal_backlog", "change_stream_lag"}
        # the sync state is in PostgreSQL too: both changes journaled and applied there
        journal = dagster_db.execute(
            "SELECT side, op, status FROM syncswim_state.journal WHERE sync = 'app_shop' "
            "ORDER BY id"
        ).fetchall()
        assert journal == [("app", "insert", "applied"), ("shop", "insert", "applied")]
        # no secret in what was written to disk
        on_disk = (home / "dagster.yaml").read_text() + project.read_text()
        assert PASSWORD not in on_disk and "127.0.0.1" not in on_disk
        # what the last check counts: the two processes, their code servers, any run
        assert len(leftovers({p.pid for p in procs}, str(home))) >= 2
    finally:
        stopping = time.monotonic()
        stop(procs, str(home))
        stopped_in = time.monotonic() - stopping
        dagster_db.close()
        app.close()
        shop.close()
    assert not leftovers({p.pid for p in procs}, str(home))
    assert not port_open(web_port)
    assert stopped_in < STOP_TIMEOUT, f"SIGTERM did not stop them ({stopped_in:.0f} s)"


# --- the files a user copies agree with each other (no servers) ----------------------------


def _env_names(node: Any) -> set[str]:
    if isinstance(node, dict):
        if set(node) == {"env"}:
            return {node["env"]}
        return {n for v in node.values() for n in _env_names(v)}
    if isinstance(node, list):
        return {n for v in node for n in _env_names(v)}
    return set()


def test_the_deploy_files_name_the_same_variables_and_workspace() -> None:
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    needed = _env_names(instance)
    assert needed == {f"DAGSTER_PG_{k}" for k in ("HOST", "PORT", "USER", "PASSWORD", "DB")}
    example = (DEPLOY / "syncswim.env.example").read_text()
    given = set(re.findall(r"^([A-Z_]+)=", example, re.MULTILINE))
    assert needed | {"DAGSTER_HOME", "SYNCSWIM_PROJECT", "SYNCSWIM_STATE_URL"} <= given
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert needed | {"SYNCSWIM_STATE_URL"} <= set(compose["x-syncswim"]["environment"])
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    assert workspace == yaml.safe_load((REPO / "workspace.yaml").read_text())
    for unit, command in (("webserver", "dagster-webserver"), ("daemon", "dagster-daemon run")):
        text = (DEPLOY / "systemd" / f"syncswim-{unit}.service").read_text()
        (start,) = re.findall(r"^ExecStart=(.*)$", text, re.MULTILINE)
        assert f"/{command} -w " in start and start.split(" -w ")[1].split()[0].endswith(
            "deploy/workspace.yaml"
        )
        assert "EnvironmentFile=/etc/syncswim/syncswim.env" in text
    for service in ("webserver", "daemon"):
        assert "deploy/workspace.yaml" in compose["services"][service]["command"]


def test_the_deployment_guide_shows_yaml_that_parses() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", (REPO / "docs/deployment.md").read_text(), re.S)
    assert len(blocks) >= 4
    for block in blocks:
        assert isinstance(yaml.safe_load(block), dict), block
