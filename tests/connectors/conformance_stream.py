"""Conformance, change stream: snapshot then stream, positions, transactions, origins,
keys.

Collected by test_conformance.py, which holds the fixtures."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest

from syncswim_lib.connectors.base import CaptureBatch, Connector
from syncswim_lib.envelope import Op, Position
from syncswim_lib.values.arrow import REF
from tests.connectors.conformance_backends import Backend
from tests.connectors.conformance_support import (
    INSERT,
    ITEM_COLUMNS,
    SYNC,
    Writer,
    assert_same_rows,
    changes_of,
    drain,
    item_rows,
    items_batch,
    order,
    replay,
)

# --- (a) snapshot, then stream: no gap, no loss ------------------------------------------


def test_no_gap_between_snapshot_and_stream(
    backend: Backend, connector: Connector, items: str
) -> None:
    backend.transaction([(INSERT, [i, None, f"s{i}", 0]) for i in range(1, 201)])
    writer = Writer(backend.clone(), first_id=1000)
    writer.start()
    snapshot: dict[int, dict[str, Any]] = {}
    try:
        writer.wait_for(20)
        since = connector.current_position(SYNC)  # taken while the writer is mid-stream
        for batch in connector.snapshot(items, ITEM_COLUMNS, ["id"], 25):
            snapshot.update((r["id"], r) for r in batch.to_pylist())
            writer.wait_for(writer.done + 3)  # commits land while the snapshot is open
        writer.wait_for(writer.done + 20)
    finally:
        writer.finish()
    changes = changes_of(drain(connector, [items], since, max_changes=50))
    assert {c.table for c in changes} == {items}
    assert len(snapshot) > 200 and len(changes) > 30
    assert_same_rows(replay(snapshot, changes), item_rows(backend))
    seen = set(snapshot) | {c.key["id"] for c in changes}
    assert not set(writer.inserted) - writer.deleted() - seen


def test_no_gap_at_any_of_many_positions(
    backend: Backend, connector: Connector, items: str
) -> None:
    """The position is read again and again under a steady stream of commits: whatever
    commit it falls next to must be in the snapshot that follows, or in the stream."""
    writer = Writer(backend.clone(), first_id=1)
    writer.start()
    rounds: list[tuple[Position, dict[int, dict[str, Any]]]] = []
    try:
        for _ in range(25):
            writer.wait_for(writer.done + 2)
            since = connector.current_position(SYNC)
            rows = [r for b in connector.snapshot(items, ITEM_COLUMNS, ["id"], 10_000)
                    for r in b.to_pylist()]  # fmt: skip
            rounds.append((since, {r["id"]: r for r in rows}))
    finally:
        writer.finish()
    final = item_rows(backend)
    for since, snapshot in rounds:
        changes = changes_of(drain(connector, [items], since, confirm=False))
        assert_same_rows(replay(snapshot, changes), final)


def test_capture_keeps_up_with_a_writer(backend: Backend, connector: Connector, items: str) -> None:
    """Capture calls and confirms while commits keep arriving: together the batches hold
    every change once, in order, as the pipeline's streaming loop reads them."""
    since = connector.current_position(SYNC)
    writer = Writer(backend.clone(), first_id=1)
    writer.start()
    batches: list[CaptureBatch] = []
    position = since
    try:
        while writer.done < 300:
            writer.wait_for(writer.done + 1)
            batch = connector.capture(SYNC, [items], position, 7)
            if batch.changes:
                assert batch.end_position is not None
                batches.append(batch)
                position = batch.end_position
                connector.confirm(SYNC, position)
    finally:
        writer.finish()
    batches += drain(connector, [items], position, max_changes=7)
    changes = changes_of(batches)
    assert len(batches) > 10
    assert all(order(c.position) < order(d.position) for c, d in pairwise(changes))
    assert_same_rows(replay({}, changes), item_rows(backend))


def test_a_new_primary_key_is_a_delete_and_an_insert(
    backend: Backend, connector: Connector, items: str, request: pytest.FixtureRequest
) -> None:
    """The pipeline follows records by key: an update that moves a row to another key is
    the old record gone and a new one, on every connector."""
    backend.run(INSERT, 100, "K", "moved", 1)
    since = connector.current_position(SYNC)
    backend.transaction(
        [
            ("UPDATE items SET n = 2 WHERE id = 100", []),
            ("UPDATE items SET id = 200 WHERE id = 100", []),
            ("UPDATE items SET n = 3 WHERE id = 200", []),
        ]
    )
    changes = changes_of(drain(connector, [items], since))
    assert [(c.op, c.key) for c in changes] == [
        (Op.UPDATE, {"id": 100}),
        (Op.DELETE, {"id": 100}),
        (Op.INSERT, {"id": 200}),
        (Op.UPDATE, {"id": 200}),
    ]
    gone, born = changes[1:3]
    assert gone.after is None and gone.before is not None and gone.before["id"] == 100
    assert born.before is None and born.after == {"id": 200, "ext": "K", "name": "moved", "n": 2}
    assert all(order(c.position) < order(d.position) for c, d in pairwise(changes))


# --- (d) monotonic positions -------------------------------------------------------------


