"""What a polled side's reads and writes add to a plain connector's: soft-deleted rows
hidden from the merge, and the `written_by` column set on our own writes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import pyarrow as pa

from syncswim_lib.config.polling import PollSpec, find_poll
from syncswim_lib.connectors.base import ApplyBatch
from syncswim_lib.connectors.results import SET
from syncswim_lib.values import ColumnInfo
from syncswim_lib.values.arrow import arrow_type


def _cell(value: Any, column: ColumnInfo, typ: pa.DataType) -> Any:
    if value is None:
        return None
    if column.family == "json":
        import json

        return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
    if pa.types.is_string(typ) and not isinstance(value, str):
        return str(value)
    return value


def arrow_batch(rows: Sequence[Mapping[str, Any]], columns: Sequence[ColumnInfo]) -> pa.RecordBatch:
    """Canonical rows as a record batch typed by the columns (JSON as its text)."""
    arrays = []
    for c in columns:
        typ = arrow_type(c)
        arrays.append(pa.array([_cell(r.get(c.name), c, typ) for r in rows], typ))
    return pa.RecordBatch.from_arrays(arrays, names=[c.name for c in columns])


def soft_deleted_filter(polls: Mapping[str, PollSpec], table: str) -> str | None:
    """The soft-delete column of `table` when one is declared: rows where it is set are
    deleted records, which snapshots and lookups leave out."""
    bare = table.rsplit(".", 1)[-1]
    for key, spec in polls.items():
        declared = key.split("/", 1)[1]
        if declared.rsplit(".", 1)[-1] == bare and spec.deleted.column is not None:
            return spec.deleted.column
    return None


def hide_soft_deleted(
    rows: list[dict[str, Any]], polls: Mapping[str, PollSpec], table: str
) -> list[dict[str, Any]]:
    column = soft_deleted_filter(polls, table)
    return rows if column is None else [r for r in rows if r.get(column) is None]


def filter_batches(
    batches: Any, polls: Mapping[str, PollSpec], table: str, columns: Sequence[str]
) -> Any:
    """A snapshot's record batches without the soft-deleted rows; the soft-delete column
    is read for it and left out again when it was not asked for."""
    column = soft_deleted_filter(polls, table)
    if column is None:
        yield from batches
        return
    import pyarrow.compute as pc

    for batch in batches:
        kept = batch.filter(pc.is_null(batch.column(column)))
        if column not in columns:
            kept = kept.select(list(columns))
        yield kept


def with_writer(batch: ApplyBatch, polls: Mapping[str, PollSpec]) -> ApplyBatch:
    """The batch with the table's `written_by` column set to the sync's name on every
    insert and update (and in each update's `__set`), so the poll that reads these rows
    back knows them for our own."""
    found = find_poll(polls, batch.origin, batch.table)
    if found is None or found[1].written_by is None:
        return batch
    column = found[1].written_by

    def stamp(table: pa.Table) -> pa.Table:
        if column in table.column_names:
            table = table.drop_columns([column])
        return table.append_column(column, pa.array([batch.origin] * table.num_rows, pa.string()))

    inserts = stamp(batch.inserts) if batch.inserts.num_rows else batch.inserts
    updates = batch.updates
    if updates.num_rows:
        updates = stamp(updates)
        if SET in updates.column_names:
            lists = [
                None if names is None else [*names, column]
                for names in updates.column(SET).to_pylist()
            ]
            index = updates.column_names.index(SET)
            updates = updates.set_column(index, SET, pa.array(lists, pa.list_(pa.string())))
    return replace(batch, inserts=inserts, updates=updates)
