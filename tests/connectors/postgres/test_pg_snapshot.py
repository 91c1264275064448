"""Snapshot (ordered, typed, streamed Arrow batches) and fetch."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg
import pyarrow as pa
import pytest

from syncswim_lib.connectors.postgres import PostgresConnector
from syncswim_lib.errors import ConfigError

pytestmark = pytest.mark.integration

DDL = """
CREATE TABLE things (
    id bigint PRIMARY KEY,
    name text,
    code varchar(8),
    price numeric(12,3),
    ratio numeric,
    score double precision,
    ok boolean,
    day date,
    at timestamptz,
    local_at timestamp,
    doc jsonb,
    blob bytea,
    uid uuid,
    tm time
)
"""

NAMES = ["b", "B", "a", "é", "Z", None, "ab", "Ä", "z", "東京", "", "aa"]


@pytest.fixture
def db(pg_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(DDL)
        yield conn


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[PostgresConnector]:
    connector = PostgresConnector(pg_dsn, "app_db")
    yield connector
    connector.close()


def _fill(db: psycopg.Connection) -> None:
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO things (id, name, code, price, ratio, score, ok, day, at, local_at, doc,"
            " blob, uid, tm) VALUES (%s, %s, %s, 1.5, 0.000000001, 2.5, true, '2024-01-31',"
            " '2024-01-31 23:00:00-05', '2024-01-31 23:00:00', '{\"z\": 1, \"a\": \"é\"}',"
            " '\\x00ff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '12:34:56.5')",
            [(i, name, f"c{i % 3}") for i, name in enumerate(NAMES)],
        )


def test_snapshot_orders_like_python_and_streams(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    _fill(db)
    batches = list(pg.snapshot("public.things", ["name", "id"], ["name"], 5))
    assert [b.num_rows for b in batches] == [5, 5, 2]
    names = [n for b in batches for n in b.column("name").to_pylist()]
    assert names == [None, *sorted(n for n in NAMES if n is not None)]
    # several columns: code first (NULLs none here), then id
    rows = pa.Table.from_batches(list(pg.snapshot("things", ["code", "id"], ["code", "id"], 100)))
    pairs = list(zip(rows.column("code").to_pylist(), rows.column("id").to_pylist(), strict=True))
    assert pairs == sorted(pairs)


def test_snapshot_is_one_consistent_read(db: psycopg.Connection, pg: PostgresConnector) -> None:
    _fill(db)
    stream = pg.snapshot("things", ["id"], ["id"], 4)
    first = next(stream)
    db.execute("INSERT INTO things (id) VALUES (100)")  # after the snapshot began
    db.execute("DELETE FROM things WHERE id = 11")
    rest = [i for b in stream for i in b.column("id").to_pylist()]
    assert first.column("id").to_pylist() + rest == list(range(len(NAMES)))


def test_snapshot_arrow_types_and_values(db: psycopg.Connection, pg: PostgresConnector) -> None:
    _fill(db)
    cols = [
        "id",
        "code",
        "price",
        "ratio",
        "score",
        "ok",
        "day",
        "at",
        "local_at",
        "doc",
        "blob",
        "uid",
        "tm",
    ]
    (batch,) = list(pg.snapshot("things", cols, ["id"], 1000))
    assert batch.schema.field("id").nullable is False
    types = {f.name: f.type for f in batch.schema}
    assert types == {
        "id": pa.int64(),
        "code": pa.string(),
        "price": pa.decimal128(12, 3),
        "ratio": pa.string(),  # unbounded numeric: exact text
        "score": pa.float64(),
        "ok": pa.bool_(),
        "day": pa.date32(),
        "at": pa.timestamp("us", tz="UTC"),
        "local_at": pa.timestamp("us", tz="UTC"),
        "doc": pa.string(),
        "blob": pa.binary(),
        "uid": pa.string(),
        "tm": pa.string(),
    }
    row = batch.slice(0, 1).to_pylist()[0]
    assert row == {
        "id": 0,
        "code": "c0",
        "price": Decimal("1.500"),
        "ratio": "0.000000001",
        "score": 2.5,
        "ok": True,
        "day": date(2024, 1, 31),
        "at": datetime(2024, 2, 1, 4, 0, tzinfo=UTC),
        "local_at": datetime(2024, 1, 31, 23, 0, tzinfo=UTC),
        "doc": '{"a":"é","z":1}',
        "blob": b"\x00\xff",
        "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "tm": "12:34:56.5",
    }


def test_snapshot_of_an_empty_table_and_bad_requests(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    assert list(pg.snapshot("things", ["id"], ["id"], 10)) == []
    with pytest.raises(ConfigError, match=r"column nope does not exist in table public\.things"):
        list(pg.snapshot("things", ["nope"], ["id"], 10))
    with pytest.raises(ConfigError, match="JSON column doc"):
        list(pg.snapshot("things", ["id"], ["doc"], 10))
    with pytest.raises(ConfigError, match="batch_rows"):
        list(pg.snapshot("things", ["id"], ["id"], 0))


def test_fetch_matches_values_of_the_column_type(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    _fill(db)
    got = pg.fetch("things", "id", [3, "5", None, 999])
    assert sorted(r["id"] for r in got) == [3, 5]
    row = next(r for r in got if r["id"] == 3)
    assert row["doc"] == {"z": 1, "a": "é"}
    assert row["at"] == datetime(2024, 2, 1, 4, 0, tzinfo=UTC)
    assert row["uid"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" and row["tm"] == "12:34:56.5"
    assert len(pg.fetch("things", "uid", ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"])) == len(NAMES)
    assert [r["id"] for r in pg.fetch("things", "name", ["東京"])] == [9]
    assert pg.fetch("things", "id", []) == []
    assert pg.fetch("things", "id", ["not a number"]) == []


def test_fetch_by_a_column_without_equality_is_fatal(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    from syncswim_lib.errors import FatalError

    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body json)")
    with pytest.raises(FatalError, match="operator does not exist"):
        pg.fetch("docs", "body", [{"a": 1}])
