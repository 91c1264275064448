"""Capture from a real slot: values of every type, origin tagging, resume, confirm."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from syncswim_lib.connectors.base import ApplyBatch
from syncswim_lib.connectors.postgres import PostgresConnector
from syncswim_lib.envelope import Op, PgPosition, Position
from syncswim_lib.errors import ConfigError, FatalError

pytestmark = pytest.mark.integration


def lsn(position: Position | None) -> PgPosition:
    assert isinstance(position, PgPosition)
    return position


TYPES_DDL = """
CREATE TABLE public.everything (
    id integer PRIMARY KEY,
    big bigint,
    amount numeric(12,3),
    code varchar(20),
    body text,
    ok boolean,
    day date,
    at timestamptz,
    doc json,
    docb jsonb
)
"""


@pytest.fixture
def db(pg_dsn: str) -> Iterator[psycopg.Connection]:
    """A writer whose commits are flushed before they return (the sandbox runs async)."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = on")
        yield conn


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[PostgresConnector]:
    connector = PostgresConnector(pg_dsn, "app_db")
    yield connector
    connector.close()


def test_insert_update_delete_of_every_type(db: psycopg.Connection, pg: PostgresConnector) -> None:
    db.execute(TYPES_DDL)
    pg.setup("s1", ["everything"])
    start = pg.current_position("s1")
    db.execute(
        "INSERT INTO everything VALUES (1, 9007199254740993, 1234.500, 'Ünïcødé ✓', 'naïve 東京',"
        " true, '2024-02-29', '2024-06-01 12:30:45.123456+02', '{\"b\": 1, \"a\": [1, 2.5]}',"
        ' \'{"k": "v"}\')'
    )
    db.execute("INSERT INTO everything (id) VALUES (2)")
    db.execute(
        "UPDATE everything SET big = -1, amount = 0.001, code = 'x', body = '', ok = false,"
        " day = '1999-12-31', at = '2000-01-01 00:00:00+00', doc = '[]', docb = 'null'"
        " WHERE id = 1"
    )
    db.execute("DELETE FROM everything WHERE id = 1")
    batch = pg.capture("s1", ["public.everything"], start, 100)
    ins, ins_null, upd, dele = batch.changes
    assert [c.op for c in batch.changes] == [Op.INSERT, Op.INSERT, Op.UPDATE, Op.DELETE]
    first = {
        "id": 1,
        "big": 9007199254740993,
        "amount": Decimal("1234.500"),
        "code": "Ünïcødé ✓",
        "body": "naïve 東京",
        "ok": True,
        "day": date(2024, 2, 29),
        "at": datetime(2024, 6, 1, 10, 30, 45, 123456, tzinfo=UTC),
        "doc": {"b": 1, "a": [1, 2.5]},
        "docb": {"k": "v"},
    }
    assert ins.after == first and ins.before is None and ins.key == {"id": 1}
    assert type(ins.after["big"]) is int and type(ins.after["ok"]) is bool
    assert ins_null.after == {"id": 2} | {k: None for k in first if k != "id"}
    second = {
        "id": 1,
        "big": -1,
        "amount": Decimal("0.001"),
        "code": "x",
        "body": "",
        "ok": False,
        "day": date(1999, 12, 31),
        "at": datetime(2000, 1, 1, tzinfo=UTC),
        "doc": [],
        "docb": None,
    }
    assert upd.before == first and upd.after == second
    assert upd.changed_fields == tuple(k for k in first if k != "id")
    assert dele.before == second and dele.after is None and dele.key == {"id": 1}
    for change in batch.changes:
        assert change.table == "public.everything"
        assert change.origin is None
        assert change.commit_ts is not None and change.commit_ts.tzinfo is not None
        assert change.detected_at >= change.commit_ts
    positions = [lsn(c.position) for c in batch.changes]
    assert positions == sorted(positions) and all(p > lsn(start) for p in positions)
    assert lsn(batch.end_position) > positions[-1]


