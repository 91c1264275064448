"""SQLite apply on a real file: idempotent replay through the marker table, a refused row
rejected alone, compare-and-set, partial updates, inserts matched by external id, the
canonical values it reads back, and pruning the markers."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from syncswim_lib.connectors.base import ApplyBatch
from syncswim_lib.connectors.sqlite import SqliteConnector
from syncswim_lib.errors import FatalError

DDL = """
CREATE TABLE people (
    id INTEGER PRIMARY KEY,
    ext TEXT UNIQUE,
    name TEXT NOT NULL CHECK (name <> 'bad'),
    amount NUMERIC(10,2),
    born DATE,
    seen TIMESTAMP,
    ok BOOLEAN,
    doc JSON
);
"""


@pytest.fixture
def conn(tmp_path: Path) -> SqliteConnector:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.executescript(DDL)
    c = SqliteConnector(str(path), "app")
    c.setup("s", ["people"])
    return c


def table(rows: list[dict[str, Any]], **types: pa.DataType) -> pa.Table:
    names = list(types)
    return pa.table({n: pa.array([r.get(n) for r in rows], types[n]) for n in names})


S = pa.string()
EMPTY_KEYED = table([], id=pa.int64(), __ref=S)


def inserts(rows: list[dict[str, Any]]) -> pa.Table:
    return table(rows, __ref=S, ext=S, name=S, amount=pa.decimal128(10, 2))


def batch(batch_id: str, **parts: Any) -> ApplyBatch:
    return ApplyBatch(
        batch_id=batch_id,
        origin="s",
        table="people",
        key_columns=("id",),
        inserts=parts.get("inserts", inserts([])),
        updates=parts.get("updates", EMPTY_KEYED),
        deletes=parts.get("deletes", EMPTY_KEYED),
        insert_match=parts.get("insert_match", ()),
        expected=parts.get("expected"),
    )


def rows(conn: SqliteConnector) -> list[dict[str, Any]]:
    return conn.fetch_all("people", "name", ["a", "b", "c", "d", "e", "A", "bad"])


def test_a_replayed_batch_writes_once_and_returns_its_result(conn: SqliteConnector) -> None:
    b = batch("b1", inserts=inserts([{"__ref": "r1", "name": "a"}, {"__ref": "r2", "name": "b"}]))
    first = conn.apply(b)
    assert first.inserted == 2 and set(first.keys) == {"r1", "r2"}
    again = conn.apply(b)
    assert again == first
    assert len(rows(conn)) == 2
    assert conn.applied_result("s", "b1") == first
    assert conn.applied_result("other", "b1") is None
    assert conn.applied_result("s", "never") is None


def test_a_refused_row_is_rejected_alone(conn: SqliteConnector) -> None:
    result = conn.apply(
        batch(
            "b1",
            inserts=inserts(
                [
                    {"__ref": "r1", "name": "a", "ext": "X"},
                    {"__ref": "r2", "name": None},  # NOT NULL
                    {"__ref": "r3", "name": "bad"},  # CHECK
                    {"__ref": "r4", "name": "b", "ext": "X"},  # UNIQUE
                    {"__ref": "r5", "name": "c"},
                ]
            ),
        )
    )
    assert result.inserted == 2
    assert set(result.rejected) == {"r2", "r3", "r4"}
    assert "NOT NULL" in result.rejected["r2"] and "CHECK" in result.rejected["r3"]
    assert sorted(r["name"] for r in rows(conn)) == ["a", "c"]


def test_compare_and_set_partial_updates_and_deletes(conn: SqliteConnector) -> None:
    made = conn.apply(
        batch("b1", inserts=inserts([{"__ref": f"r{i}", "name": n} for i, n in enumerate("abc")]))
    )
    ids = [made.keys[f"r{i}"]["id"] for i in range(3)]
    updates = table(
        [
            {
                "id": ids[0],
                "__ref": "u0",
                "name": "A",
                "amount": Decimal("1.50"),
                "__set": ["name"],
            },
            {"id": ids[1], "__ref": "u1", "name": "B", "amount": None, "__set": None},
            {"id": 999, "__ref": "u2", "name": "Z", "amount": None, "__set": None},
        ],
        id=pa.int64(),
        __ref=S,
        name=S,
        amount=pa.decimal128(10, 2),
        __set=pa.list_(S),
    )
    expected = table(
        [{"__ref": "u1", "__check": ["name"], "name": "not b"}],
        __ref=S,
        __check=pa.list_(S),
        name=S,
    )
    deletes = table([{"id": ids[2], "__ref": "d2"}], id=pa.int64(), __ref=S)
    result = conn.apply(batch("b2", updates=updates, deletes=deletes, expected=expected))
    assert result.updated == 1 and result.deleted == 1
    assert result.stale == ("u1",) and result.missing == ("u2",)
    by_id = {r["id"]: r for r in rows(conn)}
    assert by_id[ids[0]]["name"] == "A" and by_id[ids[0]]["amount"] is None  # only `name` set
    assert by_id[ids[1]]["name"] == "b"  # stale: left as it was
    assert ids[2] not in by_id


def test_insert_match_updates_the_row_it_finds(conn: SqliteConnector) -> None:
    conn.apply(batch("b1", inserts=inserts([{"__ref": "r1", "name": "a", "ext": "E1"}])))
    result = conn.apply(
        batch(
            "b2",
            inserts=inserts([{"__ref": "r2", "name": "d", "ext": "E1"}]),
            insert_match=("ext",),
        )
    )
    assert result.inserted == 0 and result.updated == 1
    assert [r["name"] for r in rows(conn)] == ["d"]


def test_values_read_back_canonical(conn: SqliteConnector) -> None:
    seen = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
    values = table(
        [
            {
                "__ref": "r1",
                "name": "e",
                "amount": Decimal("12.30"),
                "born": date(1990, 2, 28),
                "seen": seen,
                "ok": True,
                "doc": '{"b": [1, 2], "a": null}',
            }
        ],
        __ref=S,
        name=S,
        amount=pa.decimal128(10, 2),
        born=pa.date32(),
        seen=pa.timestamp("us", tz="UTC"),
        ok=pa.bool_(),
        doc=S,
    )
    conn.apply(batch("b1", inserts=values))
    (row,) = conn.fetch("people", "name", ["e"])
    assert row["amount"] == Decimal("12.30") and row["born"] == date(1990, 2, 28)
    assert row["seen"] == seen and row["ok"] is True and row["doc"] == {"a": None, "b": [1, 2]}
    info = conn.describe("people")
    assert info.primary_key == ("id",) and ("ext",) in info.unique
    assert info.column("id") is not None and info.column("id").auto_generated  # type: ignore[union-attr]
    snap = pa.Table.from_batches(list(conn.snapshot("people", ["id", "seen"], ["id"], 10)))
    assert snap.column("seen").to_pylist() == [seen]


def test_markers_before_setup_and_pruned(tmp_path: Path, conn: SqliteConnector) -> None:
    path = tmp_path / "bare.db"
    with sqlite3.connect(path) as db:
        db.executescript(DDL)
    bare = SqliteConnector(str(path), "bare")
    with pytest.raises(FatalError, match="run the setup"):
        bare.apply(batch("b1", inserts=inserts([{"__ref": "r1", "name": "a"}])))
    assert bare.prune_markers(timedelta(0)) == 0
    conn.apply(batch("b1", inserts=inserts([{"__ref": "r1", "name": "a"}])))
    assert conn.prune_markers(timedelta(hours=1)) == 0
    assert conn.prune_markers(timedelta(0)) == 1
    assert conn.applied_result("s", "b1") is None


SOFT_DDL = """
CREATE TABLE people (
    id INTEGER PRIMARY KEY, ext TEXT UNIQUE, name TEXT, gone TIMESTAMP, flag BOOLEAN,
    tag TEXT, n INTEGER, ver INTEGER, doc JSON
);
INSERT INTO people (id, ext, name) VALUES (1, 'A', 'ann'), (2, 'B', 'bob'), (3, 'C', 'cy');
"""


def soft_connector(tmp_path: Path, column: str) -> SqliteConnector:
    from syncswim_lib.config.polling import DeleteDetection, PollSpec

    path = tmp_path / "soft.db"
    with sqlite3.connect(path) as db:
        db.executescript(SOFT_DDL)
    spec = PollSpec("ver", DeleteDetection(column=column))
    c = SqliteConnector(
        str(path),
        "app",
        {"s/people": spec},
        clock=lambda: datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC),
    )
    c.setup("s", ["people"])
    return c


@pytest.mark.parametrize(
    ("column", "stored"),
    [("gone", "2026-05-04 03:02:01"), ("flag", 1), ("tag", "s"), ("n", 1)],
)
def test_a_delete_on_a_soft_delete_table_sets_the_column(
    tmp_path: Path, column: str, stored: Any
) -> None:
    """Deletes become updates of the declared soft-delete column (what it is set to
    follows its type), beside an ordinary update, with compare-and-set; counted as
    deletes; the rows stay."""
    c = soft_connector(tmp_path, column)
    deletes = table([{"id": 1, "__ref": "d1"}, {"id": 3, "__ref": "d3"}], id=pa.int64(), __ref=S)
    updates = table([{"id": 2, "__ref": "u2", "name": "bo"}], id=pa.int64(), __ref=S, name=S)
    expected = pa.table(
        {
            "__ref": ["d1", "d3"],
            "__check": [["name"], ["name"]],
            "name": ["ann", "someone else"],  # row 3 changed underneath: stale
        }
    )
    none = table([], __ref=S)
    result = c.apply(batch("b1", inserts=none, deletes=deletes, updates=updates, expected=expected))
    assert (result.deleted, result.updated, result.stale) == (1, 1, ("d3",))
    rows = sqlite3.connect(c.path).execute(f"SELECT id, name, {column} FROM people").fetchall()
    assert rows == [(1, "ann", stored), (2, "bo", None), (3, "cy", None)]
    assert [r["id"] for r in c.fetch("people", "id", [1, 2, 3])] == [2, 3]  # 1 is deleted


def test_an_insert_matching_a_soft_deleted_row_makes_it_live(tmp_path: Path) -> None:
    c = soft_connector(tmp_path, "gone")
    sqlite3.connect(c.path, isolation_level=None).execute(
        "UPDATE people SET gone = '2026-01-01 00:00:00' WHERE id = 1"
    )
    ins = table([{"__ref": "i", "ext": "A", "name": "ann2"}], __ref=S, ext=S, name=S)
    result = c.apply(batch("b1", inserts=ins, insert_match=("ext",)))
    assert (result.inserted, result.updated) == (0, 1)
    rows = sqlite3.connect(c.path).execute("SELECT id, name, gone FROM people WHERE id = 1")
    assert rows.fetchall() == [(1, "ann2", None)]


def test_a_soft_delete_column_that_cannot_be_marked_is_refused(tmp_path: Path) -> None:
    from syncswim_lib.errors import ConfigError

    c = soft_connector(tmp_path, "doc")
    deletes = table([{"id": 1, "__ref": "d1"}], id=pa.int64(), __ref=S)
    with pytest.raises(ConfigError, match="cannot mark a row deleted in it"):
        c.apply(batch("b1", inserts=table([], __ref=S), deletes=deletes))
