"""The set-based apply on the private MariaDB: chunks, bisection of refused rows, generated
keys beside concurrent inserts, `__set` groups, and the cases written one row at a time.

Statements are counted where the point is how the rows were written (a chunk bisected, not
replayed row by row; one UPDATE per `__set` group and chunk)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pyarrow as pa
import pymysql
import pymysql.cursors
import pytest

from syncswim_lib.connectors.base import ApplyBatch
from syncswim_lib.connectors.mysql import MySQLConnector, bulk
from syncswim_lib.connectors.mysql.types import to_driver
from syncswim_lib.values import ColumnInfo

if TYPE_CHECKING:
    from conftest import Db

pytestmark = pytest.mark.integration

PEOPLE = """
CREATE TABLE people (
  id int NOT NULL AUTO_INCREMENT PRIMARY KEY,
  ext varchar(20) NULL UNIQUE,
  name varchar(40) NOT NULL,
  n int NULL,
  boss int NULL,
  CONSTRAINT n_not_negative CHECK (n IS NULL OR n >= 0),
  CONSTRAINT boss_exists FOREIGN KEY (boss) REFERENCES people (id)
) ENGINE=InnoDB
"""
TYPES = {
    "__ref": pa.string(),
    "id": pa.int64(),
    "ext": pa.string(),
    "name": pa.string(),
    "n": pa.int64(),
    "boss": pa.int64(),
    "__set": pa.list_(pa.string()),
}
SYNC = "sync_a"


def table(rows: list[dict[str, Any]], columns: list[str]) -> pa.Table:
    schema = pa.schema([(c, TYPES[c]) for c in ["__ref", *columns]])
    return pa.Table.from_pylist(rows, schema=schema)


def batch(
    batch_id: str,
    *,
    inserts: list[dict[str, Any]] = (),  # type: ignore[assignment]
    updates: list[dict[str, Any]] = (),  # type: ignore[assignment]
    deletes: list[dict[str, Any]] = (),  # type: ignore[assignment]
    insert_cols: list[str] | None = None,
    update_cols: list[str] | None = None,
    insert_match: tuple[str, ...] = (),
    name: str = "people",
) -> ApplyBatch:
    return ApplyBatch(
        batch_id=batch_id,
        origin=SYNC,
        table=name,
        key_columns=("id",),
        inserts=table(list(inserts), insert_cols or ["ext", "name", "n", "boss"]),
        updates=table(list(updates), update_cols or ["id", "name", "n"]),
        deletes=table(list(deletes), ["id"]),
        insert_match=insert_match,
    )


@pytest.fixture
def ready(connector: MySQLConnector, db: Db) -> MySQLConnector:
    db.run(PEOPLE)
    connector.setup(SYNC, ["people"])
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


def writes(seen: list[str], verb: str) -> list[str]:
    """The statements with `verb` (INSERT, UPDATE, DELETE) that wrote `people`."""
    return [s for s in seen if s.startswith(verb) and "`people`" in s]


def people(db: Db) -> dict[int, tuple[Any, ...]]:
    return {r[0]: r[1:] for r in db.rows("SELECT id, ext, name, n, boss FROM people")}


def seed(db: Db, count: int) -> None:
    """People 1..count: ext E<i>, name p<i>, n = i, no boss."""
    values = ", ".join(f"({i}, 'E{i}', 'p{i}', {i})" for i in range(1, count + 1))
    db.run(f"INSERT INTO people (id, ext, name, n) VALUES {values}")


def no_returning(monkeypatch: pytest.MonkeyPatch) -> None:
    """What MySQL offers: no INSERT ... RETURNING."""
    real = bulk.server_traits

    def traits(conn: pymysql.Connection) -> bulk.ServerTraits:
        t = real(conn)
        return bulk.ServerTraits(
            max_packet=t.max_packet, returning=False, local_infile=t.local_infile
        )

    monkeypatch.setattr(bulk, "server_traits", traits)


def no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that refuses LOAD DATA LOCAL (MySQL 8's default): multi-row statements."""
    monkeypatch.setattr(bulk, "loadable", lambda conn, traits: False)


# --- rejected rows ----------------------------------------------------------------------


