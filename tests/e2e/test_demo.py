"""`syncswim demo` as a user runs it: servers and the Salesforce emulator, initial sync,
Dagster UI, live two-way changes through the sensors and the daemon (PostgreSQL ⇄ MariaDB
streaming, PostgreSQL ⇄ Salesforce micro-batch), and Ctrl-C leaving nothing running."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
import pymysql
import pytest
import requests
from psycopg.rows import dict_row
from simple_salesforce.api import Salesforce

from syncswim_lib.sandbox.demo import CRM_EDIT
from syncswim_lib.sandbox.demo_crm import human_edit_command
from syncswim_lib.sandbox.envfile import read_env

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.integration]

SYNCSWIM = str(Path(sys.executable).with_name("syncswim"))
BANNER = "Sync or Swim demo is running."
START_TIMEOUT = 180.0  # servers, initial sync, then `dagster dev` on a loaded 2-core machine
SYNC_TIMEOUT = 90.0  # sensor tick (>= 5 s) + run launch + run, with slack for load
SERVERS = ("postgres", "mysql", "salesforce")
EXIT_TIMEOUT = 120.0  # the demo's own bounds: dagster 30 + group 15 + two servers


def _wait(cond: Callable[[], Any], timeout: float, what: str, log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:]) if log else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{tail}")
        time.sleep(0.1)


# --- processes, read from /proc -----------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    start: int  # clock ticks since boot: a pid reused later has another start time
    args: str


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of a process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), int(fields[19])


def _pids() -> list[int]:
    return [int(e.name) for e in os.scandir("/proc") if e.name.isdigit()]


def _args(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _descendants(root: int) -> set[Proc]:
    children: dict[int, list[int]] = {}
    stats = {}
    for pid in _pids():
        st = _stat(pid)
        if st is not None:
            stats[pid] = st
            children.setdefault(st[1], []).append(pid)
    found: set[Proc] = set()
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.add(Proc(pid, stats[pid][2], _args(pid)))
        todo.extend(children.get(pid, []))
    return found


def _alive(p: Proc) -> bool:
    st = _stat(p.pid)
    return st is not None and st[0] != "Z" and st[2] == p.start


def _env_mentions(pid: int, text: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return text.encode() in f.read()
    except OSError:
        return False


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


# --- the two databases, through the env file the demo points users to ---------------------


class Sides:
    def __init__(self, env_file: Path) -> None:
        self.env_file = env_file
        env = read_env(env_file)
        self.pg = psycopg.connect(env["SYNCSWIM_PG_DSN"], autocommit=True, row_factory=dict_row)
        u = urlsplit(env["SYNCSWIM_MYSQL_DSN"])
        self.my = pymysql.connect(
            host=u.hostname or "127.0.0.1",
            port=u.port or 3306,
            user=unquote(u.username or "root"),
            password=unquote(u.password or ""),
            database=u.path.lstrip("/"),
            autocommit=True,
            cursorclass=pymysql.cursors.DictCursor,
        )
        # the integration user's token, for reading only: a query makes no change event
        session = requests.Session()
        session.verify = env["SF_CA_BUNDLE"]
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        self.sf = Salesforce(
            instance_url=env["SF_URL"], session_id=env["SF_TOKEN"], version="62.0", session=session
        )

    def pg_rows(self, sql: str, args: Any = None) -> list[dict[str, Any]]:
        return list(self.pg.execute(sql, args).fetchall())

    def my_rows(self, sql: str, args: Any = None) -> list[dict[str, Any]]:
        with self.my.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    def sf_rows(self, soql: str) -> list[dict[str, Any]]:
        return list(self.sf.query_all(soql)["records"])

    def close(self) -> None:
        self.pg.close()
        self.my.close()
        self.sf.session.close()


def _money(value: Any) -> Decimal | None:
    """A currency as simple-salesforce reads it (a float) or PostgreSQL (a Decimal)."""
    return None if value is None else Decimal(str(value)).quantize(Decimal("0.01"))


def _customer_pairs(s: Sides) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(app row, shop row) per customer; asserts that each side has exactly the other's."""
    pg = {r["id"]: r for r in s.pg_rows("SELECT * FROM customers")}
    my = s.my_rows("SELECT * FROM customers")
    assert all(m["app_customer_id"] is not None for m in my), my
    assert sorted(m["app_customer_id"] for m in my) == sorted(pg)
    return [(pg[m["app_customer_id"]], m) for m in my]


