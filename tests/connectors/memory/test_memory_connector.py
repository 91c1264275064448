"""The memory connector's own promises, beyond the conformance suite: the injectable clock
and its precision, direct edits with origin None, unique and NOT NULL constraints, the
apply hook, compare-and-set, malformed batches, and the errors of a missing setup."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from syncswim_lib.connectors.base import ApplyBatch
from syncswim_lib.connectors.memory import (
    SECOND,
    IntegrityError,
    ManualClock,
    MemoryConnector,
    MemoryDatabase,
)
from syncswim_lib.envelope import BinlogPosition, Change, Op, PgPosition
from syncswim_lib.errors import ConfigError, FatalError
from syncswim_lib.values import ColumnInfo, TableInfo
from syncswim_lib.values.arrow import REF, rows_to_table

T0 = datetime(2026, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)
SYNC = "s"
COLUMNS = (
    ColumnInfo("id", "int", "integer", nullable=False, auto_generated=True),
    ColumnInfo("code", "text", "varchar(10)", max_length=10),
    ColumnInfo("name", "text", "text", nullable=False),
    ColumnInfo("amount", "decimal", "numeric(8,2)", precision=8, scale=2),
)
INFO = TableInfo("people", COLUMNS, ("id",), (("id",), ("code",)))


def make(**kw: Any) -> tuple[MemoryDatabase, MemoryConnector, ManualClock]:
    clock = ManualClock(T0)
    db = MemoryDatabase("m", clock=clock, **kw)
    db.create_table(INFO)
    conn = db.connector("mem")
    conn.setup(SYNC, ["people"])
    return db, conn, clock


def drain(conn: MemoryConnector) -> list[Change]:
    out: list[Change] = []
    while True:
        batch = conn.capture(SYNC, ["people"], None, 1000)
        if not batch.changes:
            return out
        out += batch.changes
        assert batch.end_position is not None
        conn.confirm(SYNC, batch.end_position)


def table(
    rows: Sequence[dict[str, Any]], names: Sequence[str], lists: Sequence[str] = ()
) -> pa.Table:
    return rows_to_table(rows, [c for c in COLUMNS if c.name in names], lists)


def batch(
    batch_id: str,
    *,
    inserts: Sequence[dict[str, Any]] = (),
    updates: Sequence[dict[str, Any]] = (),
    deletes: Sequence[dict[str, Any]] = (),
    expected: Sequence[dict[str, Any]] | None = None,
    insert_match: tuple[str, ...] = (),
) -> ApplyBatch:
    return ApplyBatch(
        batch_id,
        SYNC,
        "people",
        ("id",),
        table(inserts, ("code", "name", "amount")),
        table(updates, ("id", "code", "name", "amount"), ("__set",)),
        table(deletes, ("id",)),
        insert_match,
        None if expected is None else table(expected, ("code", "name", "amount"), ("__check",)),
    )


def test_direct_edits_carry_no_origin_and_the_clocks_time() -> None:
    db, conn, clock = make()
    row = db.insert("people", {"code": "A", "name": "Ann", "amount": "1.005"})
    # stored as numeric(8,2) stores it
    assert row == {"id": 1, "code": "A", "name": "Ann", "amount": Decimal("1.00")}
    clock.advance(timedelta(seconds=5))
    assert db.update("people", 1, {"name": "Anna"}) is not None
    clock.advance(timedelta(seconds=5))
    assert db.delete("people", {"id": 1}) is not None
    assert db.update("people", 1, {"name": "nobody"}) is None
    changes = drain(conn)
    assert [(c.op, c.origin, c.commit_ts) for c in changes] == [
        (Op.INSERT, None, T0),
        (Op.UPDATE, None, T0 + timedelta(seconds=5)),
        (Op.DELETE, None, T0 + timedelta(seconds=10)),
    ]
    assert changes[1].changed_fields == ("name",)
    assert changes[1].before is not None and changes[1].before["name"] == "Ann"
    assert changes[2].before == {"id": 1, "code": "A", "name": "Anna", "amount": row["amount"]}
    assert all(isinstance(c.position, PgPosition) for c in changes)


def test_whole_second_precision_truncates_and_looks_like_the_binlog() -> None:
    db, conn, _ = make(precision=SECOND)
    db.insert("people", {"code": "A", "name": "Ann"})
    (change,) = drain(conn)
    assert change.commit_ts == T0.replace(microsecond=0)
    assert isinstance(change.position, BinlogPosition)  # the pipeline reads precision from it
    with pytest.raises(ConfigError):
        conn.capture(SYNC, ["people"], PgPosition(1, 0), 10)


def test_a_transaction_commits_whole_or_not_at_all() -> None:
    db, conn, _ = make()
    with db.transaction() as txn:
        txn.insert("people", {"id": 5, "code": "A", "name": "a"})
        txn.update("people", 5, {"name": "b"})
        txn.insert("people", {"code": "B", "name": "c"})  # numbered after the explicit 5
    with pytest.raises(IntegrityError, match="unique"), db.transaction() as txn:
        txn.insert("people", {"code": "C", "name": "d"})
        txn.insert("people", {"code": "A", "name": "e"})  # code A exists
    assert [(r["id"], r["code"], r["name"]) for r in db.rows("people")] == [
        (5, "A", "b"),
        (6, "B", "c"),
    ]
    sizes = [len(conn.capture(SYNC, ["people"], None, 1).changes)]
    assert sizes == [3]  # one commit, the rolled-back one left nothing


def test_a_key_change_is_a_delete_and_an_insert_at_consecutive_positions() -> None:
    db, conn, _ = make()
    db.insert("people", {"id": 1, "code": "A", "name": "a"})
    drain(conn)
    db.update("people", 1, {"id": 9, "name": "z"})
    gone, born = drain(conn)
    assert (gone.op, gone.key, born.op, born.key) == (Op.DELETE, {"id": 1}, Op.INSERT, {"id": 9})
    assert gone.before is not None and gone.before["name"] == "a" and born.before is None
    assert isinstance(gone.position, PgPosition) and isinstance(born.position, PgPosition)
    assert (born.position.lsn, born.position.seq) == (gone.position.lsn, gone.position.seq + 1)


def test_constraints_reject_rows_one_by_one() -> None:
    db, conn, _ = make()
    db.insert("people", {"id": 1, "code": "A", "name": "a"})
    db.insert("people", {"id": 2, "code": "B", "name": "b"})
    res = conn.apply(
        batch(
            "c-1",
            inserts=[
                {REF: "dup", "code": "A", "name": "x"},
                {REF: "null", "code": "N", "name": None},
                {REF: "long", "code": "x" * 11, "name": "x"},
                {REF: "ok", "code": "C", "name": "c"},
            ],
            updates=[
                {REF: "u-dup", "id": 2, "code": "A", "__set": ["code"]},
                {REF: "u-ok", "id": 1, "name": "aa", "__set": ["name"]},
            ],
        )
    )
    assert set(res.rejected) == {"dup", "null", "long", "u-dup"}
    assert "unique" in res.rejected["dup"] and "not-null" in res.rejected["null"]
    assert (res.inserted, res.updated) == (1, 1)
    assert {r["code"]: r["name"] for r in db.rows("people")} == {"A": "aa", "B": "b", "C": "c"}
    assert {(c.op, c.origin) for c in drain(conn)} >= {(Op.INSERT, SYNC), (Op.UPDATE, SYNC)}


def test_nulls_never_collide_in_a_unique_set() -> None:
    db, _, _ = make()
    db.insert("people", {"code": None, "name": "a"})
    db.insert("people", {"code": None, "name": "b"})
    assert len(db.rows("people")) == 2


def test_the_apply_hook_runs_before_the_comparison() -> None:
    """A row edited "during the run" (from the hook) is not overwritten: its write is
    stale; the edit commits before the batch and is captured as a user's change."""
    db, conn, clock = make()
    db.insert("people", {"id": 1, "code": "A", "name": "a"})
    db.insert("people", {"id": 2, "code": "B", "name": "b"})
    drain(conn)
    calls: list[str] = []

    def edit(b: ApplyBatch) -> None:
        calls.append(b.batch_id)
        clock.advance(timedelta(seconds=1))
        db.update("people", 1, {"name": "theirs"})

    db.apply_hook = edit
    seen = [
        {REF: "u1", "__check": ["name"], "name": "a"},
        {REF: "u2", "__check": ["name"], "name": "b"},
    ]
    b = batch(
        "h-1",
        updates=[
            {REF: "u1", "id": 1, "name": "mine", "__set": ["name"]},
            {REF: "u2", "id": 2, "name": "mine", "__set": ["name"]},
        ],
        expected=seen,
    )
    res = conn.apply(b)
    assert (res.stale, res.updated) == (("u1",), 1)
    assert conn.apply(b) == res and calls == ["h-1"]  # a replay runs no hook, writes nothing
    assert {r["id"]: r["name"] for r in db.rows("people")} == {1: "theirs", 2: "mine"}
    assert [(c.op, c.key["id"], c.origin) for c in drain(conn)] == [
        (Op.UPDATE, 1, None),
        (Op.UPDATE, 2, SYNC),
    ]


