"""The set-based apply (COPY into a staging table, one statement per group of rows):
rejected rows found by bisection, batches larger than a group, generated keys, `__set`
groups, rows sharing a key, and values that round-trip exactly through COPY."""

from __future__ import annotations

import dataclasses
import decimal
import json
import math
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pyarrow as pa
import pytest
from psycopg import sql

from syncswim_lib.connectors.base import ApplyBatch, ApplyResult
from syncswim_lib.connectors.postgres import PostgresConnector
from syncswim_lib.connectors.postgres import apply as apply_mod
from syncswim_lib.connectors.postgres.stage import TINY
from syncswim_lib.connectors.postgres.types import db_param
from syncswim_lib.values import ColumnInfo, TableInfo
from syncswim_lib.values.arrow import REF, rows_to_table
from syncswim_lib.values.coerce import coerce

pytestmark = pytest.mark.integration

SET = "__set"

DDL = """
CREATE TABLE customers (
    id serial PRIMARY KEY,
    code varchar(12) UNIQUE,
    name text NOT NULL,
    credit numeric(12,2) CHECK (credit >= 0),
    vip integer,
    prefs jsonb
);
CREATE TABLE orders (
    id serial PRIMARY KEY,
    customer integer REFERENCES customers (id) ON DELETE RESTRICT
)
"""


