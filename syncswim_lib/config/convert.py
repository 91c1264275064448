"""Whether values of one column can be written to another, judged by type family and size.

Used by live validation before anything runs: an impossible conversion (json -> int,
text -> int without a `to_int` transform) is an error; a possible but lossy one (a
shorter varchar, fewer decimal places) is a warning, and every way a conversion can lose
or refuse values is listed, not only the first. When the user declared a transform for a
direction, the transform is trusted and nothing is checked here.

`src_kind`/`dst_kind` (the endpoints' kinds, "postgres", "mysql", ...) add what only one
database does: MariaDB/MySQL zero dates, TIMESTAMP's 1970-2038 range, TIME's range,
PostgreSQL's NaN and infinity.
"""

from __future__ import annotations

from dataclasses import dataclass

from syncswim_lib.values import ColumnInfo, TypeFamily

# fractional-second digits when a type names none: PostgreSQL's default, and what
# Python's datetime holds (MySQL always reports its digits, 0 by default)
MAX_FRACTION = 6
# MySQL/MariaDB text types whose length is a number of bytes, not characters
_BYTE_LIMITED = frozenset({"tinytext", "text", "mediumtext", "longtext"})
# the longest text either database stores (PostgreSQL: 1 GB): longer limits never bind
_TEXT_CEILING = 2**30
# UTF-8 takes up to 4 bytes a character
_UTF8_MAX = 4
# character sets that cannot hold every character, and what they refuse
_NARROW_CHARSETS = {
    "utf8mb3": "4-byte characters (emoji, some CJK)",
    "utf8": "4-byte characters (emoji, some CJK)",  # MySQL's alias of utf8mb3
    "ucs2": "4-byte characters (emoji, some CJK)",
    "latin1": "characters outside Latin-1",
    "ascii": "characters outside ASCII",
}
# character sets that hold every Unicode character
_FULL_CHARSETS = frozenset({"utf8mb4", "utf16", "utf16le", "utf32"})
# how much of Unicode a narrow set holds: a source whose set ranks no higher fits (ASCII
# is in Latin-1, Latin-1 in the Basic Multilingual Plane that utf8mb3 holds)
_CHARSET_RANK = {"ascii": 1, "latin1": 2, "utf8mb3": 3, "utf8": 3, "ucs2": 3}
_TIMES: frozenset[TypeFamily] = frozenset({"timestamp", "timestamptz", "time"})
_DATES: frozenset[TypeFamily] = frozenset({"date", "timestamp", "timestamptz"})

# source family -> target families that hold its values (sizes aside)
_ALLOWED: dict[TypeFamily, frozenset[TypeFamily]] = {
    "int": frozenset({"int", "float", "decimal", "text", "bool", "json"}),
    "float": frozenset({"float", "decimal", "text", "json"}),
    "decimal": frozenset({"decimal", "float", "text", "json"}),  # int: only with scale 0
    "text": frozenset({"text"}),
    "bool": frozenset({"bool", "int", "decimal", "text", "json"}),
    "date": frozenset({"date", "timestamp", "timestamptz", "text", "json"}),
    "timestamp": frozenset({"timestamp", "timestamptz", "text", "json"}),
    "timestamptz": frozenset({"timestamptz", "timestamp", "text", "json"}),
    "time": frozenset({"time", "text"}),
    "json": frozenset({"json", "text"}),
    "bytes": frozenset({"bytes"}),
    "uuid": frozenset({"uuid", "text"}),
    "other": frozenset({"text"}),
}
# the transform that usually fixes a conversion, for the error message
_HINT: dict[TypeFamily, str] = {
    "int": "to_int",
    "decimal": "to_decimal",
    "bool": "to_bool",
    "date": "iso_date",
    "text": "to_str",
}


@dataclass(frozen=True)
class Conversion:
    possible: bool
    # why impossible; or, when possible, every way values can be lost or refused
    reasons: tuple[str, ...] = ()

    @property
    def reason(self) -> str | None:
        return "; ".join(self.reasons) or None