def test_one_refused_insert_in_the_middle_of_a_chunk_is_found_by_bisection(
    ready: MySQLConnector, db: Db, statements: list[str]
) -> None:
    rows = [{"__ref": f"r{i}", "ext": f"X{i}", "name": f"n{i}", "n": i} for i in range(301)]
    rows[150]["n"] = -1  # the check constraint refuses it
    res = ready.apply(batch("b1", inserts=rows))
    assert res.inserted == 300 and set(res.rejected) == {"r150"}
    assert "4025" in res.rejected["r150"] and "n_not_negative" in res.rejected["r150"]
    stored = {ext: (i, name, n) for i, (ext, name, n, _) in people(db).items()}
    assert len(stored) == 300 and "X150" not in stored
    for i, row in enumerate(rows):
        if i != 150:
            assert stored[row["ext"]] == (res.keys[f"r{i}"]["id"], row["name"], row["n"])
    # one statement for the chunk, then two halves per level down to the row: not 301
    inserts = writes(statements, "INSERT")
    assert len(inserts) <= 2 * math.ceil(math.log2(301)) + 1, len(inserts)
    assert ready.applied_result(SYNC, "b1") == res


def test_one_refused_update_and_delete_in_the_middle_of_a_chunk(
    ready: MySQLConnector, db: Db, statements: list[str]
) -> None:
    seed(db, 200)
    db.run("UPDATE people SET boss = 1 WHERE id = 2")  # 1 is a boss: it cannot go
    updates = [{"__ref": f"u{i}", "id": i, "name": f"new{i}", "n": i * 10} for i in range(3, 201)]
    updates[97]["n"] = -5  # id 100
    deletes = [{"__ref": f"d{i}", "id": i} for i in (5, 1, 4)]
    res = ready.apply(batch("b1", updates=updates, deletes=deletes))
    # u4 and u5 find their rows deleted first; u100 and d1 are refused
    assert (res.updated, res.deleted) == (195, 2)
    assert set(res.rejected) == {"u100", "d1"} and sorted(res.missing) == ["u4", "u5"]
    assert "4025" in res.rejected["u100"] and "1451" in res.rejected["d1"]
    rows = people(db)
    assert 1 in rows and 2 in rows and 4 not in rows and 5 not in rows
    assert rows[100] == ("E100", "p100", 100, None)
    assert all(rows[i][1:3] == (f"new{i}", i * 10) for i in range(3, 201) if i not in (4, 5, 100))
    assert len(writes(statements, "UPDATE")) <= 2 * math.ceil(math.log2(198)) + 2


def test_several_refused_rows_of_every_kind(
    ready: MySQLConnector, db: Db, statements: list[str]
) -> None:
    seed(db, 3)
    rows = [{"__ref": f"r{i}", "ext": f"X{i}", "name": f"n{i}", "n": i} for i in range(120)]
    rows[0]["ext"] = "E1"  # first: duplicate of a stored row
    rows[1]["n"] = -1  # its neighbour: check constraint
    rows[57]["boss"] = 999  # foreign key: no such boss
    rows[58]["boss"] = 2  # fine: an existing boss
    rows[90]["ext"] = "X89"  # duplicate of an earlier row of the same batch
    rows[119]["name"] = None  # last: NOT NULL
    res = ready.apply(batch("b1", inserts=rows))
    assert set(res.rejected) == {"r0", "r1", "r57", "r90", "r119"}
    assert "1062" in res.rejected["r0"] and "1062" in res.rejected["r90"]
    assert "4025" in res.rejected["r1"]
    assert "1452" in res.rejected["r57"]
    assert "1048" in res.rejected["r119"]
    assert res.inserted == 115 and len(res.keys) == 115
    stored = {r[0]: r for r in people(db).values()}
    assert stored["X89"][1] == "n89"  # the earlier of the two kept its row
    assert stored["X58"][3] == 2
    assert len(people(db)) == 118
    # bisection, not one statement per row
    assert len(writes(statements, "INSERT")) < 60


