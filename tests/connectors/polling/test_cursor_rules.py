"""The cursor rules on real databases: rows on the boundary are neither lost nor doubled,
a row committed late with an older modification time is still captured inside the
safety lag (and lost without it: the rule is what saves it), versions wait for the lag
too, and long runs of one value are paged without a gap."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from syncswim_lib.config.polling import DeleteDetection, PollSpec
from syncswim_lib.connectors.base import CaptureBatch
from syncswim_lib.connectors.polling import capture as capture_mod
from syncswim_lib.connectors.polling.postgres import PolledPostgres
from syncswim_lib.connectors.postgres import PostgresConnector
from syncswim_lib.connectors.sqlite import SqliteConnector
from syncswim_lib.envelope import Position

SYNC = "s"
T0 = datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)


def spec(column: str = "mod", lag: float = 0.0) -> PollSpec:
    return PollSpec(column, DeleteDetection(), safety_lag_s=lag)


class Polls:
    """A connector polled by hand: each `poll` starts from the previous end position."""

    def __init__(self, conn: SqliteConnector | PolledPostgres, table: str) -> None:
        self.conn = conn
        self.table = table
        self.position: Position | None = None

    def poll(self, max_changes: int = 5000) -> list[str]:
        batch: CaptureBatch = self.conn.capture(SYNC, [self.table], self.position, max_changes)
        self.position = batch.end_position
        return [str(c.after["v"] if c.after else c.before) for c in batch.changes]  # type: ignore[index]


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT, mod TIMESTAMP, ver INTEGER)")
    yield conn
    conn.close()


def lite_connector(
    conn: sqlite3.Connection, column: str = "mod", lag: float = 0.0, **clocks: object
) -> SqliteConnector:
    (path,) = [row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"]
    return SqliteConnector(path, "app", {f"{SYNC}/items": spec(column, lag)}, **clocks)  # type: ignore[arg-type]


def test_rows_sharing_the_cursor_timestamp_across_two_polls(lite: sqlite3.Connection) -> None:
    stamp = "2026-01-01 00:00:01"
    lite.execute("INSERT INTO items (v, mod) VALUES ('a', ?), ('b', ?)", (stamp, stamp))
    polls = Polls(
        lite_connector(lite, clock=lambda: datetime(2026, 1, 1, 0, 1, tzinfo=UTC)), "items"
    )
    assert polls.poll() == ["a", "b"]
    # a row committed after that poll with the very same time: the closed range reads
    # it, the kept boundary leaves a and b out
    lite.execute("INSERT INTO items (v, mod) VALUES ('c', ?)", (stamp,))
    assert polls.poll() == ["c"]
    assert polls.poll() == []
    # a second write within the same tick of the clock is a new version, not a repeat
    lite.execute("UPDATE items SET v = 'a2' WHERE v = 'a'")
    assert polls.poll() == ["a2"]
    assert polls.poll() == []


# SQLite's own strftime('%f') writes milliseconds with their trailing zeros: the
# connector's shortest spelling of that instant ('...01.5') sorts before the stored text
@pytest.mark.parametrize(
    "stamp", ["2026-01-01 00:00:01", "2026-01-01 00:00:01.500", "2026-01-01 00:00:01.000"]
)
def test_a_long_run_of_one_timestamp_is_paged_without_loss_or_repeat(
    lite: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch, stamp: str
) -> None:
    monkeypatch.setattr(capture_mod, "PAGE_ROWS", 100)
    lite.executemany(
        "INSERT INTO items (v, mod) VALUES (?, ?)", [(f"r{i:04}", stamp) for i in range(1050)]
    )
    polls = Polls(lite_connector(lite, clock=lambda: datetime(2026, 1, 2, tzinfo=UTC)), "items")
    seen: list[str] = []
    sizes = []
    for _ in range(10):
        got = polls.poll(max_changes=300)
        sizes.append(len(got))
        seen += got
    assert sorted(seen) == [f"r{i:04}" for i in range(1050)]  # each once
    assert sizes[:5] == [300, 300, 300, 150, 0]


def test_a_version_column_waits_for_the_lag_before_moving_on(lite: sqlite3.Connection) -> None:
    clock = {"now": 100.0}
    conn = lite_connector(lite, column="ver", lag=10.0, now=lambda: clock["now"])
    polls = Polls(conn, "items")
    lite.execute("INSERT INTO items (v, ver) VALUES ('v1', 1), ('v3', 3)")
    assert polls.poll() == ["v1", "v3"]
    # version 2 was taken by a transaction that commits only now, 5 s later: inside the
    # lag the cursor has not passed it
    clock["now"] = 105.0
    lite.execute("INSERT INTO items (v, ver) VALUES ('v2', 2)")
    assert polls.poll() == ["v2"]
    clock["now"] = 200.0
    assert polls.poll() == []
    # long after, the cursor stands at the largest version seen: a late version 2 now
    # is older than the lag allows and is not read (the documented limit)
    lite.execute("INSERT INTO items (v, ver) VALUES ('late', 2)")
    assert polls.poll() == []


PG_DDL = "CREATE TABLE items (id serial PRIMARY KEY, v text, mod timestamptz DEFAULT now())"


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[str]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(PG_DDL)
    yield pg_dsn


def pg_connector(dsn: str, lag: float) -> PolledPostgres:
    return PolledPostgres(PostgresConnector(dsn, "app"), {f"{SYNC}/public.items": spec(lag=lag)})


@pytest.mark.integration
@pytest.mark.parametrize("lag", [30.0, 0.0])
def test_a_late_commit_with_an_older_time_inside_the_lag(pg: str, lag: float) -> None:
    conn = pg_connector(pg, lag)
    polls = Polls(conn, "public.items")
    try:
        with psycopg.connect(pg) as late, psycopg.connect(pg, autocommit=True) as other:
            # `late` takes its time (now() is its start) and commits after a poll that
            # already read a newer row
            late.execute("INSERT INTO items (v) VALUES ('late')")
            other.execute("INSERT INTO items (v) VALUES ('early')")
            assert polls.poll() == ["early"]
            late.commit()
        got = polls.poll()
    finally:
        conn.close()
    if lag:
        assert got == ["late"]
    else:
        assert got == []  # without the lag the cursor passed it: what the rule prevents


@pytest.mark.integration
def test_concurrent_commits_sharing_one_timestamp_on_postgres(pg: str) -> None:
    conn = pg_connector(pg, 0.0)
    polls = Polls(conn, "public.items")
    stamp = "2026-01-01 00:00:01+00"
    try:
        with psycopg.connect(pg) as one, psycopg.connect(pg) as two:
            one.execute("INSERT INTO items (v, mod) VALUES ('one', %s)", (stamp,))
            two.execute("INSERT INTO items (v, mod) VALUES ('two', %s)", (stamp,))
            one.commit()
            assert polls.poll() == ["one"]
            two.commit()
            assert polls.poll() == ["two"]
            assert polls.poll() == []
    finally:
        conn.close()
