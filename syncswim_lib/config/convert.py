"""Whether values of one column can be written to another, judged by type family and size.

Used by live validation before anything runs: an impossible conversion (json -> int,
text -> int without a `to_int` transform) is an error; a possible but lossy one (a
shorter varchar, fewer decimal places) is a warning. When the user declared a transform
for a direction, the transform is trusted and nothing is checked here.
"""

from __future__ import annotations

from dataclasses import dataclass

from syncswim_lib.connectors.base import ColumnInfo, TypeFamily

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
    reason: str | None = None  # why impossible, or what may be lost when possible


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


def int_digits(column: ColumnInfo) -> int:
    """Decimal digits of the largest positive value (generated keys are positive)."""
    unsigned = "unsigned" in column.db_type.lower()
    return len(str(2 ** (8 * int_bytes(column) - (0 if unsigned else 1)) - 1))


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


def _size_warning(src: ColumnInfo, dst: ColumnInfo) -> str | None:
    if dst.family == "text" and dst.max_length is not None:
        width = _text_width(src)
        if width is None or width > dst.max_length:
            return f"values longer than {dst.max_length} characters will be rejected"
    if src.family == "int" and dst.family == "int" and int_bytes(dst) < int_bytes(src):
        return f"values outside the range of {dst.db_type} will be rejected"
    if dst.family == "decimal" and dst.precision is not None:
        dst_int = dst.precision - (dst.scale or 0)
        src_int: int | None = None
        if src.family == "int":
            src_int = int_digits(src)
        elif src.family == "decimal" and src.precision is not None:
            src_int = src.precision - (src.scale or 0)
        if src_int is None or src_int > dst_int:
            return f"values with more than {dst_int} integer digits will be rejected"
        if src.family == "decimal" and (src.scale or 0) > (dst.scale or 0):
            return f"values are rounded to {dst.scale or 0} decimal places"
    if src.family == "timestamptz" and dst.family == "timestamp":
        return "the time zone is dropped: values are stored as UTC"
    if src.family in ("int", "bool") and dst.family == "bool" and src.family != dst.family:
        return "only 0 and 1 convert to true/false; other values will be rejected"
    return None


def check_conversion(src: ColumnInfo, dst: ColumnInfo) -> Conversion:
    """Can values of `src` be written to `dst` without a transform?"""
    if src.family == "other" or dst.family == "other":
        if src.db_type.lower() == dst.db_type.lower() or dst.family == "text":
            return Conversion(True, _size_warning(src, dst))
        return Conversion(
            True, f"cannot check that {src.db_type} values fit {dst.db_type}; test it"
        )
    allowed = dst.family in _ALLOWED[src.family]
    if src.family == "decimal" and dst.family == "int":
        if src.scale == 0:
            return Conversion(True, _size_warning(src, dst))
        return Conversion(
            False,
            f"{src.db_type} has decimal places and {dst.db_type} does not "
            "(declare a transform such as to_int to round explicitly)",
        )
    if not allowed:
        hint = _HINT.get(dst.family)
        fix = f"declare a transform (e.g. {hint})" if hint else "declare a python: transform"
        return Conversion(
            False, f"{src.family} values cannot become {dst.family} ({fix} for this direction)"
        )
    return Conversion(True, _size_warning(src, dst))


def check_key_storage(key: ColumnInfo, ext: ColumnInfo) -> Conversion:
    """Can `ext` store every value of the key column `key` exactly (SOR mode)?"""
    if ext.family == "float":
        return Conversion(False, f"a {ext.db_type} column cannot store keys exactly")
    base = check_conversion(key, ext)
    if not base.possible:
        return base
    narrow: str | None = None
    if ext.family == "text" and ext.max_length is not None:
        width = _text_width(key, signed=False)
        if width is not None and width > ext.max_length:
            narrow = f"needs {width} characters"
        elif width is None:
            return Conversion(True, f"{ext.db_type} may be too short for {key.db_type} keys")
    elif key.family == "int" and ext.family == "int" and int_bytes(ext) < int_bytes(key):
        narrow = f"{ext.db_type} cannot hold every {key.db_type} value"
    elif key.family == "int" and ext.family == "decimal" and ext.precision is not None:
        if ext.precision - (ext.scale or 0) < int_digits(key):
            narrow = f"needs {int_digits(key)} integer digits"
    elif key.family == "int" and ext.family == "bool":
        return Conversion(False, "a boolean column cannot store keys")
    if narrow:
        return Conversion(False, f"{ext.db_type} is too narrow for {key.db_type} keys ({narrow})")
    return Conversion(True, None)