@pytest.fixture(autouse=True, params=["stage", "arrays"])
def source(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test twice: the rows COPYed into a staging table (values encoded by Arrow),
    and given to the statements as arrays (values encoded one by one, as for few rows)."""
    monkeypatch.setattr(apply_mod, "FEW_ROWS", 0 if request.param == "stage" else 10**6)
    return str(request.param)


@pytest.fixture
def db(pg_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute(DDL)
        yield conn


@pytest.fixture
def pg(pg_dsn: str, db: psycopg.Connection) -> Iterator[PostgresConnector]:
    connector = PostgresConnector(pg_dsn, "app_db")
    connector.setup("s1", ["customers"])
    yield connector
    connector.close()


def _batch(
    pg: PostgresConnector,
    batch_id: str,
    table: str = "public.customers",
    *,
    inserts: Sequence[dict[str, Any]] = (),
    updates: Sequence[dict[str, Any]] = (),
    deletes: Sequence[dict[str, Any]] = (),
    key: tuple[str, ...] = ("id",),
    insert_match: tuple[str, ...] = (),
) -> ApplyBatch:
    """A batch as the pipeline builds it: Arrow typed by the target's columns."""
    info = pg.describe(table)

    def columns(rows: Sequence[dict[str, Any]], default: Sequence[str]) -> list[Any]:
        names = set(default) | {n for r in rows for n in r if n not in (REF, SET)}
        return [c for c in info.columns if c.name in names]

    with_set = any(SET in r for r in updates)
    return ApplyBatch(
        batch_id=batch_id,
        origin="s1",
        table=table,
        key_columns=key,
        inserts=rows_to_table(inserts, columns(inserts, ())),
        updates=rows_to_table(updates, columns(updates, key), [SET] if with_set else []),
        deletes=rows_to_table(deletes, columns(deletes, key)),
        insert_match=insert_match,
    )


def _customers(db: psycopg.Connection) -> dict[int, tuple[Any, ...]]:
    rows = db.execute("SELECT id, code, name, credit, vip FROM customers").fetchall()
    return {r[0]: r[1:] for r in rows}


def _applied(pg: PostgresConnector, batch: ApplyBatch) -> ApplyResult:
    result = pg.apply(batch)
    assert pg.applied_result("s1", batch.batch_id) == result  # the marker holds the same
    return result


# --- rejected rows, found by bisection --------------------------------------------------


def test_one_rejected_row_among_many_leaves_the_others_written(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    inserts: list[dict[str, Any]] = [
        {REF: f"r{i}", "code": f"K{i}", "name": f"n{i}"} for i in range(1000)
    ]
    inserts[613]["credit"] = Decimal("-1")  # the target's CHECK refuses it
    result = _applied(pg, _batch(pg, "b1", inserts=inserts))
    assert (result.inserted, result.updated) == (999, 0)
    assert list(result.rejected) == ["r613"]
    assert "customers_credit_check" in result.rejected["r613"]
    assert "_syncswim" not in result.rejected["r613"]  # names the target, not the stage
    assert len(result.keys) == 999 and "r613" not in result.keys
    stored = {code: row_id for row_id, (code, *_) in _customers(db).items()}
    assert len(stored) == 999 and "K613" not in stored
    assert all(stored[f"K{i}"] == result.keys[f"r{i}"]["id"] for i in range(1000) if i != 613)


def test_a_value_the_server_cannot_read_is_rejected_with_its_column(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    """Values refused while copying into the staging table: an integer out of the
    column's range, JSON text that is no JSON."""
    inserts: list[dict[str, Any]] = [
        {REF: f"r{i}", "name": f"n{i}", "vip": i, "prefs": None} for i in range(300)
    ]
    inserts[10]["vip"] = 2**40
    batch = _batch(pg, "b1", inserts=inserts)
    # JSON as text from elsewhere than the pipeline (which writes JSON text it dumped)
    prefs = pa.array(['{"ok": 1}'] * 250 + ["{not json"] + ["[1]"] * 49, pa.string())
    at = batch.inserts.column_names.index("prefs")
    batch = dataclasses.replace(batch, inserts=batch.inserts.set_column(at, "prefs", prefs))
    result = _applied(pg, batch)
    assert result.inserted == 298 and set(result.rejected) == {"r10", "r250"}
    assert "out of range for type integer" in result.rejected["r10"]
    assert "column vip of public.customers" in result.rejected["r10"]
    assert "json" in result.rejected["r250"] and "column prefs" in result.rejected["r250"]
    assert "_syncswim" not in result.rejected["r10"] + result.rejected["r250"]
    assert db.execute("SELECT count(*) FROM customers").fetchone() == (298,)


def test_several_rejected_rows_in_every_part(db: psycopg.Connection, pg: PostgresConnector) -> None:
    db.execute(
        "INSERT INTO customers (code, name)"
        " SELECT 'C' || g, 'c' || g FROM generate_series(1, 400) g"
    )
    db.execute("INSERT INTO orders (customer) VALUES (7), (300)")  # 7 and 300 cannot go
    inserts: list[dict[str, Any]] = [
        {REF: f"i{i}", "code": f"N{i}", "name": "new"} for i in range(400)
    ]
    inserts[3]["code"] = "C350"  # exists already
    inserts[77]["code"] = "N76"  # the row before it in the batch takes it first
    inserts[78]["name"] = None  # NOT NULL
    inserts[399]["code"] = "X" * 13  # longer than varchar(12): refused before sending
    updates: list[dict[str, Any]] = [{REF: f"u{i}", "id": i, "vip": i} for i in range(101, 301)]
    updates[0]["vip"] = 2**33  # out of range for integer
    updates[50] |= {"credit": Decimal("-2")}  # CHECK
    updates[199]["id"] = 999  # no such row: missing, not rejected
    deletes: list[dict[str, Any]] = [{REF: f"d{i}", "id": i} for i in range(1, 101)]
    result = _applied(pg, _batch(pg, "b1", inserts=inserts, updates=updates, deletes=deletes))
    assert set(result.rejected) == {"i3", "i77", "i78", "i399", "u101", "u151", "d7"}
    assert "already exists" in result.rejected["i3"] and "C350" in result.rejected["i3"]
    assert "N76" in result.rejected["i77"]
    assert "not-null" in result.rejected["i78"]
    assert "longer than 12" in result.rejected["i399"]
    assert "orders" in result.rejected["d7"]  # the foreign key of orders
    assert (result.inserted, result.updated, result.deleted) == (396, 197, 99)
    assert result.missing == ("u300",)  # id 999
    rows = _customers(db)
    assert 7 in rows and 300 in rows and not any(i in rows for i in range(1, 101) if i != 7)
    assert rows[101][3] is None and rows[151][3] is None and rows[102][3] == 102
    assert sum(1 for r in rows.values() if r[1] == "new") == 396


def test_a_batch_larger_than_a_group(
    db: psycopg.Connection, pg: PostgresConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apply_mod, "GROUP_ROWS", 64)
    n = 1000
    inserts: list[dict[str, Any]] = [
        {REF: f"r{i}", "code": f"K{i}", "name": f"n{i}"} for i in range(n)
    ]
    for bad in (0, 63, 64, 500, 999):  # group edges and the middle
        inserts[bad]["credit"] = Decimal("-1")
    first = _applied(pg, _batch(pg, "b1", inserts=inserts))
    assert first.inserted == n - 5 and set(first.rejected) == {
        f"r{i}" for i in (0, 63, 64, 500, 999)
    }
    ids = {ref: key["id"] for ref, key in first.keys.items()}
    kept = [i for i in range(1, n - 1) if i not in (63, 64, 500)]
    updates: list[dict[str, Any]] = [{REF: f"u{i}", "id": ids[f"r{i}"], "vip": i} for i in kept]
    updates[kept.index(700)]["credit"] = Decimal("-3")
    second = _applied(pg, _batch(pg, "b2", updates=updates))
    assert second.updated == len(updates) - 1 and list(second.rejected) == ["u700"]
    deletes: list[dict[str, Any]] = [
        {REF: f"d{i}", "id": ids[f"r{i}"]} for i in range(1, 400) if i not in (63, 64)
    ]
    third = _applied(pg, _batch(pg, "b3", deletes=deletes))
    assert third.deleted == len(deletes) and not third.rejected and not third.missing
    rows = _customers(db)
    assert len(rows) == n - 5 - len(deletes)
    assert all(rows[ids[f"r{i}"]][3] == (None if i == 700 else i) for i in kept if i >= 400)


def test_generated_keys_belong_to_their_rows_in_a_big_insert(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    """More rows than one statement takes, some with their own id (not generated): each
    ref gets the key of the row made of its values."""
    db.execute("SELECT setval('customers_id_seq', 100000)")
    n = apply_mod.GROUP_ROWS * 2 + 17
    inserts: list[dict[str, Any]] = [
        {REF: f"r{i}", "code": f"K{i}", "name": f"n{i}"} for i in range(n)
    ]
    for i in range(0, n, 97):
        inserts[i]["id"] = 1 + i  # given: kept, the others generated
    result = _applied(pg, _batch(pg, "b1", inserts=inserts))
    assert result.inserted == n and not result.rejected
    stored = {code: row_id for row_id, (code, *_) in _customers(db).items()}
    assert {ref: key["id"] for ref, key in result.keys.items()} == {
        f"r{i}": stored[f"K{i}"] for i in range(n)
    }
    assert all(result.keys[f"r{i}"]["id"] == 1 + i for i in range(0, n, 97))
    assert len({k["id"] for k in result.keys.values()}) == n


def test_a_trigger_that_skips_rows_rejects_those_rows_only(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    """A BEFORE trigger returning NULL writes nothing for its row: the returned keys no
    longer line up with the rows, so the rows are bisected and the skipped ones rejected."""
    db.execute(
        "CREATE FUNCTION skip() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.name = 'skip' THEN RETURN NULL; END IF; RETURN NEW; END $$"
    )
    db.execute(
        "CREATE TRIGGER skip BEFORE INSERT ON customers FOR EACH ROW EXECUTE FUNCTION skip()"
    )
    inserts: list[dict[str, Any]] = [
        {REF: f"r{i}", "code": f"K{i}", "name": "skip" if i in (5, 6, 90) else "ok"}
        for i in range(200)
    ]
    result = _applied(pg, _batch(pg, "b1", inserts=inserts))
    assert result.inserted == 197 and set(result.rejected) == {"r5", "r6", "r90"}
    assert "trigger" in result.rejected["r5"]
    stored = {code: row_id for row_id, (code, *_) in _customers(db).items()}
    assert len(stored) == 197
    assert all(
        result.keys[f"r{i}"]["id"] == stored[f"K{i}"] for i in range(200) if i not in (5, 6, 90)
    )


# --- __set groups, rows sharing a key ---------------------------------------------------


def test_updates_with_different_set_lists_and_repeated_keys(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    db.execute(
        "INSERT INTO customers (id, code, name, vip) SELECT g, 'C' || g, 'c' || g, g"
        " FROM generate_series(1, 300) g"
    )
    updates = []
    for i in range(1, 301):
        shape = i % 3
        row: dict[str, Any] = {REF: f"u{i}", "id": i, "code": f"X{i}", "name": f"x{i}", "vip": -i}
        row[SET] = [["name"], ["vip"], ["code", "vip"]][shape]
        updates.append(row)
    # the same rows again, later in the batch: they take effect after the first ones
    updates.append({REF: "again3", "id": 3, "code": None, "name": "third", "vip": 0, SET: ["name"]})
    updates.append({REF: "again4", "id": 4, "code": None, "name": "n", "vip": 44, SET: ["vip"]})
    updates.append({REF: "again4b", "id": 4, "code": None, "name": "n", "vip": 45, SET: ["vip"]})
    updates.append({REF: "none", "id": 5, "code": None, "name": None, "vip": None, SET: []})
    result = _applied(pg, _batch(pg, "b1", updates=updates))
    assert result.updated == 304 and not result.rejected and not result.missing
    rows = _customers(db)
    for i in range(6, 301):
        want = [(f"C{i}", f"x{i}", i), (f"C{i}", f"c{i}", -i), (f"X{i}", f"c{i}", -i)][i % 3]
        assert (rows[i][0], rows[i][1], rows[i][3]) == want, i
    assert (rows[3][0], rows[3][1], rows[3][3]) == ("C3", "third", 3)
    assert (rows[4][0], rows[4][1], rows[4][3]) == ("C4", "c4", 45)
    assert (rows[5][0], rows[5][1], rows[5][3]) == ("X5", "c5", -5)
    assert result.keys["again4b"] == {"id": 4} and result.keys["none"] == {"id": 5}


def test_a_repeated_delete_is_missing_the_second_time(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    db.execute("INSERT INTO customers (id, name) VALUES (1, 'a'), (2, 'b')")
    deletes: list[dict[str, Any]] = [
        {REF: "d1", "id": 1},
        {REF: "d1b", "id": 1},
        {REF: "d2", "id": 2},
    ]
    result = _applied(pg, _batch(pg, "b1", deletes=deletes))
    assert result.deleted == 2 and result.missing == ("d1b",)
    assert result.keys == {"d1": {"id": 1}, "d2": {"id": 2}}


def test_inserts_matched_by_external_id_in_one_batch(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    """Two inserts matching one existing row both update it, in order; the others are
    inserted (a NULL matches nothing)."""
    db.execute("INSERT INTO customers (code, name) VALUES ('A', 'old'), ('TAKEN', 'x')")
    inserts: list[dict[str, Any]] = [
        {REF: "a1", "code": "A", "name": "first"},
        {REF: "new", "code": "B", "name": "b"},
        {REF: "a2", "code": "A", "name": "second"},
        {REF: "nul", "code": None, "name": "no code"},
    ]
    result = _applied(pg, _batch(pg, "b1", inserts=inserts, insert_match=("code",)))
    assert (result.inserted, result.updated, result.rejected) == (2, 2, {})
    rows = {r[0]: r for r in _customers(db).values()}
    assert rows["A"][1] == "second" and rows["TAKEN"][1] == "x" and rows["B"][1] == "b"
    assert result.keys["a1"] == result.keys["a2"] == {"id": 1}
    assert db.execute("SELECT count(*) FROM customers WHERE code IS NULL").fetchone() == (1,)


def test_a_matched_insert_whose_update_is_refused_is_not_inserted(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    db.execute("INSERT INTO customers (code, name) VALUES ('TAKEN', 'x')")
    inserts: list[dict[str, Any]] = [
        {REF: "ok", "code": "C", "name": "c"},
        {REF: "bad", "code": "TAKEN", "name": "y", "credit": Decimal("-1")},
    ]
    result = _applied(pg, _batch(pg, "b1", inserts=inserts, insert_match=("code",)))
    assert (result.inserted, result.updated) == (1, 0)
    assert list(result.rejected) == ["bad"] and "credit_check" in result.rejected["bad"]
    assert {r[0]: r[1] for r in _customers(db).values()} == {"TAKEN": "x", "C": "c"}


def test_compare_and_set_with_a_rejected_row(db: psycopg.Connection, pg: PostgresConnector) -> None:
    db.execute(
        "INSERT INTO customers (id, name, vip) SELECT g, 'c' || g, g FROM generate_series(1, 50) g"
    )
    db.execute("UPDATE customers SET vip = 0 WHERE id = 20")  # changed since the plan
    updates: list[dict[str, Any]] = [
        {REF: f"u{i}", "id": i, "vip": 100 + i, "credit": None} for i in range(1, 51)
    ]
    updates[30]["credit"] = Decimal("-1")  # u31: refused by the CHECK
    batch = _batch(pg, "b1", updates=updates)
    info = pg.describe("public.customers")
    vip = [c for c in info.columns if c.name == "vip"]
    expected = rows_to_table([{REF: f"u{i}", "vip": i} for i in range(1, 51)], vip).append_column(
        "__check", pa.array([["vip"]] * 50, pa.list_(pa.string()))
    )
    result = _applied(pg, dataclasses.replace(batch, expected=expected))
    assert result.stale == ("u20",) and list(result.rejected) == ["u31"]
    assert result.updated == 48
    vips = {r[0]: r[1] for r in db.execute("SELECT id, vip FROM customers").fetchall()}
    assert vips[20] == 0 and vips[31] == 31 and vips[1] == 101 and vips[50] == 150


# --- exact values through COPY -----------------------------------------------------------

TYPES_DDL = """
CREATE TABLE {} (
    id int PRIMARY KEY,
    big numeric(38,18), free numeric, small smallint, large bigint,
    tz timestamptz, ts timestamp, ts3 timestamp(3), day date, t time, ttz timetz,
    j json, jb jsonb, raw bytea, s text, vc varchar(12), ch char(4),
    flag boolean, f8 double precision, f4 real, u uuid, span interval, arr int[], m mood
)
"""
TEXT = "tab\there\nnew\\line\r carriage \\N \\. é 😀 東京 \"quoted\" 'single' ,;|"
TYPED_ROWS: list[dict[str, Any]] = [
    {
        "id": 1,
        "big": Decimal("12345678901234567890.123456789012345678"),
        "free": Decimal("-0.000000000000000000000000000001234500"),
        "small": -32768,
        "large": 2**63 - 1,
        "tz": datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
        "ts": datetime(1999, 12, 31, 23, 59, 59, 123456, tzinfo=UTC),
        "ts3": datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        "day": date(2024, 2, 29),
        "t": "23:59:59.999999",
        "ttz": "01:02:03.5+05:30",
        "j": {"b": [1, 2.5, None, True], "a": 'é\t\\"\n', "n": 9_007_199_254_740_993},
        "jb": {"z": {"y": "ü\\"}, "a": [False, None], "f": 0.1},
        "raw": bytes(range(256)),
        "s": TEXT,
        "vc": "Zoë 東京\\\t\n",
        "ch": "ab",
        "flag": True,
        "f8": 5e-324,
        "f4": 1.5,
        "u": "6f1c3a52-8c1e-4c86-9b0e-3d6a3b1f2e10",
        "span": "1 day 02:03:04.5",
        "arr": "{1,NULL,3}",
        "m": "happy",
    },
    {
        "id": 2,
        "big": Decimal("-99999999999999999999.999999999999999999"),
        "free": Decimal("123456789012345678901234567890.000000000001"),
        "small": 32767,
        "large": -(2**63),
        "tz": datetime(2024, 3, 31, 1, 30, tzinfo=timezone(timedelta(hours=2))),
        "ts": datetime(2038, 1, 19, 3, 14, 8, 1, tzinfo=timezone(timedelta(hours=-5))),
        "ts3": datetime(2000, 1, 1, tzinfo=UTC),
        "day": date(1, 1, 1),
        "t": "00:00:00",
        "ttz": "23:59:59-11",
        "j": [],
        "jb": {},
        "raw": b"",
        "s": "",
        "vc": "",
        "ch": "",
        "flag": False,
        "f8": math.inf,
        "f4": -math.inf,
        "u": "00000000-0000-0000-0000-000000000000",
        "span": "-3 years",
        "arr": "{}",
        "m": "sad",
    },
    {"id": 3, "f8": -math.inf, "f4": math.nan, "j": "text", "jb": 123456789012345678901234567890},
    {"id": 4, "f8": math.nan, "f4": 0.1, "j": 0.1, "jb": [1, "two", {"3": None}]},
    {"id": 5, "f8": -0.0, "f4": -0.0, "big": Decimal("0E-18"), "free": Decimal("0")},
    {"id": 6, "f8": 1.7976931348623157e308, "f4": 3.4028234663852886e38, "free": Decimal("1E+30")},
    {"id": 7, "f8": 0.1 + 0.2, "big": Decimal("-0.000000000000000001")},
    {"id": 8},  # NULL in every column
]


def _typed_table(db: psycopg.Connection, name: str) -> None:
    db.execute(sql.SQL(TYPES_DDL).format(sql.Identifier(name)))


def _reference_rows(db: psycopg.Connection, info: TableInfo, table: pa.Table, name: str) -> None:
    """The same rows written one parameterised INSERT at a time, each value as the row by
    row apply sent it (`db_param(coerce(...))`): what the COPY path must store."""
    for row in table.to_pylist():
        cols = [c for c in info.columns if c.name in row]
        db.execute(
            sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                sql.Identifier(name),
                sql.SQL(", ").join(sql.Identifier(c.name) for c in cols),
                sql.SQL(", ").join(sql.Placeholder() * len(cols)),
            ),
            [_param(row[c.name], c) for c in cols],
        )


def _param(value: Any, column: ColumnInfo) -> Any:
    # coerce's default decimal context holds 28 digits: too few for numeric(38,18)
    with decimal.localcontext(prec=decimal.MAX_PREC):
        return db_param(coerce(value, column), column)


def _texts(db: psycopg.Connection, name: str) -> list[str]:
    query = sql.SQL("SELECT t::text FROM {} AS t ORDER BY id").format(sql.Identifier(name))
    return [r[0] for r in db.execute(query).fetchall()]


@pytest.fixture
def typed(pg_dsn: str, db: psycopg.Connection) -> Iterator[PostgresConnector]:
    db.execute("CREATE TYPE mood AS ENUM ('happy', 'sad')")
    for name in ("typed", "reference"):
        _typed_table(db, name)
    connector = PostgresConnector(pg_dsn, "app_db")
    connector.setup("s1", ["typed"])
    yield connector
    connector.close()


def _as_text_table(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> pa.Table:
    """Every value as a string (the generic path: each value coerced on its own)."""

    def text(value: Any, name: str) -> str | None:
        if value is None:
            return None
        if name in ("j", "jb"):
            return json.dumps(value)
        if isinstance(value, datetime):
            return value.isoformat()
        return str(value)

    data = {REF: pa.array([f"r{r['id']}" for r in rows], pa.string())}
    for n in names:
        data[n] = pa.array([text(r.get(n), n) for r in rows], pa.string())
    return pa.table(data)


@pytest.fixture(params=[1, 3], ids=["one by one", "by arrow"])
def rows(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """TYPED_ROWS, or three copies of them: more values than stage.TINY, whose text Arrow
    computes where it is exact."""
    copies = int(request.param)
    out = [{**r, "id": r["id"] + 100 * k} for k in range(copies) for r in TYPED_ROWS]
    assert (len(out) > TINY) == (copies > 1)
    return out


def test_every_type_family_round_trips_through_copy(
    db: psycopg.Connection, typed: PostgresConnector, rows: list[dict[str, Any]]
) -> None:
    info = typed.describe("public.typed")
    inserts = rows_to_table([{REF: f"r{r['id']}", **r} for r in rows], info.columns)
    empty = rows_to_table([], [c for c in info.columns if c.name == "id"])
    result = typed.apply(ApplyBatch("t1", "s1", "public.typed", ("id",), inserts, empty, empty))
    assert result.inserted == len(rows) and not result.rejected
    _reference_rows(db, info, inserts, "reference")
    assert _texts(db, "typed") == _texts(db, "reference")
    # and as canonical values: full precision, microseconds, the instant of other zones
    got = {r["id"]: r for r in typed.fetch("public.typed", "id", [1, 2, 5, 7])}
    assert got[1]["big"] == rows[0]["big"] and got[1]["free"] == rows[0]["free"]
    assert got[1]["tz"] == rows[0]["tz"] and got[2]["tz"] == rows[1]["tz"]
    assert got[2]["ts"] == rows[1]["ts"]
    assert got[1]["ts3"] == datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert got[1]["raw"] == bytes(range(256)) and got[1]["s"] == TEXT
    assert got[1]["j"] == rows[0]["j"] and got[1]["jb"] == rows[0]["jb"]
    assert got[1]["ch"] == "ab  " and got[1]["vc"] == rows[0]["vc"]
    assert got[7]["big"] == Decimal("-0.000000000000000001")
    assert math.copysign(1, got[5]["f8"]) == -1.0
    nan = db.execute("SELECT f8 = 'NaN', f4 = 0.1::real FROM typed WHERE id = 4").fetchone()
    assert nan == (True, True)


def test_updates_round_trip_every_type_family(
    db: psycopg.Connection, typed: PostgresConnector, rows: list[dict[str, Any]]
) -> None:
    """The same values written by updates of rows that held NULLs, and given as text
    (each value coerced on its own rather than taken from its Arrow column)."""
    info = typed.describe("public.typed")
    ids = [r["id"] for r in rows]
    db.execute("INSERT INTO typed (id) SELECT unnest(%s::int[])", (ids,))
    names = [c.name for c in info.columns if c.name != "id"]
    updates = rows_to_table([{REF: f"r{r['id']}", **r} for r in rows], info.columns)
    empty = rows_to_table([], [c for c in info.columns if c.name == "id"])
    result = typed.apply(ApplyBatch("t1", "s1", "public.typed", ("id",), empty, updates, empty))
    assert result.updated == len(rows) and not result.rejected
    _reference_rows(db, info, updates, "reference")
    assert _texts(db, "typed") == _texts(db, "reference")

    # as text: every family goes through coerce; bytea is left out (text is not bytes)
    db.execute("TRUNCATE typed, reference")
    text_names = [n for n in names if n != "raw"]
    as_text = _as_text_table(rows, ["id", *text_names])
    result = typed.apply(ApplyBatch("t2", "s1", "public.typed", ("id",), as_text, empty, empty))
    assert result.inserted == len(rows) and not result.rejected, result.rejected
    _reference_rows(db, info, as_text, "reference")
    assert _texts(db, "typed") == _texts(db, "reference")


def test_text_with_a_nul_is_rejected_before_it_is_sent(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    inserts: list[dict[str, Any]] = [{REF: "ok", "name": "fine"}, {REF: "nul", "name": "a\x00b"}]
    result = _applied(pg, _batch(pg, "b1", inserts=inserts))
    assert result.inserted == 1 and list(result.rejected) == ["nul"]
    assert "NUL" in result.rejected["nul"]


def test_a_batch_applied_again_after_a_failed_row_writes_once(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    """The first attempt (no savepoints) is rolled back when a row fails: capture sees the
    writes of the second attempt only."""
    db.execute("INSERT INTO customers (id, name) VALUES (1, 'a'), (2, 'b')")
    since = pg.current_position("s1")
    inserts: list[dict[str, Any]] = [{REF: f"i{i}", "name": f"n{i}"} for i in range(5)]
    inserts[2]["credit"] = Decimal("-1")
    batch = _batch(
        pg,
        "b1",
        inserts=inserts,
        updates=[{REF: "u1", "id": 1, "name": "A"}],
        deletes=[{REF: "d2", "id": 2}],
    )
    result = _applied(pg, batch)
    assert (result.inserted, result.updated, result.deleted) == (4, 1, 1)
    assert list(result.rejected) == ["i2"]
    changes = pg.capture("s1", ["public.customers"], since, 100).changes
    ops = sorted(c.op.value for c in changes)
    assert ops == ["delete", "insert", "insert", "insert", "insert", "update"]
    assert {c.origin for c in changes} == {"s1"}