def int_bytes(column: ColumnInfo) -> int:
    """Storage width of an integer column, from the database's spelling of its type."""
    t = column.db_type.lower()
    if "big" in t or t.startswith("int8"):
        return 8
    if "medium" in t:
        return 3
    if "small" in t or t.startswith("int2"):
        return 2
    if "tiny" in t:
        return 1
    return 4


def _unsigned(column: ColumnInfo) -> bool:
    return "unsigned" in column.db_type.lower()


def int_range(column: ColumnInfo) -> tuple[int, int]:
    """The smallest and largest value of an integer column."""
    bits = 8 * int_bytes(column)
    if _unsigned(column):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def int_digits(column: ColumnInfo) -> int:
    """Decimal digits of the largest positive value (generated keys are positive)."""
    return len(str(int_range(column)[1]))


def _float_bytes(column: ColumnInfo) -> int:
    t = column.db_type.lower()
    return 4 if t in ("real", "float4") or (t.startswith("float") and t != "float8") else 8


def _base_type(column: ColumnInfo) -> str:
    return column.db_type.lower().split("(")[0].strip()


def _byte_limit(column: ColumnInfo) -> int | None:
    """Bytes a MySQL TEXT-type column holds; None for a length in characters or none."""
    if column.family == "text" and _base_type(column) in _BYTE_LIMITED:
        return column.max_length
    return None


def _charset(column: ColumnInfo) -> str | None:
    """The column's character set when the connector reports one."""
    value = getattr(column, "charset", None)
    return value.lower() if isinstance(value, str) else None


def _text_width(column: ColumnInfo, signed: bool = True) -> int | None:
    """Characters needed to write `column`'s values as text; None when unbounded."""
    if column.family == "int":
        return int_digits(column) + (1 if signed else 0)
    if column.family == "uuid":
        return 36
    if column.family == "bool":
        return 5
    if column.family == "date":
        return 10
    if column.family == "decimal" and column.precision is not None:
        return column.precision + 2  # a sign and a point
    if column.family == "text":
        return column.max_length
    return None


def _integer_digits(column: ColumnInfo) -> int | None:
    """Digits before the point a numeric column holds; None when unbounded."""
    if column.family == "int":
        return int_digits(column)
    if column.family == "decimal" and column.precision is not None:
        return column.precision - (column.scale or 0)
    return None


def _fraction(column: ColumnInfo) -> int:
    return MAX_FRACTION if column.precision is None else column.precision


def _text_losses(src: ColumnInfo, dst: ColumnInfo) -> list[str]:
    losses: list[str] = []
    width = _text_width(src)
    dst_bytes = _byte_limit(dst)
    if dst_bytes is not None:
        src_bytes = _byte_limit(src)
        if src_bytes is None and width is not None:
            # characters of text may take 4 bytes each; numbers, dates, uuids are ASCII
            src_bytes = width * _UTF8_MAX if src.family == "text" else width
        if dst_bytes < _TEXT_CEILING and (src_bytes is None or src_bytes > dst_bytes):
            if src.family == "text" and _byte_limit(src) is None:
                losses.append(
                    f"{dst.db_type} holds {dst_bytes} bytes, not characters: values longer "
                    f"than {dst_bytes} bytes (as few as {dst_bytes // _UTF8_MAX} characters of "
                    "4-byte UTF-8) will be rejected"
                )
            else:
                losses.append(f"values longer than {dst_bytes} bytes will be rejected")
    elif dst.max_length is not None and (width is None or width > dst.max_length):
        losses.append(f"values longer than {dst.max_length} characters will be rejected")
    refused = _charset_loss(src, dst)
    if refused is not None:
        losses.append(refused)
    return losses


def _charset_loss(src: ColumnInfo, dst: ColumnInfo) -> str | None:
    """What `dst`'s character set refuses of `src`'s values; None when they all fit.

    A source without a character set (PostgreSQL, numbers, dates) may hold any
    character. The server's strict sql_mode refuses a value it cannot store (it is never
    stored as "?"), so the record is parked with the server's error."""
    charset = _charset(dst)
    if charset is None or charset in _FULL_CHARSETS or charset == "binary":
        return None
    if src.family not in ("text", "json", "other"):
        return None  # numbers, dates, uuids, booleans are written in ASCII
    src_charset = _charset(src)
    rank = _CHARSET_RANK.get(charset)
    src_rank = _CHARSET_RANK.get(src_charset or "")
    if src_charset == charset or (rank is not None and src_rank is not None and src_rank <= rank):
        return None
    refused = _NARROW_CHARSETS.get(charset, f"characters outside {charset}")
    return (
        f"{dst.db_type} uses the {charset} character set: values with {refused} are "
        "refused by the server and such a record is parked with its error"
    )


