"""A store written by a syncswim with schema version 1 upgrades in place when opened."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from syncswim_lib.envelope import Change, PgPosition
from syncswim_lib.state import schema
from syncswim_lib.state.base import BatchRecord, ConflictRecord, Link
from syncswim_lib.state.sqlstore import SqlStateStore
from syncswim_lib.values import codec

MakeChange = Callable[..., Change]


def _tables(store: SqlStateStore) -> set[str]:
    with store._read() as cur:
        if store.dialect.name == "sqlite":
            cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        return {str(name) for (name,) in cur.fetchall()}


def _versions(store: SqlStateStore) -> list[int]:
    with store._read() as cur:
        cur.execute("SELECT version FROM schema_version ORDER BY version")
        return [int(v) for (v,) in cur.fetchall()]


def _version_1_store(
    open_another: Callable[[], SqlStateStore],
    monkeypatch: pytest.MonkeyPatch,
    make_change: MakeChange,
) -> SqlStateStore:
    """A store as syncswim wrote it at schema version 1, with data in every table."""
    with monkeypatch.context() as m:
        m.setattr(schema, "SCHEMA_VERSION", 1)
        old = open_another()
    assert _versions(old) == [1]
    assert {"plans", "conflicts"} & _tables(old) == set()
    old.append_changes(
        "s1", "app_db", [("customers", make_change(n)) for n in range(3)], PgPosition(1000, 2)
    )
    ids = [e.id for e in old.pending("s1", "customers")]
    old.set_batch(ids[2:], "b-old")
    old.record(
        BatchRecord(
            "s1",
            "customers",
            upsert_links=[Link("s1", "customers", {"id": 0}, {"id": 1000}, {"name": "c0"})],
        )
    )
    # as version 1 recorded an outcome (today's statement sets columns it did not have)
    with old._write() as cur:
        cur.execute(
            old._q(
                "UPDATE journal SET status = 'applied', detail = ?, applied_at = ? WHERE id = ?"
            ),
            (codec.dumps({"written": {"name": "c0"}}), old._ts_in(datetime.now(UTC)), ids[0]),
        )
    return old


def test_a_version_1_store_upgrades_in_place(
    open_another: Callable[[], SqlStateStore],
    monkeypatch: pytest.MonkeyPatch,
    make_change: MakeChange,
) -> None:
    old = _version_1_store(open_another, monkeypatch, make_change)
    journal, links = old.entries(), old.links("s1", "customers")
    old.close()

    new = open_another()
    assert _versions(new) == list(range(1, schema.SCHEMA_VERSION + 1))
    assert {"plans", "conflicts"} <= _tables(new)
    # what version 1 held is all there
    assert new.entries() == journal
    assert new.links("s1", "customers") == links
    assert new.get_position("s1", "app_db") == PgPosition(1000, 2)
    assert new.in_flight_batches("s1", "customers") == ["b-old"]
    # and the new parts work on it
    new.save_plan("s1", "customers", "b-old", "{}")
    c = ConflictRecord(
        "s1", "customers", {"id": 1}, None, None, "name", "x", "x", "a", "b",
        datetime(2025, 1, 1, tzinfo=UTC), None, "newest", "a", "a",
    )  # fmt: skip
    pending = [e.id for e in new.pending("s1", "customers")]
    new.record(
        BatchRecord(
            "s1", "customers", conflicts=[c], release=pending[-1:], finished_batch_ids=["b-old"]
        )
    )
    (stored,) = new.conflicts()
    assert stored.id is not None and new.resolve_conflict(stored.id, "b", "b", "").outcome == "b"
    assert new.load_plan("b-old") is None
    assert new.entries(sync="s1", key={"id": 2})[0].attempts == 1
    # opening it again changes nothing
    again = open_another()
    assert _versions(again) == list(range(1, schema.SCHEMA_VERSION + 1))
    assert again.conflicts() == new.conflicts()


def test_two_processes_upgrading_at_once(
    open_another: Callable[[], SqlStateStore],
    monkeypatch: pytest.MonkeyPatch,
    make_change: MakeChange,
) -> None:
    _version_1_store(open_another, monkeypatch, make_change).close()
    opened: list[SqlStateStore] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def open_one() -> None:
        try:
            s = open_another()
            with lock:
                opened.append(s)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and len(opened) == 4
    assert _versions(opened[0]) == list(range(1, schema.SCHEMA_VERSION + 1))
    assert len(opened[0].entries()) == 3
