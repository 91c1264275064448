"""The type conversion matrix used by live validation."""

from __future__ import annotations

import pytest

from syncswim_lib.config.convert import check_conversion, check_key_storage, int_digits
from syncswim_lib.connectors.base import ColumnInfo, TypeFamily


def col(
    family: TypeFamily,
    db_type: str = "",
    *,
    precision: int | None = None,
    scale: int | None = None,
    max_length: int | None = None,
) -> ColumnInfo:
    return ColumnInfo("c", family, db_type or family, True, precision, scale, max_length)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (col("int"), col("text")),
        (col("bool"), col("int")),
        (col("int", "integer"), col("decimal", "numeric(12,0)", precision=12, scale=0)),
        (col("decimal", "numeric(10,0)", precision=10, scale=0), col("int", "bigint")),
        (col("date"), col("timestamptz")),
        (col("json"), col("text")),
        (col("uuid"), col("text")),
        (col("text", "varchar(20)", max_length=20), col("text", "varchar(40)", max_length=40)),
        (col("other", "inet"), col("other", "inet")),
    ],
)
def test_clean_conversions(src: ColumnInfo, dst: ColumnInfo) -> None:
    assert check_conversion(src, dst).possible
    assert check_conversion(src, dst).reason is None


@pytest.mark.parametrize(
    ("src", "dst", "why"),
    [
        (
            col("json"),
            col("int"),
            "json values cannot become int (declare a transform (e.g. to_int)",
        ),
        (col("text"), col("int"), "text values cannot become int"),
        (col("text"), col("date"), "e.g. iso_date"),
        (col("timestamp"), col("date"), "timestamp values cannot become date"),
        (col("bytes"), col("text"), "bytes values cannot become text"),
        (col("float"), col("int"), "float values cannot become int"),
        (
            col("decimal", "numeric(12,2)", precision=12, scale=2),
            col("int", "integer"),
            "numeric(12,2) has decimal places and integer does not",
        ),
    ],
)
def test_impossible_conversions(src: ColumnInfo, dst: ColumnInfo, why: str) -> None:
    result = check_conversion(src, dst)
    assert not result.possible
    assert result.reason is not None and why in result.reason


@pytest.mark.parametrize(
    ("src", "dst", "warning"),
    [
        (col("text", "text"), col("text", "varchar(10)", max_length=10), "longer than 10"),
        (col("int", "bigint"), col("int", "integer"), "outside the range of integer"),
        (
            col("decimal", "numeric(12,4)", precision=12, scale=4),
            col("decimal", "numeric(12,2)", precision=12, scale=2),
            "rounded to 2 decimal places",
        ),
        (
            col("decimal", "numeric(14,2)", precision=14, scale=2),
            col("decimal", "numeric(8,2)", precision=8, scale=2),
            "more than 6 integer digits",
        ),
        (col("int"), col("bool"), "only 0 and 1"),
        (col("timestamptz"), col("timestamp"), "time zone is dropped"),
        (col("other", "inet"), col("int", "integer"), "cannot check that inet values fit"),
    ],
)
def test_lossy_conversions_warn(src: ColumnInfo, dst: ColumnInfo, warning: str) -> None:
    result = check_conversion(src, dst)
    assert result.possible
    assert result.reason is not None and warning in result.reason


def test_int_digits() -> None:
    assert int_digits(col("int", "integer")) == 10
    assert int_digits(col("int", "bigint")) == 19
    assert int_digits(col("int", "bigint unsigned")) == 20
    assert int_digits(col("int", "smallint")) == 5
    assert int_digits(col("int", "int(11)")) == 10


@pytest.mark.parametrize(
    ("key", "ext", "ok", "why"),
    [
        (col("int", "integer"), col("text", "varchar(10)", max_length=10), True, None),
        (col("int", "bigint"), col("text", "varchar(10)", max_length=10), False, "needs 19"),
        (col("int", "bigint"), col("int", "integer"), False, "cannot hold every bigint"),
        (col("int", "integer"), col("int", "bigint"), True, None),
        (col("int", "integer"), col("float", "double"), False, "cannot store keys exactly"),
        (col("int", "integer"), col("date"), False, "int values cannot become date"),
        (col("int", "integer"), col("bool"), False, "cannot store keys"),
        (col("uuid"), col("text", "varchar(32)", max_length=32), False, "needs 36 characters"),
        (
            col("int", "bigint"),
            col("decimal", "numeric(12,0)", precision=12, scale=0),
            False,
            "needs 19 integer digits",
        ),
        (col("text", "text"), col("text", "varchar(18)", max_length=18), True, "may be too short"),
    ],
)
def test_key_storage(key: ColumnInfo, ext: ColumnInfo, ok: bool, why: str | None) -> None:
    result = check_key_storage(key, ext)
    assert result.possible is ok
    if why is None:
        assert result.reason is None
    else:
        assert result.reason is not None and why in result.reason
