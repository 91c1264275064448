"""The transaction assembler on its own: event sequences a live server rarely produces."""

from __future__ import annotations

from syncswim_lib.connectors.mysql.capture import TransactionAssembler
from syncswim_lib.envelope import BinlogPosition, Op
from syncswim_lib.values import ColumnInfo, TableInfo

INFO = TableInfo("db.t", (ColumnInfo("id", "int", "int(11)", False),), ("id",))
MARKER = ("db", "_syncswim_applied")


def assembler(since: BinlogPosition | None = None) -> TransactionAssembler:
    return TransactionAssembler(
        marker=MARKER,
        wanted={("db", "t")},
        describe=lambda db, table: INFO,
        start=since or BinlogPosition("binlog.000001", 100),
        since=since,
    )


def test_reconnect_in_the_middle_of_a_transaction_drops_it() -> None:
    a = assembler()
    a.begin()
    a.rows(Op.INSERT, "db", "t", [{"values": {"id": 1}}])
    assert a.rotate("binlog.000001", 150, artificial=True) is False
    result = a.result()
    assert result.changes == ()
    assert result.end_position == BinlogPosition("binlog.000001", 100)


def test_statements_move_the_position_only_between_transactions() -> None:
    a = assembler()
    a.begin()
    a.statement("CREATE TABLE x (id int)", 200, 1)  # DDL: its own transaction
    assert a.result().end_position == BinlogPosition("binlog.000001", 200)
    a.statement("BEGIN", 250, 1)
    a.rows(Op.INSERT, "db", "t", [{"values": {"id": 1}}])
    a.statement("SAVEPOINT `p`", 300, 1)
    a.statement("ROLLBACK TO `p`", 320, 1)
    assert a.result().end_position == BinlogPosition("binlog.000001", 200)
    a.statement("COMMIT", 400, 1_700_000_000)
    (change,) = a.result().changes
    assert change.position == BinlogPosition("binlog.000001", 400, 0)
    assert a.result().end_position == BinlogPosition("binlog.000001", 400, 1)
    a.statement("BEGIN", 450, 1)
    a.rows(Op.INSERT, "db", "t", [{"values": {"id": 2}}])
    a.statement("ROLLBACK", 500, 1)
    assert len(a.result().changes) == 1
    assert a.result().end_position == BinlogPosition("binlog.000001", 500)


def test_origin_comes_from_a_leading_marker_row_only() -> None:
    a = assembler()
    a.begin()
    a.rows(Op.INSERT, *MARKER, [{"values": {"batch_id": "b", "origin": "sync_a"}}])
    a.rows(Op.INSERT, "db", "t", [{"values": {"id": 1}}])
    a.commit(200, 1)
    a.begin()
    a.rows(Op.INSERT, "db", "t", [{"values": {"id": 2}}])
    a.rows(Op.INSERT, *MARKER, [{"values": {"batch_id": "c", "origin": "sync_a"}}])
    a.commit(300, 1)
    assert [(c.key, c.origin) for c in a.result().changes] == [
        ({"id": 1}, "sync_a"),
        ({"id": 2}, None),
    ]


def test_changes_at_or_before_since_are_skipped() -> None:
    since = BinlogPosition("binlog.000001", 200, 0)
    a = assembler(since)
    a.begin()
    a.rows(Op.INSERT, "db", "t", [{"values": {"id": 1}}, {"values": {"id": 2}}])
    a.commit(200, 1)
    assert [c.key for c in a.result().changes] == [{"id": 2}]


def test_other_tables_are_ignored() -> None:
    a = assembler()
    a.begin()
    a.rows(Op.INSERT, "other_db", "t", [{"values": {"id": 1}}])
    a.commit(200, 1)
    assert a.result().changes == ()
    assert a.result().end_position == BinlogPosition("binlog.000001", 200)
