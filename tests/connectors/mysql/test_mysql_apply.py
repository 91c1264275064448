"""Apply against the private MariaDB: idempotence, upserts, generated keys, rejected rows."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pytest

from syncswim_lib.connectors.base import ApplyBatch
from syncswim_lib.connectors.mysql import MySQLConnector
from syncswim_lib.errors import FatalError, RetriableError

if TYPE_CHECKING:
    from conftest import Db

pytestmark = pytest.mark.integration

CUSTOMERS = """
CREATE TABLE customers (
  id int NOT NULL AUTO_INCREMENT PRIMARY KEY,
  ext_id varchar(20) NULL UNIQUE,
  name varchar(10) NOT NULL,
  credit decimal(8,2) NULL,
  vip tinyint(1) NOT NULL DEFAULT 0,
  since date NULL,
  seen datetime(6) NULL,
  doc json NULL,
  CONSTRAINT credit_positive CHECK (credit IS NULL OR credit >= 0)
)
"""


def empty(**columns: pa.DataType) -> pa.Table:
    return pa.table(
        {"__ref": pa.array([], pa.string())} | {n: pa.array([], t) for n, t in columns.items()}
    )


def table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows)


def batch(
    batch_id: str,
    *,
    inserts: pa.Table | None = None,
    updates: pa.Table | None = None,
    deletes: pa.Table | None = None,
    insert_match: tuple[str, ...] = (),
) -> ApplyBatch:
    return ApplyBatch(
        batch_id=batch_id,
        origin="sync_a",
        table="customers",
        key_columns=("id",),
        inserts=inserts if inserts is not None else empty(name=pa.string()),
        updates=updates if updates is not None else empty(id=pa.int64()),
        deletes=deletes if deletes is not None else empty(id=pa.int64()),
        insert_match=insert_match,
    )


@pytest.fixture
def ready(connector: MySQLConnector, db: Db) -> MySQLConnector:
    db.run(CUSTOMERS)
    connector.setup("sync_a", ["customers"])
    return connector


def test_inserts_return_generated_keys(ready: MySQLConnector, db: Db) -> None:
    result = ready.apply(
        batch(
            "b1",
            inserts=table(
                [
                    {
                        "__ref": "a",
                        "id": None,
                        "name": "Ann",
                        "credit": Decimal("10.5"),
                        "vip": True,
                    },
                    {"__ref": "b", "id": None, "name": "Bob", "credit": None, "vip": False},
                    {"__ref": "c", "id": 100, "name": "Cy", "credit": Decimal(1), "vip": False},
                ]
            ),
        )
    )
    assert result.inserted == 3 and not result.rejected
    assert result.keys == {"a": {"id": 1}, "b": {"id": 2}, "c": {"id": 100}}
    assert db.rows("SELECT id, name, credit, vip FROM customers ORDER BY id") == [
        (1, "Ann", Decimal("10.50"), 1),
        (2, "Bob", None, 0),
        (100, "Cy", Decimal("1.00"), 0),
    ]


def test_same_batch_twice_writes_once(ready: MySQLConnector, db: Db) -> None:
    b = batch("b-dup", inserts=table([{"__ref": "a", "name": "Ann"}]))
    first = ready.apply(b)
    second = ready.apply(b)
    assert second == first
    assert db.rows("SELECT count(*) FROM customers") == [(1,)]
    assert ready.applied_result("sync_a", "b-dup") == first
    assert ready.applied_result("sync_a", "never-applied") is None


def test_updates_deletes_and_missing_rows(ready: MySQLConnector, db: Db) -> None:
    db.run("INSERT INTO customers (id, name, credit) VALUES (1, 'Ann', 5), (2, 'Bob', 6)")
    result = ready.apply(
        batch(
            "b1",
            updates=table(
                [
                    {"__ref": "u1", "id": 1, "name": "Ann", "credit": Decimal("5")},  # unchanged
                    {"__ref": "u2", "id": 2, "name": "Bobby", "credit": None},
                    {"__ref": "u3", "id": 99, "name": "Ghost", "credit": None},
                ]
            ),
            deletes=table([{"__ref": "d1", "id": 1}, {"__ref": "d2", "id": 98}]),
        )
    )
    # deletes run first: u1 then finds its row gone
    assert result.deleted == 1 and result.updated == 1
    assert sorted(result.missing) == ["d2", "u1", "u3"]
    assert result.keys == {"d1": {"id": 1}, "u2": {"id": 2}}
    assert db.rows("SELECT id, name, credit FROM customers") == [(2, "Bobby", None)]


def test_update_that_changes_nothing_is_not_missing(ready: MySQLConnector, db: Db) -> None:
    db.run("INSERT INTO customers (id, name) VALUES (1, 'Ann')")
    result = ready.apply(batch("b1", updates=table([{"__ref": "u", "id": 1, "name": "Ann"}])))
    assert result.updated == 1 and result.missing == ()


def test_insert_match_upserts_by_external_id(ready: MySQLConnector, db: Db) -> None:
    db.run("INSERT INTO customers (id, ext_id, name) VALUES (7, 'CUST-1', 'Old')")
    rows = [
        {"__ref": "x", "ext_id": "CUST-1", "name": "New"},
        {"__ref": "y", "ext_id": "CUST-2", "name": "Two"},
    ]
    result = ready.apply(batch("b1", inserts=table(rows), insert_match=("ext_id",)))
    assert (result.inserted, result.updated) == (1, 1)
    assert result.keys == {"x": {"id": 7}, "y": {"id": 8}}
    # replayed under a new batch id (after a lost result): still no duplicate
    again = ready.apply(batch("b2", inserts=table(rows), insert_match=("ext_id",)))
    assert (again.inserted, again.updated) == (0, 2)
    assert again.keys == result.keys
    assert db.rows("SELECT id, ext_id, name FROM customers ORDER BY id") == [
        (7, "CUST-1", "New"),
        (8, "CUST-2", "Two"),
    ]


def test_rejected_rows_do_not_fail_the_batch(ready: MySQLConnector, db: Db) -> None:
    db.run("INSERT INTO customers (id, ext_id, name) VALUES (1, 'TAKEN', 'Ann')")
    result = ready.apply(
        batch(
            "b1",
            inserts=table(
                [
                    {"__ref": "ok1", "ext_id": None, "name": "Fine", "credit": "1"},
                    {"__ref": "too_long", "ext_id": None, "name": "x" * 11, "credit": None},
                    {"__ref": "dup", "ext_id": "TAKEN", "name": "Dup", "credit": None},
                    {"__ref": "check", "ext_id": None, "name": "Neg", "credit": "-1"},
                    {"__ref": "null", "ext_id": None, "name": None, "credit": None},
                    {"__ref": "nan", "ext_id": None, "name": "NaN", "credit": "abc"},
                    {"__ref": "ok2", "ext_id": None, "name": "Fine2", "credit": None},
                ]
            ),
        )
    )
    assert result.inserted == 2
    assert set(result.keys) == {"ok1", "ok2"}
    assert set(result.rejected) == {"too_long", "dup", "check", "null", "nan"}
    assert "longer than 10" in result.rejected["too_long"]  # refused before the database
    assert "1062" in result.rejected["dup"] and "Duplicate" in result.rejected["dup"]
    assert "4025" in result.rejected["check"]  # CONSTRAINT failed (MariaDB)
    assert "1048" in result.rejected["null"]
    assert "not a number" in result.rejected["nan"]
    assert db.rows("SELECT name FROM customers ORDER BY id") == [("Ann",), ("Fine",), ("Fine2",)]
    assert ready.applied_result("sync_a", "b1") == result


def test_values_are_stored_as_the_columns_hold_them(ready: MySQLConnector, db: Db) -> None:
    seen = datetime(2024, 5, 6, 9, 8, 7, 654321, tzinfo=UTC)
    ready.apply(
        batch(
            "b1",
            inserts=table(
                [
                    {
                        "__ref": "a",
                        "name": "Zoë 😀",
                        "credit": Decimal("1.005"),
                        "vip": True,
                        "since": date(2020, 1, 2),
                        "seen": seen,
                        "doc": '{"k": ["é", 1]}',
                    }
                ]
            ),
        )
    )
    (row,) = ready.fetch("customers", "id", [1])
    assert row == {
        "id": 1,
        "ext_id": None,
        "name": "Zoë 😀",
        "credit": Decimal("1.00"),
        "vip": True,
        "since": date(2020, 1, 2),
        "seen": seen,
        "doc": {"k": ["é", 1]},
    }


def test_unknown_column_fails_whole_batch(ready: MySQLConnector, db: Db) -> None:
    b = batch("b1", inserts=table([{"__ref": "a", "name": "Ann", "nope": 1}]))
    with pytest.raises(FatalError, match="column nope does not exist"):
        ready.apply(b)
    assert db.rows("SELECT count(*) FROM customers") == [(0,)]
    assert ready.applied_result("sync_a", "b1") is None


def test_apply_to_a_dropped_table_is_reported(ready: MySQLConnector, db: Db) -> None:
    from syncswim_lib.errors import ConfigError

    db.run("DROP TABLE customers")
    with pytest.raises(ConfigError, match="customers does not exist"):
        ready.apply(batch("b1", inserts=table([{"__ref": "a", "name": "Ann"}])))


def test_batch_marked_but_unfinished_is_retriable(ready: MySQLConnector, db: Db) -> None:
    # what a concurrent apply of the same batch looks like once its marker is visible
    db.run("INSERT INTO _syncswim_applied (batch_id, origin) VALUES ('b1', 'sync_a')")
    with pytest.raises(RetriableError, match="being applied"):
        ready.apply(batch("b1", inserts=table([{"__ref": "a", "name": "Ann"}])))
    assert db.rows("SELECT count(*) FROM customers") == [(0,)]


def test_lock_timeout_rolls_back_the_batch_and_is_retriable(
    ready: MySQLConnector, db: Db, mysql_dsn: str
) -> None:
    db.run("INSERT INTO customers (id, name) VALUES (1, 'Ann'), (2, 'Bob')")
    db.run("SET GLOBAL innodb_lock_wait_timeout = 1")
    try:
        writer = MySQLConnector(mysql_dsn, "shop_db")  # a new session gets the short timeout
        db.run("BEGIN", "SELECT * FROM customers WHERE id = 2 FOR UPDATE")
        b = batch(
            "b1",
            updates=table(
                [
                    {"__ref": "u1", "id": 1, "name": "Ann2"},
                    {"__ref": "u2", "id": 2, "name": "Bob2"},
                ]
            ),
        )
        with pytest.raises(RetriableError, match="1205"):
            writer.apply(b)
        db.run("ROLLBACK")
        assert db.rows("SELECT name FROM customers ORDER BY id") == [("Ann",), ("Bob",)]
        assert writer.applied_result("sync_a", "b1") is None
        assert writer.apply(b).updated == 2
        writer.close()
    finally:
        db.run("SET GLOBAL innodb_lock_wait_timeout = 50")


def test_compare_and_set_finds_a_row_as_the_key_s_collation_does(
    ready: MySQLConnector, db: Db
) -> None:
    """ext_id compares case- and trailing-space-insensitively (utf8mb4_general_ci): the
    row a key finds for the UPDATE is the row compared, and the one reported."""
    db.run("ALTER TABLE customers MODIFY ext_id varchar(20) COLLATE utf8mb4_general_ci NULL")
    db.run("INSERT INTO customers (id, ext_id, name) VALUES (7, 'CUST-1', 'Old')")
    refs = pa.array(["u"])
    updates = pa.table({"__ref": refs, "ext_id": ["cust-1 "], "name": ["New"]})
    expected = pa.table(
        {"__ref": refs, "__check": pa.array([["name"]], pa.list_(pa.string())), "name": ["Old"]}
    )
    b = ApplyBatch(
        "b1",
        "sync_a",
        "customers",
        ("ext_id",),
        empty(name=pa.string()),
        updates,
        empty(ext_id=pa.string()),
        (),
        expected,
    )
    res = ready.apply(b)
    assert (res.updated, res.missing, res.stale) == (1, (), ())
    assert res.keys == {"u": {"id": 7, "ext_id": "CUST-1"}}
    assert db.rows("SELECT name FROM customers") == [("New",)]


def test_a_malformed_merge_batch_fails_whole(mysql_dsn: str) -> None:
    from tests.connectors.conformance_apply import check_a_malformed_merge_batch_fails_whole
    from tests.connectors.conformance_backends import MySQLBackend
    from tests.connectors.conformance_support import SYNC

    backend = MySQLBackend(mysql_dsn)
    connector = backend.connector()
    try:
        backend.run(backend.items_ddl())
        connector.setup(SYNC, [backend.table("items")])
        check_a_malformed_merge_batch_fails_whole(backend, connector)
    finally:
        connector.close()
        backend.close()