def test_a_row_over_max_allowed_packet_is_refused_alone(
    ready: MySQLConnector, db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server would drop the connection (and every retry alike): the row is rejected
    before it is sent, the others written."""
    db.run("ALTER TABLE people MODIFY name mediumtext NOT NULL")
    real = bulk.server_traits
    monkeypatch.setattr(
        bulk, "server_traits", lambda conn: bulk.ServerTraits(60_000, real(conn).returning)
    )
    rows = [{"__ref": f"r{i}", "ext": f"X{i}", "name": "small", "n": i} for i in range(40)]
    rows[20]["name"] = "y" * 70_000
    res = ready.apply(batch("b1", inserts=rows))
    assert res.inserted == 39 and set(res.rejected) == {"r20"}
    assert "max_allowed_packet" in res.rejected["r20"]
    assert len(people(db)) == 39


def test_a_value_the_driver_cannot_send_is_refused_not_fatal(ready: MySQLConnector, db: Db) -> None:
    db.run("ALTER TABLE people ADD COLUMN score double NULL")
    schema = pa.schema([("__ref", pa.string()), ("name", pa.string()), ("score", pa.float64())])
    inserts = pa.Table.from_pylist(
        [
            {"__ref": "ok", "name": "a", "score": 1.5},
            {"__ref": "nan", "name": "b", "score": float("nan")},
        ],
        schema=schema,
    )
    b = batch("b1")
    res = ready.apply(
        ApplyBatch(b.batch_id, b.origin, b.table, b.key_columns, inserts, b.updates, b.deletes)
    )
    assert res.inserted == 1 and set(res.rejected) == {"nan"}
    assert "nan" in res.rejected["nan"]


# --- more than one chunk ----------------------------------------------------------------


@pytest.mark.parametrize("chars", [None, 4096], ids=["rows", "bytes"])
def test_a_batch_larger_than_one_chunk(
    ready: MySQLConnector,
    db: Db,
    statements: list[str],
    monkeypatch: pytest.MonkeyPatch,
    chars: int | None,
) -> None:
    """Chunks bounded by rows (2,500 rows: three chunks of at most CHUNK_ROWS) or by the
    size of their text (the smallest bound there is, 4,096 characters: dozens of chunks).
    Inserts as multi-row statements: the staging path has its own test below."""
    no_loading(monkeypatch)
    count = 2500
    if chars is not None:
        monkeypatch.setattr(bulk, "CHUNK_CHARS", chars)
    expected_chunks = math.ceil(count / bulk.CHUNK_ROWS) if chars is None else 10
    rows = [{"__ref": f"r{i}", "ext": f"X{i}", "name": f"n{i}", "n": i} for i in range(count)]
    res = ready.apply(batch("ins", inserts=rows))
    assert res.inserted == count and not res.rejected
    ids = {f"r{i}": res.keys[f"r{i}"]["id"] for i in range(count)}
    assert len(set(ids.values())) == count
    stored = people(db)
    assert all(stored[ids[f"r{i}"]][:3] == (f"X{i}", f"n{i}", i) for i in range(count))
    inserts = writes(statements, "INSERT")
    assert len(inserts) >= expected_chunks
    assert all(s.count("), (") < bulk.CHUNK_ROWS for s in inserts)
    if chars is not None:
        assert all(len(s) < chars + 200 for s in inserts)

    updates = [
        {"__ref": f"u{i}", "id": ids[f"r{i}"], "name": f"m{i}", "n": i} for i in range(count)
    ]
    bad = {f"u{i}" for i in range(250, count, 500)}  # one in each chunk of rows
    for u in updates:
        if u["__ref"] in bad:
            u["n"] = -1
    res = ready.apply(batch("upd", updates=updates))
    assert res.updated == count - len(bad) and set(res.rejected) == bad and not res.missing
    stored = people(db)
    for i in range(count):
        want = (f"n{i}", i) if f"u{i}" in bad else (f"m{i}", i)
        assert stored[ids[f"r{i}"]][1:3] == want
    assert len(writes(statements, "UPDATE")) >= expected_chunks

    deletes = [{"__ref": f"d{i}", "id": ids[f"r{i}"]} for i in range(count)]
    deletes.append({"__ref": "gone", "id": 10**8})
    res = ready.apply(batch("del", deletes=deletes))
    assert res.deleted == count and res.missing == ("gone",)
    assert people(db) == {}
    assert len(writes(statements, "DELETE")) >= expected_chunks


# --- generated keys --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["returning", "returning, statements", "read back", "read back, statements", "one by one"],
)
def test_generated_keys_beside_another_session_inserting(
    ready: MySQLConnector,
    db: Db,
    mysql_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    """Another session inserts into the same table between our statements, taking ids in
    the middle of ours; every key returned is still the row written for its ref.

    `read back`: MySQL (no RETURNING), the chunk read back by its unique ext; `one by one`:
    MySQL without a unique column the rows give (LAST_INSERT_ID per row); `statements`:
    multi-row INSERTs, else LOAD DATA into the staging table, in chunks of 700 rows here."""
    if not path.startswith("returning"):
        no_returning(monkeypatch)
    if path.endswith("statements"):
        no_loading(monkeypatch)
    monkeypatch.setattr(bulk, "LOAD_ROWS", 700)
    parts = urlsplit(mysql_dsn)
    other = pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=parts.username or "root",
        database=parts.path.lstrip("/"),
        autocommit=True,
    )
    theirs: list[int] = []
    execute = pymysql.cursors.Cursor.execute

    def interleaved(self: pymysql.cursors.Cursor, query: str, args: Any = None) -> Any:
        result = execute(self, query, args)
        ours = self.connection is not other and query.startswith("INSERT INTO `")
        if ours and "`people`" in query:
            with other.cursor() as cur:
                execute(cur, "INSERT INTO people (name) VALUES ('theirs')")
                theirs.append(int(cur.lastrowid))
        return result

    monkeypatch.setattr(pymysql.cursors.Cursor, "execute", interleaved)
    count = 2200 if path != "one by one" else 60
    with_ext = path != "one by one"
    rows = [
        {"__ref": f"r{i}", "ext": f"X{i}" if with_ext else None, "name": f"n{i}"}
        for i in range(count)
    ]
    try:
        res = ready.apply(batch("b1", inserts=rows, insert_cols=["ext", "name"]))
    finally:
        other.close()
    assert res.inserted == count and not res.rejected
    stored = people(db)
    for i in range(count):
        assert stored[res.keys[f"r{i}"]["id"]][1] == f"n{i}", f"r{i}"
    assert len(theirs) >= (3 if path != "one by one" else count)
    assert all(stored[t][1] == "theirs" for t in theirs)
    ours = sorted(k["id"] for k in res.keys.values())
    assert any(ours[0] < t < ours[-1] for t in theirs)  # their ids among ours


def test_generated_and_given_keys_in_one_chunk(ready: MySQLConnector, db: Db) -> None:
    rows = [
        {"__ref": "a", "id": None, "name": "a"},
        {"__ref": "b", "id": 500, "name": "b"},
        {"__ref": "c", "id": None, "name": "c"},
        {"__ref": "d", "id": 7, "name": "d"},
    ]
    res = ready.apply(batch("b1", inserts=rows, insert_cols=["id", "name"]))
    stored = people(db)
    assert {ref: stored[k["id"]][1] for ref, k in res.keys.items()} == {
        "a": "a",
        "b": "b",
        "c": "c",
        "d": "d",
    }
    assert res.keys["b"] == {"id": 500} and res.keys["d"] == {"id": 7}


def test_a_generated_column_given_no_value_is_made_by_the_database(
    connector: MySQLConnector, db: Db
) -> None:
    """Written as DEFAULT, as leaving the column out would be (MySQL refuses an explicit
    NULL there; MariaDB takes either)."""
    db.run(
        "CREATE TABLE tagged (id int AUTO_INCREMENT PRIMARY KEY, name varchar(20) NOT NULL,"
        " tag varchar(30) AS (concat(name, '!')) VIRTUAL) ENGINE=InnoDB"
    )
    connector.setup(SYNC, ["tagged"])
    schema = pa.schema([("__ref", pa.string()), ("name", pa.string()), ("tag", pa.string())])
    rows = [{"__ref": f"r{i}", "name": f"n{i}", "tag": None} for i in range(3)]
    empty = table([], ["id"])
    res = connector.apply(
        ApplyBatch(
            "b1", SYNC, "tagged", ("id",), pa.Table.from_pylist(rows, schema=schema), empty, empty
        )
    )
    assert res.inserted == 3 and not res.rejected
    assert db.rows("SELECT name, tag FROM tagged ORDER BY id") == [
        ("n0", "n0!"),
        ("n1", "n1!"),
        ("n2", "n2!"),
    ]


# --- updates by __set group ---------------------------------------------------------------


def test_updates_with_different_set_lists_one_statement_per_group_and_chunk(
    ready: MySQLConnector, db: Db, statements: list[str]
) -> None:
    seed(db, 1200)
    lists: list[list[str] | None] = [["name"], ["n"], None, [], ["n", "name"]]
    updates = [
        {"__ref": f"u{i}", "id": i, "name": f"new{i}", "n": 10 * i, "__set": lists[i % 5]}
        for i in range(1, 1201)
    ]
    updates.append({"__ref": "gone", "id": 5000, "name": "x", "n": 1, "__set": ["n"]})
    res = ready.apply(batch("b1", updates=updates, update_cols=["id", "name", "n", "__set"]))
    assert res.updated == 1200 and res.missing == ("gone",) and not res.rejected
    rows = people(db)
    for i in range(1, 1201):
        kind = i % 5
        name = f"new{i}" if kind in (0, 2, 4) else f"p{i}"
        n = 10 * i if kind in (1, 2, 4) else i
        assert rows[i][1:3] == (name, n), i
    # groups by the columns set, in the table's order: (name), (n), (name, n) for both
    # None and [n, name], and () that needs no statement: three of 240 to 480 rows, one
    # chunk each
    assert len(writes(statements, "UPDATE")) == 3


def test_two_updates_of_one_row_in_one_group_apply_in_order(
    ready: MySQLConnector, db: Db, statements: list[str]
) -> None:
    """The later write of the row goes after the set-based statement, on its own; the
    others stay set-based (not the whole chunk replayed row by row)."""
    seed(db, 3)
    updates = [
        {"__ref": "first", "id": 2, "name": "first", "n": 1},
        {"__ref": "other", "id": 3, "name": "other", "n": 3},
        {"__ref": "second", "id": 2, "name": "second", "n": 2},
    ]
    res = ready.apply(batch("b1", updates=updates))
    assert res.updated == 3 and not res.missing
    assert people(db)[2][1:3] == ("second", 2)
    assert len(writes(statements, "UPDATE")) == 2
    deletes = [
        {"__ref": "d1", "id": 1},
        {"__ref": "d3", "id": 3},
        {"__ref": "d1again", "id": 1},
    ]
    res = ready.apply(batch("b2", deletes=deletes))
    assert res.deleted == 2 and res.missing == ("d1again",)
    assert len(writes(statements, "DELETE")) == 2


# --- what set-based statements cannot count: written row by row --------------------------


def test_a_cascade_of_an_earlier_delete_keeps_the_counts_exact(
    connector: MySQLConnector, db: Db
) -> None:
    db.run(
        "CREATE TABLE tree (id int PRIMARY KEY, parent int NULL,"
        " FOREIGN KEY (parent) REFERENCES tree (id) ON DELETE CASCADE) ENGINE=InnoDB"
    )
    db.run("INSERT INTO tree VALUES (1, NULL), (2, 1), (3, 2), (4, NULL)")
    connector.setup(SYNC, ["tree"])
    deletes = [{"__ref": f"d{i}", "id": i} for i in (1, 3, 4)]
    res = connector.apply(
        ApplyBatch(
            "b1",
            SYNC,
            "tree",
            ("id",),
            table([], ["id"]),
            table([], ["id"]),
            table(deletes, ["id"]),
        )
    )
    # deleting 1 cascades to 2 and 3: the delete of 3 then finds nothing
    assert (res.deleted, res.missing) == (2, ("d3",))
    assert db.rows("SELECT id FROM tree") == []


def test_insert_match_repeated_in_one_batch_updates_the_row_the_first_inserted(
    ready: MySQLConnector, db: Db
) -> None:
    db.run("INSERT INTO people (id, ext, name) VALUES (7, 'OLD', 'old')")
    rows = [
        {"__ref": "a", "ext": "NEW", "name": "first"},
        {"__ref": "b", "ext": "OLD", "name": "updated"},
        {"__ref": "c", "ext": "NEW", "name": "second"},
        {"__ref": "d", "ext": None, "name": "no ext"},
    ]
    res = ready.apply(batch("b1", inserts=rows, insert_cols=["ext", "name"], insert_match=("ext",)))
    assert (res.inserted, res.updated) == (2, 2) and not res.rejected
    assert res.keys["a"] == res.keys["c"] and res.keys["b"] == {"id": 7}
    assert sorted((r[:2] for r in people(db).values()), key=str) == [
        ("NEW", "second"),
        ("OLD", "updated"),
        (None, "no ext"),
    ]


def test_insert_match_repeated_on_a_column_that_is_not_unique(
    ready: MySQLConnector, db: Db
) -> None:
    """No unique index stops the second insert: only writing it after the first, as an
    update of the row the first inserted, keeps one row per match value."""
    rows = [
        {"__ref": "a", "name": "first", "n": 50},
        {"__ref": "b", "name": "other", "n": 60},
        {"__ref": "c", "name": "second", "n": 50},
    ]
    res = ready.apply(batch("b1", inserts=rows, insert_cols=["name", "n"], insert_match=("n",)))
    assert (res.inserted, res.updated) == (2, 1) and res.keys["a"] == res.keys["c"]
    assert sorted(r[1:3] for r in people(db).values()) == [("other", 60), ("second", 50)]


def test_a_non_transactional_table_is_written_row_by_row(
    connector: MySQLConnector, db: Db, statements: list[str]
) -> None:
    db.run(
        "CREATE TABLE people (id int AUTO_INCREMENT PRIMARY KEY, ext varchar(20) UNIQUE,"
        " name varchar(40) NOT NULL, n int, boss int) ENGINE=MyISAM"
    )
    connector.setup(SYNC, ["people"])
    rows = [{"__ref": f"r{i}", "ext": f"X{i}", "name": f"n{i}", "n": i} for i in range(10)]
    rows[5]["ext"] = "X1"
    res = connector.apply(batch("b1", inserts=rows))
    assert res.inserted == 9 and set(res.rejected) == {"r5"}
    assert len(people(db)) == 9  # nothing written twice
    assert len(writes(statements, "INSERT")) == 10


# --- literals ---------------------------------------------------------------------------


def _col(family: Any, db_type: str, **kw: Any) -> ColumnInfo:
    return ColumnInfo(name="c", family=family, db_type=db_type, **kw)


LITERAL_CASES: list[tuple[ColumnInfo, list[Any]]] = [
    (_col("int", "bigint"), [None, 0, -1, 2**63 - 1, True]),
    (_col("bool", "tinyint(1)"), [True, False, None]),
    (_col("float", "double"), [0.1, -1e300, 3.0, 1 / 3]),
    (_col("decimal", "decimal(14,4)", precision=14, scale=4), [Decimal("1.2500"), Decimal(-3)]),
    (_col("text", "varchar(40)"), ["plain", "it's", 'back\\slash "q"', "nul\0 \n\r\x1a", "Zoë 😀"]),
    (_col("bytes", "varbinary(10)"), [b"\x00\xff'", b""]),
    (_col("date", "date"), [date(2024, 2, 29), date(1, 1, 1)]),
    (
        _col("timestamptz", "timestamp(6)"),
        [
            datetime(2024, 5, 6, 9, 8, 7, 654321, tzinfo=UTC),
            datetime(2024, 5, 6, 9, 8, 7, tzinfo=UTC),
            datetime(2024, 5, 6, 11, 8, 7, 1, tzinfo=UTC).astimezone(),
            datetime(999, 1, 2, 3, 4, 5),
        ],
    ),
    (_col("time", "time"), [time(1, 2, 3), time(0, 0, 0, 5), timedelta(hours=-30, seconds=1)]),
    (_col("json", "longtext"), [{"k": ["é", 1, None]}, [1, 2], "text", 3, None]),
    (_col("other", "set('a','b')"), ["a,b"]),
]


@pytest.mark.parametrize(
    ("column", "values"), LITERAL_CASES, ids=[c.db_type for c, _ in LITERAL_CASES]
)
def test_literals_are_what_the_driver_sends(
    conn: pymysql.Connection, column: ColumnInfo, values: list[Any]
) -> None:
    render = bulk.literal_function(column, conn)
    for value in values:
        assert render(value) == conn.escape(to_driver(value, column)), value


def test_a_derived_table_key_finds_rows_as_the_column_compares(
    ready: MySQLConnector, db: Db
) -> None:
    """The derived table's literals take the column's collation: a case-insensitive key
    finds its row under another case and with trailing spaces, a binary one does not."""
    db.run("ALTER TABLE people MODIFY ext varchar(20) COLLATE utf8mb4_general_ci NULL")
    db.run("ALTER TABLE people ADD COLUMN code varchar(20) COLLATE utf8mb4_bin NULL UNIQUE")
    db.run("INSERT INTO people (id, ext, code, name) VALUES (1, 'CUST-1', 'AbC', 'x')")
    for key, column, found in (
        ("cust-1 ", "ext", True),
        ("abc", "code", False),
        ("AbC", "code", True),
    ):
        b = ApplyBatch(
            f"b-{column}-{key}",
            SYNC,
            "people",
            (column,),
            table([], ["name"]),
            pa.table({"__ref": ["u"], column: [key], "name": ["new"]}),
            table([], ["id"]),
        )
        res = ready.apply(b)
        assert (res.updated, res.missing) == ((1, ()) if found else (0, ("u",))), key
        assert res.keys.get("u", {}).get("id") == (1 if found else None)
