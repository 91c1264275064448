"""Snapshots and fetches against the private MariaDB: order, Arrow types, consistency."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import pyarrow as pa
import pytest

from syncswim_lib.connectors.mysql import MySQLConnector
from syncswim_lib.errors import ConfigError, FatalError

if TYPE_CHECKING:
    from conftest import Db

pytestmark = pytest.mark.integration

TABLE = """
CREATE TABLE things (
  id int NOT NULL PRIMARY KEY,
  code varchar(20) COLLATE utf8mb4_general_ci NULL,
  big bigint, price decimal(12,2), ratio double, active tinyint(1),
  born date, seen datetime(6), stamp timestamp(3) NULL DEFAULT NULL,
  doc json, raw varbinary(8), note text
)
"""
CODES = ["b", "B", "a", None, "ä", "a ", "a\t", "😀", "Z", "é"]


def test_snapshot_orders_like_python_and_types_columns(connector: MySQLConnector, db: Db) -> None:
    db.run(TABLE)
    for i, code in enumerate(CODES):
        db.run(
            "INSERT INTO things VALUES (%s, %s, 5000000000, 1.25, 0.5, 1, '2024-01-02', "
            "'2024-01-02 03:04:05.000006', '2024-01-02 03:04:05.123', '{\"a\": 1}', x'00ff', "
            "'note')",
            args=(i, code),
        )
    batches = list(
        connector.snapshot(
            "things",
            [
                "id",
                "code",
                "big",
                "price",
                "ratio",
                "active",
                "born",
                "seen",
                "stamp",
                "doc",
                "raw",
                "note",
            ],
            ["code", "id"],
            batch_rows=3,
        )
    )
    assert [b.num_rows for b in batches] == [3, 3, 3, 1]
    result = pa.Table.from_batches(batches)
    assert result.schema == pa.schema(
        [
            ("id", pa.int64()),
            ("code", pa.string()),
            ("big", pa.int64()),
            ("price", pa.decimal128(12, 2)),
            ("ratio", pa.float64()),
            ("active", pa.bool_()),
            ("born", pa.date32()),
            ("seen", pa.timestamp("us", tz="UTC")),
            ("stamp", pa.timestamp("us", tz="UTC")),
            ("doc", pa.string()),
            ("raw", pa.binary()),
            ("note", pa.string()),
        ]
    )
    codes = result.column("code").to_pylist()
    non_null = [c for c in CODES if c is not None]
    assert codes == [None, *sorted(non_null)]
    first = result.slice(1, 1).to_pylist()[0]
    assert first == {
        "id": first["id"],
        "code": first["code"],
        "big": 5000000000,
        "price": Decimal("1.25"),
        "ratio": 0.5,
        "active": True,
        "born": date(2024, 1, 2),
        "seen": datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        "stamp": datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=UTC),
        "doc": '{"a":1}',
        "raw": b"\x00\xff",
        "note": "note",
    }


def test_snapshot_is_one_consistent_read(connector: MySQLConnector, db: Db) -> None:
    db.run("CREATE TABLE t (id int PRIMARY KEY)")
    db.run("INSERT INTO t VALUES " + ", ".join(f"({i})" for i in range(10)))
    stream = connector.snapshot("t", ["id"], ["id"], batch_rows=2)
    first = next(stream)
    db.run("DELETE FROM t WHERE id >= 5", "INSERT INTO t VALUES (100)")
    rest = list(stream)
    ids = [i for b in [first, *rest] for i in b.column(0).to_pylist()]
    assert ids == list(range(10))


def test_snapshot_of_empty_table_and_unknown_column(connector: MySQLConnector, db: Db) -> None:
    db.run("CREATE TABLE t (id int PRIMARY KEY)")
    assert list(connector.snapshot("t", ["id"], ["id"], 10)) == []
    with pytest.raises(ConfigError, match="column nope does not exist"):
        list(connector.snapshot("t", ["id"], ["nope"], 10))


def test_fetch_by_column_values(connector: MySQLConnector, db: Db) -> None:
    db.run("CREATE TABLE t (id int PRIMARY KEY, ext varchar(10), on_ tinyint(1))")
    db.run("INSERT INTO t VALUES (1, 'A', 1), (2, 'B', 0), (3, NULL, NULL)")
    rows = connector.fetch("t", "ext", ["A", "B", "nope"])
    assert sorted(rows, key=lambda r: r["id"]) == [
        {"id": 1, "ext": "A", "on_": True},
        {"id": 2, "ext": "B", "on_": False},
    ]
    assert connector.fetch("t", "id", ["not a number", 3]) == [{"id": 3, "ext": None, "on_": None}]
    assert connector.fetch("t", "id", []) == []
    many = connector.fetch("t", "id", list(range(2500)))
    assert len(many) == 3


def test_snapshot_refuses_a_value_arrow_cannot_hold(connector: MySQLConnector, db: Db) -> None:
    db.run(
        "CREATE TABLE t (id int PRIMARY KEY, span time)", "INSERT INTO t VALUES (1, '100:00:00')"
    )
    with pytest.raises(FatalError, match="span"):
        list(connector.snapshot("t", ["id", "span"], ["id"], 10))
