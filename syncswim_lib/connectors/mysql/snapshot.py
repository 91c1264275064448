"""Consistent, ordered, streamed reads of a whole table as Arrow record batches.

A column holding values its family's Arrow type cannot carry (a `tinyint(1)` of 2, a zero
date: see `types.py`) is, in the batches where that happens, a dense union of the
family's type and int64 (bool) or string (dates and times), so every value comes through
as it is and `to_pylist` reads it unchanged; the other batches keep the plain type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from syncswim_lib.connectors.mysql.connection import map_error, qident, qtable
from syncswim_lib.connectors.mysql.rows import canonical_rows
from syncswim_lib.connectors.mysql.types import arrow_type, to_arrow_value, to_canonical
from syncswim_lib.errors import ConfigError, FatalError
from syncswim_lib.values import ColumnInfo, TableInfo

if TYPE_CHECKING:
    import pymysql


def order_expression(column: ColumnInfo) -> str:
    """ORDER BY text as Python orders str: by code point, i.e. by the UTF-8 bytes.

    A column's collation may fold case or pad spaces (even utf8mb4_bin is PAD SPACE), so
    compare the bytes of the value converted to utf8mb4. Other types order natively;
    NULLs come first in ascending order, as MySQL and MariaDB always do.
    """
    name = qident(column.name)
    if column.family in ("text", "uuid", "json"):
        return f"CAST(CONVERT({name} USING utf8mb4) AS BINARY)"
    return name


def select_sql(info: TableInfo, columns: Sequence[ColumnInfo], order: Sequence[ColumnInfo]) -> str:
    cols = ", ".join(qident(c.name) for c in columns)
    sql = f"SELECT {cols} FROM {qtable(*info.name.split('.', 1))}"
    if order:
        sql += " ORDER BY " + ", ".join(order_expression(c) for c in order)
    return sql


def _resolve(info: TableInfo, names: Sequence[str], endpoint: str) -> list[ColumnInfo]:
    found = []
    for n in names:
        col = info.column(n)
        if col is None:
            raise ConfigError(
                f"column {n} does not exist in table {info.name} on endpoint {endpoint}"
            )
        found.append(col)
    return found


def snapshot_batches(
    open_connection: Callable[[], pymysql.Connection],
    info: TableInfo,
    columns: Sequence[str],
    order_by: Sequence[str],
    batch_rows: int,
    endpoint: str,
) -> Iterator[pa.RecordBatch]:
    """Stream the rows of `info` from one consistent snapshot.

    `open_connection` gives a streaming (SSCursor) connection of its own, opened at the
    first batch and closed with the generator: it is busy until the last row is read, and
    the read view lives as long as the generator.
    """
    import pymysql

    cols = _resolve(info, columns, endpoint)
    order = _resolve(info, order_by, endpoint)
    schema = pa.schema([pa.field(c.name, arrow_type(c), nullable=True) for c in cols])
    what = f"snapshot of {info.name} on endpoint {endpoint}"
    conn = open_connection()
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            with canonical_rows(conn, cols) as canonical:
                cur.execute(select_sql(info, cols, order))
            while True:
                rows = cur.fetchmany(max(1, batch_rows))
                if not rows:
                    break
                yield _to_batch(rows, cols, schema, what, canonical)
            cur.execute("COMMIT")
    except pymysql.err.MySQLError as exc:
        raise map_error(exc, what) from exc
    except (ValueError, TypeError) as exc:  # a value the rows' reader refused (rows.py)
        raise FatalError(f"{what}: {exc}") from exc
    finally:
        conn.close()


def _unfit(value: Any, column: ColumnInfo) -> bool:
    """A canonical value the family's Arrow type cannot hold (see `types.py`)."""
    if column.family == "bool":
        return value is not None and not isinstance(value, bool)
    if column.family in ("date", "timestamp", "timestamptz"):
        return isinstance(value, str)
    return False


# families whose canonical values always fit the Arrow type as they are (`to_arrow_value`
# changes none of them, `_unfit` finds none)
_AS_THEY_ARE = frozenset({"int", "float", "decimal", "bytes"})


def _array(values: Sequence[Any], column: ColumnInfo, typ: pa.DataType) -> pa.Array:
    if column.family in _AS_THEY_ARE:
        return pa.array(values, type=typ)
    unfit = [_unfit(v, column) for v in values]
    if not any(unfit):
        return pa.array([to_arrow_value(v, column) for v in values], type=typ)
    other = pa.int64() if column.family == "bool" else pa.string()
    children: tuple[list[Any], list[Any]] = ([], [])
    offsets = []
    for value, odd in zip(values, unfit, strict=True):
        child = children[1] if odd else children[0]
        offsets.append(len(child))
        child.append(value if odd else to_arrow_value(value, column))
    return pa.UnionArray.from_dense(
        pa.array([int(odd) for odd in unfit], pa.int8()),
        pa.array(offsets, pa.int32()),
        [pa.array(children[0], type=typ), pa.array(children[1], type=other)],
        [column.family, "int" if column.family == "bool" else "text"],
    )


def _to_batch(
    rows: Sequence[tuple[object, ...]],
    cols: Sequence[ColumnInfo],
    schema: pa.Schema,
    what: str,
    canonical: bool = False,
) -> pa.RecordBatch:
    """`canonical`: the rows hold canonical values already (`rows.canonical_rows`)."""
    arrays = []
    for i, col in enumerate(cols):
        try:
            values = [r[i] for r in rows]
            if not canonical:
                values = [to_canonical(v, col) for v in values]
            arrays.append(_array(values, col, schema.field(i).type))
        except (ValueError, TypeError, pa.ArrowException) as exc:
            raise FatalError(f"{what}: column {col.name} ({col.db_type}): {exc}") from exc
    if all(a.type == f.type for a, f in zip(arrays, schema, strict=True)):
        return pa.RecordBatch.from_arrays(arrays, schema=schema)
    return pa.RecordBatch.from_arrays(arrays, names=[c.name for c in cols])
