"""The type conversion matrix used by live validation."""

from __future__ import annotations

import pytest

from syncswim_lib.config.convert import check_conversion, check_key_storage, int_digits
from syncswim_lib.values import ColumnInfo, TypeFamily


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


def losses(
    src: ColumnInfo, dst: ColumnInfo, src_kind: str | None = None, dst_kind: str | None = None
) -> tuple[str, ...]:
    result = check_conversion(src, dst, src_kind, dst_kind)
    assert result.possible
    return result.reasons


UNBOUNDED = col("decimal", "numeric")


@pytest.mark.parametrize(
    ("src", "dst", "kinds", "expected"),
    [
        (
            UNBOUNDED,
            col("decimal", "numeric(12,2)", precision=12, scale=2),
            (None, None),
            (
                "values with more than 10 integer digits will be rejected",
                "values are rounded to 2 decimal places",
            ),
        ),
        (
            col("int", "int(10) unsigned"),
            col("int", "integer"),
            (None, None),
            ("values outside the range of integer (-2147483648 to 2147483647) will be rejected",),
        ),
        (
            col("int", "integer"),
            col("int", "int(10) unsigned"),
            (None, None),
            ("values outside the range of int(10) unsigned (0 to 4294967295) will be rejected",),
        ),
        (
            col("decimal", "numeric(20,0)", precision=20, scale=0),
            col("int", "bigint"),
            (None, None),
            (
                "values outside the range of bigint (-9223372036854775808 to "
                "9223372036854775807) will be rejected",
            ),
        ),
        (
            col("int", "bigint"),
            col("float", "double precision"),
            (None, None),
            ("integers beyond 9007199254740992 in size lose precision in double precision",),
        ),
        (
            col("int", "integer"),
            col("float", "real"),
            (None, None),
            ("integers beyond 16777216 in size lose precision in real",),
        ),
        (col("int", "integer"), col("float", "double"), (None, None), ()),
        (
            col("decimal", "numeric(20,4)", precision=20, scale=4),
            col("float", "double"),
            (None, None),
            ("values with more than 15 significant digits lose precision in double",),
        ),
        (
            col("float", "double precision"),
            col("float", "float"),
            ("postgres", "mysql"),
            (
                "values lose precision beyond about 7 digits in float",
                "NaN and infinity, which PostgreSQL allows in double precision, cannot be "
                "written to float",
            ),
        ),
        (
            col("timestamp", "timestamp(6)", precision=6),
            col("timestamp", "datetime(3)", precision=3),
            (None, None),
            ("fractional seconds beyond 3 digits are dropped",),
        ),
        (
            col("time", "time without time zone"),
            col("time", "time", precision=0),
            ("postgres", "mysql"),
            ("fractional seconds are dropped (whole seconds only)",),
        ),
        (
            col("time", "time(6)", precision=6),
            col("time", "time without time zone"),
            ("mysql", "postgres"),
            (
                "MariaDB/MySQL TIME holds -838:59:59 to 838:59:59 (durations): values outside "
                "00:00:00 to 24:00:00 cannot be written to time without time zone",
            ),
        ),
        (
            col("timestamptz", "timestamp with time zone"),
            col("timestamptz", "timestamp(6)", precision=6),
            ("postgres", "mysql"),
            (
                "timestamp(6) holds 1970-01-01 00:00:01 to 2038-01-19 03:14:07 UTC: other "
                "values will be rejected",
            ),
        ),
        (
            col("timestamptz", "timestamp(6)", precision=6),
            col("timestamptz", "timestamp(6)", precision=6),
            ("mysql", "mysql"),
            (),
        ),
        (
            col("date", "date"),
            col("text", "varchar(10)", max_length=10),
            ("mysql", "postgres"),
            (),  # a zero date is text like any other
        ),
        (
            col("bytes", "bytea"),
            col("bytes", "varbinary(16)", max_length=16),
            (None, None),
            ("values longer than 16 bytes will be rejected",),
        ),
        (col("bytes", "binary(16)", max_length=16), col("bytes", "bytea"), (None, None), ()),
        (
            col("text", "text", max_length=65535),
            col("text", "varchar(1000)", max_length=1000),
            (None, None),
            ("values longer than 1000 characters will be rejected",),
        ),
        (
            col("text", "text", max_length=65535),
            col("text", "tinytext", max_length=255),
            (None, None),
            ("values longer than 255 bytes will be rejected",),
        ),
        (
            col("text", "text", max_length=65535),
            col("text", "text", max_length=65535),
            (None, None),
            (),
        ),
        (col("text", "text"), col("text", "longtext", max_length=4294967295), (None, None), ()),
        (col("uuid"), col("text", "tinytext", max_length=255), (None, None), ()),
        (
            col("int", "bigint"),
            col("text", "varchar(12)", max_length=12),
            (None, None),
            ("values longer than 12 characters will be rejected",),
        ),
        (col("bool", "tinyint(1)"), col("bool", "tinyint(1)"), ("mysql", "mysql"), ()),
        (col("bool", "boolean"), col("bool", "tinyint(1)"), ("postgres", "mysql"), ()),
    ],
)
def test_narrowings(
    src: ColumnInfo,
    dst: ColumnInfo,
    kinds: tuple[str | None, str | None],
    expected: tuple[str, ...],
) -> None:
    assert losses(src, dst, *kinds) == expected


