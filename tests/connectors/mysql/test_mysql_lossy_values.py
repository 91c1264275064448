"""Values a MariaDB column holds that its family cannot: a tinyint(1) of 2, zero dates.

They read as what they are (an int, the zero date's text) through capture, fetch and
snapshot, never as True or None; `coerce` refuses them for bool and date columns, which
the pipeline's `translate` turns into a record error."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pytest

from syncswim_lib.connectors.mysql import MySQLConnector
from syncswim_lib.envelope import Op
from syncswim_lib.errors import RecordError
from syncswim_lib.pipeline.mapping import EntityMap, SideView
from syncswim_lib.values import ColumnInfo, TableInfo
from syncswim_lib.values.coerce import coerce, holds

if TYPE_CHECKING:
    from conftest import Db

ODD = """
CREATE TABLE odd (
  id int NOT NULL PRIMARY KEY,
  flag tinyint(1),
  born date,
  seen datetime(6),
  stamp timestamp NULL DEFAULT NULL
)
"""
COLUMNS = ("id", "flag", "born", "seen", "stamp")
ZERO_ROW: dict[str, Any] = {
    "id": 1,
    "flag": 2,
    "born": "0000-00-00",
    "seen": "0000-00-00 00:00:00",
    "stamp": "0000-00-00 00:00:00",
}
ROWS: list[dict[str, Any]] = [
    ZERO_ROW,
    {
        "id": 2,
        "flag": True,
        "born": date(2024, 2, 29),
        "seen": datetime(2024, 2, 29, 10, 0, 0, 500000, tzinfo=UTC),
        "stamp": datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC),  # TIMESTAMP's first second
    },
    {"id": 3, "flag": False, "born": None, "seen": None, "stamp": None},
    {"id": 4, "flag": -1, "born": None, "seen": None, "stamp": None},
]


def _write_odd_rows(db: Db) -> None:
    # another application's session, without NO_ZERO_DATE and without strict mode
    db.run("SET SESSION sql_mode = ''")
    db.run(
        "INSERT INTO odd VALUES (1, 2, '0000-00-00', '0000-00-00 00:00:00.000000',"
        " '0000-00-00 00:00:00'),"
        " (2, 1, '2024-02-29', '2024-02-29 10:00:00.5', '1970-01-01 00:00:01'),"
        " (3, 0, NULL, NULL, NULL), (4, -1, NULL, NULL, NULL)"
    )


def _assert_same(got: list[dict[str, Any]], want: list[dict[str, Any]], path: str) -> None:
    assert got == want, path
    for row, expected in zip(got, want, strict=True):
        for name, value in row.items():
            # 2 == True is False already, but 1 == True: the types must match too
            assert type(value) is type(expected[name]), f"{path} {row['id']} {name}"


@pytest.mark.integration
def test_odd_values_come_through_capture_as_they_are(connector: MySQLConnector, db: Db) -> None:
    db.run(ODD)
    connector.setup("s1", ["odd"])
    start = connector.current_position("s1")
    _write_odd_rows(db)
    db.run("UPDATE odd SET flag = 3 WHERE id = 1")
    db.run("DELETE FROM odd WHERE id = 1")
    batch = connector.capture("s1", ["odd"], start, 100)
    inserts = [c for c in batch.changes if c.op == Op.INSERT]
    _assert_same([c.after or {} for c in inserts], ROWS, "capture")
    update, delete = batch.changes[len(ROWS) :]
    assert update.op == Op.UPDATE and update.before == ZERO_ROW
    assert update.after == {**ZERO_ROW, "flag": 3} and update.changed_fields == ("flag",)
    assert delete.op == Op.DELETE and delete.before == {**ZERO_ROW, "flag": 3}


@pytest.mark.integration
def test_odd_values_come_through_fetch_and_snapshot_as_they_are(
    connector: MySQLConnector, db: Db
) -> None:
    db.run(ODD)
    _write_odd_rows(db)
    fetched = sorted(connector.fetch("odd", "id", [1, 2, 3, 4]), key=lambda r: r["id"])
    _assert_same(fetched, ROWS, "fetch")
    whole = list(connector.snapshot("odd", COLUMNS, ["id"], 10))
    _assert_same([r for b in whole for r in b.to_pylist()], ROWS, "snapshot")
    # the batches without such values keep the plain Arrow types
    one_by_one = list(connector.snapshot("odd", COLUMNS, ["id"], 1))
    _assert_same([r for b in one_by_one for r in b.to_pylist()], ROWS, "snapshot by row")
    plain = one_by_one[1].schema
    assert [plain.field(n).type for n in ("flag", "born", "stamp")] == [
        pa.bool_(),
        pa.date32(),
        pa.timestamp("us", tz="UTC"),
    ]
    assert pa.types.is_union(one_by_one[0].schema.field("flag").type)
    assert one_by_one[2].schema == plain  # NULLs fit any type


@pytest.mark.integration
def test_a_partly_zero_date_reads_as_its_text(connector: MySQLConnector, db: Db) -> None:
    """A zero month or day: fetch reads the server's text; the binlog decoder hands no
    parts on, so capture reads the zero date. Either is refused by `coerce`."""
    db.run(ODD)
    connector.setup("s1", ["odd"])
    start = connector.current_position("s1")
    db.run("SET SESSION sql_mode = ''")
    db.run("INSERT INTO odd (id, born) VALUES (1, '2024-00-10')")
    (row,) = connector.fetch("odd", "id", [1])
    assert row["born"] == "2024-00-10"
    (change,) = connector.capture("s1", ["odd"], start, 10).changes
    assert change.after is not None and change.after["born"] == "0000-00-00"
    for value in (row["born"], change.after["born"]):
        with pytest.raises(ValueError, match="born"):
            coerce(value, BORN)


@pytest.mark.integration
def test_compare_and_set_against_odd_values(connector: MySQLConnector, db: Db) -> None:
    """A plan that saw the odd values (read from this row) finds them still there."""
    from syncswim_lib.connectors.base import ApplyBatch

    db.run(ODD)
    connector.setup("s1", ["odd"])
    _write_odd_rows(db)
    ref = pa.array(["u"], pa.string())
    expected = pa.table(
        {
            "__ref": ref,
            "__check": pa.array([["flag", "born", "seen"]], pa.list_(pa.string())),
            "flag": pa.array([2], pa.int64()),
            "born": pa.array(["0000-00-00"]),
            "seen": pa.array(["0000-00-00 00:00:00"]),
        }
    )
    updates = pa.table({"__ref": ref, "id": pa.array([1]), "stamp": pa.array([None], pa.string())})
    empty = pa.table({"__ref": pa.array([], pa.string()), "id": pa.array([], pa.int64())})
    res = connector.apply(
        ApplyBatch("odd-1", "s1", "odd", ("id",), empty, updates, empty, (), expected)
    )
    assert (res.updated, res.stale, res.rejected) == (1, (), {})
    assert db.rows("SELECT stamp FROM odd WHERE id = 1") == [(None,)]


# --- coerce ----------------------------------------------------------------------------

FLAG = ColumnInfo("flag", "bool", "boolean")
TINY = ColumnInfo("flag", "bool", "tinyint(1)")
BORN = ColumnInfo("born", "date", "date")
SEEN = ColumnInfo("seen", "timestamp", "timestamp", precision=6)
SEEN_TZ = ColumnInfo("seen", "timestamptz", "timestamp with time zone", precision=3)
NAME = ColumnInfo("name", "text", "varchar(20)", max_length=20)


@pytest.mark.parametrize("value", [2, -1, 127])
def test_coerce_refuses_an_int_other_than_0_or_1_for_a_boolean(value: int) -> None:
    with pytest.raises(ValueError) as caught:
        coerce(value, FLAG)
    assert str(caught.value) == f"{value} is not a boolean (0 or 1) for column flag boolean"
    with pytest.raises(ValueError, match=r"for column flag tinyint\(1\)"):
        coerce(value, TINY)


def test_coerce_keeps_booleans_0_and_1() -> None:
    got = [coerce(v, TINY) for v in (0, 1, True, False, "true", "0", None)]
    assert got == [False, True, True, False, True, False, None]
    assert all(type(v) is bool for v in got[:-1])


@pytest.mark.parametrize(
    ("value", "column"),
    [
        ("0000-00-00", BORN),
        ("0000-00-00 00:00:00", BORN),
        ("0000-00-00", SEEN),
        ("0000-00-00 00:00:00", SEEN),
        ("0000-00-00 00:00:00.000000", SEEN_TZ),
    ],
)
def test_coerce_refuses_a_zero_date(value: str, column: ColumnInfo) -> None:
    with pytest.raises(ValueError) as caught:
        coerce(value, column)
    assert str(caught.value) == (
        f"zero date {value!r} has no value in column {column.name} {column.db_type}"
    )


def test_coerce_refuses_a_partly_zero_date() -> None:
    with pytest.raises(ValueError, match="not an ISO-8601 date"):
        coerce("2024-00-10", BORN)
    with pytest.raises(ValueError, match="not an ISO-8601 timestamp"):
        coerce("2024-01-00 10:00:00", SEEN)


def test_coerce_keeps_real_dates_and_zero_date_text_in_a_text_column() -> None:
    assert coerce(date(2024, 2, 29), BORN) == date(2024, 2, 29)
    assert coerce("2024-02-29", BORN) == date(2024, 2, 29)
    assert coerce("2000-01-01 00:00:00", SEEN) == datetime(2000, 1, 1, tzinfo=UTC)
    zoned = datetime(2024, 3, 31, 1, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert coerce(zoned, SEEN_TZ) == datetime(2024, 3, 30, 23, 30, 0, 123000, tzinfo=UTC)
    assert coerce("0000-00-00", NAME) == "0000-00-00"


def test_translate_turns_the_refusal_into_a_record_error() -> None:
    def side(letter: Any, endpoint: str, flag: ColumnInfo) -> SideView:
        info = TableInfo(f"db.t_{letter}", (ColumnInfo("id", "int", "int"), flag), ("id",))
        return SideView(letter, endpoint, info, ("id",), None, ("flag",))

    emap = EntityMap(
        "s",
        "e",
        side("a", "app_db", FLAG),
        side("b", "shop_db", TINY),
        "external_id",
        None,
        (("flag", "flag", None, None),),
    )
    assert emap.translate("b", {"flag": 1}) == {"flag": True}
    with pytest.raises(RecordError, match=r"2 is not a boolean \(0 or 1\) for column flag"):
        emap.translate("b", {"flag": 2})


def test_holds_compares_the_expected_value_as_the_column_stores_it() -> None:
    amount = ColumnInfo("amount", "decimal", "numeric(12,2)", precision=12, scale=2)
    doc = ColumnInfo("doc", "json", "jsonb")
    at = ColumnInfo("at", "time", "time")
    utc = datetime(2024, 3, 30, 23, 30, tzinfo=UTC)
    assert holds(Decimal("1.50"), "1.5", amount)
    assert holds({"a": [1, 2]}, '{"a": [1, 2]}', doc)
    assert holds(utc, utc.astimezone(timezone(timedelta(hours=2))), SEEN_TZ)
    assert holds(utc, utc.replace(microsecond=123), SEEN_TZ)  # beyond the column's digits
    assert holds(time(10, 30), "10:30:00", at)
    assert holds(None, None, NAME)
    # values the column cannot hold, read from the row itself, compare as they are
    assert holds(2, 2, TINY) and holds("0000-00-00", "0000-00-00", BORN)
    assert not holds(True, 1, NAME)
    assert not holds(2, True, TINY)
    assert not holds(None, "", NAME)
    assert not holds("0000-00-00", None, BORN)
    assert not holds(Decimal("1.50"), "1.51", amount)
