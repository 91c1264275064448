"""Turning a canonical value into the value a given column stores.

Used at apply time (before handing values to a driver) and to compute the shadow: the
shadow must hold what the target really stores (a DATETIME(0) drops microseconds, a
NUMERIC(12,2) rounds), or every write would look like a new change when it comes back.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import Any

from syncswim_lib.values.columns import ColumnInfo

_TRUE = {"true", "t", "yes", "y", "1", "on"}
_FALSE = {"false", "f", "no", "n", "0", "off"}
# MySQL/MariaDB's zero date and datetime ('0000-00-00', '0000-00-00 00:00:00[.000000]'),
# which a session without NO_ZERO_DATE may store: it is no date at all
_ZERO_DATE = re.compile(r"0000-00-00(?:[ T]00:00:00(?:\.0*)?)?")


def _fail(value: Any, column: ColumnInfo, why: str = "") -> ValueError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    extra = f": {why}" if why else ""
    return ValueError(
        f"cannot store {type(value).__name__} {shown} in column {column.name} "
        f"({column.db_type}){extra}"
    )


def _to_int(value: Any, column: ColumnInfo) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal | float):
        if value != int(value):
            raise _fail(value, column, "has a fractional part")
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise _fail(value, column, "not an integer") from None
    raise _fail(value, column)


def _to_decimal(value: Any, column: ColumnInfo) -> Decimal:
    if isinstance(value, bool):
        raise _fail(value, column)
    try:
        if isinstance(value, float):
            d = Decimal(repr(value))
        elif isinstance(value, int | Decimal | str):
            d = Decimal(str(value).strip()) if isinstance(value, str) else Decimal(value)
        else:
            raise _fail(value, column)
    except InvalidOperation:
        raise _fail(value, column, "not a number") from None
    if not d.is_finite():
        raise _fail(value, column, "not finite")
    if column.scale is not None:
        if column.precision is not None and d and d.adjusted() >= column.precision:
            raise _fail(value, column, f"more than {column.precision} digits")
        # the default context's 28 digits would refuse to quantize a wider column's value
        # (decimal(65,30) holds 65): as many digits as the result has, and a little more
        exact = Context(prec=max(28, d.adjusted() + column.scale + 3))
        d = d.quantize(Decimal(1).scaleb(-column.scale), ROUND_HALF_EVEN, exact)
        if column.precision is not None and len(d.as_tuple().digits) > column.precision and d:
            raise _fail(value, column, f"more than {column.precision} digits")
    return d


def _zero_date(value: Any, column: ColumnInfo) -> ValueError | None:
    if isinstance(value, str) and _ZERO_DATE.fullmatch(value.strip()):
        return ValueError(
            f"zero date {value!r} has no value in column {column.name} {column.db_type}"
        )
    return None


def _to_bool(value: Any, column: ColumnInfo) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value in (0, 1):
            return bool(value)
        # a MySQL tinyint(1) holds -128..127: anything but 0/1 is no boolean
        raise ValueError(
            f"{value} is not a boolean (0 or 1) for column {column.name} {column.db_type}"
        )
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _fail(value, column)


def _to_datetime(value: Any, column: ColumnInfo) -> datetime:
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        dt = dt.astimezone(UTC)
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif isinstance(value, str):
        if zero := _zero_date(value, column):
            raise zero
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise _fail(value, column, "not an ISO-8601 timestamp") from None
        return _to_datetime(dt, column)
    else:
        raise _fail(value, column)
    digits = 6 if column.precision is None else column.precision
    if digits < 6:
        # the column keeps fewer fractional digits; truncate as the databases do on store
        step = 10 ** (6 - digits)
        dt = dt.replace(microsecond=(dt.microsecond // step) * step)
    return dt


def _to_date(value: Any, column: ColumnInfo) -> date:
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        if zero := _zero_date(value, column):
            raise zero
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            raise _fail(value, column, "not an ISO-8601 date") from None
    raise _fail(value, column)


def _to_text(value: Any, column: ColumnInfo) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, datetime | date | time):
        text = value.isoformat()
    elif isinstance(value, dict | list):
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    elif isinstance(value, bytes):
        raise _fail(value, column)
    else:
        text = str(value)
    if column.max_length is not None and len(text) > column.max_length:
        raise _fail(value, column, f"longer than {column.max_length} characters")
    return text


def _to_json(value: Any, column: ColumnInfo) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise _fail(value, column, "not valid JSON") from None
    if isinstance(value, Decimal):
        return float(value) if value != int(value) else int(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def coerce(value: Any, column: ColumnInfo) -> Any:
    """The canonical value `column` would store for `value`; ValueError when impossible."""
    if value is None:
        return None
    family = column.family
    if family == "int":
        return _to_int(value, column)
    if family == "decimal":
        return _to_decimal(value, column)
    if family == "float":
        if isinstance(value, bool):
            raise _fail(value, column)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _fail(value, column, "not a number") from None
    if family == "bool":
        return _to_bool(value, column)
    if family in ("timestamp", "timestamptz"):
        return _to_datetime(value, column)
    if family == "date":
        return _to_date(value, column)
    if family == "json":
        return _to_json(value, column)
    if family == "bytes":
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode("utf-8")
        raise _fail(value, column)
    if family in ("text", "uuid"):
        return _to_text(value, column)
    return value


def same_value(left: Any, right: Any) -> bool:
    """Equality across representations that mean the same thing (1.50 == 1.5, 1 == True is
    *not* the same, aware datetimes compared as instants)."""
    if type(left) is type(right):
        # the merge compares most values with one of their own type, where every rule
        # below comes down to ==; the Decimal texts cost more than the rest of a compare
        return bool(left == right)
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, int | Decimal | float) and isinstance(right, int | Decimal | float):
        return Decimal(str(left)) == Decimal(str(right))
    return bool(left == right)


def holds(actual: Any, expected: Any, column: ColumnInfo) -> bool:
    """Does a stored value (canonical, as fetch reads it) still equal what a plan saw?

    `expected` is coerced to the column first, as apply does with the values it writes
    (JSON text is parsed, a timestamp truncated to the column's digits). A value the column
    cannot hold (a MySQL zero date, a tinyint(1) of 2, read from this very row) is
    compared as it is. Families `coerce` leaves alone (time, other) may come as text from
    one reader and as objects from another: they are also compared by their text.
    """
    if type(actual) is type(expected) and actual == expected:
        # a stored value is what `coerce` makes of itself: an equal one of the same type
        # holds without coercing it (compare-and-set checks every column of every row)
        return True
    try:
        want = coerce(expected, column)
    except (ValueError, TypeError, ArithmeticError):
        want = expected
    if same_value(actual, want):
        return True
    if column.family in ("time", "other") and actual is not None and want is not None:
        return str(actual) == str(want)
    return False


_NONE = type(None)
_BOUNDED_DECIMAL_DIGITS = 38  # Arrow's decimal128 (values/arrow.py)
# per family: the value types `coerce` hands back unchanged (and the identical object),
# so a column made of them alone needs no call per value; decimal, text and timestamps
# have a whole-column check of their own below
_KEPT: dict[str, frozenset[type]] = {
    "int": frozenset((int,)),
    "float": frozenset((float,)),
    "bool": frozenset((bool,)),
    "date": frozenset((date,)),
    "bytes": frozenset((bytes,)),
    "json": frozenset((dict, list, int, float, bool)),
    "text": frozenset((str,)),
    "uuid": frozenset((str,)),
}


def coerce_column(values: list[Any], column: ColumnInfo) -> tuple[list[Any], list[int]]:
    """`coerce` over one column's values: the values (None where it failed) and the
    positions `coerce` refuses (ValueError, TypeError, ArithmeticError).

    A column whose values all have the type the family keeps (ints for an int column,
    strings short enough for a text one, UTC datetimes for a timestamp with microseconds,
    decimals that fit the column's precision and scale: checked by Arrow on the whole
    column) is taken as it is, or as Arrow made it, without a Python call per value; any
    other column, and the values of it such a check refuses, go through `coerce` one by
    one. The one difference: Arrow has no negative zero, a Decimal('-0.00') comes back
    as Decimal('0.00') (equal, and what the databases store)."""
    kinds = set(map(type, values))
    kinds.discard(_NONE)
    family = column.family
    if not kinds:
        return list(values), []
    kept = _KEPT.get(family)
    if kept is not None and kinds <= kept:
        if family not in ("text", "uuid") or column.max_length is None:
            return list(values), []
        if max(map(len, filter(None, values)), default=0) <= column.max_length:
            return list(values), []
    elif family == "decimal" and kinds == {Decimal}:
        fast = _decimal_column(values, column)
        if fast is not None:
            return fast, []
    elif (
        family in ("timestamp", "timestamptz")
        and kinds == {datetime}
        and (column.precision is None or column.precision >= 6)
        and all(v.tzinfo is UTC for v in values if v is not None)
    ):
        return list(values), []
    out: list[Any] = []
    failed: list[int] = []
    for i, value in enumerate(values):
        try:
            out.append(coerce(value, column))
        except (ValueError, TypeError, ArithmeticError):
            out.append(None)
            failed.append(i)
    return out, failed


def _decimal_column(values: list[Any], column: ColumnInfo) -> list[Any] | None:
    """Decimals as `coerce` makes them, by Arrow, or None when Arrow refuses the column
    (a value that needs rounding, has too many digits or is not finite)."""
    import pyarrow as pa  # the values layer's only Arrow user besides values/arrow.py

    if column.scale is None:
        # no quantizing: `coerce` only refuses what is not finite
        if all(v.is_finite() for v in values if v is not None):
            return list(values)
        return None
    p, s = column.precision, column.scale
    if p is None or not 0 <= s <= p <= _BOUNDED_DECIMAL_DIGITS:
        return None
    try:
        # exact or refused: Arrow rescales without rounding and checks the precision
        got: list[Any] = pa.array(values, pa.decimal128(p, s)).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError, TypeError, ArithmeticError):
        return None
    return got
