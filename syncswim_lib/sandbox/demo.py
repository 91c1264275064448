"""`syncswim demo`: sandbox servers and the Salesforce emulator, a seeded schema on each
side, the initial sync, and the Dagster UI with the sensors on: the streaming one keeps the
PostgreSQL ⇄ MariaDB sync's long-lived run up, the capture one starts the PostgreSQL ⇄
Salesforce sync's runs. Ctrl-C stops everything it started."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
import pymysql

from syncswim_lib.errors import ConfigError, FatalError
from syncswim_lib.pipeline.statehome import redact_url
from syncswim_lib.sandbox.demo_crm import human_edit_command, prepare_org
from syncswim_lib.sandbox.demo_schema import (
    DEMO_YAML,
    MYSQL_SCHEMA,
    MYSQL_SEED,
    PG_CRM_SCHEMA,
    PG_CRM_SEED,
    PG_SCHEMA,
    PG_SEED,
)
from syncswim_lib.sandbox.envfile import write_env
from syncswim_lib.sandbox.manager import sandbox_down, sandbox_up

REPO = Path(__file__).resolve().parents[2]
# `dagster dev` itself waits up to 60 s per service; past these, the group is signalled
DEV_STOP_TIMEOUT = 30.0
GROUP_TERM_TIMEOUT = 10.0
GROUP_KILL_TIMEOUT = 5.0


def _mysql_conn(dsn: str) -> pymysql.connections.Connection:
    u = urlsplit(dsn)
    return pymysql.connect(
        host=u.hostname or "127.0.0.1",
        port=u.port or 3306,
        user=unquote(u.username or "root"),
        password=unquote(u.password or ""),
        database=u.path.lstrip("/") or None,
        autocommit=True,
        charset="utf8mb4",
    )


def seed(pg_dsn: str, mysql_dsn: str) -> None:
    """Create and seed the demo tables (only when they do not exist yet)."""
    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        fresh = pg.execute("SELECT to_regclass('public.customers') IS NULL").fetchone()
        pg.execute(PG_SCHEMA)
        if fresh and fresh[0]:
            pg.execute(PG_SEED)
        # on their own: a demo folder made before the CRM side has customers and not these
        fresh = pg.execute("SELECT to_regclass('public.contacts') IS NULL").fetchone()
        pg.execute(PG_CRM_SCHEMA)
        if fresh and fresh[0]:
            pg.execute(PG_CRM_SEED)
    conn = _mysql_conn(mysql_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW TABLES LIKE 'customers'")
            fresh_my = cur.fetchone() is None
            for stmt in filter(str.strip, MYSQL_SCHEMA.split(";")):
                cur.execute(stmt)
            if fresh_my:
                for stmt in filter(str.strip, MYSQL_SEED.split(";")):
                    cur.execute(stmt)
    finally:
        conn.close()


def _create_demo_db(mysql_root_dsn: str) -> str:
    conn = _mysql_conn(mysql_root_dsn)
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS shop")
    conn.close()
    return mysql_root_dsn.rstrip("/") + "/shop"


def say(text: str) -> None:
    """Print, whatever happened to stdout: with `make demo | tee log`, Ctrl-C stops `tee`
    too, and a write to the closed pipe must not cut the shutdown short. After the first
    failed write, stdout goes to /dev/null (so the interpreter's last flush is quiet)."""
    try:
        print(text, flush=True)
    except OSError:  # BrokenPipeError, or a terminal that went away (EIO)
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs (zombies do not count: they hold nothing)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                state, _ppid, pgrp = f.read().rsplit(") ", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue
        if int(pgrp) == pgid and state != "Z":
            return True
    return False


def _wait_group(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stop_dagster(proc: subprocess.Popen[bytes]) -> None:
    """Stop `dagster dev` and everything in its process group.

    On SIGINT it stops its webserver and daemon, but the code server and its gRPC child
    outlive it until their heartbeat times out (30-45 s), and a run in flight has its own
    process: what is left of the group is terminated, then killed."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=DEV_STOP_TIMEOUT)
    for sig, timeout in (
        (signal.SIGTERM, GROUP_TERM_TIMEOUT),
        (signal.SIGKILL, GROUP_KILL_TIMEOUT),
    ):
        if not _group_alive(proc.pid):
            break
        say(f"dagster left processes behind: sending {sig.name} to its group")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        if _wait_group(proc.pid, timeout):
            break
    proc.wait()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the webserver does
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _initial_sync(project_file: Path) -> list[tuple[str, str]]:
    """Materialise every asset with `full` in the instance of $DAGSTER_HOME (the UI's), so
    the initial sync shows in each asset's history with its metadata.

    One run per sync, in the declaration's order: `customers` is in both, and the shop's
    customer reaches PostgreSQL in the first run, so the second brings it to the CRM too
    (in one run, the two unrelated assets would go in an order of Dagster's choosing)."""
    # the Dagster wiring, imported only here: the demo is the one part of the library
    # that drives Dagster itself
    from dagster import DagsterInstance, materialize

    from syncswim_defs.factory import build_definitions
    from syncswim_lib.config import load_project

    defs = build_definitions(project_file)
    all_keys = sorted(defs.resolve_asset_graph().get_all_asset_keys())
    lines = []
    for sync in load_project(project_file).syncs:
        keys = [k for k in all_keys if k.path[0] == sync]
        assets = [defs.resolve_assets_def(k) for k in keys]
        nodes = {"__".join(k.path): k for k in keys}
        config = {"ops": {n: {"config": {"full": True}} for n in nodes}}
        with DagsterInstance.get() as instance:
            result = materialize(
                assets, instance=instance, run_config=config, tags={"syncswim/run": "initial"}
            )
        if not result.success:
            raise ConfigError(f"the demo's initial sync of {sync} failed: see its run in the UI")
        for node, key in nodes.items():
            for mat in result.asset_materializations_for_node(node):
                meta: dict[str, Any] = {k: v.value for k, v in mat.metadata.items()}
                writes = sum(
                    int(v)
                    for k, v in meta.items()
                    if k.endswith(("/inserted", "/updated", "/deleted"))
                )
                waiting = meta.get("waiting_for_external_id", 0)
                lines.append(
                    ("/".join(key.path), f"{writes} writes, {waiting} waiting for an external id")
                )
    return lines


CRM_EDIT = {"Name": "Grace B. Hopper", "Credit_Limit__c": 15000}


def _crm_edit(pg_dsn: str, env_file: Path) -> str:
    """The banner's edit in the CRM, of Grace's Account (any customer's, if she is gone)."""
    with psycopg.connect(pg_dsn) as pg:
        row = pg.execute(
            "SELECT id FROM customers ORDER BY email = 'grace@example.com' DESC, id LIMIT 1"
        ).fetchone()
    if row is None:
        return "(no customer left to edit: insert one in PostgreSQL first)"
    return human_edit_command(env_file, int(row[0]), CRM_EDIT)


def run_demo(dir: Path | str = ".sandbox", port: int = 3000) -> int:
    from syncswim_lib.config import load_project
    from syncswim_lib.pipeline.runtime import Runtime

    # the webserver would only log the failed bind and `dagster dev` would run on without a UI
    if not _port_free(port):
        raise ConfigError(f"port {port} on 127.0.0.1 is in use: pick the UI's port with --port")
    base = Path(dir).resolve()
    info = sandbox_up(base, salesforce=True)
    proc: subprocess.Popen[bytes] | None = None
    try:
        emu = info.salesforce
        if emu is None:
            raise FatalError(
                f"the demo needs the Salesforce emulator, which is {info.salesforce_note}"
            )
        human_token = prepare_org(emu)
        pg_dsn = info.postgres.url
        mysql_dsn = _create_demo_db(info.mysql.url)
        project_file = base / "demo.yaml"
        home = base / "dagster_home"
        demo_env = {
            "SYNCSWIM_PG_DSN": pg_dsn,
            "SYNCSWIM_MYSQL_DSN": mysql_dsn,
            "SF_URL": emu.url,
            "SF_TOKEN": emu.token,
            "SF_CA_BUNDLE": emu.ca_path,
            "DAGSTER_HOME": str(home),
            "SYNCSWIM_PROJECT": str(project_file),
        }
        # the env file the banner points to names what the demo uses: its database (as
        # demo.yaml does), its Dagster home and declaration, so `syncswim audit` and
        # `dagster dev` in that shell see the demo's runs and state; and the human user's
        # token, for the banner's edit in the CRM
        write_env(
            info.env_file,
            {**info.env(), **demo_env, "SF_HUMAN_TOKEN": human_token},
            header=f"Sync or Swim demo in {base}\nload with: . {info.env_file}",
        )
        seed(pg_dsn, mysql_dsn)
        project_file.write_text(DEMO_YAML)
        home.mkdir(exist_ok=True)
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        env = {**os.environ, **demo_env}
        os.environ.update(demo_env)  # the initial sync runs in this process

        with Runtime(load_project(project_file)) as rt:
            state_url = rt.state_url
        # created here, before `dagster dev`: its processes would race on a fresh SQLite
        # instance; the initial sync is then the first run in its history
        say("initial sync (a `full` materialisation of every asset, in Dagster's history)...")
        for asset, line in _initial_sync(project_file):
            say(f"  {asset}: {line}")
        crm_edit = _crm_edit(pg_dsn, info.env_file)
        stop = False

        def _on_signal(signum: int, frame: object) -> None:
            nonlocal stop
            stop = True

        # Installed before the launch: a child inherits an ignored SIGINT (the demo started
        # in the background of a shell), and `dagster dev` then ignores SIGTERM as well.
        # A handler of ours is reset to the default in the child instead.
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
        dagster_bin = Path(sys.executable).with_name("dagster")
        proc = subprocess.Popen(
            [
                str(dagster_bin),
                "dev",
                "-w",
                str(REPO / "workspace.yaml"),
                "-p",
                str(port),
                "-h",
                "127.0.0.1",
            ],
            env=env,
            cwd=str(REPO),
            start_new_session=True,
        )
        say(
            f"""
Sync or Swim demo is running.
  Dagster UI:   http://127.0.0.1:{port}
    group app_shop (PostgreSQL <-> MariaDB): customers, orders, products;
      sensor app_shop__streaming_sensor keeps the streaming run up
    group app_crm (PostgreSQL <-> Salesforce emulator): customers, contacts, deals
      (Account, Contact, Opportunity); sensor app_crm__capture starts runs for what changed
  Salesforce:   {emu.url}   (the emulator; CA {emu.ca_path})
  Declaration:  {project_file}
  State store:  {redact_url(state_url)}
  Env file:     {info.env_file}   (sets DAGSTER_HOME and SYNCSWIM_PROJECT too)

Try a change on each side:
  psql "{pg_dsn}" -c "UPDATE customers SET credit_limit = 9999 WHERE email = 'ada@example.com'"
  mariadb -h 127.0.0.1 -P {info.mysql.port} -u root shop -e \\
      "INSERT INTO customers (email, name, active) VALUES ('new@example.org', 'New Person', 1)"
The streaming run applies each within a second: query the other side, or watch the
asset's materialisations. `syncswim stop {project_file} app_shop` (or turning the
sensor off) stops it at a batch boundary. The psql update reaches the CRM's Account too,
a few seconds later (the capture sensor's tick, then a run).

Edit an Account in the CRM as a person would (its human user, no client origin):
  {crm_edit}
The next app_crm run brings it to PostgreSQL, and the streaming run on to MariaDB.
Press Ctrl-C to stop everything.
"""
        )
        while not stop and proc.poll() is None:
            time.sleep(0.5)
        if not stop:
            say(f"dagster dev exited on its own (code {proc.returncode})")
            return 1
        return 0
    finally:
        try:
            if proc is not None:
                stop_dagster(proc)
        finally:
            sandbox_down(base)
            say("demo stopped")
