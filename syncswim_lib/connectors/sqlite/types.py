"""SQLite column types as type families, and values to and from the file.

SQLite stores a value by its own class (integer, real, text, blob) whatever the declared
type, so the declared type decides the family by SQLite's affinity rules, refined by
the names applications use for dates, booleans and JSON. How each family is stored:

- timestamps: ISO-8601 text in UTC, `YYYY-MM-DD HH:MM:SS[.ffffff]` (the form of SQLite's
  own CURRENT_TIMESTAMP and strftime('%Y-%m-%d %H:%M:%f'), so text order is time order
  and a modification column compares correctly with `>=`); written without trailing
  zeros of the fraction; text with a zone or a `T` is read too, but a modification
  column must keep the space form for its order to be right;
- dates: `YYYY-MM-DD`; booleans: 0 and 1; JSON: compact text; decimals: text of the
  number (a NUMERIC column may keep it as a number; it is read back at the declared
  scale).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from syncswim_lib.values import ColumnInfo, TypeFamily

_PARAMS = re.compile(r"\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)")
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def family_of(declared: str) -> tuple[TypeFamily, int | None, int | None, int | None]:
    """(family, precision, scale, max_length) of a declared type."""
    text = declared.strip().upper()
    params = _PARAMS.search(text)
    first = int(params.group(1)) if params else None
    second = int(params.group(2)) if params and params.group(2) else None
    if "INT" in text:
        return "int", None, None, None
    if text.startswith(("BOOL",)):
        return "bool", None, None, None
    if "DATETIME" in text or "TIMESTAMP" in text:
        return "timestamptz", 6, None, None
    if text.startswith("DATE"):
        return "date", None, None, None
    if text.startswith("JSON"):
        return "json", None, None, None
    if "CHAR" in text or "CLOB" in text or "TEXT" in text:
        return "text", None, None, first
    if "UUID" in text:
        return "uuid", None, None, None
    if "BLOB" in text:
        return "bytes", None, None, None
    if "REAL" in text or "FLOA" in text or "DOUB" in text:
        return "float", None, None, None
    if "DEC" in text or "NUMERIC" in text:
        return "decimal", first, second if second is not None else 0, None
    return "text", None, None, None  # no declared type: what the application put there


def to_db(value: Any, column: ColumnInfo) -> Any:
    """A canonical value (already coerced to `column`) as the file stores it."""
    if value is None:
        return None
    family = column.family
    if family == "bool":
        return 1 if value else 0
    if family in ("timestamp", "timestamptz") and isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        # the shortest text of the instant (no trailing zeros of the fraction): text
        # that another writer spelled longer for the same instant sorts after it, so a
        # `>=` on this text never misses a row of the same instant
        text = aware.astimezone(UTC).strftime(TIMESTAMP_FORMAT).rstrip("0")
        return text.removesuffix(".")
    if family == "date" and isinstance(value, date):
        return value.isoformat()
    if family == "json":
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if family == "decimal":
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    return value


def from_db(value: Any, column: ColumnInfo) -> Any:
    """The canonical value of what the file holds for `column`."""
    if value is None:
        return None
    family = column.family
    if family == "bool":
        return bool(value) if isinstance(value, int) else str(value).lower() in ("1", "true")
    if family in ("timestamp", "timestamptz"):
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, UTC)
        dt = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    if family == "date":
        return date.fromisoformat(str(value)[:10])
    if family == "json":
        return json.loads(value) if isinstance(value, str | bytes) else value
    if family == "decimal":
        number = Decimal(str(value))
        if column.scale is not None:
            number = number.quantize(Decimal(1).scaleb(-column.scale))
        return number
    if family == "int":
        return int(value)
    if family == "float":
        return float(value)
    if family == "bytes":
        return bytes(value) if not isinstance(value, str) else value.encode()
    if family in ("text", "uuid") and not isinstance(value, str):
        return str(value)
    return value