def _assert_in_step(s: Sides) -> None:
    pairs = _customer_pairs(s)
    assert len(pairs) == 4  # three seeded in the app, one in the shop
    for p, m in pairs:
        assert (m["email"], m["name"], m["credit_limit"]) == (
            p["email"],
            p["full_name"],
            p["credit_limit"],
        )
        assert (bool(m["active"]), m["signup_date"]) == (p["is_active"], p["signup_date"])
        seen = m["last_order_at"] and m["last_order_at"].replace(tzinfo=UTC)
        assert seen == p["last_order_at"]
        assert (m["prefs"] and json.loads(m["prefs"])) == p["prefs"]
    # orders: the same customer (by email) on both sides, whatever ids each side gave it
    pg_orders = s.pg_rows(
        "SELECT o.id, o.total, c.email FROM orders o JOIN customers c ON c.id = o.customer_id"
    )
    my_orders = s.my_rows(
        "SELECT o.app_order_id, o.total, c.email FROM orders o "
        "JOIN customers c ON c.id = o.customer_id"
    )
    assert len(pg_orders) == 3  # two placed in the app, one in the shop
    assert sorted((o["id"], o["total"], o["email"]) for o in pg_orders) == sorted(
        (o["app_order_id"], o["total"], o["email"]) for o in my_orders
    )
    pg = {r["sku"]: r for r in s.pg_rows("SELECT * FROM products")}
    my = {r["sku"]: r for r in s.my_rows("SELECT * FROM products")}
    assert set(pg) == set(my) == {"SKU-001", "SKU-002", "SKU-003"}
    for sku, p in pg.items():
        m = my[sku]
        assert (m["title"], m["price"], bool(m["in_stock"])) == (
            p["name"],
            p["price"],
            p["in_stock"],
        )


def _accounts(s: Sides) -> dict[int, dict[str, Any]]:
    rows = s.sf_rows(
        "SELECT Id, App_Id__c, Name, Email__c, Credit_Limit__c, Active__c FROM Account"
    )
    assert all(r["App_Id__c"] for r in rows), rows  # each carries the app's key
    return {int(r["App_Id__c"]): r for r in rows}


def _crm_in_step(s: Sides) -> bool:
    """Every customer, contact and deal of the app is its Account, Contact and Opportunity
    with the same values, each lookup naming the Account of the row's customer."""
    accounts = _accounts(s)
    customers = {r["id"]: r for r in s.pg_rows("SELECT * FROM customers")}
    if set(accounts) != set(customers):
        return False
    for cid, c in customers.items():
        a = accounts[cid]
        seen = (a["Name"], a["Email__c"], _money(a["Credit_Limit__c"]), a["Active__c"])
        if seen != (c["full_name"], c["email"], c["credit_limit"], c["is_active"]):
            return False
    account_of = {cid: a["Id"] for cid, a in accounts.items()}
    contacts = s.sf_rows("SELECT App_Id__c, FirstName, LastName, Email, AccountId FROM Contact")
    contacts_match = sorted(
        (
            str(r["id"]),
            r["first_name"],
            r["last_name"],
            r["email"],
            account_of.get(r["customer_id"]),
        )
        for r in s.pg_rows("SELECT * FROM contacts")
    ) == sorted(
        (c["App_Id__c"], c["FirstName"], c["LastName"], c["Email"], c["AccountId"])
        for c in contacts
    )
    deals = s.sf_rows(
        "SELECT App_Id__c, Name, StageName, Amount, CloseDate, AccountId FROM Opportunity"
    )
    deals_match = sorted(
        (
            str(r["id"]),
            r["name"],
            r["stage"],
            r["amount"],
            str(r["close_date"]),
            account_of.get(r["customer_id"]),
        )
        for r in s.pg_rows("SELECT * FROM deals")
    ) == sorted(
        (
            d["App_Id__c"],
            d["Name"],
            d["StageName"],
            _money(d["Amount"]),
            d["CloseDate"],
            d["AccountId"],
        )
        for d in deals
    )
    return contacts_match and deals_match


