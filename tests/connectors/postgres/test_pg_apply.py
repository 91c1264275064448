"""Apply: one marked transaction per batch, idempotent replay, upsert by match, rejected rows."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from syncswim_lib.connectors.base import ApplyBatch
from syncswim_lib.connectors.postgres import PostgresConnector
from syncswim_lib.errors import ConfigError, FatalError, RetriableError

pytestmark = pytest.mark.integration

DDL = """
CREATE TABLE customers (
    id serial PRIMARY KEY,
    code varchar(10) UNIQUE,
    name text NOT NULL,
    credit numeric(12,2) CHECK (credit >= 0),
    vip integer,
    prefs jsonb,
    raw json,
    seen timestamp
)
"""


@pytest.fixture
def db(pg_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = on")
        conn.execute(DDL)
        yield conn


@pytest.fixture
def pg(pg_dsn: str, db: psycopg.Connection) -> Iterator[PostgresConnector]:
    connector = PostgresConnector(pg_dsn, "app_db")
    connector.setup("s1", ["customers"])
    yield connector
    connector.close()


def _table(rows: list[dict[str, Any]], **empty: pa.DataType) -> pa.Table:
    if rows:
        return pa.Table.from_pylist(rows)
    return pa.table(
        {"__ref": pa.array([], pa.string())} | {k: pa.array([], t) for k, t in empty.items()}
    )


def batch(
    batch_id: str,
    inserts: Sequence[dict[str, Any]] = (),
    updates: Sequence[dict[str, Any]] = (),
    deletes: Sequence[dict[str, Any]] = (),
    insert_match: tuple[str, ...] = (),
    key: tuple[str, ...] = ("id",),
    origin: str = "s1",
) -> ApplyBatch:
    return ApplyBatch(
        batch_id=batch_id,
        origin=origin,
        table="public.customers",
        key_columns=key,
        inserts=_table(list(inserts), name=pa.string()),
        updates=_table(list(updates), id=pa.int64()),
        deletes=_table(list(deletes), id=pa.int64()),
        insert_match=insert_match,
    )


def rows(db: psycopg.Connection) -> list[tuple[Any, ...]]:
    return db.execute("SELECT id, code, name, credit FROM customers ORDER BY id").fetchall()


def test_inserts_return_generated_keys_then_update_and_delete(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    first = pg.apply(
        batch(
            "b1",
            inserts=[
                {"__ref": "a", "name": "Ann", "credit": Decimal("10.50")},
                {"__ref": "b", "name": "Bob", "credit": None},
            ],
        )
    )
    assert first.inserted == 2 and first.keys == {"a": {"id": 1}, "b": {"id": 2}}
    second = pg.apply(
        batch(
            "b2",
            updates=[
                {"__ref": "u1", "id": 1, "name": "Anne"},
                {"__ref": "u9", "id": 9, "name": "?"},
            ],
            deletes=[{"__ref": "d2", "id": 2}, {"__ref": "d7", "id": 7}],
        )
    )
    assert (second.updated, second.deleted) == (1, 1)
    assert set(second.missing) == {"u9", "d7"}
    assert second.keys["u1"] == {"id": 1}
    assert rows(db) == [(1, None, "Anne", Decimal("10.50"))]
    assert pg.applied_result("s1", "b2") == second


def test_replaying_a_batch_id_writes_once(db: psycopg.Connection, pg: PostgresConnector) -> None:
    assert pg.applied_result("s1", "b1") is None
    b = batch("b1", inserts=[{"__ref": "a", "name": "Ann"}])
    first = pg.apply(b)
    again = pg.apply(b)
    assert again == first
    assert rows(db) == [(1, None, "Ann", None)]
    assert pg.applied_result("s1", "b1") == first
    assert pg.applied_result("other_sync", "b1") is None
    # the replay left nothing for capture either: one insert, tagged as ours
    changes = pg.capture("s1", ["customers"], None, 100).changes
    assert [(c.op.value, c.origin) for c in changes] == [("insert", "s1")]


def test_a_failed_transaction_records_nothing(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    """Crash-safety building block: no marker without the writes, so a retry redoes it all."""
    db.execute(
        "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.name = 'deadlock' THEN RAISE EXCEPTION 'simulated' USING ERRCODE = '40P01'; "
        "END IF; RETURN NEW; END $$"
    )
    db.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON customers FOR EACH ROW EXECUTE FUNCTION boom()"
    )
    b = batch("b1", inserts=[{"__ref": "a", "name": "Ann"}, {"__ref": "b", "name": "deadlock"}])
    with pytest.raises(RetriableError, match="simulated"):
        pg.apply(b)
    assert rows(db) == []
    assert pg.applied_result("s1", "b1") is None
    db.execute("DROP TRIGGER boom ON customers")
    assert pg.apply(b).inserted == 2


def test_insert_match_updates_the_existing_row(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    db.execute("INSERT INTO customers (code, name) VALUES ('C1', 'old')")
    result = pg.apply(
        batch(
            "b1",
            inserts=[
                {"__ref": "x", "code": "C1", "name": "new"},
                {"__ref": "y", "code": "C2", "name": "two"},
            ],
            insert_match=("code",),
        )
    )
    assert (result.inserted, result.updated) == (1, 1)
    assert result.keys == {"x": {"id": 1}, "y": {"id": 2}}
    assert rows(db) == [(1, "C1", "new", None), (2, "C2", "two", None)]
    # the same rows again under a new batch id: nothing is duplicated
    again = pg.apply(
        batch("b2", inserts=[{"__ref": "y", "code": "C2", "name": "two"}], insert_match=("code",))
    )
    assert (again.inserted, again.updated) == (0, 1) and len(rows(db)) == 2


def test_rejected_rows_do_not_fail_the_batch(db: psycopg.Connection, pg: PostgresConnector) -> None:
    db.execute("INSERT INTO customers (code, name) VALUES ('TAKEN', 'x'), ('OTHER', 'y')")
    result = pg.apply(
        batch(
            "b1",
            inserts=[
                {"__ref": "ok", "code": "A", "name": "fine", "credit": "1", "vip": None},
                {"__ref": "dup", "code": "TAKEN", "name": "dup", "credit": None, "vip": None},
                {"__ref": "null", "code": "B", "name": None, "credit": None, "vip": None},
                {"__ref": "check", "code": "C", "name": "neg", "credit": "-5", "vip": None},
                {"__ref": "long", "code": "X" * 11, "name": "long", "credit": None, "vip": None},
                {"__ref": "type", "code": "D", "name": "bad int", "credit": None, "vip": "lots"},
            ],
            updates=[{"__ref": "u", "id": 2, "code": "TAKEN"}],
        )
    )
    assert result.inserted == 1 and result.updated == 0
    assert set(result.rejected) == {"dup", "null", "check", "long", "type", "u"}
    assert "unique" in result.rejected["dup"] and "TAKEN" in result.rejected["dup"]
    assert "not-null" in result.rejected["null"]
    assert "check constraint" in result.rejected["check"]
    assert "vip" in result.rejected["type"]  # refused before reaching the server
    assert [r[1] for r in rows(db)] == ["TAKEN", "OTHER", "A"]
    assert pg.applied_result("s1", "b1") == result


def test_one_bad_row_in_a_large_group(db: psycopg.Connection, pg: PostgresConnector) -> None:
    inserts = [{"__ref": f"r{i}", "code": f"K{i}", "name": "n"} for i in range(450)]
    inserts[300]["code"] = "K1"  # duplicate of row 1: fails the second group's savepoint
    result = pg.apply(batch("b1", inserts=inserts))
    assert result.inserted == 449 and list(result.rejected) == ["r300"]
    assert len(result.keys) == 449


def test_values_are_converted_to_the_column_types(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    at = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    pg.apply(
        batch(
            "b1",
            inserts=[
                {
                    "__ref": "a",
                    "name": 42,
                    "credit": 1.005,
                    "vip": True,
                    "prefs": '{"x": [1]}',
                    "raw": '["a"]',
                    "seen": at,
                },
            ],
        )
    )
    row = db.execute("SELECT name, credit, vip, prefs, raw, seen FROM customers").fetchone()
    assert row == ("42", Decimal("1.00"), 1, {"x": [1]}, ["a"], at.replace(tzinfo=None))
    (change,) = pg.capture("s1", ["customers"], None, 10).changes
    assert change.after is not None and change.after["seen"] == at  # read back as UTC


def test_batch_naming_an_unknown_column_is_a_config_error(pg: PostgresConnector) -> None:
    with pytest.raises(ConfigError, match="nope"):
        pg.apply(batch("b1", inserts=[{"__ref": "a", "nope": 1}]))
    assert pg.applied_result("s1", "b1") is None


def test_apply_without_setup_is_fatal(pg_dsn: str, db: psycopg.Connection) -> None:
    connector = PostgresConnector(pg_dsn, "app_db")
    try:
        with pytest.raises(FatalError, match="setup"):
            connector.apply(batch("b1", inserts=[{"__ref": "a", "name": "x"}]))
        assert connector.applied_result("s1", "b1") is None
    finally:
        connector.close()


def test_result_keys_keep_their_types_through_the_marker_row(pg_dsn: str) -> None:
    from datetime import date

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE odd (day date, amount numeric(6,2), at timestamptz, tag bytea, n int,"
            " PRIMARY KEY (day, amount, at, tag))"
        )
    connector = PostgresConnector(pg_dsn, "app_db")
    try:
        connector.setup("s1", ["odd"])
        at = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
        row = {
            "__ref": "a",
            "day": date(2024, 1, 2),
            "amount": Decimal("1.50"),
            "at": at,
            "tag": b"\x01",
            "n": 1,
        }
        empty = pa.table({"__ref": pa.array([], pa.string())})
        b = ApplyBatch(
            "b1", "s1", "public.odd", ("day",), pa.Table.from_pylist([row]), empty, empty
        )
        result = connector.apply(b)
        key = {"day": date(2024, 1, 2), "amount": Decimal("1.50"), "at": at, "tag": b"\x01"}
        assert result.keys == {"a": key}
        assert connector.applied_result("s1", "b1") == result
    finally:
        connector.close()


def test_updates_without_key_columns_are_a_config_error(pg: PostgresConnector) -> None:
    with pytest.raises(ConfigError, match="need key_columns"):
        pg.apply(batch("b1", updates=[{"__ref": "u", "id": 1, "name": "x"}], key=()))
    with pytest.raises(ConfigError, match="no __ref"):
        pg.apply(
            ApplyBatch(
                "b1",
                "s1",
                "public.customers",
                ("id",),
                pa.table({"name": ["x"]}),
                _table([]),
                _table([]),
            )
        )


def test_describe_lists_unique_column_sets_but_no_partial_or_expression_index(
    pg_dsn: str,
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE u (id int PRIMARY KEY, a text, b text, c int, d int)")
        conn.execute("CREATE UNIQUE INDEX u_a ON u (a) WHERE c > 0")  # unique where c > 0 only
        conn.execute("CREATE UNIQUE INDEX u_lower ON u (lower(b))")
        conn.execute("CREATE UNIQUE INDEX u_cd ON u (c) INCLUDE (d)")  # d is carried, not keyed
        conn.execute("ALTER TABLE u ADD CONSTRAINT u_bc UNIQUE (b, c)")
        conn.execute("CREATE INDEX u_d ON u (d)")
    connector = PostgresConnector(pg_dsn, "app_db")
    try:
        assert connector.describe("u").unique == (("id",), ("b", "c"), ("c",))
    finally:
        connector.close()


def test_a_key_the_server_cannot_compare_is_rejected_alone(pg_dsn: str) -> None:
    """Compare-and-set locks by key in one query; a key that query cannot use (text that
    is no uuid) is retried alone and rejected, the other rows are written."""
    good = "6f1c3a52-8c1e-4c86-9b0e-3d6a3b1f2e10"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE tokens (id uuid PRIMARY KEY, name text)")
        conn.execute("INSERT INTO tokens VALUES (%s, 'old')", (good,))
    connector = PostgresConnector(pg_dsn, "app_db")
    try:
        connector.setup("s1", ["tokens"])
        refs = pa.array(["ok", "bad"])
        updates = pa.table(
            {"__ref": refs, "id": pa.array([good, "not-a-uuid"]), "name": ["new", "new"]}
        )
        expected = pa.table(
            {
                "__ref": refs,
                "__check": pa.array([["name"], ["name"]], pa.list_(pa.string())),
                "name": ["old", "old"],
            }
        )
        empty = pa.table({"__ref": pa.array([], pa.string()), "id": pa.array([], pa.string())})
        res = connector.apply(
            ApplyBatch("b1", "s1", "public.tokens", ("id",), empty, updates, empty, (), expected)
        )
        assert res.updated == 1 and res.keys == {"ok": {"id": good}}
        assert list(res.rejected) == ["bad"] and "uuid" in res.rejected["bad"]
        assert (res.missing, res.stale) == ((), ())
    finally:
        connector.close()


def test_marker_json_keeps_stale_refs_and_reads_markers_written_before_them() -> None:
    from syncswim_lib.connectors.base import ApplyResult
    from syncswim_lib.connectors.postgres.marker import result_from_json, result_to_json

    result = ApplyResult("b1", {"u": {"id": 1}}, 0, 1, 0, ("m",), {"r": "no"}, ("s1", "s2"))
    assert result_from_json(result_to_json(result)) == result
    old = result_to_json(result)
    del old["stale"]
    assert result_from_json(old).stale == ()


def test_a_malformed_merge_batch_fails_whole(pg_dsn: str) -> None:
    from tests.connectors.conformance_apply import check_a_malformed_merge_batch_fails_whole
    from tests.connectors.conformance_backends import PostgresBackend
    from tests.connectors.conformance_support import SYNC

    backend = PostgresBackend(pg_dsn)
    connector = backend.connector()
    try:
        backend.run(backend.items_ddl())
        connector.setup(SYNC, [backend.table("items")])
        check_a_malformed_merge_batch_fails_whole(backend, connector)
    finally:
        connector.close()
        backend.close()