def _apply_insert(
    pg: PostgresConnector, sync: str, batch_id: str, rows: list[dict[str, Any]]
) -> None:
    inserts = pa.Table.from_pylist(rows)
    empty = pa.table({"__ref": pa.array([], pa.string()), "id": pa.array([], pa.int64())})
    result = pg.apply(ApplyBatch(batch_id, sync, "public.items", ("id",), inserts, empty, empty))
    assert result.inserted == len(rows) and not result.rejected


def test_origin_tagging(db: psycopg.Connection, pg: PostgresConnector) -> None:
    db.execute("CREATE TABLE items (id serial PRIMARY KEY, name text)")
    pg.setup("s1", ["public.items"])
    pg.setup("s2", ["public.items"])
    db.execute("INSERT INTO items (name) VALUES ('by a user')")
    _apply_insert(
        pg, "s1", "b1", [{"__ref": "r1", "name": "by s1"}, {"__ref": "r2", "name": "too"}]
    )
    _apply_insert(pg, "s2", "b2", [{"__ref": "r1", "name": "by s2"}])
    db.execute("UPDATE items SET name = 'user again' WHERE name = 'by s1'")

    seen = [(c.after or {}).get("name") for c in pg.capture("s1", ["items"], None, 100).changes]
    origins = [c.origin for c in pg.capture("s1", ["items"], None, 100).changes]
    assert seen == ["by a user", "by s1", "too", "by s2", "user again"]
    # s1's own writes are tagged; s2's writes are a real change for s1 and carry s2's name
    assert origins == [None, "s1", "s1", "s2", None]
    # the marker rows themselves are never emitted, even if someone asks for the table
    both = pg.capture("s1", ["items", "syncswim.applied"], None, 100)
    assert {c.table for c in both.changes} == {"public.items"}


