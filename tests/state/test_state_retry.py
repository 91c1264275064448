"""Failed and parked journal entries: when a plain run takes them again, what `retry`
hands back, and the counts the asset checks read."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from syncswim_lib.envelope import Change
from syncswim_lib.state.base import BatchRecord, EntryUpdate
from syncswim_lib.state.sqlstore import SqlStateStore

MakeChange = Callable[..., Change]
NOW = datetime.now(UTC)


def _failed(store: SqlStateStore, make_change: MakeChange) -> list[int]:
    """Four entries: failed and due a minute ago, failed and due in an hour, parked,
    applied."""
    store.append_changes("s1", "app_db", [("customers", make_change(i)) for i in range(4)], None)
    ids = [e.id for e in store.pending("s1", "customers")]
    store.set_batch(ids, "b1")
    store.record(
        BatchRecord(
            "s1",
            "customers",
            entries=[
                EntryUpdate(ids[0], "failed", {"error": "e0"}, NOW - timedelta(minutes=1)),
                EntryUpdate(ids[1], "failed", {"error": "e1"}, NOW + timedelta(hours=1)),
                EntryUpdate(ids[2], "parked", {"error": "e2"}),
                EntryUpdate(ids[3], "applied"),
            ],
            finished_batch_ids=["b1"],
        )
    )
    return ids


def test_due_failures_ask_for_a_run_and_go_back_to_pending(
    store: SqlStateStore, make_change: MakeChange
) -> None:
    ids = _failed(store, make_change)
    assert store.status_counts("s1", "customers") == {"failed": 2, "parked": 1}
    # only the due one asks for a run; the parked one waits for `retry`
    assert store.pending_counts("s1") == {"customers": 1}
    assert store.retry_due("s1", "customers") == 1
    got = {e.id: e for e in store.entries(sync="s1")}
    assert [(got[i].status, got[i].attempts) for i in ids] == [
        ("pending", 1),  # attempts kept
        ("failed", 1),
        ("parked", 1),
        ("applied", 0),
    ]
    # a later `now` makes the second one due too
    assert store.retry_due("s1", "customers", NOW + timedelta(hours=2)) == 1
    assert store.status_counts("s1", "customers") == {"pending": 2, "parked": 1}


def test_requeue_takes_failed_and_parked_whatever_their_time(
    store: SqlStateStore, make_change: MakeChange
) -> None:
    ids = _failed(store, make_change)
    # by side and key: only that record's
    assert store.requeue("s1", "customers", side="app_db", keys=[{"id": 2}]) == 1
    assert store.requeue("s1", "customers", side="shop_db") == 0
    assert store.requeue("s1", "customers") == 2
    got = {e.id: e for e in store.entries(sync="s1")}
    assert [got[i].status for i in ids] == ["pending", "pending", "pending", "applied"]
    # a requeued entry failing again counts one more attempt
    store.set_batch(ids[:1], "b2")
    store.record(
        BatchRecord(
            "s1", "customers", entries=[EntryUpdate(ids[0], "parked")], finished_batch_ids=["b2"]
        )
    )
    assert store.entries(sync="s1", key={"id": 0})[0].attempts == 2
    # an entry claimed by a batch in flight is not taken from it
    store.set_batch(ids[1:2], "b3")
    store.record(BatchRecord("s1", "customers", entries=[EntryUpdate(ids[1], "failed", None, NOW)]))
    store.set_batch(ids[1:2], "b4")
    assert store.requeue("s1", "customers") == 1  # the parked ids[0], not ids[1]
    got = {e.id: e for e in store.entries(sync="s1")}
    assert (got[ids[0]].status, got[ids[1]].status) == ("pending", "failed")


def test_an_unknown_status_is_refused(store: SqlStateStore, make_change: MakeChange) -> None:
    store.append_changes("s1", "app_db", [("customers", make_change(0))], None)
    (e,) = store.pending("s1", "customers")
    with pytest.raises(ValueError, match="unknown journal status 'retrying'"):
        store.record(BatchRecord("s1", "customers", entries=[EntryUpdate(e.id, "retrying")]))  # type: ignore[arg-type]


def test_a_version_2_store_takes_parked_entries_after_its_upgrade(
    open_another: Callable[[], SqlStateStore],
    monkeypatch: pytest.MonkeyPatch,
    make_change: MakeChange,
) -> None:
    from syncswim_lib.state import schema

    with monkeypatch.context() as m:
        m.setattr(schema, "SCHEMA_VERSION", 2)
        old = open_another()
        old.append_changes("s1", "app_db", [("customers", make_change(i)) for i in range(3)], None)
        before = old.entries()
        # the newest entry is gone: its id must not be given again after the rebuild
        with old._write() as cur:
            cur.execute(old._q("DELETE FROM journal WHERE id = ?"), (before[0].id,))
        old.close()
    new = open_another()
    assert new.entries() == before[1:]
    new.append_changes("s1", "app_db", [("customers", make_change(9))], None)
    (latest,) = new.entries(limit=1)
    assert latest.id > before[0].id
    new.set_batch([latest.id], "b1")
    new.record(BatchRecord("s1", "customers", entries=[EntryUpdate(latest.id, "parked")]))
    assert new.status_counts("s1", "customers") == {"pending": 2, "parked": 1}
