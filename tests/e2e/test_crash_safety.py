"""A run SIGKILLed after capture, or after apply but before the state commit, loses and
duplicates nothing once a new run has gone through."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import TwoDbs

pytestmark = pytest.mark.integration

SYNCSWIM = str(Path(sys.executable).with_name("syncswim"))


def _sync(
    dbs: TwoDbs, failpoint: str | None = None, full: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **dbs.env()}
    env.pop("SYNCSWIM_FAILPOINT", None)
    if failpoint:
        env["SYNCSWIM_FAILPOINT"] = failpoint
    return subprocess.run(
        [
            SYNCSWIM,
            "sync",
            str(dbs.yaml_path),
            "--entity",
            "customers",
            *(["--full"] if full else []),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _assert_in_step(dbs: TwoDbs) -> None:
    pg = dbs.pg_rows("customers")
    my = dbs.my_rows("customers")
    assert sorted(p["id"] for p in pg) == sorted(m["app_id"] for m in my)  # no dup, no loss
    by_id = {p["id"]: p for p in pg}
    for m in my:
        assert m["name"] == by_id[m["app_id"]]["name"]
        assert m["notes"] == by_id[m["app_id"]]["notes"]


@pytest.mark.parametrize("failpoint", ["after_capture", "after_apply"])
def test_killed_run_recovers(dbs: TwoDbs, failpoint: str) -> None:
    assert _sync(dbs).returncode == 0
    dbs.pg.execute("INSERT INTO customers (name, notes) VALUES ('a1', 'x'), ('a2', 'y')")
    dbs.my_exec("INSERT INTO customers (name, notes) VALUES ('s1', 'z')")
    killed = _sync(dbs, failpoint)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    if failpoint == "after_apply":
        # the writes did happen before the crash: the state just does not know yet
        assert len(dbs.my_rows("customers")) == 3  # s1 plus the two rows from the app
    done = _sync(dbs)
    assert done.returncode == 0, done.stderr
    _assert_in_step(dbs)
    assert len(dbs.pg_rows("customers")) == 3
    # and the recovered state is settled: one more run writes nothing
    again = _sync(dbs)
    assert "+0 ~0 -0" in again.stdout or "no writes" in again.stdout, again.stdout
    assert len(dbs.my_rows("customers")) == 3


@pytest.mark.parametrize("conflicting", [False, True])
def test_killed_run_with_updates_and_deletes_recovers(dbs: TwoDbs, conflicting: bool) -> None:
    """Updates and deletes replay by planning again (no saved plan is needed for them);
    a conflict decision is saved before the writes, so the losing value survives a crash."""
    from syncswim_lib.config import load_project
    from syncswim_lib.pipeline.runtime import Runtime

    assert _sync(dbs).returncode == 0
    dbs.pg.execute("INSERT INTO customers (name, notes) VALUES ('a1', 'x'), ('a2', 'y')")
    assert _sync(dbs).returncode == 0
    first, second = (p["id"] for p in dbs.pg_rows("customers"))
    dbs.pg.execute("UPDATE customers SET name = 'app edit' WHERE id = %s", (first,))
    dbs.my_exec("UPDATE customers SET notes = 'shop edit' WHERE app_id = %s", (first,))
    if conflicting:
        dbs.my_exec("UPDATE customers SET name = 'shop name' WHERE app_id = %s", (first,))
    dbs.my_exec("DELETE FROM customers WHERE app_id = %s", (second,))
    killed = _sync(dbs, "after_apply")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    done = _sync(dbs)
    assert done.returncode == 0, done.stderr
    _assert_in_step(dbs)
    (row,) = dbs.pg_rows("customers")
    assert (row["id"], row["name"], row["notes"]) == (first, "app edit", "shop edit")
    with Runtime(load_project(dbs.yaml_path)) as rt:
        conflicts = rt.store.conflicts(sync="app_shop", entity="customers")
    if conflicting:
        (c,) = conflicts  # recorded once, with the value that lost
        assert (c.field, c.value_a, c.value_b) == ("name", "app edit", "shop name")
    else:
        assert conflicts == []
    again = _sync(dbs)
    assert "+0 ~0 -0" in again.stdout or "no writes" in again.stdout, again.stdout


def test_killed_full_run_in_bulk_recovers(dbs: TwoDbs) -> None:
    """The initial sync creates rows in bulk; killed after the target committed them and
    before their links were recorded, the next run (a plain one) finishes the `full` run:
    it matches the created rows by their external id instead of creating them again."""
    dbs.pg.execute(
        "INSERT INTO customers (name, notes)"
        " SELECT 'n' || g, 't' || g FROM generate_series(1, 40) g"
    )
    killed = _sync(dbs, "after_apply", full=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(dbs.my_rows("customers")) == 40  # written, not linked yet
    done = _sync(dbs)
    assert done.returncode == 0, done.stderr
    assert "created in bulk" not in done.stdout, done.stdout  # matched, not created again
    _assert_in_step(dbs)
    assert len(dbs.my_rows("customers")) == 40
    from syncswim_lib.config import load_project
    from syncswim_lib.pipeline.runtime import Runtime

    with Runtime(load_project(dbs.yaml_path)) as rt:
        assert len(rt.store.links("app_shop", "customers")) == 40
    again = _sync(dbs)
    assert "+0 ~0 -0" in again.stdout or "no writes" in again.stdout, again.stdout
    assert "already in step" not in again.stdout, again.stdout  # a plain run again
