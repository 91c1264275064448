"""Snapshot and fetch: rows as canonical values, snapshots streamed as Arrow record batches.

The pipeline merge-joins both sides' snapshots in Python, so the order must be Python's:
text sorts `COLLATE "C"` (byte order of UTF-8 = code point order), and types read as
text (uuid, time, others) sort by that text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from syncswim_lib.connectors.postgres.connection import connect, raise_translated, split_table
from syncswim_lib.connectors.postgres.types import (
    TEXT_CAST_FAMILIES,
    arrow_value,
    from_db,
)
from syncswim_lib.errors import ConfigError
from syncswim_lib.values import ColumnInfo, TableInfo
from syncswim_lib.values.arrow import arrow_type

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql


def _columns(info: TableInfo, names: Sequence[str]) -> list[ColumnInfo]:
    out = []
    for name in names:
        column = info.column(name)
        if column is None:
            raise ConfigError(f"column {name} does not exist in table {info.name}")
        out.append(column)
    return out


def _select_item(column: ColumnInfo) -> sql.Composable:
    from psycopg import sql

    ident = sql.Identifier(column.name)
    if column.family in TEXT_CAST_FAMILIES:
        return sql.SQL("{}::text").format(ident)
    return ident


def _order_item(column: ColumnInfo) -> sql.Composable:
    from psycopg import sql

    ident = sql.Identifier(column.name)
    if column.family == "json":
        raise ConfigError(f"cannot order a snapshot by JSON column {column.name}")
    if column.family in TEXT_CAST_FAMILIES:
        return sql.SQL('{}::text COLLATE "C" NULLS FIRST').format(ident)
    if column.family == "text":
        return sql.SQL('{} COLLATE "C" NULLS FIRST').format(ident)
    return sql.SQL("{} NULLS FIRST").format(ident)


def select_query(
    info: TableInfo, columns: Sequence[ColumnInfo], order_by: Sequence[ColumnInfo]
) -> sql.Composed:
    from psycopg import sql

    schema, table = split_table(info.name)
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(_select_item(c) for c in columns), sql.Identifier(schema, table)
    )
    if order_by:
        query += sql.SQL(" ORDER BY {}").format(
            sql.SQL(", ").join(_order_item(c) for c in order_by)
        )
    return query


def to_record_batch(
    rows: Sequence[tuple[Any, ...]], columns: Sequence[ColumnInfo], schema: pa.Schema
) -> pa.RecordBatch:
    arrays = []
    for i, column in enumerate(columns):
        values = [arrow_value(from_db(row[i], column.family), column) for row in rows]
        arrays.append(pa.array(values, type=schema.field(i).type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def arrow_schema(columns: Sequence[ColumnInfo]) -> pa.Schema:
    return pa.schema([pa.field(c.name, arrow_type(c), nullable=c.nullable) for c in columns])


def snapshot_rows(
    dsn: str,
    info: TableInfo,
    columns: Sequence[str],
    order_by: Sequence[str],
    batch_rows: int,
    endpoint: str,
) -> Iterator[pa.RecordBatch]:
    """Stream the table through a server-side cursor in one REPEATABLE READ transaction."""
    import psycopg

    if batch_rows < 1:
        raise ConfigError(f"batch_rows must be at least 1, not {batch_rows}")
    cols = _columns(info, columns)
    query = select_query(info, cols, _columns(info, order_by))
    schema = arrow_schema(cols)
    # its own connection: the caller may use the connector between two batches
    conn = connect(dsn, autocommit=False)
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.cursor(name="syncswim_snapshot") as cur:
            cur.itersize = batch_rows
            try:
                cur.execute(query)
                while rows := cur.fetchmany(batch_rows):
                    yield to_record_batch(rows, cols, schema)
            except psycopg.Error as exc:
                raise_translated(exc, f"snapshot of {info.name} in endpoint {endpoint}")
        conn.rollback()
    finally:
        conn.close()


def fetch_rows(
    conn: psycopg.Connection, info: TableInfo, column: str, values: Sequence[Any], endpoint: str
) -> list[dict[str, Any]]:
    """Every column of the rows whose `column` is one of `values`, as canonical values."""
    import psycopg
    from psycopg import sql

    from syncswim_lib.connectors.postgres.types import db_param
    from syncswim_lib.values.coerce import coerce

    (target,) = _columns(info, [column])
    params = []
    for value in values:
        if value is None:
            continue  # NULL equals nothing
        try:
            params.append(db_param(coerce(value, target), target))
        except ValueError:
            continue  # a value the column cannot hold matches no row
    if not params:
        return []
    schema, table = split_table(info.name)
    query = sql.SQL("SELECT {} FROM {} WHERE {} = ANY({}::{}[])").format(
        sql.SQL(", ").join(_select_item(c) for c in info.columns),
        sql.Identifier(schema, table),
        sql.Identifier(target.name),
        sql.Placeholder(),
        sql.SQL(target.db_type),
    )
    try:
        rows = conn.execute(query, (params,)).fetchall()
    except psycopg.Error as exc:
        raise_translated(exc, f"fetch from {info.name} in endpoint {endpoint}")
    return [
        {c.name: from_db(v, c.family) for c, v in zip(info.columns, row, strict=True)}
        for row in rows
    ]