# --- the demo process -------------------------------------------------------------------


@pytest.fixture
def demo_dir() -> Iterator[Path]:
    # not tmp_path: servers run as unprivileged users, and pytest's clean-up of old runs
    # must not reach a sandbox that a concurrent run still uses
    d = Path(tempfile.mkdtemp(prefix="syncswim-demo-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Demo:
    def __init__(self, d: Path, port: int, *, piped: bool = False) -> None:
        """`piped`: the output goes through a pipe, as in `syncswim demo | tee log`, read
        into the log until `hang_up` closes the pipe's reading end (`tee` stopped)."""
        self.dir = d
        self.port = port
        self.log = d / "demo.log"
        self.seen: set[Proc] = set()
        self.args = ["--dir", str(d), "--port", str(port)]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCSWIM", "DAGSTER"))}
        self._hung_up = threading.Event()
        self._reader: threading.Thread | None = None
        read_fd, write_fd = os.pipe() if piped else (-1, -1)
        with open(self.log, "wb") as out:
            # Its own process group, SIGINT to the leader, as a terminal's Ctrl-C. Started the
            # way a script's `syncswim demo &` is: with SIGINT ignored, which children inherit
            # (and `dagster dev` then ignores SIGTERM too).
            self.proc = subprocess.Popen(
                ["sh", "-c", 'trap "" INT; exec "$0" "$@"', SYNCSWIM, "demo", *self.args],
                stdout=write_fd if piped else out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**env, "PYTHONUNBUFFERED": "1"},
                cwd=d,
                start_new_session=True,
            )
        if piped:
            os.close(write_fd)
            self._reader = threading.Thread(target=self._copy, args=(read_fd,), daemon=True)
            self._reader.start()

    def _copy(self, fd: int) -> None:
        with open(self.log, "ab") as out:
            while not self._hung_up.is_set():
                ready, _, _ = select.select([fd], [], [], 0.1)
                chunk = os.read(fd, 65536) if ready else b""
                if ready and not chunk:
                    break  # every writer closed it
                out.write(chunk)
                out.flush()
        os.close(fd)

    def hang_up(self) -> None:
        """Close the reading end: the demo's next write to stdout fails (EPIPE)."""
        self._hung_up.set()
        if self._reader is not None:
            self._reader.join(timeout=10)
            assert not self._reader.is_alive()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def watch(self) -> None:
        """Record every process the demo started so far (dagster's children included)."""
        self.seen |= _descendants(self.proc.pid)

    def wait(self, cond: Callable[[], Any], timeout: float, what: str) -> Any:
        def check() -> Any:
            self.watch()
            assert self.proc.poll() is None, f"the demo exited early:\n{self.output()[-4000:]}"
            return cond()

        return _wait(check, timeout, what, self.log)

    def strays(self) -> list[int]:
        """Processes of this demo found by what they carry, not by ancestry: the folder in
        their command line (the servers) or in their DAGSTER_HOME (all of Dagster's)."""
        home = str(self.dir / "dagster_home")
        return [
            pid
            for pid in _pids()
            if pid != os.getpid()
            and (st := _stat(pid)) is not None
            and st[0] != "Z"
            and (str(self.dir) in _args(pid) or _env_mentions(pid, home))
        ]

    def kill_leftovers(self) -> None:
        """After a failure (a timeout included): leave nothing behind for the next test."""
        if self.proc.poll() is None:
            self.watch()
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        subprocess.run(
            [SYNCSWIM, "sandbox", "down", "--dir", str(self.dir)],
            capture_output=True,
            timeout=120,
            check=False,
        )
        doomed = [p.pid for p in self.seen if _alive(p)] + self.strays()
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _change_both_sides(demo: Demo) -> None:
    """A user's change on each side while the demo runs; the running sensor carries them."""
    with contextlib.closing(Sides(demo.dir / "sandbox.env")) as sides:
        _assert_in_step(sides)  # the initial sync ran before the UI came up
        assert _crm_in_step(sides)  # its second run, of app_crm, too
        assert len(_accounts(sides)) == 4  # the shop's customer reached the CRM in it

        limit = Decimal(f"{uuid.uuid4().int % 10**6}.25")
        ada = sides.pg_rows("SELECT id FROM customers WHERE email = 'ada@example.com'")[0]["id"]
        sides.pg.execute("UPDATE customers SET credit_limit = %s WHERE id = %s", (limit, ada))
        email = f"new-{uuid.uuid4().hex[:8]}@example.org"
        with sides.my.cursor() as cur:
            cur.execute(
                "INSERT INTO customers (email, name, active, credit_limit)"
                " VALUES (%s, 'New Person', 1, 12.50)",
                (email,),
            )

        def ada_in_shop() -> bool:
            rows = sides.my_rows(
                "SELECT credit_limit FROM customers WHERE app_customer_id = %s", (ada,)
            )
            return bool(rows) and rows[0]["credit_limit"] == limit

        def new_in_app_with_key_written_back() -> bool:
            app = sides.pg_rows("SELECT id FROM customers WHERE email = %s", (email,))
            shop = sides.my_rows("SELECT app_customer_id FROM customers WHERE email = %s", (email,))
            return len(app) == 1 and shop[0]["app_customer_id"] == app[0]["id"]

        def ada_in_crm() -> bool:
            return _money(_accounts(sides)[ada]["Credit_Limit__c"]) == limit

        demo.wait(ada_in_shop, SYNC_TIMEOUT, "the app's update to reach the shop")
        demo.wait(new_in_app_with_key_written_back, SYNC_TIMEOUT, "the shop's insert in the app")
        assert len(_customer_pairs(sides)) == 5  # one row per customer on each side
        new = sides.pg_rows("SELECT * FROM customers WHERE email = %s", (email,))[0]
        assert (new["full_name"], new["credit_limit"], new["is_active"]) == (
            "New Person",
            Decimal("12.50"),
            True,
        )
        demo.wait(ada_in_crm, SYNC_TIMEOUT, "the app's update to reach the CRM's Account")
        # the shop's customer, written into the app by app_shop, is a change for app_crm
        demo.wait(lambda: len(_accounts(sides)) == 5, SYNC_TIMEOUT, "the shop's insert in the CRM")
        demo.wait(lambda: _crm_in_step(sides), SYNC_TIMEOUT, "the CRM to match the app")


def _edit_in_the_crm(demo: Demo) -> None:
    """The banner's edit of an Account "as a human", pasted into a shell: it reaches the
    app through app_crm and the shop through the streaming run."""
    with contextlib.closing(Sides(demo.dir / "sandbox.env")) as sides:
        grace = sides.pg_rows("SELECT id FROM customers WHERE email = 'grace@example.com'")[0]
        command = human_edit_command(sides.env_file, grace["id"], CRM_EDIT)
        assert command in demo.output()
        done = subprocess.run(
            ["sh", "-c", command], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr + done.stdout
        assert json.loads(done.stdout)["success"] is True
        want = (
            CRM_EDIT["Name"],
            Decimal(str(CRM_EDIT["Credit_Limit__c"])).quantize(Decimal("0.01")),
        )

        def in_app() -> bool:
            rows = sides.pg_rows(
                "SELECT full_name, credit_limit FROM customers WHERE id = %s", (grace["id"],)
            )
            return (rows[0]["full_name"], rows[0]["credit_limit"]) == want

        def in_shop() -> bool:
            rows = sides.my_rows(
                "SELECT name, credit_limit FROM customers WHERE app_customer_id = %s",
                (grace["id"],),
            )
            return bool(rows) and (rows[0]["name"], rows[0]["credit_limit"]) == want

        demo.wait(in_app, SYNC_TIMEOUT, "the CRM edit to reach the app")
        demo.wait(in_shop, SYNC_TIMEOUT, "the CRM edit to go on to the shop")
        assert _crm_in_step(sides)


def _assert_initial_sync_in_dagster(demo_dir: Path) -> None:
    """The initial sync is a run per sync (a group in the UI) in the UI's instance that
    materialised each of its assets, with the `full` run's metadata."""
    from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

    with DagsterInstance.from_config(str(demo_dir / "dagster_home")) as instance:
        runs = instance.get_runs(filters=RunsFilter(tags={"syncswim/run": "initial"}))
        assert len(runs) == 2, runs
        groups = []
        for run in runs:
            assert run.status == DagsterRunStatus.SUCCESS, run.status
            seen = {}
            for entry in instance.all_logs(
                run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
            ):
                mat = entry.asset_materialization
                assert mat is not None
                seen["/".join(mat.asset_key.path)] = {k: v.value for k, v in mat.metadata.items()}
            assert all(int(str(m["snapshot_rows"])) > 0 for m in seen.values()), seen
            groups.append(sorted(seen))
        assert sorted(groups) == [
            ["app_crm/contacts", "app_crm/customers", "app_crm/deals"],
            ["app_shop/customers", "app_shop/orders", "app_shop/products"],
        ], groups


def _assert_nothing_left(demo: Demo, servers: dict[str, Any]) -> None:
    left = [p for p in demo.seen if _alive(p)]
    assert not left, f"processes left behind: {left}"
    for kind, rec in servers.items():
        st = _stat(rec["pid"])
        assert st is None or st[0] == "Z", f"{kind} (pid {rec['pid']}) still runs"
        assert not _port_open(rec["port"]), f"{kind}'s port {rec['port']} still open"
    assert not _port_open(demo.port), "the Dagster UI's port is still open"
    strays = [_args(pid) for pid in demo.strays()]
    assert not strays, f"processes of the demo still running: {strays}"
    status = subprocess.run(
        [SYNCSWIM, "sandbox", "status", "--dir", str(demo.dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "nothing running" in status.stdout, status.stdout
    assert status.returncode == 1


@pytest.mark.timeout(600)
def test_demo_syncs_both_ways_and_stops_cleanly(demo_dir: Path) -> None:
    demo = Demo(demo_dir, _free_port())
    try:
        demo.wait(lambda: BANNER in demo.output(), START_TIMEOUT, "the demo's banner")
        demo.wait(
            lambda: _http_ok(f"http://127.0.0.1:{demo.port}/server_info"),
            START_TIMEOUT,
            "the Dagster UI to answer",
        )
        record = json.loads((demo_dir / "sandbox.json").read_text())["components"]
        servers = {kind: record[kind] for kind in SERVERS}
        _assert_initial_sync_in_dagster(demo_dir)
        _change_both_sides(demo)
        _edit_in_the_crm(demo)

        # Ctrl-C: the leader gets SIGINT and must take everything down before it exits
        demo.watch()
        assert any("dagster" in p.args for p in demo.seen), demo.seen
        os.kill(demo.proc.pid, signal.SIGINT)
        try:
            code = demo.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the demo did not exit within {EXIT_TIMEOUT:.0f}s") from None
        assert code == 0, demo.output()[-4000:]
        assert "demo stopped" in demo.output()
        # dagster dev shut its webserver and daemon down itself, it was not killed
        assert "Dagster services shut down." in demo.output()
        _assert_nothing_left(demo, servers)
    finally:
        demo.kill_leftovers()  # a no-op after a clean stop


@pytest.mark.timeout(600)
def test_demo_with_piped_output_stops_cleanly_when_the_pipe_is_gone(demo_dir: Path) -> None:
    """`syncswim demo | tee log`, then Ctrl-C: the terminal stops `tee` too, so every write
    the shutdown makes hits a closed pipe; the demo must still stop everything."""
    demo = Demo(demo_dir, _free_port(), piped=True)
    try:
        demo.wait(lambda: BANNER in demo.output(), START_TIMEOUT, "the demo's banner")
        demo.wait(
            lambda: _http_ok(f"http://127.0.0.1:{demo.port}/server_info"),
            START_TIMEOUT,
            "the Dagster UI to answer",
        )
        out = demo.output()
        assert f"http://127.0.0.1:{demo.port}" in out
        assert f"State store:  sqlite:///{demo_dir / '.syncswim' / 'syncswim_state.db'}" in out
        env = read_env(demo_dir / "sandbox.env")
        assert env["DAGSTER_HOME"] == str(demo_dir / "dagster_home")
        assert env["SYNCSWIM_PROJECT"] == str(demo_dir / "demo.yaml")
        record = json.loads((demo_dir / "sandbox.json").read_text())["components"]
        servers = {kind: record[kind] for kind in SERVERS}
        demo.watch()
        demo.hang_up()
        os.kill(demo.proc.pid, signal.SIGINT)
        try:
            code = demo.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the demo did not exit within {EXIT_TIMEOUT:.0f}s") from None
        assert code == 0, demo.output()[-4000:]
        _assert_nothing_left(demo, servers)
    finally:
        demo.kill_leftovers()


def test_demo_refuses_a_busy_ui_port(demo_dir: Path) -> None:
    """The webserver would only log its failed bind: the demo checks first and starts nothing."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = int(busy.getsockname()[1])
        done = subprocess.run(
            [SYNCSWIM, "demo", "--dir", str(demo_dir), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in done.stderr
    assert not (demo_dir / "sandbox.json").exists()  # no server was started


@pytest.mark.timeout(600)
def test_demo_stops_everything_when_dagster_dies(demo_dir: Path) -> None:
    """The daemon crashes, `dagster dev` gives up: the demo says so, exits 1 and stops the
    servers and what is left of Dagster."""
    demo = Demo(demo_dir, _free_port())
    try:
        demo.wait(
            lambda: _http_ok(f"http://127.0.0.1:{demo.port}/server_info"),
            START_TIMEOUT,
            "the Dagster UI to answer",
        )
        demo.watch()
        daemons = [p for p in demo.seen if "dagster._daemon run" in p.args]
        assert len(daemons) == 1, demo.seen
        os.kill(daemons[0].pid, signal.SIGKILL)
        try:
            code = demo.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the demo did not give up:\n{demo.output()[-4000:]}") from None
        out = demo.output()
        assert code == 1, out[-4000:]
        assert "dagster dev exited on its own" in out and "demo stopped" in out
        left = [p for p in demo.seen if _alive(p)]
        assert not left, f"processes left behind: {left}"
        assert not demo.strays()
        status = subprocess.run(
            [SYNCSWIM, "sandbox", "status", "--dir", str(demo_dir)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert "nothing running" in status.stdout, status.stdout
    finally:
        demo.kill_leftovers()


_STUBBORN = """
import signal, subprocess, sys, time
# before the pid is printed: the test may send SIGINT as soon as it reads it
signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
# both dispositions set, not inherited: the process running the tests may itself ignore
# SIGTERM (some library left it so), and a child inherits that
signal.signal(signal.SIGTERM, signal.SIG_DFL)
ignore = sys.argv[1] == "ignore"
child = [sys.executable, "-c",
         "import signal, time\\n"
         + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n" if ignore
            else "signal.signal(signal.SIGTERM, signal.SIG_DFL)\\n")
         + "print('ready', flush=True)\\ntime.sleep(300)"]
# like dagster's code server: a child in the group that outlives its parent
p = subprocess.Popen(child, stdout=subprocess.PIPE)
p.stdout.readline()
print(p.pid, flush=True)
time.sleep(300)
"""


@pytest.mark.parametrize("child", ["exits on SIGTERM", "ignore"])
def test_stop_dagster_leaves_no_process_of_the_group(child: str) -> None:
    from syncswim_lib.sandbox.demo import GROUP_TERM_TIMEOUT, stop_dagster

    proc = subprocess.Popen(
        [sys.executable, "-c", _STUBBORN, child.split()[0]],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        child_pid = int(proc.stdout.readline())
        stat = _stat(child_pid)
        assert stat is not None
        orphan = Proc(child_pid, stat[2], "")
        began = time.monotonic()
        stop_dagster(proc)
        took = time.monotonic() - began
        assert proc.returncode == 0  # the leader stopped on SIGINT
        assert not _alive(orphan), "the group's other process was left running"
        if child == "ignore":  # SIGTERM did nothing: SIGKILL after the grace period
            assert took >= GROUP_TERM_TIMEOUT
        else:
            assert took < GROUP_TERM_TIMEOUT
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
