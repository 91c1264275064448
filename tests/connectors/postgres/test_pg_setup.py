"""describe, setup and teardown against a real server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from syncswim_lib.connectors.postgres import PostgresConnector
from syncswim_lib.connectors.postgres import connector as connector_mod
from syncswim_lib.envelope import PgPosition
from syncswim_lib.errors import ConfigError
from syncswim_lib.sandbox.servers import PostgresServer
from syncswim_lib.values import ColumnInfo

pytestmark = pytest.mark.integration


@pytest.fixture
def db(pg_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[PostgresConnector]:
    connector = PostgresConnector(pg_dsn, "app_db")
    yield connector
    connector.close()


def test_describe(db: psycopg.Connection, pg: PostgresConnector) -> None:
    db.execute("CREATE SCHEMA crm")
    db.execute("CREATE TYPE crm.mood AS ENUM ('ok', 'sad')")
    db.execute("CREATE DOMAIN crm.money2 AS numeric(8,2)")
    db.execute(
        "CREATE TABLE crm.people (tenant int, id bigint GENERATED ALWAYS AS IDENTITY,"
        " seq serial, code varchar(12) NOT NULL, price numeric(10,4), cash crm.money2,"
        " mood crm.mood, at timestamptz(3), born date, doc jsonb, tags text[],"
        " PRIMARY KEY (tenant, id))"
    )
    info = pg.describe("crm.people")
    assert info.name == "crm.people" and info.primary_key == ("tenant", "id")
    by_name = {c.name: c for c in info.columns}
    assert [c.name for c in info.columns][:3] == ["tenant", "id", "seq"]
    assert by_name["id"] == ColumnInfo("id", "int", "bigint", False, auto_generated=True)
    assert by_name["seq"].auto_generated and not by_name["tenant"].auto_generated
    assert by_name["code"] == ColumnInfo(
        "code", "text", "character varying(12)", False, max_length=12
    )
    assert (by_name["price"].family, by_name["price"].precision, by_name["price"].scale) == (
        "decimal",
        10,
        4,
    )
    assert (by_name["cash"].family, by_name["cash"].precision, by_name["cash"].scale) == (
        "decimal",
        8,
        2,
    )
    assert by_name["mood"].family == "text"
    assert (by_name["at"].family, by_name["at"].precision) == ("timestamptz", 3)
    assert by_name["born"].family == "date" and by_name["doc"].family == "json"
    assert by_name["tags"].family == "other" and by_name["tags"].db_type == "text[]"
    # a bare name is in public
    db.execute("CREATE TABLE plain (id int PRIMARY KEY)")
    assert pg.describe("plain").name == "public.plain"


def test_describe_missing_table_is_a_config_error(pg: PostgresConnector) -> None:
    with pytest.raises(ConfigError, match=r"^table public\.x does not exist in endpoint app_db$"):
        pg.describe("x")
    with pytest.raises(ConfigError, match=r"schema\.table"):
        pg.describe("a.b.c")


def _publication_tables(db: psycopg.Connection, pub: str) -> set[str]:
    return {
        f"{s}.{t}"
        for s, t in db.execute(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", (pub,)
        ).fetchall()
    }


def _slots(db: psycopg.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT slot_name FROM pg_replication_slots").fetchall()}


def test_setup_is_idempotent_and_follows_the_table_list(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    db.execute("CREATE TABLE a (id int PRIMARY KEY)")
    db.execute("CREATE TABLE b (id int PRIMARY KEY)")
    pg.setup("s1", ["a"])
    pg.setup("s1", ["a"])
    assert _publication_tables(db, "syncswim_s1") == {"public.a", "syncswim.applied"}
    assert "syncswim_s1" in _slots(db)
    identity = db.execute("SELECT relreplident::text FROM pg_class WHERE relname = 'a'").fetchone()
    assert identity == ("f",)
    pg.setup("s1", ["a", "public.b"])
    assert _publication_tables(db, "syncswim_s1") == {"public.a", "public.b", "syncswim.applied"}


def test_setup_refuses_bad_names_and_tables(db: psycopg.Connection, pg: PostgresConnector) -> None:
    db.execute("CREATE TABLE nokey (id int)")
    for bad in ("Bad", "a-b", "", "x" * 55):
        with pytest.raises(ConfigError, match="sync name"):
            pg.setup(bad, ["nokey"])
    with pytest.raises(ConfigError, match=r"public\.nokey in endpoint app_db has no primary key"):
        pg.setup("s1", ["nokey"])
    with pytest.raises(ConfigError, match=r"public\.missing does not exist"):
        pg.setup("s1", ["missing"])
    assert _slots(db) == set()


def test_teardown_keeps_the_marker_table_while_another_sync_uses_it(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    db.execute("CREATE TABLE a (id int PRIMARY KEY)")
    pg.setup("s1", ["a"])
    pg.setup("s2", ["a"])
    pg.teardown("s1")
    assert _slots(db) == {"syncswim_s2"}
    assert db.execute("SELECT to_regclass('syncswim.applied')").fetchone() == ("syncswim.applied",)
    pg.teardown("s2")
    pg.teardown("s2")  # again: nothing left to drop, no error
    assert _slots(db) == set()
    assert db.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)
    assert db.execute("SELECT to_regnamespace('syncswim')").fetchone() == (None,)


def test_slot_of_the_same_name_in_another_database(
    pg_server: PostgresServer, db: psycopg.Connection, pg: PostgresConnector
) -> None:
    """Slot names are server-wide: a clash is reported, the other database's slot kept."""
    db.execute("CREATE TABLE a (id int PRIMARY KEY)")
    with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
        admin.execute("CREATE DATABASE other_db")
        try:
            other = pg_server.dsn.rsplit("/", 1)[0] + "/other_db"
            with psycopg.connect(other, autocommit=True) as conn:
                conn.execute("SELECT pg_create_logical_replication_slot('syncswim_s1', 'pgoutput')")
            with pytest.raises(ConfigError, match=r"already exists .* for database other_db"):
                pg.setup("s1", ["a"])
            pg.teardown("s1")
            assert "syncswim_s1" in _slots(db)
        finally:
            admin.execute("SELECT pg_drop_replication_slot('syncswim_s1')")
            admin.execute("DROP DATABASE other_db WITH (FORCE)")


