"""Inserts through LOAD DATA LOCAL from memory into a staging table, then one INSERT ...
SELECT, on the private MariaDB: values of every type family round-trip exactly (and as the
multi-row statements write them), generated keys, a refused record found by bisection,
the batch marker's replay, capture tagging, and the fallbacks (server refusing LOCAL, a
value the file cannot spell, a user without CREATE TEMPORARY TABLES).

Statements are counted to show which path wrote the rows."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pymysql
import pymysql.cursors
import pytest

from syncswim_lib.connectors.base import ApplyBatch
from syncswim_lib.connectors.mysql import MySQLConnector, bulk
from syncswim_lib.connectors.mysql.infile import InfileConnection, NotLoadable, field_function
from syncswim_lib.envelope import Op

if TYPE_CHECKING:
    from conftest import Db

pytestmark = pytest.mark.integration

SYNC = "sync_a"
ALL = """
CREATE TABLE every (
  id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
  ext varchar(20) NULL UNIQUE,
  big bigint NULL,
  ubig bigint unsigned NULL,
  small tinyint NULL,
  flag tinyint(1) NULL,
  bits bit(10) NULL,
  yr year NULL,
  price decimal(12,2) NULL,
  wide decimal(65,30) NULL,
  ratio double NULL,
  name varchar(200) NULL,
  body text NULL,
  code char(4) NULL,
  color enum('red','green','blue') NULL,
  born date NULL,
  seen datetime(6) NULL,
  stamp timestamp(6) NULL,
  at_time time(6) NULL,
  span time NULL,
  doc json NULL,
  raw varbinary(300) NULL,
  fixed binary(4) NULL,
  CONSTRAINT price_not_negative CHECK (price IS NULL OR price >= 0)
) ENGINE=InnoDB
"""
TYPES: dict[str, pa.DataType] = {
    "__ref": pa.string(),
    "ext": pa.string(),
    "big": pa.int64(),
    "ubig": pa.uint64(),
    "small": pa.int64(),
    "flag": pa.bool_(),
    "bits": pa.int64(),
    "yr": pa.int64(),
    "price": pa.decimal128(12, 2),
    "wide": pa.decimal256(65, 30),
    "ratio": pa.float64(),
    "name": pa.string(),
    "body": pa.string(),
    "code": pa.string(),
    "color": pa.string(),
    "born": pa.date32(),
    "seen": pa.timestamp("us", tz="UTC"),
    "stamp": pa.timestamp("us", tz="UTC"),
    "at_time": pa.time64("us"),
    "span": pa.string(),
    "doc": pa.string(),
    "raw": pa.binary(),
    "fixed": pa.binary(),
}
COLUMNS = [c for c in TYPES if c != "__ref"]
TRICKY = "tab\there\nnewline\r\\N \\ back\\slash \\t 'quote\" Zoë 😀 東京 \x00nul \x1a end\\"
ROWS: list[dict[str, Any]] = [
    {
        "ext": "E1",
        "big": -(2**63),
        "ubig": 2**64 - 1,
        "small": -128,
        "flag": True,
        "bits": 1023,
        "yr": 2024,
        "price": Decimal("1234567890.12"),
        "wide": Decimal("12345678901234567890123456789012345.123456789012345678901234567890"),
        "ratio": 0.1,
        "name": TRICKY,
        "body": TRICKY * 3,
        "code": "ab",
        "color": "green",
        "born": date(2024, 2, 29),
        "seen": datetime(2024, 6, 1, 10, 30, 45, 123456, tzinfo=UTC),
        "stamp": datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=UTC),
        "at_time": time(23, 59, 59, 999999),
        "span": None,
        "doc": '{"a": [1, 2.5, null, "t\\tab\\n\\\\"], "é": {"b": true}, "$decimal": "1"}',
        "raw": bytes(range(256)),
        "fixed": b"\x00\t\n\\",
    },
    {  # every column NULL but the ones a row needs
        "ext": "E2",
        **{c: None for c in COLUMNS if c != "ext"},
    },
    {
        "ext": "E3",
        "big": 0,
        "ubig": 0,
        "small": 0,
        "flag": False,
        "bits": 0,
        "yr": 1901,
        "price": Decimal("0.00"),
        "wide": Decimal("-0.000000000000000000000000000001"),
        "ratio": -1.7976931348623157e308,
        "name": "",
        "body": "\\N",
        "code": "",
        "color": "red",
        "born": date(1000, 1, 1),
        "seen": datetime(1000, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        "stamp": datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC),
        "at_time": time(0, 0),
        "span": None,
        "doc": '"just a string with a \\\\ and a \\t"',
        "raw": b"",
        "fixed": b"\xff\xfe",
    },
    {
        "ext": "E4",
        "ratio": 5e-324,
        "name": "NULL",
        "body": "\\",
        "doc": "[]",
        "raw": b"\\N",
        "price": Decimal("1E+2"),
        "seen": datetime(2024, 3, 10, 2, 30, tzinfo=UTC),
        **{c: None for c in ("big", "ubig", "small", "flag", "bits", "yr", "wide", "code")},
        **{c: None for c in ("color", "born", "stamp", "at_time", "span", "fixed")},
    },
]


def inserts(rows: list[dict[str, Any]], columns: list[str] | None = None) -> pa.Table:
    cols = columns or COLUMNS
    schema = pa.schema([(c, TYPES[c]) for c in ["__ref", *cols]])
    return pa.Table.from_pylist(
        [{"__ref": f"r{i}", **{c: r.get(c) for c in cols}} for i, r in enumerate(rows)],
        schema=schema,
    )


def batch(batch_id: str, table: pa.Table, *, match: tuple[str, ...] = ()) -> ApplyBatch:
    empty = pa.table({"__ref": pa.array([], pa.string()), "id": pa.array([], pa.int64())})
    return ApplyBatch(
        batch_id=batch_id,
        origin=SYNC,
        table="every",
        key_columns=("id",),
        inserts=table,
        updates=empty,
        deletes=empty,
        insert_match=match,
    )


@pytest.fixture
def ready(connector: MySQLConnector, db: Db) -> MySQLConnector:
    db.run(ALL)
    connector.setup(SYNC, ["every"])
    return connector


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement any PyMySQL cursor runs from here on, in order."""
    seen: list[str] = []
    execute = pymysql.cursors.Cursor.execute

    def counting(self: pymysql.cursors.Cursor, query: str, args: Any = None) -> Any:
        seen.append(query)
        return execute(self, query, args)

    monkeypatch.setattr(pymysql.cursors.Cursor, "execute", counting)
    return seen