def test_positions_strictly_increase(backend: Backend, connector: Connector, items: str) -> None:
    since = connector.current_position(SYNC)
    expected = 0
    for i in range(1, 31):
        if i == 12:
            backend.rotate_log()
        if i % 5 == 0:
            rows = [{REF: f"r{j}", "ext": f"A{i}-{j}", "name": "applied"} for j in range(2)]
            connector.apply(items_batch(backend, f"pos-{i}", SYNC, inserts=rows))
            expected += 2
            continue
        a, b = 1000 + 2 * i, 1001 + 2 * i
        statements = [(INSERT, [a, None, "a", 0]), (INSERT, [b, None, "b", 0])]
        if i % 2:
            statements.append(("UPDATE items SET n = 1 WHERE id = %s", [a]))
        if i % 3 == 0:
            statements.append(("DELETE FROM items WHERE id = %s", [b]))
        backend.transaction(statements)
        expected += len(statements)
    backend.rotate_log()  # the stream now ends at the start of a new log

    whole = connector.capture(SYNC, [items], since, 10_000)  # before confirm releases it
    batches = drain(connector, [items], since, max_changes=4)
    positions = [c.position for c in changes_of(batches)]
    assert len(positions) == expected
    assert all(order(p) < order(q) for p, q in pairwise(positions)), "not strictly increasing"
    assert positions == [c.position for c in whole.changes]
    previous = since
    for batch in batches:
        assert order(batch.end_position) >= order(previous)
        for change in batch.changes:
            assert order(previous) < order(change.position) <= order(batch.end_position)
        assert batch.end_position is not None
        previous = batch.end_position
    idle = connector.capture(SYNC, [items], previous, 100)
    assert idle.changes == ()
    assert order(idle.end_position) >= order(previous)


# --- (e) whole transactions --------------------------------------------------------------


def test_transactions_are_never_split(backend: Backend, connector: Connector, items: str) -> None:
    since = connector.current_position(SYNC)
    backend.transaction(
        [
            (INSERT, [101, None, "a", 0]),
            (INSERT, [102, None, "b", 0]),
            ("UPDATE items SET n = 5 WHERE id = 101", []),
            ("DELETE FROM items WHERE id = 102", []),
            (INSERT, [103, None, "c", 0]),
        ]
    )
    backend.transaction([(INSERT, [104, None, "d", 0]), (INSERT, [105, None, "e", 0])])
    rows = [{REF: f"r{j}", "ext": f"T{j}", "name": "t"} for j in range(3)]
    assert connector.apply(items_batch(backend, "txn-1", SYNC, inserts=rows)).inserted == 3
    backend.run(INSERT, 150, None, "f", 0)
    sizes = [len(b.changes) for b in drain(connector, [items], since, max_changes=1)]
    assert sizes == [5, 2, 3, 1]


# --- (f) origin tagging ------------------------------------------------------------------


def test_origins(backend: Backend, connector: Connector, items: str) -> None:
    if not connector.capabilities.origin_tagging:
        pytest.skip("the connector does not tag origins")
    since = connector.current_position(SYNC)
    backend.run(INSERT, 100, "U1", "user", 0)
    connector.apply(items_batch(backend, "o-1", SYNC, inserts=[{REF: "a", "ext": "O1"}]))
    # another sync writing the same table (hub topology): a real change for this one
    connector.apply(
        items_batch(
            backend,
            "o-2",
            "hub_other",
            inserts=[{REF: "b", "ext": "O2"}],
            updates=[{REF: "c", "id": 100, "name": "by hub"}],
        )
    )
    backend.run("UPDATE items SET n = 2 WHERE id = 100")
    connector.apply(items_batch(backend, "o-3", SYNC, deletes=[{REF: "d", "id": 100}]))
    got = [(c.op, c.origin) for c in changes_of(drain(connector, [items], since))]
    assert got == [
        (Op.INSERT, None),
        (Op.INSERT, SYNC),
        (Op.UPDATE, "hub_other"),
        (Op.INSERT, "hub_other"),
        (Op.UPDATE, None),
        (Op.DELETE, SYNC),
    ]


def test_own_writes_left_out_on_request(backend: Backend, connector: Connector, items: str) -> None:
    """`skip_origin`: the pipeline's own writes are counted, not returned (nor decoded
    where the stream allows), and the position still moves past them."""
    if not connector.capabilities.origin_tagging:
        pytest.skip("the connector does not tag origins")
    since = connector.current_position(SYNC)
    backend.run(INSERT, 100, "U1", "user", 0)
    connector.apply(items_batch(backend, "s-1", SYNC, inserts=[{REF: "a", "ext": "O1"}]))
    connector.apply(
        items_batch(backend, "s-2", "hub_other", updates=[{REF: "c", "id": 100, "name": "hub"}])
    )
    connector.apply(items_batch(backend, "s-3", SYNC, deletes=[{REF: "d", "id": 100}]))
    backend.run(INSERT, 200, "U2", "user", 0)
    got: list[tuple[Op, str | None]] = []
    echoes = 0
    position = since
    for _ in range(100):
        batch = connector.capture(SYNC, [items], position, 1000, skip_origin=SYNC)
        got += [(c.op, c.origin) for c in batch.changes]
        echoes += sum(batch.echoes.values())
        assert set(batch.echoes) <= {items}
        if batch.end_position is None or batch.end_position == position:
            break
        position = batch.end_position
    assert got == [(Op.INSERT, None), (Op.UPDATE, "hub_other"), (Op.INSERT, None)]
    assert echoes == 2  # one insert, one delete (rows, or row events on MySQL)
    assert connector.capture(SYNC, [items], position, 1000, skip_origin=SYNC).changes == ()