def test_a_failing_hook_writes_nothing() -> None:
    db, conn, _ = make()

    def boom(_: ApplyBatch) -> None:
        raise RuntimeError("crash during apply")

    db.apply_hook = boom
    with pytest.raises(RuntimeError):
        conn.apply(batch("f-1", inserts=[{REF: "i", "code": "A", "name": "a"}]))
    assert conn.applied_result(SYNC, "f-1") is None and db.rows("people") == []
    db.apply_hook = None
    assert conn.apply(batch("f-1", inserts=[{REF: "i", "code": "A", "name": "a"}])).inserted == 1


def test_insert_match_updates_the_row_it_finds() -> None:
    db, conn, _ = make()
    db.insert("people", {"id": 3, "code": "A", "name": "a"})
    res = conn.apply(
        batch(
            "m-1",
            inserts=[
                {REF: "i", "code": "A", "name": "again"},
                {REF: "j", "code": "B", "name": "b"},
            ],
            insert_match=("code",),
        )
    )
    assert (res.inserted, res.updated, res.keys["i"], res.keys["j"]) == (1, 1, {"id": 3}, {"id": 4})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"updates": [{REF: "u", "id": 1, "name": "x", "__set": ["nope"]}]}, "nope"),
        ({"expected": [{REF: "u", "__check": ["missing_col"]}]}, "missing_col"),
    ],
)
def test_a_malformed_batch_fails_whole(change: dict[str, Any], message: str) -> None:
    db, conn, _ = make()
    db.insert("people", {"id": 1, "code": "A", "name": "a"})
    good = {REF: "ok", "id": 1, "name": "changed", "__set": ["name"]}
    updates = [good, *change.get("updates", [])]
    if "expected" in change:
        expected = pa.table(
            {REF: ["u"], "__check": pa.array([["missing_col"]], pa.list_(pa.string()))}
        )
        b = ApplyBatch(
            "bad", SYNC, "people", ("id",), table([], ("code",)),
            table(updates, ("id", "name"), ("__set",)), table([], ("id",)), (), expected,
        )  # fmt: skip
    else:
        b = batch("bad", updates=updates)
    with pytest.raises(ConfigError, match=message):
        conn.apply(b)
    assert conn.applied_result(SYNC, "bad") is None
    assert db.get("people", 1) == {"id": 1, "code": "A", "name": "a", "amount": None}


