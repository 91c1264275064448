"""The conformance suite's value checks, which compare PostgreSQL with MySQL directly,
made for the memory connector: the same typed rows read back as the same canonical
values by capture, fetch and snapshot, and JSON snapshot text in the SQL connectors' form."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal

import pyarrow as pa

from syncswim_lib.connectors.base import ApplyBatch
from syncswim_lib.connectors.memory import MemoryDatabase
from syncswim_lib.values.arrow import REF, rows_to_table
from tests.connectors.conformance_backends import MemoryBackend
from tests.connectors.conformance_support import SYNC
from tests.connectors.conformance_values import TYPED_COLUMNS, TYPED_ROWS, _typed_values


def test_the_same_row_reads_as_the_same_canonical_values() -> None:
    backend = MemoryBackend(MemoryDatabase())
    connector = backend.connector()
    got = _typed_values(backend, connector)
    for path in ("capture", "fetch"):
        rows = got[path]
        assert rows == TYPED_ROWS, path
        for row, want in zip(rows, TYPED_ROWS, strict=True):
            for name, value in row.items():
                assert type(value) is type(want[name]), f"{path} {name}: {type(value)}"
                if isinstance(value, datetime):
                    assert value.utcoffset() == timedelta(0), f"{path} {name}"
    snapped = got["snapshot"]
    assert [r["id"] for r in snapped] == [r["id"] for r in TYPED_ROWS]
    for row in snapped:
        row["doc"] = json.loads(row["doc"])
    assert snapped == TYPED_ROWS


def test_snapshot_json_text_is_the_sql_connectors_text() -> None:
    backend = MemoryBackend(MemoryDatabase())
    connector = backend.connector()
    backend.run("CREATE TABLE docs (id int PRIMARY KEY, doc json)")
    backend.run("INSERT INTO docs (id, doc) VALUES (1, %s)", {"b": 1, "a": {"d": 2, "c": 3}})
    batches = connector.snapshot("docs", ["doc"], ["id"], 10)
    # what PostgreSQL and MySQL both give (test_snapshot_json_text_is_the_same_everywhere)
    assert [r["doc"] for b in batches for r in b.to_pylist()] == ['{"a":{"c":3,"d":2},"b":1}']


def test_compare_and_set_compares_canonical_values() -> None:
    """The plan's view of the typed rows, as `rows_to_table` carries it (JSON as text,
    times in other zones), still matches the stored rows; one changed value is stale."""
    backend = MemoryBackend(MemoryDatabase())
    connector = backend.connector()
    backend.run(backend.typed_ddl())
    marks = ", ".join(["%s"] * len(TYPED_COLUMNS))
    for row in TYPED_ROWS:
        backend.run(
            f"INSERT INTO typed ({', '.join(TYPED_COLUMNS)}) VALUES ({marks})", *row.values()
        )
    connector.setup(SYNC, ["typed"])
    info = connector.describe("typed")
    check = [c for c in TYPED_COLUMNS if c != "id"]
    seen = [{REF: f"r{r['id']}", **r} for r in TYPED_ROWS]
    seen[1] = {**seen[1], "amount": Decimal("0.02")}  # the plan saw another amount
    expected = rows_to_table(seen, info.columns).append_column(
        "__check", pa.array([check] * len(seen), pa.list_(pa.string()))
    )
    note = [c for c in info.columns if c.name in ("id", "note")]
    updates = rows_to_table(
        [{REF: f"r{r['id']}", "id": r["id"], "note": "checked"} for r in TYPED_ROWS], note
    )
    empty = rows_to_table([], note[:1])
    res = connector.apply(
        ApplyBatch("typed-cas", SYNC, "typed", ("id",), empty, updates, empty, (), expected)
    )
    assert (res.stale, res.updated, res.rejected) == (("r2",), 2, {})
    notes = {r["id"]: r["note"] for r in connector.fetch("typed", "id", [1, 2, 3])}
    assert notes == {1: "checked", 2: TYPED_ROWS[1]["note"], 3: "checked"}