def test_current_position_moves_forward(db: psycopg.Connection, pg: PostgresConnector) -> None:
    db.execute("SET synchronous_commit = on")
    db.execute("CREATE TABLE a (id int PRIMARY KEY)")
    first = pg.current_position("s1")
    db.execute("INSERT INTO a VALUES (1)")
    later = pg.current_position("s1")
    assert isinstance(first, PgPosition) and isinstance(later, PgPosition)
    assert later > first
    with pytest.raises(ConfigError):
        pg.current_position("No")


def test_current_position_waits_for_transactions_in_flight(
    pg_dsn: str, db: psycopg.Connection, pg: PostgresConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.execute("CREATE TABLE a (id int PRIMARY KEY)")
    with psycopg.connect(pg_dsn) as writer:
        writer.execute("INSERT INTO a VALUES (1)")  # holds an xid, uncommitted
        # one that ends while we wait is waited for, not the whole timeout
        timer = threading.Timer(0.3, writer.commit)
        timer.start()
        t0 = time.monotonic()
        pg.current_position("s1")
        elapsed = time.monotonic() - t0
        timer.join()
        assert 0.25 <= elapsed < connector_mod.IN_FLIGHT_WAIT_S
        # one that runs on is given up on after the wait: it commits after the position
        writer.execute("INSERT INTO a VALUES (2)")
        monkeypatch.setattr(connector_mod, "IN_FLIGHT_WAIT_S", 0.2)
        t0 = time.monotonic()
        pg.current_position("s1")
        assert 0.2 <= time.monotonic() - t0 < 1.5
        writer.rollback()