def test_without_setup_there_is_no_slot_and_no_marker_store() -> None:
    db = MemoryDatabase()
    db.create_table(INFO)
    conn = db.connector()
    with pytest.raises(FatalError, match="setup"):
        conn.capture(SYNC, ["people"], None, 10)
    with pytest.raises(FatalError, match="setup"):
        conn.apply(batch("x", inserts=[{REF: "i", "code": "A", "name": "a"}]))
    assert conn.prune_markers(timedelta(0)) == 0
    with pytest.raises(ConfigError, match="does not exist"):
        conn.describe("nothing")
    conn.setup(SYNC, ["people"])
    conn.apply(batch("x", inserts=[{REF: "i", "code": "A", "name": "a"}]))
    conn.teardown(SYNC)
    assert db.marker_ids() == set()  # the last sync's teardown drops the markers


def test_snapshot_orders_nulls_first_then_by_code_point() -> None:
    db, conn, _ = make()
    for code in ("b", None, "B", "é", "a"):
        db.insert("people", {"code": code, "name": "n"})
    batches = list(conn.snapshot("people", ["code"], ["code"], 2))
    assert [b.num_rows for b in batches] == [2, 2, 1]
    assert [r["code"] for b in batches for r in b.to_pylist()] == [None, "B", "a", "b", "é"]


def test_fetch_matches_canonical_values_and_never_null() -> None:
    db, conn, _ = make()
    db.insert("people", {"id": 1, "code": "A", "name": "a", "amount": "2.50"})
    db.insert("people", {"id": 2, "code": None, "name": "b"})
    assert [r["id"] for r in conn.fetch("people", "amount", ["2.5", None, "x"])] == [1]
    assert conn.fetch("people", "code", [None]) == []
    assert [r["id"] for r in conn.fetch("people", "id", ["2", 1, 99])] == [1, 2]


def test_positions_of_a_batch_and_its_end() -> None:
    db, conn, _ = make()
    start = conn.current_position(SYNC)
    db.insert("people", {"code": "A", "name": "a"})
    b = conn.capture(SYNC, ["people"], start, 10)
    (change,) = b.changes
    assert isinstance(start, PgPosition) and isinstance(b.end_position, PgPosition)
    assert isinstance(change.position, PgPosition)
    assert start < change.position < b.end_position == conn.current_position(SYNC)