def loads(seen: list[str]) -> int:
    return sum(s.startswith("LOAD DATA LOCAL INFILE") for s in seen)


def multi_row(seen: list[str]) -> int:
    return sum(s.startswith("INSERT INTO") and "`every`" in s and " VALUES " in s for s in seen)


def stored(connector: MySQLConnector, keys: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The rows as `fetch` reads them back (canonical values), by ref, without the key."""
    by_id = {r["id"]: r for r in connector.fetch("every", "id", [k["id"] for k in keys.values()])}
    return {ref: {c: v for c, v in by_id[k["id"]].items() if c != "id"} for ref, k in keys.items()}


def exact(value: Any) -> Any:
    """A value with its type, Decimal by its digits and exponent (1.50 is not 1.5)."""
    if isinstance(value, Decimal):
        return ("Decimal", value.as_tuple())
    return (type(value).__name__, value)


def expected(row: dict[str, Any]) -> dict[str, Any]:
    """What `fetch` reads for a row written with `row`'s values (canonical values)."""
    import json

    out = {c: row.get(c) for c in COLUMNS}
    if out["doc"] is not None:
        out["doc"] = json.loads(out["doc"])
    if out["fixed"] is not None:
        out["fixed"] = out["fixed"].ljust(4, b"\0")
    if out["price"] is not None:  # the rows' `wide` values have all of its 30 decimals
        out["price"] = out["price"].quantize(Decimal("0.01"))
    return out


def test_every_type_family_round_trips_exactly_and_as_statements_write_it(
    ready: MySQLConnector, statements: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    res = ready.apply(batch("load", inserts(ROWS)))
    assert res.inserted == len(ROWS) and not res.rejected
    assert loads(statements) == 1 and multi_row(statements) == 0
    loaded = stored(ready, res.keys)
    for i, row in enumerate(ROWS):
        got, want = loaded[f"r{i}"], expected(row)
        assert {c: exact(v) for c, v in got.items()} == {c: exact(v) for c, v in want.items()}

    # the same values through multi-row statements read back identically
    monkeypatch.setattr(bulk, "loadable", lambda conn, traits: False)
    again = [{**r, "ext": f"S{i}"} for i, r in enumerate(ROWS)]
    res2 = ready.apply(batch("statements", inserts(again)))
    assert res2.inserted == len(ROWS) and multi_row(statements) == 1 and loads(statements) == 1
    written = stored(ready, res2.keys)
    for i in range(len(ROWS)):
        a = {c: exact(v) for c, v in loaded[f"r{i}"].items() if c != "ext"}
        b = {c: exact(v) for c, v in written[f"r{i}"].items() if c != "ext"}
        assert a == b, f"r{i}"


def test_generated_keys_are_the_rows_written_in_order(
    ready: MySQLConnector, db: Db, statements: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "LOAD_ROWS", 400)
    rows = [{"ext": f"K{i}", "name": f"n{i}", "big": i} for i in range(1000)]
    res = ready.apply(batch("keys", inserts(rows, ["ext", "name", "big"])))
    assert res.inserted == 1000 and loads(statements) == 3
    found = {r[0]: r[1:] for r in db.rows("SELECT id, ext, name, big FROM every")}
    for i in range(1000):
        assert found[res.keys[f"r{i}"]["id"]] == (f"K{i}", f"n{i}", i)


def test_a_refused_record_is_found_by_bisection_the_others_applied(
    ready: MySQLConnector, db: Db, statements: list[str]
) -> None:
    rows = [{"ext": f"B{i}", "name": f"n{i}", "price": Decimal(i), "yr": 2000} for i in range(2000)]
    rows[777]["price"] = Decimal(-1)  # the CHECK refuses it
    rows[1500]["yr"] = 1800  # out of YEAR's range, under strict sql_mode
    rows[1800]["ext"] = "B5"  # a duplicate of an earlier row's unique ext
    res = ready.apply(batch("bad", inserts(rows, ["ext", "name", "price", "yr"])))
    assert set(res.rejected) == {"r777", "r1500", "r1800"}
    assert "price_not_negative" in res.rejected["r777"]
    assert "'yr'" in res.rejected["r1500"]
    assert "Duplicate" in res.rejected["r1800"]
    assert res.inserted == 1997
    count = db.rows("SELECT count(*) FROM every")[0][0]
    assert count == 1997
    # bisection: a few dozen loads, not one statement per row
    assert 3 < loads(statements) < 80 and multi_row(statements) == 0
    found = {r[0]: r[1] for r in db.rows("SELECT id, ext FROM every")}
    assert all(found[k["id"]] == rows[int(ref[1:])]["ext"] for ref, k in res.keys.items())


def test_a_replayed_batch_returns_its_result_and_writes_nothing(
    ready: MySQLConnector, db: Db
) -> None:
    table = inserts([{"ext": f"R{i}", "name": "x"} for i in range(50)], ["ext", "name"])
    first = ready.apply(batch("once", table, match=("ext",)))
    second = ready.apply(batch("once", table, match=("ext",)))
    assert second == first
    assert db.rows("SELECT count(*) FROM every")[0][0] == 50
    # a new batch of the same rows finds them by the external id and updates them
    third = ready.apply(batch("twice", table, match=("ext",)))
    assert third.inserted == 0 and third.updated == 50
    assert {k["id"] for k in third.keys.values()} == {k["id"] for k in first.keys.values()}
    assert db.rows("SELECT count(*) FROM every")[0][0] == 50


def test_loaded_rows_are_captured_as_ours_in_one_transaction(ready: MySQLConnector, db: Db) -> None:
    since = ready.current_position(SYNC)
    db.run("INSERT INTO every (ext, name) VALUES ('T0', 'theirs')")
    res = ready.apply(batch("tag", inserts(ROWS)))
    db.run("INSERT INTO every (ext, name) VALUES ('T1', 'theirs')")
    changes = ready.capture(SYNC, ["every"], since, 100).changes
    assert [(c.op, c.origin) for c in changes] == [
        (Op.INSERT, None),
        *[(Op.INSERT, SYNC)] * len(ROWS),
        (Op.INSERT, None),
    ]
    ours = {c.key["id"]: c.after for c in changes if c.origin == SYNC}
    for i, row in enumerate(ROWS):
        after = ours[res.keys[f"r{i}"]["id"]]
        assert after is not None
        assert {c: exact(after[c]) for c in COLUMNS} == {
            c: exact(v) for c, v in expected(row).items()
        }
    assert all("stage" not in c.table for c in changes)


def test_a_server_refusing_load_data_local_gets_statements(
    ready: MySQLConnector, db: Db, statements: list[str]
) -> None:
    db.run("SET GLOBAL local_infile = 0")
    try:
        ready.close()  # traits are read once per connection
        res = ready.apply(batch("off", inserts(ROWS)))
    finally:
        db.run("SET GLOBAL local_infile = 1")
    assert res.inserted == len(ROWS) and not res.rejected
    assert loads(statements) == 0 and multi_row(statements) == 1


def test_a_refusal_at_the_first_load_falls_back_without_writing_twice(
    ready: MySQLConnector, db: Db, statements: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's own refusal (as a server whose local_infile went off after the
    connection read it answers) is met by statements for that chunk and the rest."""
    monkeypatch.setattr(bulk, "LOAD_ROWS", 10)
    execute = pymysql.cursors.Cursor.execute

    def refusing(self: pymysql.cursors.Cursor, query: str, args: Any = None) -> Any:
        if query.startswith("LOAD DATA LOCAL"):
            raise pymysql.err.OperationalError(1148, "The used command is not allowed")
        return execute(self, query, args)

    monkeypatch.setattr(pymysql.cursors.Cursor, "execute", refusing)
    rows = [{"ext": f"F{i}", "name": f"n{i}"} for i in range(35)]
    res = ready.apply(batch("refused", inserts(rows, ["ext", "name"])))
    assert res.inserted == 35 and not res.rejected
    assert db.rows("SELECT count(*), count(DISTINCT ext) FROM every")[0] == (35, 35)
    # the connection remembers: the next batch goes straight to statements
    res = ready.apply(batch("next", inserts([{"ext": "G", "name": "g"}], ["ext", "name"])))
    assert res.inserted == 1


def test_a_user_without_create_temporary_tables_gets_statements(
    ready: MySQLConnector, db: Db, mysql_dsn: str
) -> None:
    from urllib.parse import urlsplit

    name = urlsplit(mysql_dsn).path.strip("/")
    db.run("CREATE USER IF NOT EXISTS 'no_tmp'@'127.0.0.1'")
    db.run(f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{name}`.* TO 'no_tmp'@'127.0.0.1'")
    try:
        limited = MySQLConnector(mysql_dsn.replace("root@", "no_tmp@"), "shop_db")
        try:
            res = limited.apply(batch("priv", inserts(ROWS)))
        finally:
            limited.close()
    finally:
        db.run("DROP USER 'no_tmp'@'127.0.0.1'")
    assert res.inserted == len(ROWS) and not res.rejected
    assert db.rows("SELECT count(*) FROM every")[0][0] == len(ROWS)


def test_a_value_without_an_exact_spelling_sends_the_batch_as_statements() -> None:
    from syncswim_lib.values import ColumnInfo

    other = ColumnInfo("shape", "other", "point", nullable=True)
    with pytest.raises(NotLoadable):
        field_function(other)(b"\x00")
    text = ColumnInfo("t", "text", "text", nullable=True)
    assert field_function(text)(TRICKY).count("\t") == 0
    assert field_function(text)(None) == "\\N"


def test_the_connection_serves_no_file_of_the_disk(ready: MySQLConnector, tmp_path: Any) -> None:
    """A server asking for a local file by name (as a hostile one could) gets nothing."""
    secret = tmp_path / "secret.txt"
    secret.write_text("1\tSECRET\n")
    conn = ready._connection()
    assert isinstance(conn, InfileConnection)
    with conn.cursor() as cur:
        cur.execute("CREATE TEMPORARY TABLE peek (__i int, c0 longtext)")
        with pytest.raises(pymysql.err.OperationalError, match="did not offer"):
            cur.execute(f"LOAD DATA LOCAL INFILE '{secret}' INTO TABLE peek")
        cur.execute("SELECT count(*) FROM peek")
        assert cur.fetchone() == (0,)
        cur.execute("DROP TEMPORARY TABLE peek")


def test_a_row_too_large_for_one_packet_is_refused_alone(
    ready: MySQLConnector, db: Db, monkeypatch: pytest.MonkeyPatch, statements: list[str]
) -> None:
    real = bulk.server_traits

    def small(conn: pymysql.Connection) -> bulk.ServerTraits:
        t = real(conn)
        return bulk.ServerTraits(60_000, t.returning, t.local_infile)

    monkeypatch.setattr(bulk, "server_traits", small)
    db.run("ALTER TABLE every MODIFY body mediumtext NULL")
    rows = [{"ext": f"P{i}", "body": "small"} for i in range(20)]
    rows[7]["body"] = "y" * 70_000
    res = ready.apply(batch("big", inserts(rows, ["ext", "body"])))
    assert set(res.rejected) == {"r7"} and "max_allowed_packet" in res.rejected["r7"]
    assert res.inserted == 19 and loads(statements) == 1


def test_durations_in_a_time_column(ready: MySQLConnector, db: Db) -> None:
    """TIME holds durations beyond a day and negative ones: spelt as the server reads them."""
    table = pa.table(
        {
            "__ref": ["a", "b", "c"],
            "ext": ["D1", "D2", "D3"],
            "span": pa.array(
                [timedelta(hours=-838, minutes=-59), timedelta(days=2, seconds=5), None],
                pa.duration("us"),
            ),
        }
    )
    res = ready.apply(batch("spans", table))
    assert res.inserted == 3 and not res.rejected
    got = dict(db.rows("SELECT ext, span FROM every ORDER BY ext"))
    assert got == {
        "D1": timedelta(hours=-838, minutes=-59),
        "D2": timedelta(days=2, seconds=5),
        "D3": None,
    }
