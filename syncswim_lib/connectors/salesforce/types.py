"""Salesforce field types as the project's type families, and values between Salesforce's
JSON / CSV / change-event forms and the canonical values of envelope.py.

| Salesforce type | family | notes |
|---|---|---|
| id, reference | text | 18 characters; a lookup holds the parent's Id |
| string, textarea, email, phone, url, picklist, multipicklist, combobox, | text | `length` |
| encryptedstring | | is max_length; a multi-select picklist is `A;B` |
| double, currency, percent | decimal | precision/scale from describe (a 0 precision: float) |
| int, long | int | |
| date | date | |
| datetime | timestamptz | whole seconds (precision 0): what an org stores |
| boolean | bool | |
| time | time | text `HH:MM:SS.sssZ` |
| address, location, base64, anyType | left out | compound or binary: not synced |
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa

from syncswim_lib.values import ColumnInfo, TypeFamily
from syncswim_lib.values.arrow import arrow_type

TEXT_TYPES = frozenset(
    {
        "id",
        "reference",
        "string",
        "textarea",
        "email",
        "phone",
        "url",
        "picklist",
        "multipicklist",
        "combobox",
        "encryptedstring",
    }
)
NUMBER_TYPES = frozenset({"double", "currency", "percent"})
INT_TYPES = frozenset({"int", "long"})
# compound (their parts are fields of their own) and binary fields: no column
SKIPPED_TYPES = frozenset({"address", "location", "base64", "anyType", "complexvalue"})
ID_RE = re.compile(r"[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?")
# the escape sequences of SOQL string literals
_SOQL_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def family_of(sf_type: str, precision: int) -> TypeFamily:
    if sf_type in TEXT_TYPES:
        return "text"
    if sf_type in NUMBER_TYPES:
        return "decimal" if precision > 0 else "float"
    if sf_type in INT_TYPES:
        return "int"
    if sf_type == "date":
        return "date"
    if sf_type == "datetime":
        return "timestamptz"
    if sf_type == "boolean":
        return "bool"
    if sf_type == "time":
        return "time"
    return "other"


def db_type(field: dict[str, Any]) -> str:
    """The describe type with its size, as messages show it: string(80), currency(18,2)."""
    t = str(field["type"])
    if t in NUMBER_TYPES and field.get("precision"):
        return f"{t}({field['precision']},{field.get('scale') or 0})"
    if t in INT_TYPES and field.get("digits"):
        return f"{t}({field['digits']})"
    if t == "reference" and field.get("referenceTo"):
        return f"reference({','.join(field['referenceTo'])})"
    if t in TEXT_TYPES and t not in ("id", "reference") and field.get("length"):
        return f"{t}({field['length']})"
    return t


def column_info(field: dict[str, Any]) -> ColumnInfo:
    t = str(field["type"])
    precision = int(field.get("precision") or 0)
    family = family_of(t, precision)
    length = int(field.get("length") or 0)
    if family == "decimal":
        return ColumnInfo(
            str(field["name"]),
            family,
            db_type(field),
            nullable=bool(field.get("nillable", True)),
            precision=precision,
            scale=int(field.get("scale") or 0),
        )
    if family == "int":
        digits = int(field.get("digits") or 0)
        return ColumnInfo(
            str(field["name"]),
            family,
            db_type(field),
            nullable=bool(field.get("nillable", True)),
            precision=digits or None,
        )
    return ColumnInfo(
        str(field["name"]),
        family,
        db_type(field),
        nullable=bool(field.get("nillable", True)),
        # a datetime keeps whole seconds: writing microseconds would read back different
        precision=0 if family == "timestamptz" else None,
        max_length=length if family == "text" and length else None,
        auto_generated=t == "id",
    )


# --- values --------------------------------------------------------------------------


def parse_datetime(text: str) -> datetime:
    """`2013-05-20T20:49:32.000+0000` (REST), `…Z` (change events, Bulk CSV)."""
    t = text.strip().replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", t):
        t = f"{t[:-2]}:{t[-2:]}"
    return datetime.fromisoformat(t).astimezone(UTC)


def to_canonical(value: Any, column: ColumnInfo) -> Any:
    """A value as Salesforce's JSON (REST, change events) or Bulk CSV text gives it, as
    the canonical value of `column`'s family. Empty CSV text is null (Salesforce keeps
    no empty strings)."""
    if value is None or (isinstance(value, str) and value == "" and column.family != "text"):
        return None
    family = column.family
    if family == "text":
        return None if value == "" else str(value)
    if family == "decimal":
        try:
            d = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
        except InvalidOperation:
            raise ValueError(f"{column.name}: not a number: {value!r}") from None
        return d.quantize(Decimal(1).scaleb(-(column.scale or 0))) if d.is_finite() else d
    if family == "float":
        return float(value)
    if family == "int":
        return int(Decimal(str(value)))
    if family == "bool":
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() == "true"
    if family == "date":
        return date.fromisoformat(str(value)[:10])
    if family == "timestamptz":
        return parse_datetime(str(value))
    return value


def to_salesforce(value: Any, column: ColumnInfo) -> Any:
    """A canonical value as a REST JSON body carries it."""
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.isoformat()
    if isinstance(value, Decimal):
        # kept exact: the request body writes it as a numeric literal (client.json_text);
        # a float would drop digits past the 15th
        return value
    if isinstance(value, float) and column.family == "decimal":
        return Decimal(repr(value))  # the shortest text that is this float
    return value


def soql_literal(value: Any, column: ColumnInfo) -> str:
    """`value` as a SOQL literal for a WHERE on `column`."""
    family = column.family
    if family in ("int", "decimal", "float"):
        return format(Decimal(str(value)), "f")
    if family == "bool":
        return "true" if value else "false"
    if family == "date":
        return (value if isinstance(value, date) else date.fromisoformat(str(value))).isoformat()
    if family == "timestamptz":
        dt = value if isinstance(value, datetime) else parse_datetime(str(value))
        return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return "'" + "".join(_SOQL_ESCAPES.get(ch, ch) for ch in str(value)) + "'"


def record_batch(rows: list[dict[str, Any]], columns: list[ColumnInfo]) -> pa.RecordBatch:
    arrays = []
    for col in columns:
        typ = arrow_type(col)
        values = [r.get(col.name) for r in rows]
        if pa.types.is_string(typ):
            values = [None if v is None else str(v) for v in values]
        arrays.append(pa.array(values, typ))
    schema = pa.schema([pa.field(c.name, arrow_type(c)) for c in columns])
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