def test_resume_from_a_position_gives_only_later_changes(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    db.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
    pg.setup("s1", ["items"])
    db.execute("INSERT INTO items VALUES (1, 'a')")
    db.execute("INSERT INTO items VALUES (2, 'b')")
    first = pg.capture("s1", ["items"], None, 100)
    assert [c.key["id"] for c in first.changes] == [1, 2]
    db.execute("INSERT INTO items VALUES (3, 'c')")
    later = pg.capture("s1", ["items"], first.end_position, 100)
    assert [c.key["id"] for c in later.changes] == [3]
    # resuming from one change's position gives the rest of that stream
    middle = pg.capture("s1", ["items"], first.changes[0].position, 100)
    assert [c.key["id"] for c in middle.changes] == [2, 3]
    idle = pg.capture("s1", ["items"], later.end_position, 100)
    assert idle.changes == () and idle.end_position == later.end_position


def test_end_position_moves_past_transactions_with_nothing_to_emit(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    db.execute("CREATE TABLE items (id int PRIMARY KEY)")
    db.execute("CREATE TABLE other (id int PRIMARY KEY)")
    pg.setup("s1", ["items", "other"])
    start = pg.current_position("s1")
    db.execute("INSERT INTO other VALUES (1)")
    batch = pg.capture("s1", ["items"], start, 100)
    assert batch.changes == ()
    assert lsn(batch.end_position) > lsn(start)


def test_max_changes_stops_at_a_transaction_boundary(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    db.execute("CREATE TABLE items (id int PRIMARY KEY)")
    pg.setup("s1", ["items"])
    db.execute("INSERT INTO items SELECT generate_series(1, 5)")
    db.execute("INSERT INTO items SELECT generate_series(6, 8)")
    first = pg.capture("s1", ["items"], None, 2)
    assert [c.key["id"] for c in first.changes] == [1, 2, 3, 4, 5]  # whole transaction
    second = pg.capture("s1", ["items"], first.end_position, 2)
    assert [c.key["id"] for c in second.changes] == [6, 7, 8]


def test_many_unconfirmed_transactions_before_since_are_skipped(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    """More old transactions than one peek asks for: capture must ask again, not stop."""
    db.execute("CREATE TABLE items (id int PRIMARY KEY)")
    pg.setup("s1", ["items"])
    for i in range(150):
        db.execute("INSERT INTO items VALUES (%s)", (i,))
    seen = pg.capture("s1", ["items"], None, 1000)
    assert len(seen.changes) == 150
    db.execute("INSERT INTO items VALUES (1000)")
    after = pg.capture("s1", ["items"], seen.end_position, 1)
    assert [c.key["id"] for c in after.changes] == [1000]


def _peeked_rows(db: psycopg.Connection) -> int:
    row = db.execute(
        "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('syncswim_s1', NULL, NULL,"
        " 'proto_version', '1', 'publication_names', 'syncswim_s1')"
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_confirm_releases_the_slot(db: psycopg.Connection, pg: PostgresConnector) -> None:
    db.execute("CREATE TABLE items (id int PRIMARY KEY)")
    pg.setup("s1", ["items"])
    db.execute("INSERT INTO items VALUES (1)")
    db.execute("INSERT INTO items VALUES (2)")
    batch = pg.capture("s1", ["items"], None, 100)
    assert batch.end_position is not None and _peeked_rows(db) > 0
    # confirming one change keeps its transaction in the slot
    pg.confirm("s1", batch.changes[1].position)
    assert [c.key["id"] for c in pg.capture("s1", ["items"], None, 100).changes] == [2]
    pg.confirm("s1", batch.end_position)
    assert _peeked_rows(db) == 0
    assert pg.capture("s1", ["items"], None, 100).changes == ()
    pg.confirm("s1", batch.changes[0].position)  # backwards: ignored, not an error
    db.execute("INSERT INTO items VALUES (3)")
    assert [c.key["id"] for c in pg.capture("s1", ["items"], None, 100).changes] == [3]


def test_capture_and_confirm_without_a_slot_raise_fatal(pg: PostgresConnector) -> None:
    with pytest.raises(FatalError, match="syncswim_nope"):
        pg.capture("nope", ["items"], None, 10)
    with pytest.raises(FatalError, match="syncswim_nope"):
        pg.confirm("nope", PgPosition(1, 0))


def test_capture_after_teardown_raises_fatal(db: psycopg.Connection, pg: PostgresConnector) -> None:
    db.execute("CREATE TABLE items (id int PRIMARY KEY)")
    pg.setup("s1", ["items"])
    pg.teardown("s1")
    with pytest.raises(FatalError, match="syncswim_s1"):
        pg.capture("s1", ["items"], None, 10)


def test_foreign_positions_are_refused(pg: PostgresConnector) -> None:
    from syncswim_lib.envelope import ReplayPosition

    with pytest.raises(ConfigError, match="replay"):
        pg.capture("s1", ["items"], ReplayPosition(1), 10)
    with pytest.raises(ConfigError, match="replay"):
        pg.confirm("s1", ReplayPosition(1))


def test_truncate_is_reported_at_its_place_not_emitted(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    db.execute("CREATE TABLE items (id int PRIMARY KEY)")
    db.execute("CREATE TABLE other (id int PRIMARY KEY)")
    pg.setup("s1", ["items", "other"])
    db.execute("INSERT INTO items VALUES (1)")
    with db.transaction():
        db.execute("INSERT INTO items VALUES (3)")
        db.execute("TRUNCATE items")
        db.execute("INSERT INTO items VALUES (2)")
    batch = pg.capture("s1", ["items"], None, 100)
    assert [(c.op, c.key["id"]) for c in batch.changes] == [
        (Op.INSERT, 1), (Op.INSERT, 3), (Op.INSERT, 2),
    ]  # fmt: skip
    [(table, position)] = batch.truncates
    assert table == "public.items"
    # after the row written before it in its transaction, before the one written after
    assert batch.changes[1].position < position < batch.changes[2].position
    # a table not captured is not reported; a truncate already read is not again
    db.execute("TRUNCATE other")
    assert pg.capture("s1", ["items"], batch.end_position, 100).truncates == ()


def test_unchanged_toasted_value_is_taken_from_the_old_row(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    db.execute("CREATE TABLE items (id int PRIMARY KEY, n int, big text)")
    db.execute(
        "INSERT INTO items SELECT 1, 0, string_agg(md5(i::text), '') FROM generate_series(1, 400) i"
    )
    pg.setup("s1", ["items"])
    db.execute("UPDATE items SET n = 1")
    (upd,) = pg.capture("s1", ["items"], None, 100).changes
    assert upd.after is not None and upd.before is not None
    assert len(upd.after["big"]) == 12800 and upd.after["big"] == upd.before["big"]
    assert upd.changed_fields == ("n",)


def test_changes_of_a_dropped_table_are_reported(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    db.execute("CREATE TABLE items (id int PRIMARY KEY)")
    pg.setup("s1", ["items"])
    db.execute("INSERT INTO items VALUES (1)")
    db.execute("DROP TABLE items")
    with pytest.raises(FatalError, match=r"holds changes of public\.items"):
        pg.capture("s1", ["items"], None, 10)


def test_unreachable_server_is_retriable() -> None:
    from syncswim_lib.errors import RetriableError
    from syncswim_lib.sandbox.servers import free_port

    connector = PostgresConnector(f"postgresql://postgres@127.0.0.1:{free_port()}/x", "app_db")
    with pytest.raises(RetriableError, match="cannot connect"):
        connector.capture("s1", ["items"], None, 10)


def test_a_new_column_shows_up_in_later_changes(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    db.execute("CREATE TABLE items (id int PRIMARY KEY)")
    pg.setup("s1", ["items"])
    db.execute("INSERT INTO items VALUES (1)")
    first = pg.capture("s1", ["items"], None, 10)
    db.execute("ALTER TABLE items ADD COLUMN price numeric(6,2)")
    db.execute("INSERT INTO items VALUES (2, 9.99)")
    both = pg.capture("s1", ["items"], None, 10).changes  # the same connector, plans cached
    assert [c.after for c in both] == [{"id": 1}, {"id": 2, "price": Decimal("9.99")}]
    (later,) = pg.capture("s1", ["items"], first.end_position, 10).changes
    assert (later.position, later.after) == (both[1].position, both[1].after)


def test_values_python_cannot_hold_keep_their_text_in_every_row_of_a_change(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    """A text no converter reads (infinity, a BC date) makes its row go again through the
    guarded converters; an update's old row takes an unchanged column's value from the new
    row, and converts a changed one itself."""
    db.execute("CREATE TABLE items (id int PRIMARY KEY, at timestamptz, day date, n numeric)")
    pg.setup("s1", ["items"])
    db.execute("SET TIME ZONE 'UTC'")
    db.execute("INSERT INTO items VALUES (1, 'infinity', '0044-03-15 BC', 'NaN')")
    db.execute("UPDATE items SET n = 2.50")  # the unreadable values unchanged
    db.execute("UPDATE items SET at = '2024-05-01 10:00:00.123456+00', day = '2024-05-01'")
    db.execute("UPDATE items SET at = '-infinity', n = 3")  # a readable old, unreadable new
    ins, upd1, upd2, upd3 = pg.capture("s1", ["items"], None, 100).changes
    when = datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert ins.after is not None and ins.after["n"].is_nan()
    assert {k: v for k, v in ins.after.items() if k != "n"} == {
        "id": 1, "at": "infinity", "day": "0044-03-15 BC"
    }  # fmt: skip
    assert upd1.before is not None and upd1.before["n"].is_nan()
    assert upd1.after == {"id": 1, "at": "infinity", "day": "0044-03-15 BC", "n": Decimal("2.50")}
    assert upd1.changed_fields == ("n",)
    assert upd2.before == upd1.after
    assert upd2.after == {"id": 1, "at": when, "day": date(2024, 5, 1), "n": Decimal("2.50")}
    assert upd2.changed_fields == ("at", "day")
    assert upd3.before == upd2.after
    assert upd3.after == {"id": 1, "at": "-infinity", "day": date(2024, 5, 1), "n": Decimal(3)}
    assert upd3.changed_fields == ("at", "n")
