"""Which refusals are one record's: a row the server refuses for its own values is parked
with the server's error while every other row of the batch is written, whatever SQLSTATE
the server gives (here 54000, a value too large for its btree index)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from syncswim_lib.connectors.base import ApplyBatch
from syncswim_lib.connectors.postgres import PostgresConnector
from syncswim_lib.connectors.postgres.connection import is_record_error

pytestmark = pytest.mark.integration

# 1.28 MB of incompressible text: far past what one btree index row may hold (~2.7 kB)
POISON = secrets.token_hex(640_000)


@pytest.fixture
def db(pg_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)")
        conn.execute("CREATE INDEX notes_body ON notes (body)")
        yield conn


@pytest.fixture
def pg(pg_dsn: str, db: psycopg.Connection) -> Iterator[PostgresConnector]:
    connector = PostgresConnector(pg_dsn, "app_db")
    connector.setup("s1", ["notes"])
    yield connector
    connector.close()


def batch(
    batch_id: str,
    inserts: list[dict[str, Any]] = (),
    updates: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> ApplyBatch:
    schema = pa.schema([("__ref", pa.string()), ("id", pa.int64()), ("body", pa.string())])
    return ApplyBatch(
        batch_id=batch_id,
        origin="s1",
        table="public.notes",
        key_columns=("id",),
        inserts=pa.Table.from_pylist(list(inserts), schema=schema),
        updates=pa.Table.from_pylist(list(updates), schema=schema),
        deletes=pa.Table.from_pylist(
            [], schema=pa.schema([("__ref", pa.string()), ("id", pa.int64())])
        ),
    )


def test_the_server_gives_54000_for_the_poison(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.Error) as err:
        db.execute("INSERT INTO notes VALUES (1, %s)", (POISON,))
    assert err.value.sqlstate == "54000" and is_record_error(err.value)


def test_an_index_row_too_large_is_parked_while_a_thousand_apply(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    inserts = [{"__ref": f"r{i}", "id": i, "body": f"note {i}"} for i in range(1, 1001)]
    inserts.insert(500, {"__ref": "poison", "id": 5000, "body": POISON})
    result = pg.apply(batch("b1", inserts=inserts))
    assert result.inserted == 1000 and set(result.rejected) == {"poison"}
    assert "index row" in result.rejected["poison"]
    assert db.execute("SELECT count(*) FROM notes").fetchone() == (1000,)
    # the same value as an update: parked too, the other update written
    result = pg.apply(
        batch(
            "b2",
            updates=[
                {"__ref": "u1", "id": 1, "body": POISON},
                {"__ref": "u2", "id": 2, "body": "edited"},
            ],
        )
    )
    assert result.updated == 1 and set(result.rejected) == {"u1"}
    assert db.execute("SELECT body FROM notes WHERE id IN (1, 2) ORDER BY id").fetchall() == [
        ("note 1",),
        ("edited",),
    ]
    # fixed at the source, the record applies
    fixed = pg.apply(batch("b3", inserts=[{"__ref": "poison", "id": 5000, "body": "short"}]))
    assert fixed.inserted == 1 and not fixed.rejected


def test_statement_errors_are_not_a_records(db: psycopg.Connection) -> None:
    """Too many arguments, a missing column: every row would fail alike, none is parked."""
    for sql in ("SELECT no_such_column FROM notes", "SELECT concat(" + ",".join(["1"] * 101) + ")"):
        with pytest.raises(psycopg.Error) as err:
            db.execute(sql)
        assert not is_record_error(err.value), err.value.sqlstate


def test_a_trigger_refusing_one_row_with_its_own_sqlstate_parks_that_row(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    """Whatever code a trigger raises (an application's own SQLSTATE class here), the row it
    refuses is that record's problem; only connection, resource, lock, privilege and
    statement errors stop the batch."""
    db.execute(
        "CREATE FUNCTION refuse_bad() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.body = 'bad' THEN RAISE EXCEPTION 'no bad notes' USING ERRCODE = 'SW001'; "
        "END IF; RETURN NEW; END $$"
    )
    db.execute(
        "CREATE TRIGGER notes_refuse BEFORE INSERT ON notes FOR EACH ROW "
        "EXECUTE FUNCTION refuse_bad()"
    )
    inserts = [{"__ref": f"r{i}", "id": i, "body": f"note {i}"} for i in range(1, 6)]
    inserts.insert(2, {"__ref": "bad", "id": 99, "body": "bad"})
    result = pg.apply(batch("b1", inserts=inserts))
    assert result.inserted == 5 and set(result.rejected) == {"bad"}
    assert "no bad notes" in result.rejected["bad"]


@pytest.mark.parametrize(
    ("sqlstate", "row"),
    [
        ("23505", True),  # unique violation
        ("22001", True),  # value too long
        ("P0001", True),  # a trigger's RAISE
        ("SW001", True),  # an application's own code
        ("42804", True),  # a value of the wrong type for its column
        ("54000", True),  # a row too large for an index
        ("54023", False),  # too many arguments: the statement's
        ("08006", False),  # the connection failed
        ("40P01", False),  # deadlock: the transaction is retried
        ("53100", False),  # disk full
        ("57014", False),  # cancelled (statement_timeout)
        ("42501", False),  # no privilege: every row would fail
        ("42P01", False),  # no such table
        ("28P01", False),  # authentication
        ("XX000", False),  # internal error
    ],
)
def test_which_sqlstates_are_a_records(sqlstate: str, row: bool) -> None:
    class Err(Exception):
        pass

    exc = Err()
    exc.sqlstate = sqlstate  # type: ignore[attr-defined]
    assert is_record_error(exc) is row
