"""pgoutput v1 decoder, on message bytes captured from a PostgreSQL 15 server."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from syncswim_lib.connectors.postgres import pgoutput
from syncswim_lib.connectors.postgres.capture import RelationPlan, assemble, plan_for
from syncswim_lib.connectors.postgres.types import from_text
from syncswim_lib.envelope import Op, PgPosition

# public.t(id serial pk, name text, amount numeric(10,2), ok boolean, d date, ts timestamptz,
# j jsonb, b bytea, u uuid), REPLICA IDENTITY FULL: insert, update name, delete.
BEGIN_1 = "42000000000194f94800030425b472c172000002d7"
RELATION_T = (
    "52000040027075626c69630074006600090169640000000017ffffffff016e616d650000000019ffffffff"
    "01616d6f756e7400000006a4000a0006016f6b0000000010ffffffff0164000000043affffffff017473"
    "00000004a0ffffffff016a0000000edaffffffff01620000000011ffffffff01750000000b86ffffffff"
)
_ROW_TAIL = (
    "740000000531322e3530740000000174740000000a323032342d30322d3239740000001d323032342d30"
    "312d30322030313a30343a30352e3132333435362b3030740000000f7b2261223a205b312c20322e355d"
    "7d74000000085c78303030316666740000002461306565626339392d396330622d346566382d62623664"
    "2d366262396264333830613131"
)
_ROW_HELLO = "0009740000000131740000000668c3a96c6c6f" + _ROW_TAIL
_ROW_X = "00097400000001317400000001" + "78" + _ROW_TAIL
INSERT_T = "49000040024e" + _ROW_HELLO
COMMIT_1 = "4300000000000194f948000000000194f97800030425b472c172"
BEGIN_2 = "42000000000194fa8800030425b472c419000002d8"
UPDATE_T = "55000040024f" + _ROW_HELLO + "4e" + _ROW_X
COMMIT_2 = "4300000000000194fa88000000000194fab800030425b472c419"
BEGIN_3 = "42000000000194fb5800030425b472c520000002d9"
DELETE_T = "44000040024f" + _ROW_X
COMMIT_3 = "4300000000000194fb58000000000194fb8800030425b472c520"

# public.k(id int pk, big text) with the default replica identity, and (id, n, big).
RELATION_K = "52000040017075626c6963006b006400020169640000000017ffffffff006269670000000019ffffffff"
UPDATE_KEY_ONLY = "55000040014b00027400000001316e4e0002740000000231306e"
DELETE_KEY_ONLY = "44000040014b0002740000000231306e"
UPDATE_TOAST_UNCHANGED = "55000040014e000374000000013174000000013175"
INSERT_NULL = "49000040014e00027400000001316e"
ORIGIN = "4f0000000000abcdef73796e637377696d5f64656d6f00"
TRUNCATE_CASCADE_RESTART = "54000000010300004001"


def msg(hex_text: str) -> pgoutput.Message:
    return pgoutput.decode(bytes.fromhex(hex_text))


def test_begin_and_commit() -> None:
    begin = msg(BEGIN_1)
    assert isinstance(begin, pgoutput.Begin)
    assert begin.final_lsn == 0x194F948
    assert begin.xid == 727
    assert begin.commit_ts.tzinfo is UTC and begin.commit_ts.year >= 2024
    commit = msg(COMMIT_1)
    assert isinstance(commit, pgoutput.Commit)
    assert commit.commit_lsn == begin.final_lsn
    assert commit.end_lsn == 0x194F978
    assert commit.commit_ts == begin.commit_ts


def test_relation() -> None:
    rel = msg(RELATION_T)
    assert isinstance(rel, pgoutput.Relation)
    assert rel.qualified_name == "public.t"
    assert rel.relid == 16386
    assert rel.replica_identity == "f"
    assert [c.name for c in rel.columns] == ["id", "name", "amount", "ok", "d", "ts", "j", "b", "u"]
    assert [c.type_oid for c in rel.columns] == [23, 25, 1700, 16, 1082, 1184, 3802, 17, 2950]
    assert rel.columns[2].type_modifier == (10 << 16 | 2) + 4
    assert all(c.is_key for c in rel.columns)  # REPLICA IDENTITY FULL flags every column


def test_insert_update_delete_full_identity() -> None:
    ins = msg(INSERT_T)
    assert isinstance(ins, pgoutput.Insert)
    assert ins.new[:2] == ("1", "héllo")
    assert ins.new[5] == "2024-01-02 01:04:05.123456+00"
    upd = msg(UPDATE_T)
    assert isinstance(upd, pgoutput.Update)
    assert upd.old is not None and not upd.old_is_key_only
    assert (upd.old[1], upd.new[1]) == ("héllo", "x")
    dele = msg(DELETE_T)
    assert isinstance(dele, pgoutput.Delete)
    assert dele.old[1] == "x" and not dele.old_is_key_only


def test_key_only_old_tuples_nulls_and_unchanged_toast() -> None:
    upd = msg(UPDATE_KEY_ONLY)
    assert isinstance(upd, pgoutput.Update)
    assert upd.old_is_key_only and upd.old == ("1", None) and upd.new == ("10", None)
    dele = msg(DELETE_KEY_ONLY)
    assert isinstance(dele, pgoutput.Delete) and dele.old_is_key_only and dele.old == ("10", None)
    toast = msg(UPDATE_TOAST_UNCHANGED)
    assert isinstance(toast, pgoutput.Update)
    assert toast.old is None and toast.new == ("1", "1", pgoutput.UNCHANGED)
    assert msg(INSERT_NULL) == pgoutput.Insert(16385, ("1", None))


def test_origin_and_truncate() -> None:
    assert msg(ORIGIN) == pgoutput.Origin(0xABCDEF, "syncswim_demo")
    assert msg(TRUNCATE_CASCADE_RESTART) == pgoutput.Truncate(3, (16385,))


@pytest.mark.parametrize(
    ("hex_text", "error"),
    [
        ("", "empty message"),
        ("5a00", "unknown pgoutput message tag"),
        (BEGIN_1[:-4], "ends early"),
        (BEGIN_1 + "00", "trailing bytes"),
        ("49000040014e0001" + "62", "unknown tuple column kind"),
        ("49000040014b0000", "expected 'N'"),
        ("44000040014e0000", "expected 'K' or 'O'"),
        ("4f0000000000abcdef7379", "unterminated string"),
    ],
)
def test_malformed_messages_raise(hex_text: str, error: str) -> None:
    with pytest.raises(pgoutput.DecodeError, match=error):
        pgoutput.decode(bytes.fromhex(hex_text))


def test_text_values_become_canonical() -> None:
    assert from_text("12.50", "decimal") == Decimal("12.50")
    assert from_text("t", "bool") is True and from_text("f", "bool") is False
    assert from_text("2024-02-29", "date") == date(2024, 2, 29)
    assert from_text("2024-01-02 01:04:05.123456+00", "timestamptz") == datetime(
        2024, 1, 2, 1, 4, 5, 123456, tzinfo=UTC
    )
    assert from_text("2024-01-02 01:04:05", "timestamp") == datetime(
        2024, 1, 2, 1, 4, 5, tzinfo=UTC
    )
    assert from_text('{"a": [1, 2.5]}', "json") == {"a": [1, 2.5]}
    assert from_text("\\x0001ff", "bytes") == b"\x00\x01\xff"
    assert from_text("NaN", "float") != from_text("NaN", "float")  # a real NaN
    assert from_text("infinity", "timestamptz") == "infinity"  # Python cannot hold it
    assert from_text(None, "int") is None


def _plan(rel: pgoutput.Relation) -> RelationPlan:
    from syncswim_lib.values import ColumnInfo, TableInfo

    info = TableInfo("public.t", (ColumnInfo("id", "int", "integer"),), ("id",))
    return plan_for(rel, info)


STREAM = [BEGIN_1, RELATION_T, INSERT_T, COMMIT_1, BEGIN_2, UPDATE_T, COMMIT_2]
STREAM += [BEGIN_3, DELETE_T, COMMIT_3]


def test_assemble_builds_envelopes_from_bytes() -> None:
    messages = [bytes.fromhex(h) for h in STREAM]
    batch, full = assemble(messages, None, ["t"], 100, _plan)
    assert not full
    ins, upd, dele = batch.changes
    assert (ins.op, upd.op, dele.op) == (Op.INSERT, Op.UPDATE, Op.DELETE)
    assert ins.key == {"id": 1} and ins.before is None
    assert ins.after is not None and ins.after["ts"] == datetime(
        2024, 1, 2, 1, 4, 5, 123456, tzinfo=UTC
    )
    assert upd.changed_fields == ("name",)
    assert upd.before is not None and upd.before["name"] == "héllo"
    assert dele.after is None and dele.key == {"id": 1}
    assert ins.position == PgPosition(0x194F948, 1)
    assert batch.end_position == PgPosition(0x194FB88, 0)
    assert all(c.origin is None for c in batch.changes)


def test_assemble_resumes_after_since_and_stops_at_a_transaction_boundary() -> None:
    messages = [bytes.fromhex(h) for h in STREAM]
    first, full = assemble(messages, None, ["public.t"], 1, _plan)
    assert full and [c.op for c in first.changes] == [Op.INSERT]
    assert first.end_position == PgPosition(0x194F978, 0)  # end of the first commit record
    assert isinstance(first.end_position, PgPosition)
    rest, _ = assemble(messages, first.end_position, ["public.t"], 100, _plan)
    assert [c.op for c in rest.changes] == [Op.UPDATE, Op.DELETE]
    assert isinstance(rest.end_position, PgPosition)
    nothing, _ = assemble(messages, rest.end_position, ["public.t"], 100, _plan)
    assert nothing.changes == () and nothing.end_position == rest.end_position
    other, _ = assemble(messages, None, ["public.other"], 100, _plan)
    assert other.changes == () and other.end_position == rest.end_position


def test_assemble_keeps_only_identity_columns_of_a_key_only_old_row() -> None:
    """Without REPLICA IDENTITY FULL (someone reset it) the old row is its key alone."""
    messages = [BEGIN_1, RELATION_K, UPDATE_KEY_ONLY, COMMIT_1, BEGIN_2, DELETE_KEY_ONLY, COMMIT_2]

    def plan(rel: pgoutput.Relation) -> RelationPlan:
        from syncswim_lib.values import ColumnInfo, TableInfo

        return plan_for(rel, TableInfo("public.k", (ColumnInfo("id", "int", "integer"),), ("id",)))

    batch, _ = assemble([bytes.fromhex(h) for h in messages], None, ["k"], 10, plan)
    # an update that changes the key is a delete of the old key and an insert of the new
    old, new, dele = batch.changes
    assert old.op == Op.DELETE and old.key == {"id": 1} and old.before == {"id": 1}
    assert new.op == Op.INSERT and new.key == {"id": 10}
    assert new.after == {"id": 10, "big": None}
    assert dele.op == Op.DELETE and dele.before == {"id": 10} and dele.key == {"id": 10}


def _relation(relid: int, schema: str, table: str, columns: list[str]) -> str:
    out = b"R" + relid.to_bytes(4, "big") + schema.encode() + b"\0" + table.encode() + b"\0"
    out += b"f" + len(columns).to_bytes(2, "big")
    for name in columns:  # text columns (OID 25), typmod -1
        out += b"\0" + name.encode() + b"\0" + (25).to_bytes(4, "big") + b"\xff\xff\xff\xff"
    return out.hex()


def _insert(relid: int, values: list[str]) -> str:
    out = b"I" + relid.to_bytes(4, "big") + b"N" + len(values).to_bytes(2, "big")
    for v in values:
        out += b"t" + len(v.encode()).to_bytes(4, "big") + v.encode()
    return out.hex()


def test_assemble_counts_the_rows_of_a_skipped_origin_without_decoding_them() -> None:
    """The marker row comes first in our transactions: the rest is counted per table, and
    its tuples are never decoded (a broken tuple there would raise if they were)."""
    marker = _relation(9, "syncswim", "applied", ["batch_id", "origin"])
    broken_update = "5500004002" + "4e" + "0001" + "74" + "7fffffff"  # a value past the end
    ours = [BEGIN_1, RELATION_T, marker, _insert(9, ["b-1", "s1"]), broken_update, COMMIT_1]
    theirs = [BEGIN_2, UPDATE_T, COMMIT_2]
    messages = [bytes.fromhex(h) for h in ours + theirs]
    batch, full = assemble(messages, None, ["t"], 100, _plan, skip_origin="s1")
    assert not full
    assert [c.op for c in batch.changes] == [Op.UPDATE]
    assert batch.echoes == {"public.t": 1}
    assert batch.end_position == PgPosition(0x194FAB8, 0)
    with pytest.raises(pgoutput.DecodeError):  # the same stream, decoded: the row is broken
        assemble(messages, None, ["t"], 100, _plan, skip_origin="another sync")
    # echoes count towards the limit: a batch of one stops after our transaction
    first, full = assemble(messages, None, ["t"], 1, _plan, skip_origin="s1")
    assert full and first.changes == () and first.echoes == {"public.t": 1}
