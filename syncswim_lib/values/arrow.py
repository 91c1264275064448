"""Values as Arrow: the one family -> Arrow type map, and rows ⇄ Arrow tables typed by the
target's columns (the diff's wire format)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from syncswim_lib.values.columns import ColumnInfo

REF = "__ref"


# Arrow's decimal128 holds up to 38 digits; a wider (or unbounded) numeric is text
MAX_ARROW_DECIMAL_PRECISION = 38


def decimal_is_bounded(column: ColumnInfo) -> bool:
    """A decimal column whose values fit Arrow's decimal128 of its precision and scale."""
    return (
        column.precision is not None
        and column.scale is not None
        and 0 <= column.scale <= column.precision <= MAX_ARROW_DECIMAL_PRECISION
    )


def arrow_type(column: ColumnInfo) -> pa.DataType:
    """The Arrow type of a column's values, by its family: the diff's and the snapshots'.

    Unbounded (or wider than 38 digits) numeric is text, so no digit is lost; JSON is its
    JSON text; uuid, time, text and other types are text. A connector whose database has
    types of its own (MySQL's unsigned BIGINT, TIME) decides those before asking here.
    """
    family = column.family
    if family == "decimal":
        if decimal_is_bounded(column):
            assert column.precision is not None and column.scale is not None
            return pa.decimal128(column.precision, column.scale)
        return pa.string()
    return _ARROW.get(family, _TEXT)


_TEXT = pa.string()
_ARROW: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "bytes": pa.binary(),
}


def _cell(value: Any, col: ColumnInfo, typ: pa.DataType) -> Any:
    if value is None:
        return None
    if col.family == "json":
        return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
    if pa.types.is_string(typ) and not isinstance(value, str):
        return str(value)
    return value


def rows_to_table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[ColumnInfo],
    lists: Sequence[str] = (),
) -> pa.Table:
    """`rows` carry `__ref` plus the named columns; JSON values travel as JSON text.
    `lists` names extra list<string> columns (`__set`, `__check`) taken from the rows."""
    fields = [pa.field(REF, pa.string(), nullable=False)]
    arrays = [pa.array([r[REF] for r in rows], pa.string())]
    for name in lists:
        typ = pa.list_(pa.string())
        fields.append(pa.field(name, typ))
        arrays.append(pa.array([r.get(name) for r in rows], typ))
    for col in columns:
        typ = arrow_type(col)
        fields.append(pa.field(col.name, typ))
        arrays.append(pa.array([_cell(r.get(col.name), col, typ) for r in rows], typ))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _column(values: Sequence[Any], col: ColumnInfo, typ: pa.DataType) -> pa.Array:
    """One column's values as `rows_to_table` makes them, a column at a time: handed to
    Arrow as they are where `_cell` would keep each (no call per value)."""
    if col.family != "json":
        kinds = set(map(type, values))
        kinds.discard(type(None))
        if not pa.types.is_string(typ) or kinds <= {str}:
            return pa.array(values, typ)
    return pa.array([_cell(v, col, typ) for v in values], typ)


def columns_to_table(
    refs: Sequence[str], columns: Sequence[ColumnInfo], values: Sequence[Sequence[Any]]
) -> pa.Table:
    """`rows_to_table` of rows given a column at a time: `refs` the `__ref` of each row,
    `values[i]` the values of `columns[i]` in the same order (the same table, typed
    alike)."""
    if len(columns) != len(values) or any(len(v) != len(refs) for v in values):
        raise ValueError("columns_to_table: one list of values per column, one per ref")
    fields = [pa.field(REF, pa.string(), nullable=False)]
    arrays = [pa.array(refs, pa.string())]
    for col, vals in zip(columns, values, strict=True):
        typ = arrow_type(col)
        fields.append(pa.field(col.name, typ))
        arrays.append(_column(vals, col, typ))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def empty_table(columns: Sequence[ColumnInfo]) -> pa.Table:
    return rows_to_table([], columns)
