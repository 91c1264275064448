"""A field converted a column at a time (`coerce_column`, `EntityMap.convert_column`,
the bulk create's path) gives what `coerce` / `convert` give one value at a time, refuses
the same values, and the Arrow table built from the columns equals the one built from the
rows (`columns_to_table` against `rows_to_table`)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncswim_lib.errors import RecordError
from syncswim_lib.pipeline.mapping import EntityMap, SideView
from syncswim_lib.values import ColumnInfo, TableInfo
from syncswim_lib.values.arrow import REF, columns_to_table, rows_to_table
from syncswim_lib.values.coerce import coerce, coerce_column

COLUMNS = [
    ColumnInfo("i", "int", "bigint"),
    ColumnInfo("f", "float", "double precision"),
    ColumnInfo("n", "decimal", "numeric(6,2)", precision=6, scale=2),
    ColumnInfo("w", "decimal", "numeric(38,10)", precision=38, scale=10),
    ColumnInfo("u", "decimal", "numeric"),
    ColumnInfo("t", "text", "varchar(5)", max_length=5),
    ColumnInfo("x", "text", "text"),
    ColumnInfo("b", "bool", "boolean"),
    ColumnInfo("d", "date", "date"),
    ColumnInfo("ts", "timestamptz", "timestamptz(6)", precision=6),
    ColumnInfo("ts0", "timestamp", "datetime(0)", precision=0),
    ColumnInfo("j", "json", "jsonb"),
    ColumnInfo("y", "bytes", "bytea"),
    ColumnInfo("g", "uuid", "uuid"),
]

ZONES = st.sampled_from([None, UTC, timezone(timedelta(hours=5, minutes=30))])
VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True, places=3),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["12", " 7 ", "1.25", "true", "2024-02-29", '{"a": 1}', "0000-00-00"]),
    st.binary(max_size=4),
    st.dates(),
    st.datetimes(timezones=ZONES),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.lists(st.integers(), max_size=2),
)
# a column of one type, as a table's rows mostly are, or of anything
COLUMN_VALUES = st.one_of(
    st.lists(VALUE, max_size=6),
    VALUE.flatmap(lambda v: st.lists(st.sampled_from([v, None]), max_size=6)),
    st.lists(st.one_of(st.none(), st.decimals(min_value=-9999, max_value=9999, places=2))),
    st.lists(st.one_of(st.none(), st.decimals(min_value=-9999, max_value=9999, places=3))),
    st.lists(st.one_of(st.none(), st.text(max_size=7))),
    st.lists(st.one_of(st.none(), st.integers())),
    st.lists(st.one_of(st.none(), st.datetimes(timezones=st.just(UTC)))),
)


def one_by_one(values: list[Any], col: ColumnInfo) -> tuple[list[Any], list[int]]:
    out: list[Any] = []
    failed: list[int] = []
    for i, v in enumerate(values):
        try:
            out.append(coerce(v, col))
        except (ValueError, TypeError, ArithmeticError):
            out.append(None)
            failed.append(i)
    return out, failed


def same(left: list[Any], right: list[Any]) -> bool:
    """Equal, of the same types, and decimals of the same digits (but for the sign of a
    zero, which Arrow does not keep)."""
    for a, b in zip(left, right, strict=True):
        if type(a) is not type(b) or a != b:
            return False
        if isinstance(a, Decimal) and not (a == 0 or a.as_tuple() == b.as_tuple()):
            return False
        if isinstance(a, datetime) and a.utcoffset() != b.utcoffset():
            return False
    return True


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(COLUMNS), COLUMN_VALUES)
def test_a_column_converts_as_its_values_do_one_by_one(col: ColumnInfo, values: list[Any]) -> None:
    got, failed = coerce_column(list(values), col)
    want, want_failed = one_by_one(values, col)
    assert failed == want_failed
    assert same(got, want), (got, want)


def test_the_checks_that_take_a_whole_column() -> None:
    n = COLUMNS[2]  # numeric(6,2)
    assert coerce_column([Decimal("1.5"), None, Decimal("-3")], n) == (
        [Decimal("1.50"), None, Decimal("-3.00")],
        [],
    )
    # rounding (half even), too many digits, not finite: one by one, as `coerce` does
    got, failed = coerce_column([Decimal("1.005"), Decimal("10000"), Decimal("NaN")], n)
    assert got == [Decimal("1.00"), None, None] and failed == [1, 2]
    t = COLUMNS[5]  # varchar(5)
    assert coerce_column(["abcde", None, ""], t) == (["abcde", None, ""], [])
    assert coerce_column(["abcdef", "ok", "zoë!!!"], t) == ([None, "ok", None], [0, 2])
    ts = COLUMNS[9]
    other = datetime(2024, 1, 1, 5, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    got, failed = coerce_column([other, None], ts)
    assert got == [datetime(2024, 1, 1, tzinfo=UTC), None] and got[0].tzinfo is UTC
    assert failed == []
    assert coerce_column([True, 2], COLUMNS[0]) == ([1, 2], [])
    assert coerce_column([], COLUMNS[0]) == ([], [])


def entity_map(transform: Any = None) -> EntityMap:
    info_a = TableInfo("a", tuple(COLUMNS), ("i",))
    info_b = TableInfo("b", tuple(COLUMNS), ("i",))
    pair = ("n", "n", None, transform)
    return EntityMap(
        "s",
        "e",
        SideView("a", "pa", info_a, ("i",), None, ("n",)),
        SideView("b", "pb", info_b, ("i",), None, ("n",)),
        "system_of_record",
        "a",
        (pair,),
    )


def test_convert_column_refuses_what_convert_refuses() -> None:
    def halve(v: Any) -> Any:
        if v == 13:
            raise ValueError("unlucky")
        return None if v is None else v / 2

    for transform in (None, halve):
        m = entity_map(transform)
        pair = m.fields[0]
        values = [Decimal("3"), 13, None, Decimal("100000"), "x"]
        got, failed = m.convert_column("a", pair, values)
        want: list[Any] = []
        want_failed: list[int] = []
        for i, v in enumerate(values):
            try:
                want.append(m.convert("a", pair, v))
            except RecordError:
                want.append(None)
                want_failed.append(i)
        assert (got, failed) == (want, want_failed)
    assert entity_map(halve).convert_column("a", entity_map(halve).fields[0], [13])[1] == [0]


ROW_VALUES: dict[str, list[Any]] = {
    "i": [1, None, 3],
    "f": [1.5, None, float("inf")],
    "n": [Decimal("1.50"), None, Decimal("-2.00")],
    "u": [Decimal("1.5"), None, Decimal("12345678901234567890123456789012345678901234")],
    "t": ["ab", None, "zoë"],
    "x": [7, None, "text"],  # not text: `rows_to_table` writes its str()
    "b": [True, None, False],
    "d": [date(2024, 2, 29), None, date(1, 1, 1)],
    "ts": [datetime(2024, 1, 1, 0, 0, 0, 5, tzinfo=UTC), None, datetime(1, 1, 1, tzinfo=UTC)],
    "j": [{"b": 1, "a": [1, 2]}, None, [Decimal("1.5")]],
    "y": [b"\x00\xff", None, b""],
    "g": ["8c7b0a8e-0d4a-4b43-9a55-6c2a6f4d3f10", None, "x"],
}


def test_the_arrow_table_from_columns_is_the_one_from_rows() -> None:
    cols = [c for c in COLUMNS if c.name in ROW_VALUES]
    refs = ["r0", "r1", "r2"]
    rows = [{REF: r, **{c.name: ROW_VALUES[c.name][i] for c in cols}} for i, r in enumerate(refs)]
    by_rows = rows_to_table(rows, cols)
    by_columns = columns_to_table(refs, cols, [ROW_VALUES[c.name] for c in cols])
    assert by_columns.schema == by_rows.schema
    assert by_columns.equals(by_rows)
    assert columns_to_table([], cols, [[] for _ in cols]).equals(rows_to_table([], cols))
    with pytest.raises(ValueError, match="one list"):
        columns_to_table(refs, cols, [[1]])
