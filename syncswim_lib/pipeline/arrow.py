"""Rows ⇄ Arrow tables typed by the target's columns: the diff's wire format."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from syncswim_lib.connectors.base import ColumnInfo

REF = "__ref"


def arrow_type(col: ColumnInfo) -> pa.DataType:
    f = col.family
    if f == "int":
        return pa.int64()
    if f == "float":
        return pa.float64()
    if f == "decimal":
        if col.precision and col.precision <= 38 and col.scale is not None:
            return pa.decimal128(col.precision, col.scale)
        return pa.string()  # unbounded numeric keeps its digits as text
    if f == "bool":
        return pa.bool_()
    if f == "date":
        return pa.date32()
    if f in ("timestamp", "timestamptz"):
        return pa.timestamp("us", tz="UTC")
    if f == "bytes":
        return pa.binary()
    return pa.string()


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


def empty_table(columns: Sequence[ColumnInfo]) -> pa.Table:
    return rows_to_table([], columns)
