"""What waits for a run is counted from the status index, not from every entry the sync
ever journaled (a cost that grew with the journal: every sensor tick and every streaming
batch counts it)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from syncswim_lib.envelope import Change, Op, PgPosition
from syncswim_lib.state import schema
from syncswim_lib.state.base import BatchRecord, EntryUpdate
from syncswim_lib.state.sqlite import SqliteStateStore
from syncswim_lib.state.sqlstore import SqlStateStore

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _change(n: int, origin: str | None = None) -> Change:
    row = {"id": n}
    return Change(Op.UPDATE, "public.t", row, row, row, PgPosition(100 + n), NOW, NOW, origin)


def _plan(store: SqliteStateStore, query: str, params: tuple[object, ...]) -> str:
    with store._read() as cur:
        cur.execute("EXPLAIN QUERY PLAN " + query, params)
        return " | ".join(str(row[3]) for row in cur.fetchall())


@pytest.mark.parametrize(
    ("name", "params"),
    [("PENDING_COUNTS", ("s",)), ("DUE_COUNTS", ("s", "2025")), ("BACKLOG", ("s",))],
)
def test_the_counts_of_a_sync_read_the_status_index(
    tmp_path: object, name: str, params: tuple[object, ...]
) -> None:
    store = SqliteStateStore(f"{tmp_path}/state.db")
    try:
        plan = _plan(store, getattr(schema, name), params)
    finally:
        store.close()
    # the status index with the status constrained; with it second after the entity the
    # plan read the journal_key index by sync alone, every entry of the sync
    assert "journal_status (sync=? AND status=?)" in plan, plan


def test_a_store_of_version_3_gets_the_new_index(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = f"{tmp_path}/state.db"
    with monkeypatch.context() as m:
        m.setattr(schema, "SCHEMA_VERSION", 3)
        SqliteStateStore(path).close()
    store = SqliteStateStore(path)
    try:
        with store._read() as cur:
            cur.execute("PRAGMA index_info(journal_status)")
            assert [row[2] for row in cur.fetchall()] == ["sync", "status", "entity"]
            cur.execute("SELECT MAX(version) FROM schema_version")
            assert cur.fetchone()[0] == schema.SCHEMA_VERSION
    finally:
        store.close()


def test_pending_counts_add_the_pending_and_the_due_failed(
    store: SqlStateStore, open_another: Callable[[], SqlStateStore]
) -> None:
    store.append_changes("s", "a", [("e1", _change(n)) for n in range(6)], None)
    store.append_changes("s", "a", [("e2", _change(n)) for n in range(10, 13)], None)
    store.append_changes("s", "a", [("e2", _change(20, origin="s"))], None)  # our echo
    ids = [e.id for e in store.pending("s", "e1")]
    later = NOW + timedelta(days=3650)
    store.record(
        BatchRecord(
            "s",
            "e1",
            entries=[
                EntryUpdate(ids[0], "applied"),
                EntryUpdate(ids[1], "failed", {"error": "x"}, NOW),  # due
                EntryUpdate(ids[2], "failed", {"error": "x"}, later),  # not yet
                EntryUpdate(ids[3], "parked", {"error": "x"}),
            ],
        )
    )
    # e1: two pending and one failed now due; e2: three pending, the echo not counted
    assert store.pending_counts("s") == {"e1": 3, "e2": 3}
    assert open_another().pending_counts("s") == {"e1": 3, "e2": 3}
    assert store.pending_counts("other") == {}
