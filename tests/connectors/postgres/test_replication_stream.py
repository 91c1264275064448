"""The continuous reader of a slot over the replication protocol (`replication.py`):
positions and confirm-after-journal, reconnects, a slot held by another reader, a slot
that is gone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from syncswim_lib.connectors.base import CaptureBatch
from syncswim_lib.connectors.postgres import PostgresConnector
from syncswim_lib.connectors.postgres.replication import ReplicationStream
from syncswim_lib.envelope import Op, PgPosition
from syncswim_lib.errors import FatalError
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.integration

SYNC = "rs"
SLOT = "syncswim_rs"
TABLES = ["public.items"]


@pytest.fixture
def db(pg_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = on")
        conn.execute("CREATE TABLE items (id integer PRIMARY KEY, name text)")
        yield conn


@pytest.fixture
def pg(pg_dsn: str, db: psycopg.Connection) -> Iterator[PostgresConnector]:
    connector = PostgresConnector(pg_dsn, "app")
    connector.setup(SYNC, TABLES)
    yield connector
    connector.close()


def start(pg: PostgresConnector, since: PgPosition | None) -> ReplicationStream:
    stream = ReplicationStream(pg.dsn, "app", SYNC, TABLES, since)
    stream.start()
    assert stream.connected.wait(30), "the stream did not connect"
    return stream


def take(stream: ReplicationStream, since: Any, n: int, timeout: float = 20) -> CaptureBatch:
    """What the stream holds once it has `n` changes after `since`."""
    seen: list[Any] = []
    end = since

    def enough() -> bool:
        nonlocal end
        batch = stream.capture(SYNC, TABLES, end, 1000)
        seen.extend(batch.changes)
        end = batch.end_position
        return len(seen) >= n

    wait_for(enough, timeout, f"{n} changes from the stream")
    return CaptureBatch(tuple(seen), end)


def confirmed(db: psycopg.Connection) -> int:
    row = db.execute(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
        (SLOT,),
    ).fetchone()
    assert row is not None
    return PgPosition.parse_lsn(row[0])


def active_pid(db: psycopg.Connection) -> int | None:
    row = db.execute(
        "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (SLOT,)
    ).fetchone()
    return None if row is None else row[0]


def test_changes_with_positions_and_the_slot_released_only_once_confirmed(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    since = pg.current_position(SYNC)
    assert isinstance(since, PgPosition)
    stream = start(pg, since)
    try:
        db.execute("INSERT INTO items VALUES (1, 'a')")
        with db.transaction():
            db.execute("UPDATE items SET name = 'b' WHERE id = 1")
            db.execute("INSERT INTO items VALUES (2, 'c')")
        batch = take(stream, since, 3)
        assert [(c.op, c.key) for c in batch.changes] == [
            (Op.INSERT, {"id": 1}),
            (Op.UPDATE, {"id": 1}),
            (Op.INSERT, {"id": 2}),
        ]
        positions = [c.position for c in batch.changes]
        assert positions == sorted(positions) and all(p > since for p in positions)  # type: ignore[operator]
        # the two changes of the second transaction share its commit LSN, numbered in order
        second, third = batch.changes[1].position, batch.changes[2].position
        assert isinstance(second, PgPosition) and isinstance(third, PgPosition)
        assert second.lsn == third.lsn and (second.seq, third.seq) == (1, 2)
        end = batch.end_position
        assert isinstance(end, PgPosition) and end > third
        # nothing journaled yet: the slot keeps the batch (the stream reports the start)
        time.sleep(1.5)  # more than one status update interval: they report `since` only
        assert confirmed(db) < end.lsn
        stream.confirm(SYNC, end)
        wait_for(lambda: confirmed(db) >= end.lsn, 10, "the slot confirmed at the batch end")
        assert stream.capture(SYNC, TABLES, end, 1000).changes == ()
    finally:
        stream.close()


def test_reconnects_after_the_server_drops_it_and_sends_nothing_twice(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    since = pg.current_position(SYNC)
    stream = start(pg, since)  # type: ignore[arg-type]
    try:
        db.execute("INSERT INTO items VALUES (1, 'a')")
        first = take(stream, since, 1)
        # not confirmed: after the reconnect the server sends it again
        pid = wait_for(lambda: active_pid(db), 10, "the walsender")
        db.execute("SELECT pg_terminate_backend(%s)", (pid,))
        db.execute("INSERT INTO items VALUES (2, 'b')")
        wait_for(lambda: stream.connects >= 2 and stream.connected.is_set(), 30, "a reconnect")
        second = take(stream, first.end_position, 1)
        assert [c.key for c in second.changes] == [{"id": 2}]
        assert stream.capture(SYNC, TABLES, second.end_position, 1000).changes == ()
    finally:
        stream.close()


def test_a_slot_held_by_another_reader_is_waited_for(
    db: psycopg.Connection, pg: PostgresConnector
) -> None:
    since = pg.current_position(SYNC)
    holder = start(pg, since)  # type: ignore[arg-type]
    waiting = ReplicationStream(pg.dsn, "app", SYNC, TABLES, since)  # type: ignore[arg-type]
    waiting.start()
    try:
        time.sleep(0.5)
        assert not waiting.connected.is_set()  # refused: the slot is active
        holder.close()
        assert waiting.connected.wait(30), "the second reader did not take the slot over"
        db.execute("INSERT INTO items VALUES (1, 'a')")
        assert [c.key for c in take(waiting, since, 1).changes] == [{"id": 1}]
    finally:
        holder.close()
        waiting.close()


def test_a_dropped_slot_is_fatal(db: psycopg.Connection, pg: PostgresConnector) -> None:
    since = pg.current_position(SYNC)
    db.execute("SELECT pg_drop_replication_slot(%s)", (SLOT,))
    stream = ReplicationStream(pg.dsn, "app", SYNC, TABLES, since)  # type: ignore[arg-type]
    stream.start()
    try:
        wait_for(lambda: stream.buffer.error is not None, 30, "the stream to give up")
        with pytest.raises(FatalError, match="does not exist"):
            stream.capture(SYNC, TABLES, since, 10)
    finally:
        stream.close()
