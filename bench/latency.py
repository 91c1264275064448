"""Change-to-visible latency of the micro-batch mode, through Dagster and through the library.

Starts a private PostgreSQL and MariaDB (the sandbox) in a temporary folder, creates the demo
schema and its YAML, runs the initial sync, then measures, N times per direction, from the
commit of an UPDATE carrying a unique stamp on one side until a reader polling every 20 ms
sees the stamp on the other:

- library: `run_entity` in this process right after the commit (what one run does, with
  neither the sensor's wait nor a run launch), once with a fresh `Runtime` as each run opens
  one, once with a `Runtime` kept open across changes;
- dagster: `dagster dev` with the project's dagster.yaml in a fresh DAGSTER_HOME; the capture
  sensor detects the change at its next tick and requests a run, which applies it.

Before each Dagster change the sync is let settle (no active run, the last sensor tick a skip
that came after the last run) and a random 0-5 s pause puts the commit at a random point of
the sensor's 5 s loop. Everything started is stopped on exit, Ctrl-C and errors.

    .venv/bin/python bench/latency.py [--n 8] [--max-seconds 1200] [--only dagster]
        [--instance-yaml other-dagster.yaml]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pymysql

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from syncswim_lib.config import load_project  # noqa: E402
from syncswim_lib.pipeline.run import run_entity, run_sync  # noqa: E402
from syncswim_lib.pipeline.runtime import Runtime  # noqa: E402
from syncswim_lib.sandbox.demo import seed, stop_dagster  # noqa: E402
from syncswim_lib.sandbox.demo_schema import DEMO_YAML  # noqa: E402
from syncswim_lib.sandbox.manager import sandbox_down, sandbox_up  # noqa: E402
from syncswim_lib.sandbox.servers import free_port  # noqa: E402

SYNC, ENTITY, SENSOR = "app_shop", "customers", "app_shop__capture"
POLL = 0.02
SENSOR_LOOP = 5.0  # the sensor daemon's minimum loop (platform notes)
CHANGE_TIMEOUT = 60.0
WARM_UP_TIMEOUT = 300.0  # the first change waits for dagster dev and its code server to start
DIRECTIONS = ("app→shop", "shop→app")


class OutOfTime(Exception):
    pass


@dataclass
class Bench:
    pg: psycopg.Connection[Any]
    my: pymysql.connections.Connection
    deadline: float
    samples: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    phases: list[tuple[float, float, float]] = field(default_factory=list)

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise OutOfTime
        return left

    def my_one(self, sql: str, args: Any = None) -> Any:
        with self.my.cursor() as cur:
            cur.execute(sql, args)
            row = cur.fetchone()
        return row[0] if row else None

    def pair(self, email: str) -> tuple[int, int]:
        """(app id, shop id) of a linked customer."""
        app = self.pg.execute("SELECT id FROM customers WHERE email = %s", (email,)).fetchone()
        assert app is not None, email
        shop = self.my_one("SELECT id FROM customers WHERE app_customer_id = %s", (app[0],))
        assert shop is not None, f"{email} is not linked"
        return int(app[0]), int(shop)

    def change(
        self, direction: str, after_commit: Callable[[], object], timeout: float = CHANGE_TIMEOUT
    ) -> tuple[float, float]:
        """Commit a stamped UPDATE on one side; (commit wall time, seconds until visible)."""
        stamp = f"bench {uuid.uuid4().hex[:12]}"
        if direction == DIRECTIONS[0]:
            app_id, _ = self.pair("ada@example.com")
            self.pg.execute("UPDATE customers SET full_name = %s WHERE id = %s", (stamp, app_id))
            t0, wall = time.monotonic(), time.time()

            def seen() -> bool:
                q = "SELECT name FROM customers WHERE app_customer_id = %s"
                return bool(self.my_one(q, (app_id,)) == stamp)
        else:
            app_id, shop_id = self.pair("grace@example.com")
            with self.my.cursor() as cur:
                cur.execute("UPDATE customers SET name = %s WHERE id = %s", (stamp, shop_id))
            t0, wall = time.monotonic(), time.time()

            def seen() -> bool:
                q = "SELECT full_name FROM customers WHERE id = %s"
                row = self.pg.execute(q, (app_id,)).fetchone()
                return row is not None and row[0] == stamp

        after_commit()
        limit = t0 + min(timeout, self.remaining())
        while not seen():
            if time.monotonic() > limit:
                raise OutOfTime(f"{direction}: {stamp} not visible after {timeout:.0f}s")
            time.sleep(POLL)
        return wall, time.monotonic() - t0

    def record(self, path: str, direction: str, seconds: float) -> None:
        self.samples.setdefault((path, direction), []).append(seconds)
        print(f"  {path:<22} {direction}  {seconds * 1000:8.0f} ms", flush=True)


# --- the library path ----------------------------------------------------------------------


def library(b: Bench, project: Path, n: int) -> None:
    for _ in range(n):
        for direction in DIRECTIONS:

            def one_run() -> None:
                with Runtime(load_project(project)) as rt:
                    run_entity(rt, SYNC, ENTITY)

            b.record("library, fresh runtime", direction, b.change(direction, one_run)[1])
            one_run()  # takes in the echo of our own write, untimed
    with Runtime(load_project(project)) as rt:
        run_entity(rt, SYNC, ENTITY)  # opens the connectors before the clock starts
        for _ in range(n):
            for direction in DIRECTIONS:
                took = b.change(direction, lambda: run_entity(rt, SYNC, ENTITY))[1]
                b.record("library, warm runtime", direction, took)
                run_entity(rt, SYNC, ENTITY)


# --- the Dagster path ----------------------------------------------------------------------


def _settled(instance: Any) -> bool:
    """No active run, and the sensor's last tick skipped after the last run ended (so it has
    captured the echo of that run's writes and found nothing pending)."""
    from dagster import DagsterRunStatus, RunsFilter
    from dagster._core.scheduler.instigation import TickStatus

    active = [
        DagsterRunStatus.QUEUED,
        DagsterRunStatus.NOT_STARTED,
        DagsterRunStatus.STARTING,
        DagsterRunStatus.STARTED,
    ]
    if instance.get_run_records(RunsFilter(statuses=active), limit=1):
        return False
    last = instance.get_run_records(limit=1)
    ended = (last[0].end_time or time.time()) if last else 0.0
    for state in instance.all_instigator_state():
        if state.instigator_name == SENSOR:
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1)
            return (
                bool(ticks)
                and ticks[0].status == TickStatus.SKIPPED
                and (ticks[0].timestamp > ended)
            )
    return False