def _number_losses(src: ColumnInfo, dst: ColumnInfo) -> list[str]:
    losses: list[str] = []
    if dst.family == "int" and src.family in ("int", "decimal"):
        low, high = int_range(dst)
        if src.family == "int":
            src_low, src_high = int_range(src)
            narrower = src_low < low or src_high > high
        else:
            digits = _integer_digits(src)
            narrower = digits is None or 10**digits - 1 > high or low == 0
        if narrower:
            losses.append(
                f"values outside the range of {dst.db_type} ({low} to {high}) will be rejected"
            )
    if dst.family == "decimal" and dst.precision is not None:
        dst_int = dst.precision - (dst.scale or 0)
        src_int = _integer_digits(src)
        if src.family in ("int", "decimal", "float") and (src_int is None or src_int > dst_int):
            losses.append(f"values with more than {dst_int} integer digits will be rejected")
        src_scale = src.scale if src.family == "decimal" and src.precision is not None else None
        exact = src.family == "int" or (src_scale is not None and src_scale <= (dst.scale or 0))
        if src.family in ("decimal", "float") and not exact:
            losses.append(f"values are rounded to {dst.scale or 0} decimal places")
    if dst.family == "float":
        mantissa, digits = (24, 7) if _float_bytes(dst) == 4 else (53, 15)
        if src.family == "int":
            low, high = int_range(src)
            if max(-low, high) > 2**mantissa:
                losses.append(
                    f"integers beyond {2**mantissa} in size lose precision in {dst.db_type}"
                )
        elif src.family == "decimal" and (src.precision is None or src.precision > digits):
            losses.append(
                f"values with more than {digits} significant digits lose precision in {dst.db_type}"
            )
        elif src.family == "float" and _float_bytes(src) > _float_bytes(dst):
            losses.append(f"values lose precision beyond about {digits} digits in {dst.db_type}")
    return losses


def _time_losses(src: ColumnInfo, dst: ColumnInfo) -> list[str]:
    losses: list[str] = []
    if src.family in _TIMES and dst.family in _TIMES and _fraction(src) > _fraction(dst):
        digits = _fraction(dst)
        losses.append(
            "fractional seconds are dropped (whole seconds only)"
            if digits == 0
            else f"fractional seconds beyond {digits} digits are dropped"
        )
    if src.family == "timestamptz" and dst.family == "timestamp":
        losses.append("the time zone is dropped: values are stored as UTC")
    return losses


def _kind_losses(
    src: ColumnInfo, dst: ColumnInfo, src_kind: str | None, dst_kind: str | None
) -> list[str]:
    """What one database stores that the other refuses."""
    losses: list[str] = []
    if src_kind == "mysql" and dst_kind not in (None, "mysql"):
        if src.family in _DATES and dst.family in _DATES:
            losses.append(
                "zero dates ('0000-00-00'), which MariaDB/MySQL stores when the sql_mode lacks "
                f"NO_ZERO_DATE, cannot be written to {dst.db_type}: such a record is parked"
            )
        if src.family == "time" and dst.family == "time":
            losses.append(
                "MariaDB/MySQL TIME holds -838:59:59 to 838:59:59 (durations): values outside "
                f"00:00:00 to 24:00:00 cannot be written to {dst.db_type}"
            )
    # floats make NaN and infinity by arithmetic; MySQL's FLOAT/DOUBLE/DECIMAL hold neither
    if (
        src_kind == "postgres"
        and dst_kind == "mysql"
        and src.family == "float"
        and dst.family in ("float", "decimal")
    ):
        losses.append(
            f"NaN and infinity, which PostgreSQL allows in {src.db_type}, cannot be written "
            f"to {dst.db_type}"
        )
    src_timestamp = src_kind == "mysql" and _base_type(src) == "timestamp"
    dst_timestamp = dst_kind == "mysql" and _base_type(dst) == "timestamp"
    if dst_timestamp and not src_timestamp and src.family in _DATES:
        losses.append(
            f"{dst.db_type} holds 1970-01-01 00:00:01 to 2038-01-19 03:14:07 UTC: other "
            "values will be rejected"
        )
    return losses


