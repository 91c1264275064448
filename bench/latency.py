"""Change-to-visible latency of both run modes, through Dagster, and of the library path.

Starts a private PostgreSQL and MariaDB (the sandbox) in a temporary folder, creates the demo
schema and its YAML, runs the initial sync, then measures single-row changes: an UPDATE
carrying a unique stamp is committed on one side, and a reader polling the other side (every
5 ms in streaming mode, 20 ms otherwise) times how long until it shows the stamp.

- streaming: `dagster dev` with the project's dagster.yaml in a fresh DAGSTER_HOME and the
  sync in `run: streaming`; the sensor starts the long-lived run, which reads both change
  streams continuously. Per change: detection (the autocommit UPDATE sent -> the change
  decoded from the stream, the journal's `detected_at`) and end to end (UPDATE sent ->
  visible on the other side). `--n` changes per direction, alternating, a random 20-200 ms apart.
- streaming under load: the same while a paced writer commits `--load-rate` single-row
  UPDATEs per second of other rows (products, in PostgreSQL) that the run carries too.
- micro_batch: the sync in `run: micro_batch`; the capture sensor detects the change at its
  next tick and requests a run. Before each change the sync is let settle (no active run,
  the last sensor tick a skip after the last run) and a random 0-5 s pause puts the commit
  at a random point of the sensor's 5 s loop. `--micro-n` changes per direction.
- library: `run_entity` in this process right after the commit, with a fresh `Runtime` as
  each run opens one, and with one kept open (`--only library`).
- salesforce (`--only salesforce`, on its own): PostgreSQL ⇄ the Salesforce emulator, the
  demo's `customers` ⇄ Account mapping (system of record PostgreSQL, its key in
  `App_Id__c`): an UPDATE of the customer's name in PostgreSQL until the Account shows
  it, and a person's edit of an Account's Name through the REST API (no client origin,
  as in the org's UI) until PostgreSQL shows it. The org is read every 50 ms: each look
  is an API call, counted in its daily allowance. Two modes (`--sf-modes`), each in a
  `dagster dev` of its own:
  - micro_batch: the capture sensor reads both change streams (logical replication,
    Change Data Capture over CometD) at its tick and requests a run. As for micro_batch,
    each change on a settled sync at a random point of the sensor's loop. `--sf-n`
    changes per direction.
  - streaming: the sync in `run: streaming`; the long-lived run reads the replication
    stream and holds one CometD session whose long-polled connects bring each change
    event as it is published. Detection (sent -> the journal's `detected_at`: decoded
    from the replication stream, or the change event's arrival) and end to end, as for
    the database streaming rows. `--sf-stream-n` changes per direction, alternating, a
    random 20-200 ms apart.

Everything started is stopped on exit, Ctrl-C and errors. `--quick` (the suite's smoke
test): streaming through Dagster, a few changes per direction, every one must arrive and
have a detection time; with `--only salesforce`, two changes per direction through the
Salesforce micro-batch path and two through its streaming run, every one must arrive
(and, streaming, be journaled); exit 1 otherwise; nothing is timed against a target.

    .venv/bin/python bench/latency.py [--n 200] [--micro-n 20] [--load-rate 1000]
        [--only streaming|load|micro_batch|library|salesforce] [--sf-n 20]
        [--sf-stream-n 200] [--sf-modes micro_batch,streaming]
        [--max-seconds 3600] [--json out.json]
        [--quick] [--instance-yaml other-dagster.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
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
from syncswim_lib.pipeline.statehome import state_url_for  # noqa: E402
from syncswim_lib.sandbox.demo import seed, stop_dagster  # noqa: E402
from syncswim_lib.sandbox.demo_schema import DEMO_YAML  # noqa: E402
from syncswim_lib.sandbox.manager import sandbox_down, sandbox_up  # noqa: E402
from syncswim_lib.sandbox.servers import free_port  # noqa: E402
from syncswim_lib.state import leases, open_store  # noqa: E402

SYNC, ENTITY, SENSOR = "app_shop", "customers", "app_shop__capture"
POLL = 0.02
STREAM_POLL = 0.005
LOAD_ROWS = 500  # products the background writer updates in turn
SENSOR_LOOP = 5.0  # the sensor daemon's minimum loop (platform notes)
CHANGE_TIMEOUT = 60.0
WARM_UP_TIMEOUT = 300.0  # the first change waits for dagster dev and its code server to start
DIRECTIONS = ("app→shop", "shop→app")


def _not_visible(direction: str, stamp: str, waited: float, timeout: float) -> str:
    """Why a change was not seen: its own timeout, or the run's time bound cutting the
    wait short (a change still on its way then, not one known to be lost)."""
    if waited < timeout:
        return (
            f"{direction}: {stamp} not visible within the {waited:.0f} s the time bound "
            "(--max-seconds) left it"
        )
    return f"{direction}: {stamp} not visible after {timeout:.0f}s"


class OutOfTime(Exception):
    pass


@dataclass
class Bench:
    pg: psycopg.Connection[Any]
    my: pymysql.connections.Connection
    deadline: float
    samples: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    phases: list[tuple[float, float, float]] = field(default_factory=list)
    state_db: Path | None = None  # the SQLite state store, for detection times
    poll: float = POLL
    missing: list[str] = field(default_factory=list)  # stamps never seen (quick mode)

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
        """Commit a stamped UPDATE on one side (autocommit); (wall time it was sent, seconds
        from then until visible on the other side)."""
        wall, took, _ = self.stamped(direction, after_commit, timeout)
        return wall, took

    def stamped(
        self, direction: str, after_commit: Callable[[], object], timeout: float = CHANGE_TIMEOUT
    ) -> tuple[float, float, str]:
        """`change`, also returning the stamp written."""
        stamp = f"bench {uuid.uuid4().hex[:12]}"
        if direction == DIRECTIONS[0]:
            app_id, _ = self.pair("ada@example.com")
            # the clock starts as the autocommit UPDATE is sent (its commit is inside it)
            t0, wall = time.monotonic(), time.time()
            self.pg.execute("UPDATE customers SET full_name = %s WHERE id = %s", (stamp, app_id))

            def seen() -> bool:
                q = "SELECT name FROM customers WHERE app_customer_id = %s"
                return bool(self.my_one(q, (app_id,)) == stamp)
        else:
            app_id, shop_id = self.pair("grace@example.com")
            with self.my.cursor() as cur:
                t0, wall = time.monotonic(), time.time()
                cur.execute("UPDATE customers SET name = %s WHERE id = %s", (stamp, shop_id))

            def seen() -> bool:
                q = "SELECT full_name FROM customers WHERE id = %s"
                row = self.pg.execute(q, (app_id,)).fetchone()
                return row is not None and row[0] == stamp

        after_commit()
        wait = min(timeout, self.remaining())
        limit = t0 + wait
        while not seen():
            if time.monotonic() > limit:
                raise OutOfTime(_not_visible(direction, stamp, wait, timeout))
            time.sleep(self.poll)
        return wall, time.monotonic() - t0, stamp

    def journal_mark(self) -> int:
        """The journal's last entry id, read before a sample's change is sent: its entry
        is looked for after it (0 before the store exists)."""
        if self.state_db is None:
            return 0
        try:
            with sqlite3.connect(f"file:{self.state_db}?mode=ro", uri=True, timeout=30) as db:
                row = db.execute("SELECT MAX(id) FROM journal").fetchone()
        except sqlite3.OperationalError:  # no store (or no journal) yet
            return 0
        return int(row[0] or 0)

    def detected(
        self, stamp: str, wall: float, sync: str = SYNC, after_id: int = 0
    ) -> float | None:
        """Seconds from sending the committing statement to the change decoded from its
        stream (the journal's `detected_at`, stamped by the reader as the commit arrives).
        Only entries after `after_id` (`journal_mark`) are searched: a scan of the whole
        journal under a 1,000 changes/s load grew with it, held the reader's snapshot (and
        the store's WAL) for longer and longer, and took CPU from the run it measures."""
        assert self.state_db is not None
        with sqlite3.connect(f"file:{self.state_db}?mode=ro", uri=True, timeout=30) as db:
            row = db.execute(
                "SELECT detected_at FROM journal WHERE id > ? AND sync = ? AND after LIKE ? "
                "ORDER BY id DESC LIMIT 1",
                (after_id, sync, f"%{stamp}%"),
            ).fetchone()
        if row is None:
            return None
        return datetime.fromisoformat(row[0]).timestamp() - wall

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


def _settled(instance: Any, sensor: str = SENSOR) -> bool:
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
        if state.instigator_name == sensor:
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
            b.record("micro-batch (sensor + run)", direction, took)
            after = datetime.fromtimestamp(wall, UTC)
            runs = instance.get_run_records(RunsFilter(created_after=after), ascending=True)
            if runs and runs[0].start_time:
                created = runs[0].create_timestamp.timestamp()
                b.phases.append((created - wall, runs[0].start_time - created, took))


# --- the streaming run through Dagster ----------------------------------------------------


def _streaming_up(project: Path, sync: str = SYNC) -> bool:
    store = open_store(state_url_for(load_project(project)))
    try:
        return any(h.purpose.startswith("streaming run") for h in leases.holders(store, sync))
    finally:
        store.close()


class Load(threading.Thread):
    """Single-row UPDATEs of products in PostgreSQL at `rate` per second, paced."""

    def __init__(self, pg_dsn: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.pg_dsn, self.rate = pg_dsn, rate
        self.done = threading.Event()
        self.sent = 0
        self.seconds = 0.0

    def run(self) -> None:
        with psycopg.connect(self.pg_dsn, autocommit=True) as pg:
            ids = [r[0] for r in pg.execute("SELECT id FROM products ORDER BY id").fetchall()]
            start = time.monotonic()
            while not self.done.is_set():
                due = start + self.sent / self.rate
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                pid = ids[self.sent % len(ids)]
                pg.execute("UPDATE products SET price = price + 0.01 WHERE id = %s", (pid,))
                self.sent += 1
            self.seconds = time.monotonic() - start

    @property
    def achieved(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


def streaming(b: Bench, n: int, proc: subprocess.Popen[bytes], project: Path, label: str) -> None:
    def alive() -> None:
        if proc.poll() is not None:
            raise OutOfTime(f"dagster dev exited with code {proc.returncode}")

    b.poll = STREAM_POLL
    while not _streaming_up(project):
        alive()
        if b.remaining() < 1:
            raise OutOfTime("the streaming run did not start")
        time.sleep(0.2)
    print("  (warm-up change per direction, not counted)", flush=True)
    for direction in DIRECTIONS:
        b.change(direction, alive, WARM_UP_TIMEOUT)
    for _ in range(n):
        for direction in DIRECTIONS:
            time.sleep(random.uniform(0.02, 0.2))
            mark = b.journal_mark()
            try:
                wall, took, stamp = b.stamped(direction, alive)
            except OutOfTime as e:
                b.missing.append(str(e))
                if b.remaining() < 1:
                    raise
                continue
            b.record(f"{label}, end to end", direction, took)
            seen = b.detected(stamp, wall, after_id=mark)
            if seen is None:
                b.missing.append(f"{direction}: {stamp} has no journal entry")
            else:
                b.samples.setdefault((f"{label}, detection", direction), []).append(seen)


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


def _pct(xs: list[float], q: float) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def report(b: Bench, machine: list[str], extra: list[str]) -> dict[str, Any]:
    print("\nmachine:")
    for line in [*machine, *extra]:
        print(f"  {line}")
    head = f"{'path':<34} {'direction':<10} {'n':>4}"
    print(f"\n{head} {'p50':>8} {'p95':>8} {'p99':>8} {'min':>8} {'max':>8}")
    rows = []
    med: dict[tuple[str, str], float] = {}
    for (path, direction), xs in b.samples.items():
        med[(path, direction)] = statistics.median(xs)
        row = {
            "path": path,
            "direction": direction,
            "n": len(xs),
            **{f"p{q}": _pct(xs, q / 100) for q in (50, 95, 99)},
            "min": min(xs),
            "max": max(xs),
        }
        rows.append(row)
        print(
            f"{path:<34} {direction:<10} {len(xs):>4}"
            + "".join(f" {row[k] * 1000:>6.0f}ms" for k in ("p50", "p95", "p99", "min", "max"))
        )
    for direction in DIRECTIONS:
        d = med.get(("micro-batch (sensor + run)", direction))
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
    if b.missing:
        print(f"\n{len(b.missing)} changes not seen or not journaled:")
        for m in b.missing[:20]:
            print(f"  {m}")
    return {"machine": [*machine, *extra], "rows": rows, "missing": b.missing}


def prepare(base: Path) -> tuple[str, str, Path]:
    """Servers, the demo schema (and LOAD_ROWS more products) and declaration, the initial
    sync; returns the two DSNs and the declaration's path."""
    info = sandbox_up(base, salesforce=False)
    root = _my_connect(info.mysql.url, None)
    with root.cursor() as cur:
        cur.execute("CREATE DATABASE shop")
    root.close()
    pg_dsn, my_dsn = info.postgres.url, info.mysql.url.rstrip("/") + "/shop"
    seed(pg_dsn, my_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        pg.execute(
            "INSERT INTO products (sku, name, price, in_stock) "
            "SELECT 'load-' || g, 'load ' || g, 1.00, true FROM generate_series(1, %s) g",
            (LOAD_ROWS,),
        )
    project = base / "latency.yaml"
    project.write_text(DEMO_YAML)  # run: streaming
    os.environ.update(
        {
            "SYNCSWIM_PG_DSN": pg_dsn,
            "SYNCSWIM_MYSQL_DSN": my_dsn,
            "SYNCSWIM_PROJECT": str(project),
        }
    )
    with Runtime(load_project(project)) as rt:
        run_sync(rt, SYNC, full=True)
    return pg_dsn, my_dsn, project


def set_mode(project: Path, mode: str) -> None:
    """The measured sync's run mode; the demo's other sync (with Salesforce) keeps its
    own: its runs are not measured here (the Salesforce rows have their own servers)."""
    text = project.read_text()
    start = text.index(f"\n  {SYNC}:\n")
    rest = re.sub(r"run: (streaming|micro_batch)", f"run: {mode}", text[start:], count=1)
    project.write_text(text[:start] + rest)


def start_dagster(base: Path, instance_yaml: Path, name: str) -> subprocess.Popen[bytes]:
    """`dagster dev` in a fresh DAGSTER_HOME (one per mode: no history carried over)."""
    home = base / f"dagster_home_{name}"
    home.mkdir()
    shutil.copy(instance_yaml, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    # a fresh SQLite instance created by several processes at once can break
    subprocess.run(
        [sys.executable, "-c", "import dagster; dagster.DagsterInstance.get()"], check=True
    )
    dagster_bin = str(Path(sys.executable).with_name("dagster"))
    port = str(free_port())
    with open(base / f"dagster_{name}.log", "wb") as log:
        return subprocess.Popen(
            [dagster_bin, "dev", "-w", str(REPO / "workspace.yaml"), "-p", port, "-h", "127.0.0.1"],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


# --- PostgreSQL ⇄ Salesforce, micro-batch through Dagster ---------------------------------

SF_SYNC, SF_SENSOR = "app_crm", "app_crm__capture"
SF_DIRECTIONS = ("app→crm", "crm→app")
SF_PATH = "micro-batch, Salesforce"
SF_STREAM = "streaming, Salesforce"
SF_POLL = 0.05  # each look at the org is an API call, counted in its daily allowance
SF_QUICK_N = 2


def _crm_yaml(mode: str = "micro_batch") -> str:
    """The demo's declaration cut to its app_crm sync's customers (Account) entity, in
    run mode `mode`: the MariaDB sync would add its streaming run to the machine's load,
    and the other entities only lengthen each run."""
    import yaml

    doc = yaml.safe_load(DEMO_YAML)
    sync = doc["syncs"][SF_SYNC]
    sync["run"] = mode
    sync["entities"] = {ENTITY: sync["entities"][ENTITY]}
    doc["syncs"] = {SF_SYNC: sync}
    doc["endpoints"] = {e: doc["endpoints"][e] for e in sync["between"]}
    return str(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


@dataclass
class Crm:
    """The Salesforce rows' two sides: PostgreSQL, and the org as a person reaches it
    (the human user's token, no Sforce-Call-Options: the change events carry no client
    origin, as an edit in the org's UI)."""

    b: Bench
    sf: Any  # simple_salesforce.Salesforce
    accounts: dict[int, str] = field(default_factory=dict)  # app id -> Account Id

    def app_id(self, email: str) -> int:
        row = self.b.pg.execute("SELECT id FROM customers WHERE email = %s", (email,)).fetchone()
        assert row is not None, email
        return int(row[0])

    def name_in_org(self, app_id: int) -> str | None:
        q = f"SELECT Id, Name FROM Account WHERE App_Id__c = '{app_id}'"
        found = self.sf.query(q)["records"]
        if not found:
            return None
        self.accounts[app_id] = found[0]["Id"]
        return str(found[0]["Name"])

    def change(
        self, direction: str, after_commit: Callable[[], object], timeout: float = CHANGE_TIMEOUT
    ) -> tuple[float, float]:
        """A stamped name written on one side; (wall time it was sent, seconds from then
        until the other side shows it)."""
        wall, took, _ = self.stamped(direction, after_commit, timeout)
        return wall, took

    def stamped(
        self, direction: str, after_commit: Callable[[], object], timeout: float = CHANGE_TIMEOUT
    ) -> tuple[float, float, str]:
        """`change`, also returning the stamp written."""
        stamp = f"bench {uuid.uuid4().hex[:12]}"
        if direction == SF_DIRECTIONS[0]:
            app_id = self.app_id("ada@example.com")
            t0, wall = time.monotonic(), time.time()
            self.b.pg.execute("UPDATE customers SET full_name = %s WHERE id = %s", (stamp, app_id))

            def seen() -> bool:
                return self.name_in_org(app_id) == stamp
        else:
            app_id = self.app_id("grace@example.com")
            if app_id not in self.accounts:
                self.name_in_org(app_id)
            account = self.accounts[app_id]
            t0, wall = time.monotonic(), time.time()
            self.sf.Account.update(account, {"Name": stamp})

            def seen() -> bool:
                q = "SELECT full_name FROM customers WHERE id = %s"
                row = self.b.pg.execute(q, (app_id,)).fetchone()
                return row is not None and row[0] == stamp

        after_commit()
        wait = min(timeout, self.b.remaining())
        limit = t0 + wait
        while not seen():
            if time.monotonic() > limit:
                raise OutOfTime(_not_visible(direction, stamp, wait, timeout))
            time.sleep(SF_POLL)
        return wall, time.monotonic() - t0, stamp


def salesforce_dagster(crm: Crm, n: int, proc: subprocess.Popen[bytes], loads: list[float]) -> None:
    """`n` changes per direction through the capture sensor and a run each, as `dagster`
    measures the database micro-batch path; the 1-minute load average at each sample
    goes into `loads`."""
    from dagster import DagsterInstance, RunsFilter

    b = crm.b

    def alive() -> None:
        if proc.poll() is not None:
            raise OutOfTime(f"dagster dev exited with code {proc.returncode}")

    instance = DagsterInstance.get()
    print("  (warm-up change, not counted: dagster dev starting, first tick and run)")
    crm.change(SF_DIRECTIONS[0], alive, WARM_UP_TIMEOUT)
    for _ in range(n):
        for direction in SF_DIRECTIONS:
            while not _settled(instance, SF_SENSOR):
                alive()
                if b.remaining() < 1:
                    raise OutOfTime("gave up waiting for the sync to settle")
                time.sleep(0.2)
            time.sleep(random.uniform(0, SENSOR_LOOP))  # a random phase of the sensor loop
            loads.append(os.getloadavg()[0])
            try:
                wall, took = crm.change(direction, alive)
            except OutOfTime as e:
                b.missing.append(str(e))
                if b.remaining() < 1:
                    raise
                continue
            b.record(SF_PATH, direction, took)
            after = datetime.fromtimestamp(wall, UTC)
            runs = instance.get_run_records(RunsFilter(created_after=after), ascending=True)
            if runs and runs[0].start_time:
                created = runs[0].create_timestamp.timestamp()
                b.phases.append((created - wall, runs[0].start_time - created, took))


def salesforce_streaming(
    crm: Crm, n: int, proc: subprocess.Popen[bytes], project: Path, loads: list[float]
) -> None:
    """`n` changes per direction through the sync's streaming run, as `streaming` measures
    the databases' (detection from the journal's `detected_at`)."""
    b = crm.b

    def alive() -> None:
        if proc.poll() is not None:
            raise OutOfTime(f"dagster dev exited with code {proc.returncode}")

    while not _streaming_up(project, SF_SYNC):
        alive()
        if b.remaining() < 1:
            raise OutOfTime("the Salesforce streaming run did not start")
        time.sleep(0.2)
    print("  (warm-up change per direction, not counted)", flush=True)
    for direction in SF_DIRECTIONS:
        crm.change(direction, alive, WARM_UP_TIMEOUT)
    for _ in range(n):
        for direction in SF_DIRECTIONS:
            time.sleep(random.uniform(0.02, 0.2))
            loads.append(os.getloadavg()[0])
            mark = b.journal_mark()
            try:
                wall, took, stamp = crm.stamped(direction, alive)
            except OutOfTime as e:
                b.missing.append(str(e))
                if b.remaining() < 1:
                    raise
                continue
            b.record(f"{SF_STREAM}, end to end", direction, took)
            seen = b.detected(stamp, wall, SF_SYNC, after_id=mark)
            if seen is None:
                b.missing.append(f"{direction}: {stamp} has no journal entry")
            else:
                b.samples.setdefault((f"{SF_STREAM}, detection", direction), []).append(seen)


def prepare_salesforce(base: Path) -> tuple[str, str, Any, str, Path]:
    """Servers and the emulator, the demo's PostgreSQL schema and seed and the org's
    custom fields, the declaration, the initial sync; returns the DSNs, the emulator, the
    human user's token and the declaration's path."""
    from syncswim_lib.sandbox.demo_crm import prepare_org
    from syncswim_lib.sandbox.demo_schema import PG_SCHEMA, PG_SEED

    info = sandbox_up(base, salesforce=True)
    emu = info.salesforce
    if emu is None:
        raise OutOfTime(f"no Salesforce emulator: it is {info.salesforce_note}")
    human_token = prepare_org(emu)
    pg_dsn = info.postgres.url
    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        pg.execute(PG_SCHEMA)
        pg.execute(PG_SEED)
    project = base / "latency_crm.yaml"
    project.write_text(_crm_yaml())
    os.environ.update(
        {
            "SYNCSWIM_PG_DSN": pg_dsn,
            "SF_URL": emu.url,
            "SF_TOKEN": emu.token,
            "SF_CA_BUNDLE": emu.ca_path,
            "SYNCSWIM_PROJECT": str(project),
        }
    )
    with Runtime(load_project(project)) as rt:
        run_sync(rt, SF_SYNC, full=True)
    return pg_dsn, info.mysql.url, emu, human_token, project


def salesforce_main(a: argparse.Namespace) -> int:
    """`--only salesforce`: the Salesforce rows, with servers and an emulator of their own."""
    import requests
    from simple_salesforce.api import Salesforce

    n = SF_QUICK_N if a.quick else a.sf_n
    stream_n = SF_QUICK_N if a.quick else a.sf_stream_n
    modes = [m.strip() for m in a.sf_modes.split(",") if m.strip()]
    if not modes or set(modes) - {"micro_batch", "streaming"}:
        print(f"--sf-modes: micro_batch and/or streaming, not {a.sf_modes!r}", file=sys.stderr)
        return 2
    max_seconds = min(a.max_seconds, 300) if a.quick else a.max_seconds
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    load_at_start = os.getloadavg()
    base = Path(tempfile.mkdtemp(prefix="syncswim-latency-sf-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        pg_dsn, my_dsn, emu, human_token, project = prepare_salesforce(base)
        pg = psycopg.connect(pg_dsn, autocommit=True)
        my = _my_connect(my_dsn, None)
        session = requests.Session()
        session.verify, session.trust_env = emu.ca_path, False
        sf = Salesforce(instance_url=emu.url, session_id=human_token, session=session)
        b = Bench(pg, my, time.monotonic() + max_seconds, poll=SF_POLL)
        b.state_db = Path(state_url_for(load_project(project)).removeprefix("sqlite:///"))
        crm = Crm(b, sf)
        machine = _machine(pg, my, load_at_start)
        machine.append(f"Dagster instance settings: {a.instance_yaml}")
        machine.append("Salesforce: the project's emulator on this machine (HTTPS, CometD)")
        loads: list[float] = []
        try:
            if "micro_batch" in modes:
                proc = start_dagster(base, a.instance_yaml.resolve(), "salesforce")
                print(f"Salesforce micro-batch, {n} changes per direction:", flush=True)
                salesforce_dagster(crm, n, proc, loads)
                stop_dagster(proc)
                proc = None
            if "streaming" in modes:
                project.write_text(_crm_yaml("streaming"))
                proc = start_dagster(base, a.instance_yaml.resolve(), "salesforce_streaming")
                print(f"Salesforce streaming, {stream_n} changes per direction:", flush=True)
                salesforce_streaming(crm, stream_n, proc, project, loads)
                stop_dagster(proc)
                proc = None
        except OutOfTime as e:
            print(f"stopped early: {e or 'out of time'}", file=sys.stderr)
            b.missing.append(f"stopped early: {e or 'out of time'}")
        finally:
            pg.close()
            my.close()
            session.close()
        extra = []
        if loads:
            extra.append(
                f"load average (1 min) at the samples: {min(loads):.2f}-{max(loads):.2f}, "
                f"median {statistics.median(loads):.2f}"
            )
        figures = report(b, machine, extra)
        if a.json is not None:
            a.json.write_text(json.dumps(figures, indent=2))
        if a.quick:
            want = {(SF_PATH, d): n for d in SF_DIRECTIONS if "micro_batch" in modes}
            for what in ("end to end", "detection"):
                if "streaming" in modes:
                    want |= {(f"{SF_STREAM}, {what}", d): stream_n for d in SF_DIRECTIONS}
            seen = {k: len(b.samples.get(k, [])) for k in want}
            if b.missing or any(seen[k] < v for k, v in want.items()):
                print(f"quick: FAILED ({seen}, missing {b.missing})", file=sys.stderr)
                return 1
            print("quick: every change arrived")
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="streaming changes per direction")
    ap.add_argument("--micro-n", type=int, default=20, help="micro-batch changes per direction")
    ap.add_argument("--lib-n", type=int, default=8, help="library changes per direction")
    ap.add_argument("--load-rate", type=float, default=1000, help="background changes/s")
    ap.add_argument("--load-n", type=int, help="changes per direction under load (default --n)")
    ap.add_argument("--max-seconds", type=float, default=3600, help="bound on the whole run")
    ap.add_argument(
        "--only",
        choices=["streaming", "load", "micro_batch", "library", "dagster", "salesforce"],
        action="append",
        help="measure these paths only (repeatable; dagster = streaming, load, micro_batch;"
        " salesforce only on its own)",
    )
    ap.add_argument("--sf-n", type=int, default=20, help="Salesforce micro-batch changes")
    ap.add_argument(
        "--sf-stream-n", type=int, default=200, help="Salesforce streaming changes per direction"
    )
    ap.add_argument(
        "--sf-modes",
        default="micro_batch,streaming",
        help="the Salesforce run modes to measure (comma-separated)",
    )
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--quick", action="store_true", help="smoke run: streaming, 5 changes each")
    ap.add_argument(
        "--instance-yaml",
        type=Path,
        default=REPO / "dagster.yaml",
        help="the Dagster instance settings to measure (default: the project's dagster.yaml)",
    )
    a = ap.parse_args()
    if a.only and "salesforce" in a.only:
        if len(set(a.only)) > 1:
            ap.error("--only salesforce runs on its own (its own servers and emulator)")
        return salesforce_main(a)
    only = set(a.only or ["streaming", "load", "micro_batch"])
    if "dagster" in only:
        only |= {"streaming", "load", "micro_batch"}
    if a.quick:
        only, a.n, a.max_seconds = {"streaming"}, 5, min(a.max_seconds, 300)
    # a child inherits an ignored SIGINT (`bench &` in a script) and dagster then ignores
    # SIGTERM; a handler of ours is reset to the default in the child instead
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    load_at_start = os.getloadavg()
    base = Path(tempfile.mkdtemp(prefix="syncswim-latency-"))
    proc: subprocess.Popen[bytes] | None = None
    instance_yaml = a.instance_yaml.resolve()
    try:
        pg_dsn, my_dsn, project = prepare(base)
        pg = psycopg.connect(pg_dsn, autocommit=True)
        my = _my_connect(my_dsn, "shop")
        b = Bench(pg, my, time.monotonic() + a.max_seconds)
        b.state_db = Path(state_url_for(load_project(project)).removeprefix("sqlite:///"))
        machine = _machine(pg, my, load_at_start)
        machine.append(f"Dagster instance settings: {a.instance_yaml}")
        extra: list[str] = []
        try:
            if only & {"streaming", "load"}:
                set_mode(project, "streaming")
                proc = start_dagster(base, instance_yaml, "streaming")
                if "streaming" in only:
                    print(f"streaming, {a.n} changes per direction:", flush=True)
                    streaming(b, a.n, proc, project, "streaming")
                if "load" in only:
                    load = Load(pg_dsn, a.load_rate)
                    load.start()
                    try:
                        print(f"streaming under {a.load_rate:.0f} changes/s:", flush=True)
                        label = f"streaming, {a.load_rate:.0f}/s load"
                        streaming(b, a.load_n or a.n, proc, project, label)
                    finally:
                        load.done.set()
                        load.join()
                    extra.append(
                        f"background load: {load.sent} UPDATEs in {load.seconds:.0f} s, "
                        f"{load.achieved:.0f}/s achieved of {a.load_rate:.0f}/s offered"
                    )
                stop_dagster(proc)
                proc = None
            if "micro_batch" in only:
                set_mode(project, "micro_batch")
                b.poll = POLL
                proc = start_dagster(base, instance_yaml, "micro_batch")
                print(f"micro-batch, {a.micro_n} changes per direction:", flush=True)
                dagster(b, a.micro_n, proc)
                stop_dagster(proc)
                proc = None
            if "library" in only:
                set_mode(project, "micro_batch")
                print(f"library path, {a.lib_n} changes per direction and runtime:", flush=True)
                library(b, project, a.lib_n)
        except OutOfTime as e:
            print(f"stopped early: {e or 'out of time'}", file=sys.stderr)
            b.missing.append(f"stopped early: {e or 'out of time'}")
        finally:
            pg.close()
            my.close()
        figures = report(b, machine, extra)
        if a.json is not None:
            a.json.write_text(json.dumps(figures, indent=2))
        if a.quick:
            seen = {k: len(v) for k, v in b.samples.items()}
            want = [
                (f"streaming, {what}", d)
                for what in ("end to end", "detection")
                for d in DIRECTIONS
            ]
            if b.missing or any(seen.get(k, 0) < a.n for k in want):
                print(f"quick: FAILED ({seen}, missing {b.missing})", file=sys.stderr)
                return 1
            print("quick: every change arrived and was journaled")
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
