"""Writer leases and stop requests in the SQLite state store: one writer per entity, all
or none, a dead or expired holder's lease taken over, a lost lease noticed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from syncswim_lib.state import leases
from syncswim_lib.state.sqlite import SqliteStateStore
from tests.e2e.harness import wait_for


@pytest.fixture
def store(tmp_path: Path) -> SqliteStateStore:
    return SqliteStateStore(tmp_path / "state.db")


def test_one_writer_per_entity_all_or_none(store: SqliteStateStore) -> None:
    first = leases.acquire(store, "s", ["a", "b"], "one", "first writer")
    with pytest.raises(leases.WriterBusy, match="first writer") as busy:
        leases.acquire(store, "s", ["b", "c"], "two", "second writer")
    assert [h.entity for h in busy.value.holders] == ["b"]
    # nothing of the refused request was taken: c is still free
    leases.acquire(store, "s", ["c"], "three", "third writer").release()
    assert leases.try_acquire(store, "other_sync", ["a"], "two", "x") == []
    first.release()
    leases.acquire(store, "s", ["b", "c"], "two", "second writer").release()
    assert leases.holders(store, "s") == []


def test_waiting_for_a_writer_then_giving_up(store: SqliteStateStore) -> None:
    leases.acquire(store, "s", ["a"], "one", "streaming run r1")
    with pytest.raises(leases.WriterBusy, match=r"waited 0\.2 s.*syncswim stop"):
        leases.acquire(store, "s", ["a"], "two", "asset step", wait_s=0.2, poll_s=0.05)


def test_a_dead_holder_loses_its_lease_at_once(store: SqliteStateStore, tmp_path: Path) -> None:
    code = (
        "import sys; from syncswim_lib.state import leases;"
        "from syncswim_lib.state.sqlite import SqliteStateStore;"
        f"s = SqliteStateStore({str(tmp_path / 'state.db')!r});"
        "leases.acquire(s, 's', ['a'], 'child', 'a process that dies', ttl_s=3600);"
        "print('held', flush=True); sys.stdin.read()"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"held\n"
        assert leases.try_acquire(store, "s", ["a"], "me", "x")  # alive: refused
    finally:
        child.kill()
        child.wait()
    assert leases.holders(store, "s") == []  # dead, though not expired
    assert [h.holder for h in leases.holders(store, "s", dead_too=True)] == ["child"]
    leases.acquire(store, "s", ["a"], "me", "x").release()


def test_an_expired_lease_of_another_host_is_taken_over(store: SqliteStateStore) -> None:
    leases.acquire(store, "s", ["a"], "far", "elsewhere", ttl_s=60)
    with store._write() as cur:
        cur.execute(
            "UPDATE writer_leases SET host = 'another-host', expires_at = expires_at - 3600"
        )
    leases.acquire(store, "s", ["a"], "me", "x").release()


def test_a_kept_lease_is_renewed_and_a_lost_one_noticed(store: SqliteStateStore) -> None:
    with leases.hold(store, "s", ["a"], "me", "kept", ttl_s=0.6) as keeper:
        first = leases.holders(store, "s")[0].expires_at
        wait_for(lambda: leases.holders(store, "s")[0].expires_at > first, 5, "a renewal")
        keeper.check()
        # someone takes it while this holder looks expired
        with store._write() as cur:
            cur.execute("UPDATE writer_leases SET expires_at = 0")
        leases.acquire(store, "s", ["a"], "thief", "another writer", ttl_s=60)
        wait_for(lambda: keeper.lost is not None, 5, "the keeper to notice")
        with pytest.raises(leases.WriterBusy, match="lost its writer lease on s to another"):
            keeper.check()
    # leaving released only this holder's leases
    assert [h.holder for h in leases.holders(store, "s")] == ["thief"]


def test_stop_requests(store: SqliteStateStore) -> None:
    assert leases.stop_request(store, "s") is None
    leases.request_stop(store, "s", "because")
    at, reason = leases.stop_request(store, "s") or (0.0, "")
    assert reason == "because" and at > 0
    assert leases.clear_stop(store, "s") is True
    assert leases.clear_stop(store, "s") is False
    assert leases.stop_request(store, "s") is None
