"""The engine sends a target no more rows per batch than it declares
(`Capabilities.max_batch_rows`), through the real pipeline (capture_side, EntityEngine,
a SQLite state store) between two memory databases."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from syncswim_lib.connectors.base import ApplyBatch
from syncswim_lib.connectors.memory import MemoryConnector, MemoryDatabase
from syncswim_lib.pipeline.capture import capture_side
from syncswim_lib.pipeline.engine import EntityEngine, split_writes
from syncswim_lib.pipeline.mapping import EntityMap, Letter, SideView
from syncswim_lib.pipeline.plan import Write
from syncswim_lib.pipeline.report import EntityReport
from syncswim_lib.state.sqlite import SqliteStateStore
from syncswim_lib.values import ColumnInfo, TableInfo

SYNC, ENTITY = "app_shop", "customers"
LETTERS: tuple[Letter, Letter] = ("a", "b")
ENDPOINTS: dict[Letter, str] = {"a": "app", "b": "shop"}
FIELDS = ("name", "email", "score")
INFO: dict[Letter, TableInfo] = {
    "a": TableInfo(
        "public.customers",
        (
            ColumnInfo("id", "int", "integer", nullable=False, auto_generated=True),
            ColumnInfo("name", "text", "text"),
            ColumnInfo("email", "text", "text"),
            ColumnInfo("score", "int", "integer"),
        ),
        ("id",),
    ),
    "b": TableInfo(
        "customers",
        (
            ColumnInfo("id", "int", "int", nullable=False, auto_generated=True),
            ColumnInfo("app_id", "int", "int"),
            ColumnInfo("name", "text", "varchar(50)", max_length=50),
            ColumnInfo("email", "text", "varchar(50)", max_length=50),
            ColumnInfo("score", "int", "int"),
        ),
        ("id",),
        (("id",), ("app_id",)),
    ),
}
LIMIT = 3


class Pair:
    """Two memory databases kept in step in SOR mode (a is the system of record, b keeps
    its key in app_id), each target declaring at most `limit` rows a batch."""

    def __init__(self, limit: int | None) -> None:
        self.dbs = {letter: MemoryDatabase(ENDPOINTS[letter]) for letter in LETTERS}
        self.store = SqliteStateStore(":memory:")
        self.conns: dict[Letter, MemoryConnector] = {}
        # every batch each target was handed and wrote: (batch id, rows)
        self.batches: dict[Letter, list[tuple[str, int]]] = {"a": [], "b": []}
        for letter in LETTERS:
            db = self.dbs[letter]
            db.create_table(INFO[letter])
            caps = MemoryConnector.capabilities
            if limit is not None:
                caps = replace(caps, max_batch_rows=limit)
            conn = self.conns[letter] = MemoryConnector(db, ENDPOINTS[letter], caps)
            conn.setup(SYNC, [INFO[letter].name])
            self.store.set_position(SYNC, ENDPOINTS[letter], conn.current_position(SYNC))
            db.apply_hook = self._recorder(letter)
        fields = tuple((n, n, None, None) for n in FIELDS)
        a = SideView("a", "app", INFO["a"], ("id",), None, FIELDS)
        b = SideView("b", "shop", INFO["b"], ("id",), "app_id", FIELDS)
        self.emap = EntityMap(SYNC, ENTITY, a, b, "system_of_record", "a", fields)
        self.engine = EntityEngine(
            self.emap, self.store, {"a": self.conns["a"], "b": self.conns["b"]}
        )
        self.fail_at: tuple[Letter, int] | None = None  # (target, its nth batch) raises

    def _recorder(self, letter: Letter) -> Any:
        def record(batch: ApplyBatch) -> None:
            rows = batch.inserts.num_rows + batch.updates.num_rows + batch.deletes.num_rows
            self.batches[letter].append((batch.batch_id, rows))
            if self.fail_at == (letter, len(self.batches[letter])):
                raise ConnectionError(f"lost the connection during batch {batch.batch_id}")

        return record

    def edit(self) -> None:
        """The same edits on every pair: rows born on both sides."""
        for i in range(7):
            self.dbs["a"].insert("public.customers", {"name": f"a{i}", "score": i})
        for i in range(10):
            self.dbs["b"].insert("customers", {"name": f"b{i}", "app_id": None, "score": i})

    def edit_again(self) -> None:
        for key in (1, 2, 3, 4, 9):
            self.dbs["a"].update("public.customers", key, {"email": f"{key}@a"})
        for key in (2, 4, 6, 8):
            self.dbs["b"].delete("customers", key)

    def settle(self) -> None:
        for _ in range(6):
            for letter in LETTERS:
                capture_side(self.store, self.conns[letter], self.emap, letter)
            if not self.store.pending_counts(SYNC).get(ENTITY, 0):
                return
            report = EntityReport(SYNC, ENTITY)
            self.engine.run(report)
            assert report.failed == 0, report.errors
        raise AssertionError("the sync did not settle")

    def rows(self, letter: Letter) -> list[dict[str, Any]]:
        return sorted(self.dbs[letter].rows(INFO[letter].name), key=lambda r: r["id"])


@pytest.fixture
def pairs() -> Any:
    made: list[Pair] = []

    def make(limit: int | None) -> Pair:
        made.append(Pair(limit))
        return made[-1]

    yield make
    for p in made:
        p.store.close()
        for c in p.conns.values():
            c.close()


def test_batches_of_at_most_max_batch_rows_end_as_one_batch_would(pairs: Any) -> None:
    split, whole = pairs(LIMIT), pairs(None)
    for pair in (split, whole):
        pair.edit()
        pair.settle()
        pair.edit_again()
        pair.settle()
    for letter in LETTERS:
        assert split.rows(letter) == whole.rows(letter)
        sizes = [rows for _, rows in split.batches[letter]]
        assert sizes and max(sizes) <= LIMIT, sizes
        # 10 inserts into a, 7 into b and 10 keys written back: split in several
        assert len(sizes) > len(whole.batches[letter])
        ids = [batch_id for batch_id, _ in split.batches[letter]]
        assert len(set(ids)) == len(ids)
        assert set(ids) <= split.dbs[letter].marker_ids()  # each committed with its marker
    assert max(rows for _, rows in whole.batches["a"]) == 10  # the unsplit run: one batch
    assert [row["app_id"] for row in split.rows("b")] == [row["app_id"] for row in whole.rows("b")]


def test_a_replayed_plan_writes_each_part_once(pairs: Any) -> None:
    pair = pairs(LIMIT)
    pair.edit()
    for letter in LETTERS:
        capture_side(pair.store, pair.conns[letter], pair.emap, letter)
    # a's third batch fails: its first two are committed (10 inserts from b, in 4 parts)
    pair.fail_at = ("a", 3)
    with pytest.raises(ConnectionError):
        pair.engine.run(EntityReport(SYNC, ENTITY))
    done = [batch_id for batch_id, _ in pair.batches["a"][:2]]
    assert set(done) <= pair.dbs["a"].marker_ids()
    assert len(pair.rows("a")) == 7 + 2 * LIMIT
    pair.fail_at = None
    pair.batches["a"].clear()
    # replays the saved plan (the keys a generated for b's rows are nowhere else yet)
    report = EntityReport(SYNC, ENTITY)
    pair.engine.run(report)
    assert report.recovered_batches == 1 and report.failed == 0, report.errors
    pair.settle()
    # the committed parts were answered from their markers, not handed to the writer
    assert not set(done) & {batch_id for batch_id, _ in pair.batches["a"]}
    a_rows = pair.rows("a")
    assert sorted(r["name"] for r in a_rows) == sorted(
        [f"a{i}" for i in range(7)] + [f"b{i}" for i in range(10)]
    )
    by_name = {r["name"]: r["id"] for r in a_rows}
    assert {r["name"]: r["app_id"] for r in pair.rows("b")} == by_name


def _write(action: str, n: int) -> Write:
    key = {"id": n}
    if action == "insert":
        return Write.insert(f"r{n}", "b", {"name": f"n{n}"})
    if action == "update":
        return Write.update(f"r{n}", "b", key, {"name": f"n{n}"}, None)
    return Write.delete(f"r{n}", "b", key, {"name": "old"})


def test_split_writes_keeps_the_write_order_and_derives_stable_ids() -> None:
    writes = [_write("insert", 1), _write("update", 2), _write("delete", 3), _write("insert", 4)]
    parts = split_writes("s.e.x.b", writes, 3)
    assert [(bid, [w.ref for w in ws]) for bid, ws in parts] == [
        ("s.e.x.b", ["r3", "r2", "r1"]),
        ("s.e.x.b.2", ["r4"]),
    ]
    assert split_writes("s.e.x.b", writes, 3) == parts
    assert [bid for bid, _ in split_writes("s.e.x.b", writes, 5000)] == ["s.e.x.b"]
    assert split_writes("s.e.x.b", [], 3) == []
    with pytest.raises(ValueError):
        split_writes("s.e.x.b", writes, 0)
