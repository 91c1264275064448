"""Values as the memory database keeps them: canonical (see `envelope.py`), coerced to
their column on every write as a real database would store them, and the Arrow form of
a snapshot, which is the one the SQL connectors give (JSON as sorted compact text,
unbounded decimals as text)."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa

from syncswim_lib.values import ColumnInfo, TableInfo
from syncswim_lib.values.arrow import arrow_type, decimal_is_bounded
from syncswim_lib.values.coerce import coerce

# families a snapshot carries as text (like the SQL connectors' `::text` casts)
TEXT_FAMILIES = frozenset({"uuid", "time", "other", "text"})


class IntegrityError(ValueError):
    """A write the database refuses: a NOT NULL, unique or type violation."""


def json_text(value: Any) -> str:
    """One text form of a JSON value: sorted keys, compact, as the SQL connectors give."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def stored(value: Any, column: ColumnInfo) -> Any:
    """`value` as `column` stores it; IntegrityError when the column cannot hold it."""
    try:
        out = coerce(value, column)
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise IntegrityError(str(exc)) from exc
    if column.family == "json":
        return copy.deepcopy(out)
    return out


def copy_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row the caller may change without touching the stored one."""
    return {k: copy.deepcopy(v) if isinstance(v, dict | list) else v for k, v in row.items()}


def hashable(value: Any) -> Any:
    """A dictionary key for a canonical value (JSON documents by their text)."""
    if isinstance(value, dict | list):
        return ("json", json_text(value))
    if isinstance(value, Decimal):
        return ("decimal", value.normalize())  # 1.50 and 1.5 are one key, as in SQL
    return value


def key_tuple(row: Mapping[str, Any], columns: Sequence[str]) -> tuple[Any, ...]:
    return tuple(hashable(row.get(c)) for c in columns)


def sort_key(value: Any, column: ColumnInfo) -> tuple[int, Any]:
    """NULLs first, then Python's order of the canonical value (text by code point, as
    the SQL connectors' `COLLATE "C"`); families read as text sort by that text."""
    if value is None:
        return (0, 0)
    if column.family in ("uuid", "time", "other"):
        return (1, str(value))
    if isinstance(value, bool):
        return (1, int(value))
    return (1, value)


def arrow_value(value: Any, column: ColumnInfo) -> Any:
    if value is None:
        return None
    if column.family == "json":
        return json_text(value)
    if column.family == "decimal" and not decimal_is_bounded(column):
        return format(value, "f") if isinstance(value, Decimal) else str(value)
    if column.family in TEXT_FAMILIES and not isinstance(value, str):
        return str(value)
    return value


def arrow_schema(columns: Sequence[ColumnInfo]) -> pa.Schema:
    return pa.schema([pa.field(c.name, arrow_type(c), nullable=c.nullable) for c in columns])


def record_batch(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[ColumnInfo]
) -> pa.RecordBatch:
    schema = arrow_schema(columns)
    arrays = [
        pa.array([arrow_value(r.get(c.name), c) for r in rows], type=arrow_type(c)) for c in columns
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def check_table(info: TableInfo) -> None:
    """A declaration the database can keep: named columns, key and unique sets among them."""
    names = [c.name for c in info.columns]
    if len(set(names)) != len(names):
        raise ValueError(f"table {info.name}: a column name is used twice")
    for group in (info.primary_key, *info.unique):
        for name in group:
            if name not in names:
                raise ValueError(f"table {info.name}: key column {name} is not a column")