def dagster(b: Bench, n: int, proc: subprocess.Popen[bytes]) -> None:
    from dagster import DagsterInstance, RunsFilter

    def alive() -> None:
        if proc.poll() is not None:
            raise OutOfTime(f"dagster dev exited with code {proc.returncode}")

    instance = DagsterInstance.get()
    print("  (warm-up change, not counted: dagster dev starting, first tick and run)")
    b.change(DIRECTIONS[0], alive, WARM_UP_TIMEOUT)
    for _ in range(n):
        for direction in DIRECTIONS:
            while not _settled(instance):
                alive()
                if b.remaining() < 1:
                    raise OutOfTime("gave up waiting for the sync to settle")
                time.sleep(0.2)
            time.sleep(random.uniform(0, SENSOR_LOOP))  # a random phase of the sensor loop
            wall, took = b.change(direction, alive)
            b.record("dagster (sensor + run)", direction, took)
            after = datetime.fromtimestamp(wall, UTC)
            runs = instance.get_run_records(RunsFilter(created_after=after), ascending=True)
            if runs and runs[0].start_time:
                created = runs[0].create_timestamp.timestamp()
                b.phases.append((created - wall, runs[0].start_time - created, took))


# --- setup, report, teardown ---------------------------------------------------------------


def _my_connect(dsn: str, database: str | None) -> pymysql.connections.Connection:
    u = urlsplit(dsn)
    return pymysql.connect(
        host=u.hostname,
        port=u.port or 3306,
        user=u.username or "root",
        database=database,
        autocommit=True,
        charset="utf8mb4",
    )


def _machine(
    pg: psycopg.Connection[Any], my: pymysql.connections.Connection, load: tuple[float, ...]
) -> list[str]:
    import dagster as dg

    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    row = pg.execute("SHOW server_version").fetchone()
    with my.cursor() as cur:
        cur.execute("SELECT VERSION()")
        my_row = cur.fetchone()
    return [
        f"CPU: {os.cpu_count()} x {model}; load average at start: "
        + ", ".join(f"{x:.2f}" for x in load),
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}; "
        f"Dagster {dg.__version__}",
        f"PostgreSQL {row[0] if row else '?'}; MariaDB {my_row[0] if my_row else '?'}",
    ]


