"""The Dagster sensor daemon and run workers open one SQLite file from several processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import syncswim_lib
from syncswim_lib.envelope import Change, PgPosition
from syncswim_lib.errors import RetriableError
from syncswim_lib.state.base import BatchRecord, EntryUpdate
from syncswim_lib.state.sqlite import SqliteStateStore

MakeChange = Callable[..., Change]

# a second process: opens the store (creating it when new) and journals `count` changes,
# one transaction each, then marks every other one applied
WORKER = """
import sys
from datetime import UTC, datetime
from syncswim_lib.envelope import Change, Op, PgPosition
from syncswim_lib.state.base import BatchRecord, EntryUpdate
from syncswim_lib.state.sqlite import SqliteStateStore

path, side, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = SqliteStateStore(path)
now = datetime.now(UTC)
for n in range(count):
    ch = Change(Op.INSERT, "public.customers", {"id": n}, {"id": n}, None,
                PgPosition(500, n), now, now)
    assert store.append_changes("s1", side, [("customers", ch)], ch.position) == 1
    entry = store.entries(sync="s1", key={"id": n}, limit=10)
    mine = [e for e in entry if e.side == side]
    if n % 2 == 0:
        store.record(BatchRecord("s1", "customers", entries=[EntryUpdate(mine[0].id, "applied")]))
print("done", flush=True)
"""

HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO positions VALUES ('held', 'x', '{}', 'now')")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
print("released", flush=True)
"""


def _python(script: str, *args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    root = str(Path(syncswim_lib.__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=stdin,
        text=True,
        env=env,
    )


@pytest.mark.slow
def test_two_processes_journal_into_one_new_file(tmp_path: Path, make_change: MakeChange) -> None:
    path = str(tmp_path / "shared.db")
    count = 150
    # both create the schema on a file that does not exist yet, then write at once
    worker = _python(WORKER, path, "shop_db", str(count))
    store = SqliteStateStore(path)
    try:
        for n in range(count):
            ch = make_change(n, lsn=900)
            assert store.append_changes("s1", "app_db", [("customers", ch)], ch.position) == 1
            store.pending_counts("s1")
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        assert out.strip() == "done"
        # each process sees the other's writes, positions and statuses
        assert store.get_position("s1", "shop_db") == PgPosition(500, count - 1)
        assert store.get_position("s1", "app_db") == PgPosition(900, count - 1)
        assert store.pending_counts("s1") == {"customers": count + count // 2}
        assert len(store.entries(sync="s1", status="applied", limit=10_000)) == count // 2
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=30)
        store.close()


def test_a_writer_in_another_process_makes_writes_wait_not_fail(
    tmp_path: Path, make_change: MakeChange
) -> None:
    path = str(tmp_path / "locked.db")
    SqliteStateStore(path).close()  # the schema exists before the holder starts
    holder = _python(HOLDER, path, stdin=subprocess.PIPE)
    impatient = SqliteStateStore(path, busy_timeout=0.2)
    patient = SqliteStateStore(path, busy_timeout=60)
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "locked"
        # readers are not blocked by a writer (WAL)
        assert patient.pending_counts("s1") == {}
        # a writer whose busy timeout runs out gets a retriable error
        with pytest.raises(RetriableError, match="busy"):
            impatient.append_changes("s1", "app_db", [("customers", make_change(1))], None)
        result: list[int] = []
        writer = threading.Thread(
            target=lambda: result.append(
                patient.append_changes("s1", "app_db", [("customers", make_change(2))], None)
            )
        )
        writer.start()
        writer.join(timeout=0.5)
        assert writer.is_alive(), "the write should wait for the other process' lock"
        holder.stdin.write("go\n")
        holder.stdin.flush()
        writer.join(timeout=60)
        assert not writer.is_alive() and result == [1]
        assert holder.stdout.readline().strip() == "released"
        assert holder.wait(timeout=30) == 0
        # the failed write left nothing behind; the store object that failed still works
        assert [e.change.key for e in patient.pending("s1", "customers")] == [{"id": 2}]
        assert impatient.append_changes("s1", "app_db", [("customers", make_change(3))], None) == 1
        store_ids = [e.id for e in patient.pending("s1", "customers")]
        impatient.record(
            BatchRecord("s1", "customers", entries=[EntryUpdate(store_ids[0], "applied")])
        )
        assert patient.pending_counts("s1") == {"customers": 1}
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)
        impatient.close()
        patient.close()
