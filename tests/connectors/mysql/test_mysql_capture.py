"""Binlog capture against the private MariaDB: values, transactions, positions, origins."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pytest

from syncswim_lib.connectors.base import ApplyBatch
from syncswim_lib.connectors.mysql import MySQLConnector
from syncswim_lib.envelope import BinlogPosition, Op, Position
from syncswim_lib.errors import FatalError, RetriableError
from syncswim_lib.sandbox.servers import MariaDBServer, free_port

if TYPE_CHECKING:
    from conftest import Db

pytestmark = pytest.mark.integration

ALL_TYPES = """
CREATE TABLE items (
  id int NOT NULL AUTO_INCREMENT PRIMARY KEY,
  big bigint,
  price decimal(12,2),
  name varchar(40),
  notes text,
  active tinyint(1),
  flag boolean,
  born date,
  seen datetime(6),
  stamp timestamp(6) NULL DEFAULT NULL,
  doc json,
  raw varbinary(16)
)
"""


def binlog(position: Position | None) -> BinlogPosition:
    assert isinstance(position, BinlogPosition)
    return position


ROW = (
    9_000_000_000,
    Decimal("1234.50"),
    "Zoë 😀",
    "naïve — ünïcödé 🐟",
    1,
    0,
    date(2024, 2, 29),
    datetime(2024, 2, 29, 23, 59, 58, 123456),
    datetime(2024, 3, 1, 0, 0, 1, 500000),
    '{"tags": ["a", "é"], "n": 1.5, "ok": true}',
    b"\x00\xffbin",
)
INSERT = (
    "INSERT INTO items (big, price, name, notes, active, flag, born, seen, stamp, doc, raw) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def test_insert_update_delete_of_every_type(connector: MySQLConnector, db: Db) -> None:
    db.run(ALL_TYPES)
    connector.setup("s1", ["items"])
    start = connector.current_position("s1")
    db.run(INSERT, args=ROW)
    db.run(INSERT, args=(None,) * len(ROW))
    db.run("UPDATE items SET price = 99.99, active = 0, doc = '[1, 2]' WHERE id = 1")
    db.run("DELETE FROM items WHERE id = 2")

    batch = connector.capture("s1", ["items"], start, 100)

    assert [c.op for c in batch.changes] == [Op.INSERT, Op.INSERT, Op.UPDATE, Op.DELETE]
    ins, nulls, upd, dele = batch.changes
    assert ins.table == f"{db.name}.items"
    assert ins.key == {"id": 1}
    assert ins.before is None
    assert ins.after == {
        "id": 1,
        "big": 9_000_000_000,
        "price": Decimal("1234.50"),
        "name": "Zoë 😀",
        "notes": "naïve — ünïcödé 🐟",
        "active": True,
        "flag": False,
        "born": date(2024, 2, 29),
        "seen": datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=UTC),
        "stamp": datetime(2024, 3, 1, 0, 0, 1, 500000, tzinfo=UTC),
        "doc": {"tags": ["a", "é"], "n": 1.5, "ok": True},
        "raw": b"\x00\xffbin",
    }
    assert type(ins.after["active"]) is bool
    assert nulls.after is not None
    assert nulls.after == {"id": 2} | {k: None for k in ins.after if k != "id"}
    assert upd.before == ins.after
    assert upd.after is not None
    assert upd.after["price"] == Decimal("99.99")
    assert upd.after["active"] is False
    assert upd.after["doc"] == [1, 2]
    assert upd.changed_fields == ("price", "active", "doc")
    assert dele.op == Op.DELETE and dele.key == {"id": 2} and dele.after is None
    assert dele.before == nulls.after
    for c in batch.changes:
        assert c.origin is None
        assert c.commit_ts is not None and c.commit_ts.tzinfo is UTC
        assert c.detected_at.tzinfo is UTC
    positions = [binlog(c.position) for c in batch.changes]
    assert positions == sorted(positions) and len(set(positions)) == 4
    assert binlog(batch.end_position) > positions[-1]
    # a row read back equals the row as capture saw it (shadows compare the two)
    assert connector.fetch("items", "id", [1]) == [upd.after]


def test_nothing_new_returns_since_and_costs_little(connector: MySQLConnector, db: Db) -> None:
    db.run("CREATE TABLE t (id int PRIMARY KEY)", "CREATE TABLE other (id int PRIMARY KEY)")
    connector.setup("s1", ["t"])
    since = connector.current_position("s1")

    def per_call_ms(expect_end: object) -> float:
        connector.capture("s1", ["t"], since, 10)  # warm up
        runs = 20
        began = time.perf_counter()
        for _ in range(runs):
            batch = connector.capture("s1", ["t"], since, 10)
            assert batch.changes == () and batch.end_position == expect_end
        return (time.perf_counter() - began) / runs * 1000

    idle = per_call_ms(since)  # nothing written at all: no binlog reader is opened
    db.run("INSERT INTO other VALUES (1)")
    moved = connector.current_position("s1")
    assert isinstance(moved, BinlogPosition)
    # only other tables written: the reader runs and the position moves past them
    skipped = per_call_ms(BinlogPosition(moved.file, moved.pos))
    print(f"empty capture: {idle:.2f} ms idle, {skipped:.2f} ms reading past other tables")


def test_since_none_starts_now(connector: MySQLConnector, db: Db) -> None:
    db.run("CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1)")
    connector.setup("s1", ["t"])
    first = connector.capture("s1", ["t"], None, 10)
    assert first.changes == ()
    db.run("INSERT INTO t VALUES (2)")
    later = connector.capture("s1", ["t"], first.end_position, 10)
    assert [c.key for c in later.changes] == [{"id": 2}]


def test_only_the_synced_tables(connector: MySQLConnector, db: Db) -> None:
    db.run("CREATE TABLE t (id int PRIMARY KEY)", "CREATE TABLE other (id int PRIMARY KEY)")
    connector.setup("s1", ["t"])
    since = connector.current_position("s1")
    db.run("INSERT INTO other VALUES (1)", "INSERT INTO t VALUES (2)")
    db.run(f"INSERT INTO `{db.name}`.other VALUES (3)")
    batch = connector.capture("s1", ["t"], since, 10)
    assert [(c.table, c.key) for c in batch.changes] == [(f"{db.name}.t", {"id": 2})]


def test_origin_tagging(connector: MySQLConnector, db: Db) -> None:
    db.run("CREATE TABLE t (id int PRIMARY KEY, v varchar(10))", "INSERT INTO t VALUES (1, 'a')")
    connector.setup("sync_a", ["t"])
    since = connector.current_position("sync_a")
    db.run("INSERT INTO t VALUES (2, 'theirs')")
    batch = ApplyBatch(
        batch_id="b-1",
        origin="sync_a",
        table="t",
        key_columns=("id",),
        inserts=pa.table({"__ref": ["r1"], "id": [3], "v": ["ours"]}),
        updates=pa.table({"__ref": ["r2"], "id": [1], "v": ["ours too"]}),
        deletes=pa.table({"__ref": pa.array([], pa.string()), "id": pa.array([], pa.int64())}),
    )
    connector.apply(batch)
    db.run("UPDATE t SET v = 'theirs' WHERE id = 3")

    changes = connector.capture("sync_a", ["t"], since, 100).changes
    assert [(c.op, c.key, c.origin) for c in changes] == [
        (Op.INSERT, {"id": 2}, None),
        (Op.UPDATE, {"id": 1}, "sync_a"),
        (Op.INSERT, {"id": 3}, "sync_a"),
        (Op.UPDATE, {"id": 3}, None),
    ]
    assert all(not c.table.endswith("_syncswim_applied") for c in changes)


def test_resume_across_binlog_rotation(connector: MySQLConnector, db: Db) -> None:
    db.run("CREATE TABLE t (id int PRIMARY KEY)")
    connector.setup("s1", ["t"])
    since = connector.current_position("s1")
    db.run("INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)")
    first = connector.capture("s1", ["t"], since, 100)
    assert [c.key["id"] for c in first.changes] == [1, 2]
    end = first.end_position
    assert isinstance(end, BinlogPosition)

    db.run("INSERT INTO t VALUES (3)", "FLUSH BINARY LOGS", "INSERT INTO t VALUES (4)")
    second = connector.capture("s1", ["t"], end, 100)
    assert [c.key["id"] for c in second.changes] == [3, 4]
    files = [binlog(c.position).file for c in second.changes]
    assert files[0] == end.file and files[1] > end.file
    assert binlog(second.end_position) > end

    # resuming from a change's own position gives only what follows it
    third = connector.capture("s1", ["t"], second.changes[0].position, 100)
    assert [c.key["id"] for c in third.changes] == [4]
    assert connector.capture("s1", ["t"], second.end_position, 100).changes == ()


def test_rotation_alone_moves_the_position(connector: MySQLConnector, db: Db) -> None:
    db.run("CREATE TABLE t (id int PRIMARY KEY)")
    connector.setup("s1", ["t"])
    since = connector.current_position("s1")
    assert isinstance(since, BinlogPosition)
    db.run("FLUSH BINARY LOGS")
    batch = connector.capture("s1", ["t"], since, 100)
    assert batch.changes == ()
    assert isinstance(batch.end_position, BinlogPosition)
    assert batch.end_position.file > since.file
    db.run("INSERT INTO t VALUES (1)")
    after = connector.capture("s1", ["t"], batch.end_position, 100)
    assert [c.key for c in after.changes] == [{"id": 1}]


def test_whole_transactions_and_max_changes(connector: MySQLConnector, db: Db) -> None:
    db.run("CREATE TABLE t (id int PRIMARY KEY)")
    connector.setup("s1", ["t"])
    since = connector.current_position("s1")
    db.run("BEGIN", "INSERT INTO t VALUES (1), (2), (3)", "COMMIT")
    db.run("BEGIN", "INSERT INTO t VALUES (4)", "INSERT INTO t VALUES (5)", "COMMIT")
    db.run("BEGIN", "INSERT INTO t VALUES (6)", "ROLLBACK")
    first = connector.capture("s1", ["t"], since, 2)
    assert [c.key["id"] for c in first.changes] == [1, 2, 3]
    assert len({c.position.pos for c in first.changes}) == 1  # type: ignore[union-attr]
    second = connector.capture("s1", ["t"], first.end_position, 2)
    assert [c.key["id"] for c in second.changes] == [4, 5]
    assert [c.position.seq for c in second.changes] == [0, 1]  # type: ignore[union-attr]
    assert connector.capture("s1", ["t"], second.end_position, 2).changes == ()


def test_ddl_and_savepoints_between_changes(connector: MySQLConnector, db: Db) -> None:
    db.run("CREATE TABLE t (id int PRIMARY KEY, v int)")
    connector.setup("s1", ["t"])
    since = connector.current_position("s1")
    db.run("BEGIN", "INSERT INTO t VALUES (1, 1)", "SAVEPOINT p", "INSERT INTO t VALUES (2, 2)")
    db.run("ROLLBACK TO SAVEPOINT p", "COMMIT")
    db.run("ALTER TABLE t ADD COLUMN w varchar(5) NULL")
    db.run("INSERT INTO t VALUES (3, 3, 'new')")
    changes = connector.capture("s1", ["t"], since, 100).changes
    assert [c.after for c in changes] == [{"id": 1, "v": 1}, {"id": 3, "v": 3, "w": "new"}]


def test_primary_key_change_is_delete_then_insert(connector: MySQLConnector, db: Db) -> None:
    db.run("CREATE TABLE t (id int PRIMARY KEY, v int)", "INSERT INTO t VALUES (1, 7)")
    connector.setup("s1", ["t"])
    since = connector.current_position("s1")
    db.run("UPDATE t SET id = 2 WHERE id = 1")
    changes = connector.capture("s1", ["t"], since, 100).changes
    assert [(c.op, c.key) for c in changes] == [(Op.DELETE, {"id": 1}), (Op.INSERT, {"id": 2})]
    assert binlog(changes[0].position) < binlog(changes[1].position)


def test_purged_binlog_is_fatal_and_named(connector: MySQLConnector, db: Db) -> None:
    db.run("CREATE TABLE t (id int PRIMARY KEY)")
    connector.setup("s1", ["t"])
    old = connector.current_position("s1")
    assert isinstance(old, BinlogPosition)
    db.run("FLUSH BINARY LOGS")
    (current,) = db.rows("SHOW MASTER STATUS")[:1]
    # MariaDB keeps a file until its binlog checkpoint passes it: purge until it is gone
    deadline = time.monotonic() + 20
    while any(r[0] == old.file for r in db.rows("SHOW BINARY LOGS")):
        assert time.monotonic() < deadline, f"{old.file} was never purged"
        db.run(f"PURGE BINARY LOGS TO '{current[0]}'")
        time.sleep(0.05)
    with pytest.raises(FatalError, match=old.file.replace(".", r"\.")):
        connector.capture("s1", ["t"], old, 10)
    with pytest.raises(FatalError, match=r"binlog\.999999"):
        connector.capture("s1", ["t"], BinlogPosition("binlog.999999", 4), 10)


def test_setup_names_a_missing_binlog_setting(connector: MySQLConnector, db: Db) -> None:
    db.run("CREATE TABLE t (id int PRIMARY KEY)")
    db.run("SET GLOBAL binlog_row_image = 'MINIMAL'")
    try:
        with pytest.raises(FatalError, match="binlog_row_image=FULL"):
            connector.setup("s1", ["t"])
    finally:
        db.run("SET GLOBAL binlog_row_image = 'FULL'")
    connector.setup("s1", ["t"])


def test_setup_is_idempotent_and_teardown_forgets_markers(
    connector: MySQLConnector, db: Db
) -> None:
    db.run("CREATE TABLE t (id int PRIMARY KEY)")
    connector.setup("s1", ["t"])
    connector.setup("s1", ["t"])
    empty = pa.table({"__ref": pa.array([], pa.string()), "id": pa.array([], pa.int64())})
    connector.apply(ApplyBatch("b1", "s1", "t", ("id",), empty, empty, empty))
    assert connector.applied_result("s1", "b1") is not None
    connector.teardown("s1")
    assert connector.applied_result("s1", "b1") is None
    connector.teardown("s1", drop_marker_table=True)
    assert db.rows("SHOW TABLES LIKE '\\_syncswim\\_applied'") == []
    connector.teardown("s1")  # idempotent, even without the table


def test_wrong_position_kind_is_fatal(connector: MySQLConnector, db: Db) -> None:
    from syncswim_lib.envelope import PgPosition

    db.run("CREATE TABLE t (id int PRIMARY KEY)")
    with pytest.raises(FatalError, match="binlog position"):
        connector.capture("s1", ["t"], PgPosition(1), 10)


@pytest.mark.slow
def test_server_without_binlog_is_fatal(tmp_path: Path) -> None:
    class NoBinlog(MariaDBServer):
        def _write_cnf(self) -> None:
            super()._write_cnf()
            lines = self.cnf.read_text().splitlines()
            keep = [ln for ln in lines if not ln.startswith(("log-bin", "binlog_"))]
            self.cnf.write_text("\n".join([*keep, "skip-log-bin"]) + "\n")

    server = NoBinlog(tmp_path / "nobinlog")
    server.start()
    try:
        connector = MySQLConnector(f"mysql://root@127.0.0.1:{server.port}/mysql", "plain")
        with pytest.raises(FatalError, match="log_bin=ON"):
            connector.setup("s1", [])
        with pytest.raises(FatalError, match="binary logging is off"):
            connector.current_position("s1")
        connector.close()
    finally:
        server.stop()


def test_unreachable_server_is_retriable() -> None:
    connector = MySQLConnector(f"mysql://root@127.0.0.1:{free_port()}/x?connect_timeout=2", "e")
    with pytest.raises(RetriableError):
        connector.capture("s1", ["t"], BinlogPosition("binlog.000001", 4), 10)
    with pytest.raises(RetriableError):
        connector.current_position("s1")


def test_truncate_is_reported_at_its_place(connector: MySQLConnector, db: Db) -> None:
    db.run("CREATE TABLE t (id INT PRIMARY KEY)", "CREATE TABLE u (id INT PRIMARY KEY)")
    since = connector.current_position("s1")
    db.run("INSERT INTO t VALUES (1)", "TRUNCATE TABLE t", "TRUNCATE u")
    db.run(f"TRUNCATE `{db.name}`.`t`", "INSERT INTO t VALUES (2)")
    batch = connector.capture("s1", ["t"], since, 100)
    assert [c.key["id"] for c in batch.changes] == [1, 2]
    assert [table for table, _ in batch.truncates] == [f"{db.name}.t"] * 2  # as changes
    first, second = (p for _, p in batch.truncates)
    assert batch.changes[0].position < first < second < batch.changes[1].position
    assert connector.capture("s1", ["t"], batch.end_position, 100).truncates == ()
