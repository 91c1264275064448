from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from syncswim_lib.envelope import Change, PgPosition
from syncswim_lib.errors import ConfigError, FatalError, RetriableError
from syncswim_lib.state import open_store, schema
from syncswim_lib.state.postgres import PostgresStateStore
from syncswim_lib.state.sqlite import SqliteStateStore
from syncswim_lib.state.sqlstore import SqlStateStore

MakeChange = Callable[..., Change]


def test_open_store_sqlite_url_and_plain_path(tmp_path: Path) -> None:
    by_url = open_store(f"sqlite:///{tmp_path}/a/state.db")
    assert isinstance(by_url, SqliteStateStore)
    by_url.set_position("s", "x", PgPosition(1))
    by_url.close()
    assert (tmp_path / "a" / "state.db").exists()
    by_path = open_store(str(tmp_path / "a" / "state.db"))
    assert isinstance(by_path, SqliteStateStore)
    assert by_path.get_position("s", "x") == PgPosition(1)
    by_path.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@localhost/db", "'mysql'"),
        ("redis://localhost", "'redis'"),
        ("sqlite://", "names no file"),
        ("", "empty"),
    ],
)
def test_open_store_refuses_what_it_cannot_open(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_store(url)


def test_open_store_reports_an_unopenable_sqlite_file(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(ConfigError, match="cannot open the SQLite state store"):
        open_store(str(tmp_path / "dir.db"))


def test_schema_creation_is_idempotent_and_versioned(
    open_another: Callable[[], SqlStateStore],
) -> None:
    first = open_another()
    first.set_position("s", "x", PgPosition(7))
    second = open_another()  # finds the tables there
    assert second.get_position("s", "x") == PgPosition(7)
    with second._read() as cur:
        cur.execute("SELECT version FROM schema_version ORDER BY version")
        assert cur.fetchall() == [(v,) for v in range(1, schema.SCHEMA_VERSION + 1)]


@pytest.mark.integration
def test_postgres_url_and_schema(pg_dsn: str) -> None:
    store = open_store(pg_dsn + "?schema=state_two&connect_timeout=5")
    assert isinstance(store, PostgresStateStore) and store.schema_name == "state_two"
    store.set_position("s", "x", PgPosition(3))
    store.close()
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT position::text FROM state_two.positions").fetchall() == [
            ('{"kind":"pg","lsn":"0/3","seq":0}',)
        ]
        assert conn.execute(
            "SELECT to_regclass('syncswim_state.positions') IS NULL"
        ).fetchone() == (True,)
    default = open_store(pg_dsn.replace("postgresql://", "postgres://"))
    assert isinstance(default, PostgresStateStore) and default.schema_name == "syncswim_state"
    default.close()
    with pytest.raises(ConfigError, match="schema name"):
        open_store(pg_dsn + "?schema=bad-name")


@pytest.mark.integration
def test_postgres_unreachable_is_retriable(pg_dsn: str) -> None:
    with pytest.raises(RetriableError, match="cannot reach"):
        PostgresStateStore(pg_dsn.rsplit("/", 1)[0] + "/no_such_database")


@pytest.mark.integration
def test_postgres_reconnects_after_losing_its_connection(
    pg_dsn: str, make_change: MakeChange
) -> None:
    store = PostgresStateStore(pg_dsn)
    try:
        store.append_changes("s", "app_db", [("customers", make_change(1))], None)
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            (killed,) = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone() or (0,)
        assert killed == 1
        with pytest.raises(RetriableError):
            store.pending_counts("s")
        assert store.pending_counts("s") == {"customers": 1}
    finally:
        store.close()


def test_sqlite_store_refuses_files_it_cannot_use(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE journal (id INTEGER PRIMARY KEY)")  # somebody else's table
    conn.commit()
    conn.close()
    with pytest.raises(FatalError, match="cannot set up the state store"):
        SqliteStateStore(foreign)
    text = tmp_path / "notes.txt"
    text.write_text("not a database, but long enough to have a header of its own\n" * 10)
    with pytest.raises(FatalError, match="cannot use"):
        SqliteStateStore(text)


def test_schema_migrations_run_once_in_order(
    open_another: Callable[[], SqlStateStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    old = open_another()
    old.set_position("s", "x", PgPosition(1))
    current = schema.SCHEMA_VERSION
    monkeypatch.setattr(schema, "SCHEMA_VERSION", current + 2)
    monkeypatch.setattr(
        schema,
        "MIGRATIONS",
        {
            **schema.MIGRATIONS,
            current + 1: "CREATE TABLE extra (x INTEGER)",
            current + 2: "ALTER TABLE extra ADD COLUMN y {ts};\nINSERT INTO extra (x) VALUES (1)",
        },
    )
    upgraded = open_another()
    again = open_another()  # nothing left to do
    with again._read() as cur:
        cur.execute("SELECT version FROM schema_version ORDER BY version")
        assert cur.fetchall() == [(v,) for v in range(1, current + 3)]
        cur.execute("SELECT x, y FROM extra")
        assert cur.fetchall() == [(1, None)]
    assert upgraded.get_position("s", "x") == PgPosition(1)
    # an older syncswim must not write to a store it does not understand
    monkeypatch.setattr(schema, "SCHEMA_VERSION", current)
    with pytest.raises(FatalError, match="newer than this syncswim"):
        open_another()
