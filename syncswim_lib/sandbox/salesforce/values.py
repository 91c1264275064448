"""Field values in and out: JSON input coerced per field type, timestamps in Salesforce format."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from . import ids
from .contract import ApiError
from .schema import NUMBER_TYPES, STRING_TYPES, FieldDef

_DT_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})"
)
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Looser than RFC 5322 on purpose: it refuses only what a real org is sure to refuse (no
# single @, blanks, a domain without a dot), so valid addresses never fail here.
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")


def fmt_datetime(dt: datetime) -> str:
    """REST/SOQL output form: UTC, 3-digit millis, +0000 without a colon."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def parse_datetime(text: str) -> datetime | None:
    m = _DT_RE.fullmatch(text.strip())
    if not m:
        return None
    y, mo, d, h, mi, s, _frac, tz = m.groups()
    try:
        naive = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s))
    except ValueError:
        return None
    if tz == "Z":
        return naive.replace(tzinfo=UTC)
    sign = 1 if tz[0] == "+" else -1
    hh, mm = int(tz[1:3]), int(tz[-2:])
    from datetime import timedelta, timezone

    return naive.replace(tzinfo=timezone(sign * timedelta(hours=hh, minutes=mm))).astimezone(UTC)


def parse_date(text: str) -> date | None:
    if not _DATE_RE.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _deser_error(kind: str, value: Any) -> ApiError:
    vt = "VALUE_STRING" if isinstance(value, str) else "VALUE_" + type(value).__name__.upper()
    return ApiError(
        400,
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {kind} from {vt} value {value} or request "
        "may be missing a required field",
    )


def coerce(sobject: str, f: FieldDef, value: Any) -> Any:
    """Validate one input value; returns the stored (JSON output) form. None clears."""
    if value is None:
        return None
    t = f.type
    if t in STRING_TYPES:
        if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
            raise _deser_error("string", value)
        s = str(value)
        if s == "":
            return None  # Salesforce stores empty text as null
        if f.restricted_picklist and t in ("picklist", "multipicklist"):
            chosen = s.split(";") if t == "multipicklist" else [s]
            bad = next((v for v in chosen if v not in f.picklist_values), None)
            if bad is not None:
                raise ApiError(
                    400,
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{f.label}: bad value for restricted picklist field: {bad}",
                    [f.name],
                )
        if len(s) > f.length:
            raise ApiError(
                400,
                "STRING_TOO_LONG",
                f"{f.label}: data value too large: {s[:40]} (max length={f.length})",
                [f.name],
            )
        if t == "email" and not _EMAIL_RE.fullmatch(s):
            raise ApiError(
                400, "INVALID_EMAIL_ADDRESS", f"{f.label}: invalid email address: {s}", [f.name]
            )
        return s
    if t == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _deser_error("boolean", value)
    if t in ("int", "long"):
        return _whole_number(f, value)
    if t in NUMBER_TYPES:
        return _decimal_number(f, value)
    if t == "date":
        d = parse_date(value) if isinstance(value, str) else None
        if d is None:
            raise _deser_error("date", value)
        return d.isoformat()
    if t == "datetime":
        dt = parse_datetime(value) if isinstance(value, str) else None
        if dt is None:
            raise _deser_error("datetime", value)
        return fmt_datetime(dt)
    if t in ("reference", "id"):
        if not isinstance(value, str):
            raise _deser_error("id", value)
        if value == "":
            return None
        rid = ids.normalize(value)
        if rid is None:
            raise ApiError(
                400, "MALFORMED_ID", f"{f.label}: id value of incorrect type: {value}", [f.name]
            )
        return rid
    return value


def _out_of_range(f: FieldDef, value: Any) -> ApiError:
    return ApiError(
        400,
        "NUMBER_OUTSIDE_VALID_RANGE",
        f"{f.label}: value outside of valid range on numeric field: {value}",
        [f.name],
    )


def _whole_number(f: FieldDef, value: Any) -> int:
    if isinstance(value, bool):
        raise _deser_error("int", value)
    whole_float = (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value()
    )
    digit_text = isinstance(value, str) and re.fullmatch(r"-?\d+", value) is not None
    if not (isinstance(value, int) or whole_float or digit_text):
        raise _deser_error("int", value)
    n = int(value)
    if abs(n) >= 10**f.digits:
        raise _out_of_range(f, value)
    return n


def _decimal_number(f: FieldDef, value: Any) -> Decimal:
    """A double/currency/percent as a real org stores it: rounded half up to the field's
    scale, refused when its whole part needs more than precision - scale digits. Kept as
    a Decimal: a currency(18,2) holds 18 digits exactly, more than a double does."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise _deser_error("double", value)
    try:
        # repr of a float, not its binary value: 12.345 must round like the decimal written
        exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except ArithmeticError:
        raise _deser_error("double", value) from None
    if not exact.is_finite():
        raise _deser_error("double", value)
    limit = Decimal(10) ** (f.precision - f.scale)
    if abs(exact) >= limit:  # checked first: quantize would overflow on huge values
        raise _out_of_range(f, value)
    rounded = exact.quantize(Decimal(10) ** -f.scale, rounding=ROUND_HALF_UP)
    if abs(rounded) >= limit:
        raise _out_of_range(f, value)
    return rounded


def compound_value(f: FieldDef, rec: dict[str, Any]) -> Any:
    """Derived read-only value of a compound field (address object or full name)."""
    if f.type == "address":
        parts = {key: rec.get(comp) for key, comp in f.components}
        if all(v is None for v in parts.values()):
            return None
        return {
            "city": parts.get("city"),
            "country": parts.get("country"),
            "geocodeAccuracy": None,
            "latitude": None,
            "longitude": None,
            "postalCode": parts.get("postalCode"),
            "state": parts.get("state"),
            "street": parts.get("street"),
        }
    names = [rec.get(comp) for _key, comp in f.components]
    joined = " ".join(str(n) for n in names if n)
    return joined or None