def report(b: Bench, machine: list[str]) -> None:
    print("\nmachine:")
    for line in machine:
        print(f"  {line}")
    print(f"\n{'path':<24} {'direction':<10} {'n':>3} {'median':>9} {'min':>9} {'max':>9}")
    med: dict[tuple[str, str], float] = {}
    for (path, direction), xs in b.samples.items():
        med[(path, direction)] = statistics.median(xs)
        print(
            f"{path:<24} {direction:<10} {len(xs):>3} {statistics.median(xs) * 1000:>7.0f}ms"
            f" {min(xs) * 1000:>7.0f}ms {max(xs) * 1000:>7.0f}ms"
        )
    for direction in DIRECTIONS:
        d = med.get(("dagster (sensor + run)", direction))
        for lib in ("library, fresh runtime", "library, warm runtime"):
            if d and (x := med.get((lib, direction))):
                print(f"ratio dagster / {lib:<22} {direction}: {d / x:6.1f}x")
    if b.phases:
        detect = statistics.median(p[0] for p in b.phases)
        launch = statistics.median(p[1] for p in b.phases)
        total = statistics.median(p[2] for p in b.phases)
        print(
            f"\ndagster, median of {len(b.phases)}: commit → run created {detect:.2f} s"
            f" (sensor tick + capture), created → started {launch:.2f} s (launch),"
            f" commit → visible {total:.2f} s"
        )


def prepare(base: Path, instance_yaml: Path) -> tuple[str, str, Path]:
    """Servers, the demo schema and declaration, a fresh DAGSTER_HOME, the initial sync;
    returns the two DSNs and the declaration's path."""
    info = sandbox_up(base, salesforce=False)
    root = _my_connect(info.mysql.url, None)
    with root.cursor() as cur:
        cur.execute("CREATE DATABASE shop")
    root.close()
    pg_dsn, my_dsn = info.postgres.url, info.mysql.url.rstrip("/") + "/shop"
    seed(pg_dsn, my_dsn)
    project = base / "latency.yaml"
    project.write_text(DEMO_YAML)
    home = base / "dagster_home"
    home.mkdir()
    shutil.copy(instance_yaml, home / "dagster.yaml")
    os.environ.update(
        {
            "SYNCSWIM_PG_DSN": pg_dsn,
            "SYNCSWIM_MYSQL_DSN": my_dsn,
            "DAGSTER_HOME": str(home),
            "SYNCSWIM_PROJECT": str(project),
        }
    )
    with Runtime(load_project(project)) as rt:
        run_sync(rt, SYNC, full=True)
    return pg_dsn, my_dsn, project


def start_dagster(base: Path) -> subprocess.Popen[bytes]:
    # a fresh SQLite instance created by several processes at once can break
    subprocess.run(
        [sys.executable, "-c", "import dagster; dagster.DagsterInstance.get()"], check=True
    )
    dagster_bin = str(Path(sys.executable).with_name("dagster"))
    port = str(free_port())
    with open(base / "dagster.log", "wb") as log:
        return subprocess.Popen(
            [dagster_bin, "dev", "-w", str(REPO / "workspace.yaml"), "-p", port, "-h", "127.0.0.1"],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8, help="changes per direction and path")
    ap.add_argument("--max-seconds", type=float, default=1200, help="bound on the whole run")
    ap.add_argument("--only", choices=["library", "dagster"], help="measure one path only")
    ap.add_argument(
        "--instance-yaml",
        type=Path,
        default=REPO / "dagster.yaml",
        help="the Dagster instance settings to measure (default: the project's dagster.yaml)",
    )
    a = ap.parse_args()
    # a child inherits an ignored SIGINT (`bench &` in a script) and dagster then ignores
    # SIGTERM; a handler of ours is reset to the default in the child instead
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    load_at_start = os.getloadavg()
    base = Path(tempfile.mkdtemp(prefix="syncswim-latency-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        pg_dsn, my_dsn, project = prepare(base, a.instance_yaml.resolve())
        pg = psycopg.connect(pg_dsn, autocommit=True)
        my = _my_connect(my_dsn, "shop")
        b = Bench(pg, my, time.monotonic() + a.max_seconds)
        machine = _machine(pg, my, load_at_start)
        machine.append(f"Dagster instance settings: {a.instance_yaml}")
        try:
            if a.only != "dagster":
                print(f"library path, {a.n} changes per direction and runtime:", flush=True)
                library(b, project, a.n)
            if a.only != "library":
                proc = start_dagster(base)
                print(f"dagster path, {a.n} changes per direction:", flush=True)
                dagster(b, a.n, proc)
        except OutOfTime as e:
            print(f"stopped early: {e or 'out of time'}", file=sys.stderr)
        finally:
            pg.close()
            my.close()
        report(b, machine)
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
        if proc is not None:
            stop_dagster(proc)
        sandbox_down(base)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