def narrowings(
    src: ColumnInfo, dst: ColumnInfo, src_kind: str | None = None, dst_kind: str | None = None
) -> tuple[str, ...]:
    """Every way values of `src` can be lost or refused when written to `dst`."""
    losses: list[str] = []
    if dst.family == "text":
        losses += _text_losses(src, dst)
    losses += _number_losses(src, dst)
    if dst.family == "bool" and src.family == "int":
        losses.append("only 0 and 1 convert to true/false; other values will be rejected")
    tinyint = _base_type(src) == "tinyint" and _base_type(dst) != "tinyint"
    if dst.family == "bool" and src.family == "bool" and tinyint:
        losses.append(
            f"{src.db_type} can hold other values than 0 and 1: a record holding one is parked"
        )
    if (
        src.family == "bytes"
        and dst.family == "bytes"
        and dst.max_length is not None
        and (src.max_length is None or src.max_length > dst.max_length)
    ):
        losses.append(f"values longer than {dst.max_length} bytes will be rejected")
    losses += _time_losses(src, dst)
    losses += _kind_losses(src, dst, src_kind, dst_kind)
    return tuple(losses)


def check_conversion(
    src: ColumnInfo, dst: ColumnInfo, src_kind: str | None = None, dst_kind: str | None = None
) -> Conversion:
    """Can values of `src` be written to `dst` without a transform, and what may be lost?"""
    lost = narrowings(src, dst, src_kind, dst_kind)
    if src.family == "other" or dst.family == "other":
        if src.db_type.lower() == dst.db_type.lower() or dst.family == "text":
            return Conversion(True, lost)
        return Conversion(
            True, (f"cannot check that {src.db_type} values fit {dst.db_type}; test it",)
        )
    allowed = dst.family in _ALLOWED[src.family]
    if src.family == "decimal" and dst.family == "int":
        if src.scale == 0:
            return Conversion(True, lost)
        return Conversion(
            False,
            (
                f"{src.db_type} has decimal places and {dst.db_type} does not "
                "(declare a transform such as to_int to round explicitly)",
            ),
        )
    if not allowed:
        hint = _HINT.get(dst.family)
        fix = f"declare a transform (e.g. {hint})" if hint else "declare a python: transform"
        return Conversion(
            False, (f"{src.family} values cannot become {dst.family} ({fix} for this direction)",)
        )
    return Conversion(True, lost)


def check_key_storage(key: ColumnInfo, ext: ColumnInfo) -> Conversion:
    """Can `ext` store every value of the key column `key` exactly (SOR mode)?"""
    if ext.family == "float":
        return Conversion(False, (f"a {ext.db_type} column cannot store keys exactly",))
    base = check_conversion(key, ext)
    if not base.possible:
        return base
    narrow: str | None = None
    if ext.family == "text" and ext.max_length is not None:
        width = _text_width(key, signed=False)
        if width is not None and width > ext.max_length:
            narrow = f"needs {width} characters"
        elif width is None:
            return Conversion(True, (f"{ext.db_type} may be too short for {key.db_type} keys",))
    elif key.family == "int" and ext.family == "int" and int_range(ext)[1] < int_range(key)[1]:
        narrow = f"{ext.db_type} cannot hold every {key.db_type} value"
    elif key.family == "int" and ext.family == "decimal" and ext.precision is not None:
        if ext.precision - (ext.scale or 0) < int_digits(key):
            narrow = f"needs {int_digits(key)} integer digits"
    elif key.family == "int" and ext.family == "bool":
        return Conversion(False, ("a boolean column cannot store keys",))
    if narrow:
        return Conversion(
            False, (f"{ext.db_type} is too narrow for {key.db_type} keys ({narrow})",)
        )
    return Conversion(True)
