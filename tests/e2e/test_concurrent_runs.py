"""Two writers of one sync at the same moment never interleave their writes.

Every write to `customers` on either side is logged by a trigger with who made it and
when (the PostgreSQL `application_name`, the MariaDB user: each writer under test gets its
own). On PostgreSQL the writers under test pass a gate (an advisory lock the test holds)
at their first row, so the first writer stays inside its apply, holding its writer lease,
until the test has seen the other one arrive; no timing is guessed. The lease
(`state/leases.py`) is read from the state store while they run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from syncswim_lib.state import leases, open_store
from tests.e2e.harness import TwoDbs, wait_for

pytestmark = pytest.mark.integration

SYNCSWIM = str(Path(sys.executable).with_name("syncswim"))
NODE = "app_shop__customers"
ROWS = 25  # per side before the runs
GATE = 7_340_021  # the advisory lock key of the gate

PG_LOG = """
CREATE TABLE write_log (
    n bigserial PRIMARY KEY, who text, backend int, at timestamptz, op text, row_id int);
CREATE FUNCTION log_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO write_log (who, backend, at, op, row_id) VALUES (
        current_setting('application_name'), pg_backend_pid(), clock_timestamp(), TG_OP,
        CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
    IF current_setting('application_name') LIKE 'w\\_%' THEN
        PERFORM pg_advisory_xact_lock_shared(%(gate)s);  -- waits while the gate is shut
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER customers_log AFTER INSERT OR UPDATE OR DELETE ON customers
    FOR EACH ROW EXECUTE FUNCTION log_write();
"""

MY_LOG = [
    """CREATE TABLE write_log (n bigint AUTO_INCREMENT PRIMARY KEY, who varchar(100),
    conn bigint, at datetime(6), op varchar(10), row_id int)""",
    *(
        f"""CREATE TRIGGER customers_log_{op.lower()} AFTER {op} ON customers FOR EACH ROW
        INSERT INTO write_log (who, conn, at, op, row_id) VALUES (
            SUBSTRING_INDEX(USER(), '@', 1), CONNECTION_ID(), NOW(6), '{op}', {row}.id)"""
        for op, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD"))
    ),
]


class Writers:
    """Named identities for the writers under test: an `application_name` on PostgreSQL
    and a user of its own on MariaDB (dropped at the end)."""

    def __init__(self, dbs: TwoDbs) -> None:
        self.dbs = dbs
        self.tag = uuid.uuid4().hex[:8]
        self.users: list[str] = []
        dbs.pg.execute(PG_LOG.replace("%(gate)s", str(GATE)))
        self.gate = psycopg.connect(dbs.pg_dsn, autocommit=True)
        for stmt in MY_LOG:
            dbs.my_exec(stmt)

    def name(self, label: str) -> str:
        return f"w_{label}_{self.tag}"

    def env(self, label: str) -> dict[str, str]:
        """The environment of writer `label`: the test's DSNs under its identity."""
        name = self.name(label)
        if name not in self.users:
            for host in ("%", "localhost"):
                self.dbs.my_exec(f"CREATE USER '{name}'@'{host}'")
                self.dbs.my_exec(f"GRANT ALL PRIVILEGES ON *.* TO '{name}'@'{host}'")
            self.users.append(name)
        my = self.dbs.my_dsn.replace("mysql://root@", f"mysql://{name}@", 1)
        return {
            **self.dbs.env(),
            "E2E_PG_DSN": f"{self.dbs.pg_dsn}?application_name={name}",
            "E2E_MY_DSN": my,
        }

    def shut(self) -> None:
        self.gate.execute("SELECT pg_advisory_lock(%s)", (GATE,))

    def open(self) -> None:
        self.gate.execute("SELECT pg_advisory_unlock(%s)", (GATE,))

    def at_gate(self, label: str) -> bool:
        """Whether writer `label` waits at the gate (inside its first PostgreSQL write)."""
        row = self.dbs.pg.execute(
            "SELECT count(*) AS n FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
            " WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name = %s",
            (self.name(label),),
        ).fetchone()
        return bool(row and row["n"])

    def drop(self) -> None:
        self.gate.close()
        for name in self.users:
            for host in ("%", "localhost"):
                self.dbs.my_exec(f"DROP USER IF EXISTS '{name}'@'{host}'")

    def pg_writes(self, label: str) -> list[datetime]:
        rows = self.dbs.pg.execute(
            "SELECT at FROM write_log WHERE who = %s ORDER BY n", (self.name(label),)
        ).fetchall()
        return [r["at"] for r in rows]

    def my_writes(self, label: str) -> list[datetime]:
        with self.dbs.my.cursor() as cur:
            cur.execute("SELECT at FROM write_log WHERE who = %s ORDER BY n", (self.name(label),))
            return [r["at"] for r in cur.fetchall()]

    def assert_one_after_other(self, first: str, second: str) -> None:
        """Every write of `second`, on each side, after the last one of `first`."""
        for side, writes in (("app", self.pg_writes), ("shop", self.my_writes)):
            a, b = writes(first), writes(second)
            assert a, f"{first} wrote nothing on {side}"
            assert b, f"{second} wrote nothing on {side}"
            assert max(a) < min(b), f"{side}: writes interleaved: {first} {a} / {second} {b}"


@pytest.fixture
def writers(dbs: TwoDbs) -> Iterator[Writers]:
    w = Writers(dbs)
    yield w
    w.drop()


def _start(dbs: TwoDbs, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SYNCSWIM, "sync", str(dbs.yaml_path), "--entity", "customers"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _rows(dbs: TwoDbs, n: int, label: str) -> None:
    dbs.pg.execute(
        "INSERT INTO customers (name, notes) SELECT %s || g, 'app' FROM generate_series(1, %s) g",
        (f"{label}-app-", n),
    )
    for i in range(n):
        dbs.my_exec(
            "INSERT INTO customers (name, notes) VALUES (%s, 'shop')", (f"{label}-shop-{i}",)
        )


def _set_up(dbs: TwoDbs) -> None:
    """Capture set up and both sides linked before the runs under test (not timed)."""
    done = subprocess.run(
        [SYNCSWIM, "sync", str(dbs.yaml_path), "--entity", "customers"],
        env={**os.environ, **dbs.env()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _holder(dbs: TwoDbs, pids: set[int]) -> leases.LeaseInfo:
    """The live lease on customers, once one of `pids` holds it."""
    store = open_store(dbs.state_url)
    try:

        def held() -> leases.LeaseInfo | None:
            for le in leases.holders(store, "app_shop"):
                if le.entity == "customers" and le.pid in pids:
                    return le
            return None

        found: leases.LeaseInfo = wait_for(held, timeout=60, what="a writer lease")
        return found
    finally:
        store.close()


def _assert_in_step(dbs: TwoDbs, rows: int) -> None:
    pg = {r["id"]: r for r in dbs.pg_rows("customers")}
    my = dbs.my_rows("customers")
    assert len(pg) == rows and len(my) == rows, (len(pg), len(my))  # none lost, none twice
    assert sorted(m["app_id"] for m in my) == sorted(pg)
    for m in my:
        assert (m["name"], m["notes"]) == (pg[m["app_id"]]["name"], pg[m["app_id"]]["notes"])


def test_two_syncs_at_once_one_waits_for_the_other(dbs: TwoDbs, writers: Writers) -> None:
    _set_up(dbs)
    _rows(dbs, ROWS, "before")
    writers.shut()
    procs = {label: _start(dbs, writers.env(label)) for label in ("one", "two")}
    try:
        lease = _holder(dbs, {p.pid for p in procs.values()})
        first = next(label for label, p in procs.items() if p.pid == lease.pid)
        second = next(label for label in procs if label != first)
        assert lease.purpose == "syncswim sync"
        wait_for(lambda: writers.at_gate(first), timeout=60, what="the first run's apply")
        # the first is inside its apply; the second, started with it, is alive, without
        # the lease and without a write
        assert procs[second].poll() is None, procs[second].communicate()
        assert _holder(dbs, {p.pid for p in procs.values()}).pid == lease.pid
        assert not writers.at_gate(second)
        assert writers.pg_writes(second) == [] and writers.my_writes(second) == []
        # changes the first run did not capture: the second one's work once it gets in
        _rows(dbs, 3, "during")
        writers.open()
        out = {label: p.communicate(timeout=120) for label, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    assert procs[first].returncode == 0, out[first]
    if procs[second].returncode == 0:
        writers.assert_one_after_other(first, second)  # it waited, then wrote
    else:
        # it may also give up after SYNC_WAIT_S (a loaded machine): then it names the first
        # and writes nothing; what it would have applied is the next run's
        err = out[second][1]
        assert f"syncswim sync (pid {procs[first].pid} on " in err, out[second]
        assert writers.pg_writes(second) == [] and writers.my_writes(second) == []
        _set_up(dbs)
    _assert_in_step(dbs, 2 * ROWS + 6)
    assert leases.holders(open_store(dbs.state_url), "app_shop") == []  # both released


def test_a_sync_that_cannot_wait_names_the_writer(
    dbs: TwoDbs,
    writers: Writers,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`syncswim sync` waits SYNC_WAIT_S for the other writer: shortened here, it refuses
    with a message naming the writer that holds the sync, and writes nothing."""
    from syncswim_lib.pipeline import admin

    _set_up(dbs)
    _rows(dbs, ROWS, "before")
    writers.shut()
    proc = _start(dbs, writers.env("holder"))
    try:
        _holder(dbs, {proc.pid})
        wait_for(lambda: writers.at_gate("holder"), timeout=60, what="the holder's apply")
        for k, v in writers.env("refused").items():
            monkeypatch.setenv(k, v)
        monkeypatch.setattr(admin, "SYNC_WAIT_S", 0.2)
        capsys.readouterr()
        code = admin.run_once(dbs.yaml_path, "customers")
        cap = capsys.readouterr()
        writers.open()
        _, perr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 1, (cap.out, cap.err)
    assert f"syncswim sync (pid {proc.pid} on " in cap.err and "waited 0.2 s" in cap.err, cap.err
    assert proc.returncode == 0, perr
    assert writers.pg_writes("holder") and writers.my_writes("holder")
    assert writers.pg_writes("refused") == [] and writers.my_writes("refused") == []
    _assert_in_step(dbs, 2 * ROWS)


def test_a_materialisation_waits_for_a_cli_sync(
    dbs: TwoDbs, writers: Writers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Dagster asset step of the sync, started while `syncswim sync` holds it, waits for
    the lease and then applies what the CLI run left (its run succeeds)."""
    from dagster import AssetKey, ExecuteInProcessResult, materialize

    from syncswim_defs.factory import build_definitions

    _set_up(dbs)
    defs = build_definitions(dbs.yaml_path, state_url=dbs.state_url)
    asset = defs.resolve_assets_def(AssetKey(["app_shop", "customers"]))
    _rows(dbs, ROWS, "before")
    writers.shut()
    proc = _start(dbs, writers.env("cli"))
    # the step's own lease attempts: one turned away by the CLI run shows it waiting
    turned_away = threading.Event()
    seen: list[leases.LeaseInfo] = []
    real_try = leases.try_acquire

    def try_acquire(*args: Any, **kwargs: Any) -> list[leases.LeaseInfo]:
        blocking = real_try(*args, **kwargs)
        if blocking:
            seen.extend(blocking)
            turned_away.set()
        return blocking

    monkeypatch.setattr(leases, "try_acquire", try_acquire)
    results: list[ExecuteInProcessResult] = []
    step = threading.Thread(
        target=lambda: results.append(
            materialize(
                [asset],
                run_config={"ops": {NODE: {"config": {"full": False}}}},
                raise_on_error=False,
            )
        ),
        daemon=True,
    )
    try:
        _holder(dbs, {proc.pid})
        wait_for(lambda: writers.at_gate("cli"), timeout=60, what="the CLI run's apply")
        _rows(dbs, 3, "during")
        for k, v in writers.env("dagster").items():  # the step's connections, its identity
            monkeypatch.setenv(k, v)
        step.start()
        assert turned_away.wait(timeout=60), "the step did not try to take the lease"
        assert proc.poll() is None
        writers.open()
        step.join(timeout=120)
        _, err = proc.communicate(timeout=120)
    finally:
        writers.open()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert {b.pid for b in seen} == {proc.pid}
    assert all(b.purpose == "syncswim sync" for b in seen)
    assert proc.returncode == 0, err
    (result,) = results
    assert result.success
    writers.assert_one_after_other("cli", "dagster")
    mat = result.asset_materializations_for_node(NODE)[0]
    meta: dict[str, Any] = {k: v.value for k, v in mat.metadata.items()}
    assert meta.get("app/inserted") == 3 and meta.get("shop/inserted") == 3, meta
    _assert_in_step(dbs, 2 * ROWS + 6)