def test_all_narrowings_of_one_pair_are_listed() -> None:
    src = col("text", "text")
    dst = col("text", "varchar(20)", max_length=20)
    assert losses(src, dst) == ("values longer than 20 characters will be rejected",)
    wide = col("decimal", "numeric(30,6)", precision=30, scale=6)
    narrow = col("decimal", "decimal(12,2)", precision=12, scale=2)
    result = check_conversion(wide, narrow)
    assert result.reasons == (
        "values with more than 10 integer digits will be rejected",
        "values are rounded to 2 decimal places",
    )
    assert result.reason == "; ".join(result.reasons)


def text_in(charset: str | None, db_type: str = "varchar(50)") -> ColumnInfo:
    """A text column as MariaDB/MySQL describes it, with its character set."""
    return ColumnInfo("c", "text", db_type, True, None, None, 50, False, charset)


EMOJI = "4-byte characters (emoji, some CJK)"


@pytest.mark.parametrize(
    ("src", "dst", "refused"),
    [
        # PostgreSQL text (no charset: any character) into narrow sets
        (col("text", "text"), text_in("utf8mb3"), ("utf8mb3", EMOJI)),
        (col("text", "text"), text_in("utf8"), ("utf8", EMOJI)),
        (col("text", "text"), text_in("latin1"), ("latin1", "characters outside Latin-1")),
        (col("text", "text"), text_in("ascii"), ("ascii", "characters outside ASCII")),
        (col("text", "text"), text_in("cp1251"), ("cp1251", "characters outside cp1251")),
        (
            col("json", "jsonb"),
            text_in("latin1", "longtext"),
            ("latin1", "characters outside Latin-1"),
        ),
        # a wider set, or the same one, into a narrower one
        (text_in("utf8mb4"), text_in("latin1"), ("latin1", "characters outside Latin-1")),
        (text_in("utf8mb3"), text_in("latin1"), ("latin1", "characters outside Latin-1")),
        (text_in("latin1"), text_in("ascii"), ("ascii", "characters outside ASCII")),
        # what fits: a set inside the target's, the same set, a full set, ASCII values
        (text_in("latin1"), text_in("utf8mb3"), None),
        (text_in("ascii"), text_in("latin1"), None),
        (text_in("utf8mb3"), text_in("utf8mb3"), None),
        (col("text", "text"), text_in("utf8mb4"), None),
        (col("text", "text"), text_in(None), None),
        (col("int", "integer"), text_in("latin1"), None),
        (col("date", "date"), text_in("ascii"), None),
    ],
)
def test_a_narrow_character_set_is_reported(
    src: ColumnInfo, dst: ColumnInfo, refused: tuple[str, str] | None
) -> None:
    found = [r for r in losses(src, dst) if "character set" in r]
    if refused is None:
        assert found == []
        return
    charset, what = refused
    assert found == [
        f"{dst.db_type} uses the {charset} character set: values with {what} are refused by "
        "the server and such a record is parked with its error"
    ]


def test_a_narrow_character_set_is_listed_with_the_other_narrowings() -> None:
    assert losses(col("text", "text"), text_in("utf8mb3")) == (
        "values longer than 50 characters will be rejected",
        f"varchar(50) uses the utf8mb3 character set: values with {EMOJI} are refused by "
        "the server and such a record is parked with its error",
    )


def test_key_storage_needs_the_whole_positive_range() -> None:
    key = col("int", "int(10) unsigned")
    result = check_key_storage(key, col("int", "int(11)"))
    assert not result.possible
    assert result.reason == (
        "int(11) is too narrow for int(10) unsigned keys "
        "(int(11) cannot hold every int(10) unsigned value)"
    )
    assert check_key_storage(col("int", "integer"), col("int", "int(10) unsigned")).possible
