"""Conformance, apply: idempotent, also under a concurrent second delivery; deletes
round-trip.

Collected by test_conformance.py, which holds the fixtures."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from syncswim_lib.connectors.base import Connector
from syncswim_lib.envelope import Op
from syncswim_lib.pipeline.arrow import REF
from tests.connectors.conformance_backends import Backend
from tests.connectors.conformance_support import (
    INSERT,
    SYNC,
    changes_of,
    drain,
    item_rows,
    items_batch,
    wait_until,
)

# --- (b) idempotent apply ----------------------------------------------------------------


def test_apply_twice_writes_once(backend: Backend, connector: Connector, items: str) -> None:
    backend.transaction([(INSERT, [101, "E101", "old", 1]), (INSERT, [102, "E102", "gone", 2])])
    since = connector.current_position(SYNC)
    batch = items_batch(
        backend,
        "b-1",
        SYNC,
        inserts=[
            {REF: "i1", "ext": "E1", "name": "one", "n": 1},
            {REF: "i2", "ext": "E2", "name": "two", "n": 2},
            {REF: "bad", "ext": "E3", "name": "x" * 30, "n": 3},  # too long: rejected
        ],
        updates=[{REF: "u1", "id": 101, "name": "new"}, {REF: "u2", "id": 999, "name": "nobody"}],
        deletes=[{REF: "d1", "id": 102}],
    )
    first = connector.apply(batch)
    again = connector.apply(batch)
    assert again == first
    assert (first.inserted, first.updated, first.deleted) == (2, 1, 1)
    assert set(first.rejected) == {"bad"} and first.missing == ("u2",)
    assert first.keys["u1"]["id"] == 101 and first.keys["d1"]["id"] == 102
    new_ids = {first.keys[r]["id"] for r in ("i1", "i2")}
    assert all(type(i) is int for i in new_ids) and len(new_ids) == 2
    assert connector.applied_result(SYNC, "b-1") == first
    assert connector.applied_result(SYNC, "b-never") is None
    assert connector.applied_result("another_sync", "b-1") is None  # not its batch

    rows = item_rows(backend)
    assert sorted((r["ext"], r["name"]) for r in rows.values()) == [
        ("E1", "one"), ("E101", "new"), ("E2", "two")
    ]  # fmt: skip
    ops = Counter(c.op for c in changes_of(drain(connector, [items], since)))
    assert ops == {Op.INSERT: 2, Op.UPDATE: 1, Op.DELETE: 1}  # the replay wrote nothing

    # the same rows under a new batch id, matched by external id: updated, not duplicated
    retry = items_batch(
        backend,
        "b-2",
        SYNC,
        inserts=[{REF: "i1", "ext": "E1", "name": "uno", "n": 1}],
        insert_match=("ext",),
    )
    res = connector.apply(retry)
    assert (res.inserted, res.updated) == (0, 1)
    assert res.keys["i1"]["id"] == first.keys["i1"]["id"]
    assert [r[0] for r in backend.rows("SELECT name FROM items WHERE ext = 'E1'")] == ["uno"]
    assert connector.applied_result(SYNC, "b-2") == res


def test_concurrent_applies_of_one_batch_write_once(
    backend: Backend, connector: Connector, items: str
) -> None:
    """A second delivery of a batch while the first is still in its transaction (a retry
    racing a slow apply) waits for it and gets its result, writing nothing."""
    backend.run(INSERT, 500, "E500", "locked", 0)
    since = connector.current_position(SYNC)
    batch = items_batch(
        backend,
        "cc-1",
        SYNC,
        inserts=[{REF: f"i{j}", "ext": f"C{j}", "name": "c"} for j in range(3)],
        updates=[{REF: "u", "id": 500, "name": "changed"}],
    )
    second = backend.connector()
    results: dict[str, Any] = {}

    def apply(name: str, c: Connector) -> None:
        try:
            results[name] = c.apply(batch)
        except Exception as exc:  # reported below, by the test thread
            results[name] = exc

    threads = [
        threading.Thread(target=apply, args=("first", connector)),
        threading.Thread(target=apply, args=("second", second)),
    ]
    holder = backend.clone()
    try:
        with holder.hold_row(500):
            # the first blocks on the held row after its marker; the second on that marker
            threads[0].start()
            wait_until("the first apply to block", lambda: backend.lock_waits() >= 1)
            threads[1].start()
            wait_until("the second apply to block", lambda: backend.lock_waits() >= 2)
    finally:
        holder.close()
        for t in threads:
            if t.ident is not None:
                t.join(30)
        second.close()
    assert results["first"] == results["second"], results
    assert results["first"].inserted == 3 and results["first"].updated == 1
    ops = Counter(c.op for c in changes_of(drain(connector, [items], since)))
    assert ops == {Op.INSERT: 3, Op.UPDATE: 1}


# --- (c) deletes round-trip --------------------------------------------------------------


def test_delete_round_trips(backend: Backend, connector: Connector, items: str) -> None:
    if not connector.capabilities.hard_deletes:
        pytest.skip("the connector does not capture deletes")
    backend.run(INSERT, 7, "E7", "seven", 7)
    since = connector.current_position(SYNC)
    batch = items_batch(backend, "del-1", SYNC, deletes=[{REF: "d", "id": 7}, {REF: "d2", "id": 8}])
    res = connector.apply(batch)
    assert res.deleted == 1 and res.missing == ("d2",)
    (change,) = changes_of(drain(connector, [items], since))
    assert (change.op, change.table, change.key) == (Op.DELETE, items, {"id": 7})
    assert change.after is None
    assert change.origin == SYNC
    assert change.before is None or change.before["id"] == 7
    assert item_rows(backend) == {}
