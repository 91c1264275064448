"""The blocking binlog reader (`stream.py`): whole transactions in order with positions,
our own writes counted as echoes, a reconnect after the server kills the dump, a purged
binlog."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pymysql
import pytest

from syncswim_lib.connectors.base import ApplyBatch, CaptureBatch
from syncswim_lib.connectors.mysql import MySQLConnector
from syncswim_lib.connectors.mysql.stream import BinlogStream
from syncswim_lib.envelope import BinlogPosition, Op
from syncswim_lib.errors import FatalError
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.integration

SYNC = "bs"


@pytest.fixture
def tables(
    conn: pymysql.Connection, connector: MySQLConnector, db_name: str
) -> Iterator[list[str]]:
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE items (id int PRIMARY KEY, name varchar(40))")
    names = [f"{db_name}.items"]
    connector.setup(SYNC, names)
    yield names


def start(connector: MySQLConnector, tables: list[str], since: BinlogPosition) -> BinlogStream:
    stream = BinlogStream(connector, SYNC, tables, since)
    stream.start()
    assert stream.connected.wait(30), "the reader did not start"
    return stream


def take(stream: BinlogStream, tables: list[str], since: Any, n: int) -> CaptureBatch:
    seen: list[Any] = []
    end = since
    echoes: dict[str, int] = {}

    def enough() -> bool:
        nonlocal end
        batch = stream.capture(SYNC, tables, end, 1000, skip_origin=SYNC)
        seen.extend(batch.changes)
        for t, k in batch.echoes.items():
            echoes[t] = echoes.get(t, 0) + k
        end = batch.end_position
        return len(seen) + sum(echoes.values()) >= n

    wait_for(enough, 20, f"{n} changes from the binlog stream")
    return CaptureBatch(tuple(seen), end, echoes)


def execute(conn: pymysql.Connection, *statements: str) -> None:
    with conn.cursor() as cur:
        for s in statements:
            cur.execute(s)


def test_transactions_in_order_with_positions(
    conn: pymysql.Connection, connector: MySQLConnector, tables: list[str]
) -> None:
    since = connector.current_position(SYNC)
    assert isinstance(since, BinlogPosition)
    stream = start(connector, tables, since)
    try:
        execute(conn, "INSERT INTO items VALUES (1, 'a')")
        execute(conn, "BEGIN", "UPDATE items SET name = 'b' WHERE id = 1",
                "INSERT INTO items VALUES (2, 'c')", "COMMIT")  # fmt: skip
        batch = take(stream, tables, since, 3)
        assert [(c.op, c.key) for c in batch.changes] == [
            (Op.INSERT, {"id": 1}),
            (Op.UPDATE, {"id": 1}),
            (Op.INSERT, {"id": 2}),
        ]
        positions = [c.position for c in batch.changes]
        assert positions == sorted(positions)  # type: ignore[type-var]
        end = batch.end_position
        assert isinstance(end, BinlogPosition) and all(p < end for p in positions)  # type: ignore[operator]
        # resuming from the end gives nothing again; a reader from `since` gives the same
        assert stream.capture(SYNC, tables, end, 1000).changes == ()
    finally:
        stream.close()
    again = start(connector, tables, since)
    try:
        assert [c.position for c in take(again, tables, since, 3).changes] == positions
    finally:
        again.close()


def test_our_own_writes_are_counted_not_decoded(
    conn: pymysql.Connection, connector: MySQLConnector, tables: list[str]
) -> None:
    since = connector.current_position(SYNC)
    stream = start(connector, tables, since)  # type: ignore[arg-type]
    try:
        empty = pa.table({"id": pa.array([], pa.int32())})
        connector.apply(
            ApplyBatch(
                batch_id="b1",
                origin=SYNC,
                table=tables[0],
                key_columns=("id",),
                inserts=pa.table({"__ref": ["r1"], "id": [5], "name": ["ours"]}),
                updates=empty.append_column("__ref", pa.array([], pa.string())),
                deletes=empty.append_column("__ref", pa.array([], pa.string())),
            )
        )
        execute(conn, "INSERT INTO items VALUES (6, 'theirs')")
        batch = take(stream, tables, since, 2)
        assert [c.key for c in batch.changes] == [{"id": 6}]
        assert batch.echoes == {tables[0]: 1}
    finally:
        stream.close()


def test_reconnects_after_the_server_kills_the_dump(
    conn: pymysql.Connection, connector: MySQLConnector, tables: list[str]
) -> None:
    since = connector.current_position(SYNC)
    stream = start(connector, tables, since)  # type: ignore[arg-type]
    try:
        execute(conn, "INSERT INTO items VALUES (1, 'a')")
        first = take(stream, tables, since, 1)

        def dumps() -> list[int]:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT ID FROM information_schema.PROCESSLIST "
                    "WHERE COMMAND LIKE 'Binlog Dump%%'"
                )
                return [r[0] for r in cur.fetchall()]

        for pid in wait_for(dumps, 10, "the binlog dump thread"):
            execute(conn, f"KILL {pid}")
        execute(conn, "INSERT INTO items VALUES (2, 'b')")
        second = take(stream, tables, first.end_position, 1)
        assert [c.key for c in second.changes] == [{"id": 2}]
        wait_for(dumps, 10, "a new binlog dump")
        execute(conn, "INSERT INTO items VALUES (3, 'c')")
        third = take(stream, tables, second.end_position, 1)
        assert [c.key for c in third.changes] == [{"id": 3}]
    finally:
        stream.close()


def test_a_purged_binlog_is_fatal(connector: MySQLConnector, tables: list[str]) -> None:
    gone = BinlogPosition("binlog.999999", 4)
    stream = BinlogStream(connector, SYNC, tables, gone)
    stream.start()
    try:
        wait_for(lambda: stream.buffer.error is not None, 30, "the reader to give up")
        with pytest.raises(FatalError, match=r"cannot read binlog file binlog\.999999"):
            stream.capture(SYNC, tables, gone, 10)
    finally:
        stream.close()


def test_a_table_altered_mid_stream_is_read_with_its_new_columns(
    conn: pymysql.Connection, connector: MySQLConnector, tables: list[str]
) -> None:
    """The reader parses a table map once per table id (freeze_schema): an ALTER must give
    the rows after it their new shape, also within one open reader."""
    since = connector.current_position(SYNC)
    assert isinstance(since, BinlogPosition)
    stream = start(connector, tables, since)
    try:
        execute(conn, "INSERT INTO items VALUES (1, 'a')")
        first = take(stream, tables, since, 1)
        assert [c.after for c in first.changes] == [{"id": 1, "name": "a"}]
        execute(
            conn,
            "ALTER TABLE items ADD COLUMN qty decimal(8,3) NULL, MODIFY name varchar(40) NULL",
            "INSERT INTO items VALUES (2, 'b', 12.500)",
            "ALTER TABLE items MODIFY qty varchar(10) NULL",
            "UPDATE items SET qty = 'many', name = NULL WHERE id = 2",
        )
        later = take(stream, tables, first.end_position, 2)
        assert [c.after for c in later.changes] == [
            {"id": 2, "name": "b", "qty": Decimal("12.500")},
            {"id": 2, "name": None, "qty": "many"},
        ]
        assert later.changes[1].before == {"id": 2, "name": "b", "qty": "12.500"}
        assert later.changes[1].changed_fields == ("name", "qty")
    finally:
        stream.close()
