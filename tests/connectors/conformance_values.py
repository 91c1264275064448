"""Conformance, values: the same row reads as the same canonical values on every
connector, and compare-and-set compares them as such.

Collected by test_conformance.py, which holds the fixtures."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pyarrow as pa

from syncswim_lib.connectors.base import ApplyBatch, Connector
from syncswim_lib.values.arrow import REF, rows_to_table
from tests.connectors.conformance_backends import Backend, MySQLBackend, PostgresBackend
from tests.connectors.conformance_support import (
    SYNC,
    changes_of,
    drain,
)

# --- (g) the same row gives the same canonical values on every connector -----------------

TYPED_COLUMNS = (
    "id", "big", "amount", "name", "flag", "born", "seen_at", "local_at", "doc", "note",
)  # fmt: skip
TYPED_ROWS = [
    {
        "id": 1,
        "big": 9_007_199_254_740_993,
        "amount": Decimal("-1234.50"),
        "name": "Zoë 😀 東京",
        "flag": True,
        "born": date(2024, 2, 29),
        "seen_at": datetime(2024, 6, 1, 10, 30, 45, 123456, tzinfo=UTC),
        "local_at": datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        "doc": {"b": {"c": "é"}, "a": [1, 2.5, None], "t": True},
        "note": None,
    },
    {
        "id": 2,
        "big": -1,
        "amount": Decimal("0.01"),
        "name": "",
        "flag": False,
        "born": date(1970, 1, 1),
        "seen_at": datetime(2000, 1, 1, tzinfo=UTC),
        "local_at": datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC),
        "doc": {"k": [], "n": -7},
        "note": "multi\nline",
    },
    {  # written by apply in a zone that is not UTC: read back as the same instant in UTC
        "id": 3,
        "big": -(2**63),
        "amount": Decimal("0.00"),
        "name": "  padded  ",
        "flag": None,
        "born": None,
        "seen_at": datetime(2024, 3, 31, 1, 30, tzinfo=timezone(timedelta(hours=2))),
        "local_at": datetime(2024, 10, 27, 2, 30, 0, 1, tzinfo=timezone(timedelta(hours=-5))),
        "doc": {"zeta": 1, "alpha": {"y": 2, "x": 1}, "n": 9_007_199_254_740_993, "f": 0.1},
        "note": "ünï ✓",
    },
]


def _typed_values(backend: Backend, connector: Connector) -> dict[str, list[dict[str, Any]]]:
    """Row 1 written in plain SQL, row 2 by apply; read back by capture, fetch and snapshot."""
    backend.run(backend.typed_ddl())
    table = backend.table("typed")
    connector.setup(SYNC, [table])
    since = connector.current_position(SYNC)
    one = TYPED_ROWS[0]
    marks = ", ".join(["%s"] * len(TYPED_COLUMNS))
    backend.run(f"INSERT INTO typed ({', '.join(TYPED_COLUMNS)}) VALUES ({marks})", *one.values())
    info = connector.describe(table)
    inserts = rows_to_table([{REF: f"r{r['id']}", **r} for r in TYPED_ROWS[1:]], info.columns)
    empty = rows_to_table([], [c for c in info.columns if c.name == "id"])
    applied = connector.apply(ApplyBatch("typed-1", SYNC, table, ("id",), inserts, empty, empty))
    assert applied.inserted == len(TYPED_ROWS) - 1 and not applied.rejected
    captured = [c.after or {} for c in changes_of(drain(connector, [table], since))]
    fetched = connector.fetch(table, "id", [r["id"] for r in TYPED_ROWS])
    fetched.sort(key=lambda r: r["id"])
    snapshot = connector.snapshot(table, TYPED_COLUMNS, ["id"], 10)
    snapped = [r for b in snapshot for r in b.to_pylist()]
    return {"capture": captured, "fetch": fetched, "snapshot": snapped}


def test_the_same_row_reads_as_the_same_canonical_values(pg_dsn: str, mysql_dsn: str) -> None:
    got: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for backend in (PostgresBackend(pg_dsn), MySQLBackend(mysql_dsn)):
        connector = backend.connector()
        try:
            got[backend.kind] = _typed_values(backend, connector)
        finally:
            connector.close()
            backend.close()
    for kind, paths in got.items():
        for path in ("capture", "fetch"):
            rows = paths[path]
            assert rows == TYPED_ROWS, f"{kind} {path}"
            for row, want in zip(rows, TYPED_ROWS, strict=True):
                for name, value in row.items():
                    where = f"{kind} {path} {name}"
                    assert type(value) is type(want[name]), f"{where}: {type(value)}"
                    if isinstance(value, datetime):
                        assert value.utcoffset() == timedelta(0), where
    pg, my = got["postgres"], got["mysql"]
    # a snapshot carries JSON as text (Arrow has no JSON type), which readers parse, as the
    # pipeline does; everything else is equal as it comes
    for rows in (pg["snapshot"], my["snapshot"]):
        for row in rows:
            row["doc"] = json.loads(row["doc"])
    assert pg["snapshot"] == my["snapshot"]
    assert [r["id"] for r in pg["snapshot"]] == [r["id"] for r in TYPED_ROWS]


def test_snapshot_json_text_is_the_same_everywhere(pg_dsn: str, mysql_dsn: str) -> None:
    texts = []
    for backend in (PostgresBackend(pg_dsn), MySQLBackend(mysql_dsn)):
        connector = backend.connector()
        try:
            backend.run("CREATE TABLE docs (id int PRIMARY KEY, doc json)")
            backend.run("INSERT INTO docs VALUES (1, %s)", {"b": 1, "a": {"d": 2, "c": 3}})
            batches = connector.snapshot(backend.table("docs"), ["doc"], ["id"], 10)
            texts.append([r["doc"] for b in batches for r in b.to_pylist()])
        finally:
            connector.close()
            backend.close()
    assert texts[0] == texts[1]


def _unchanged_rows_are_written(backend: Backend, connector: Connector) -> None:
    """The plan's view of TYPED_ROWS (as `rows_to_table` carries it: JSON as text, times in
    another zone) matches the stored rows; one changed value makes its row stale."""
    backend.run(backend.typed_ddl())
    table = backend.table("typed")
    info = connector.describe(table)
    marks = ", ".join(["%s"] * len(TYPED_COLUMNS))
    for row in TYPED_ROWS:
        backend.run(
            f"INSERT INTO typed ({', '.join(TYPED_COLUMNS)}) VALUES ({marks})", *row.values()
        )
    connector.setup(SYNC, [table])
    check = [c for c in TYPED_COLUMNS if c != "id"]
    seen = [{REF: f"r{r['id']}", **r} for r in TYPED_ROWS]
    seen[1] = {**seen[1], "amount": Decimal("0.02")}  # the plan saw another amount
    expected = rows_to_table(seen, info.columns).append_column(
        "__check", pa.array([check] * len(seen), pa.list_(pa.string()))
    )
    note = next(c for c in info.columns if c.name == "note")
    key = [c for c in info.columns if c.name == "id"]
    updates = rows_to_table(
        [{REF: f"r{r['id']}", "id": r["id"], "note": "checked"} for r in TYPED_ROWS],
        [*key, note],
    )
    deletes = rows_to_table([], key)
    res = connector.apply(
        ApplyBatch("typed-cas", SYNC, table, ("id",), deletes, updates, deletes, (), expected)
    )
    assert (res.stale, res.updated, res.rejected) == (("r2",), 2, {}), backend.kind
    notes = {r["id"]: r["note"] for r in connector.fetch(table, "id", [1, 2, 3])}
    assert notes == {1: "checked", 2: TYPED_ROWS[1]["note"], 3: "checked"}


def test_compare_and_set_compares_canonical_values(pg_dsn: str, mysql_dsn: str) -> None:
    for backend in (PostgresBackend(pg_dsn), MySQLBackend(mysql_dsn)):
        connector = backend.connector()
        try:
            _unchanged_rows_are_written(backend, connector)
        finally:
            connector.close()
            backend.close()
