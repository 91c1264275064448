"""`syncswim demo`: sandbox servers, a seeded schema on both sides, the initial sync, and
the Dagster UI with the capture sensor on. Ctrl-C stops everything it started."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pymysql

from syncswim_lib.sandbox.demo_schema import DEMO_YAML, MYSQL_SCHEMA, MYSQL_SEED, PG_SCHEMA, PG_SEED
from syncswim_lib.sandbox.manager import sandbox_down, sandbox_up

REPO = Path(__file__).resolve().parents[2]


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


def run_demo(dir: Path | str = ".sandbox", port: int = 3000) -> int:
    from syncswim_lib.config import load_project
    from syncswim_lib.pipeline.run import run_sync
    from syncswim_lib.pipeline.runtime import Runtime

    base = Path(dir).resolve()
    info = sandbox_up(base, salesforce=False)
    pg_dsn = info.postgres.url
    mysql_dsn = _create_demo_db(info.mysql.url)
    seed(pg_dsn, mysql_dsn)
    project_file = base / "demo.yaml"
    project_file.write_text(DEMO_YAML)
    home = base / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "SYNCSWIM_PG_DSN": pg_dsn,
        "SYNCSWIM_MYSQL_DSN": mysql_dsn,
        "DAGSTER_HOME": str(home),
        "SYNCSWIM_PROJECT": str(project_file),
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith(("SYNCSWIM", "DAGSTER"))})

    print("initial sync (snapshot of both sides)...", flush=True)
    with Runtime(load_project(project_file)) as rt:
        for r in run_sync(rt, "app_shop", full=True):
            print(f"  {r.entity}: {r.writes} writes, {r.waiting} waiting for an external id")

    # Dagster would race on creating a fresh SQLite instance from several processes
    subprocess.run(
        [sys.executable, "-c", "import dagster; dagster.DagsterInstance.get()"], env=env, check=True
    )
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
    print(
        f"""
Sync or Swim demo is running.
  Dagster UI:   http://127.0.0.1:{port}   (assets app_shop/customers, app_shop/products;
                sensor app_shop__capture is on)
  Declaration:  {project_file}
  Env file:     {info.env_file}

Try a change on each side:
  psql "{pg_dsn}" -c "UPDATE customers SET credit_limit = 9999 WHERE email = 'ada@example.com'"
  mariadb -h 127.0.0.1 -P {info.mysql.port} -u root shop -e \\
      "INSERT INTO customers (email, name, active) VALUES ('new@example.org', 'New Person', 1)"
Then watch the sensor start a run, and query the other side.
Press Ctrl-C to stop everything.
""",
        flush=True,
    )
    stop = False

    def _on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        while not stop and proc.poll() is None:
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        sandbox_down(base)
        print("demo stopped", flush=True)
    return 0
