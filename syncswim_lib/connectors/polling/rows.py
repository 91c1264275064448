"""What a polled side's reads and writes add to a plain connector's: soft-deleted rows
hidden from the merge, a delete written as the soft-delete column set, and the
`written_by` column set on our own writes."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import pyarrow as pa

from syncswim_lib.config.polling import PollSpec, find_poll
from syncswim_lib.connectors.base import ApplyBatch, ApplyResult
from syncswim_lib.connectors.results import REF, SET
from syncswim_lib.errors import ConfigError
from syncswim_lib.values import ColumnInfo, TableInfo
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


# the families a soft-delete column may have: the sync knows what to write to mark a row
# deleted (validate refuses another)
MARKABLE = ("timestamp", "timestamptz", "date", "bool", "int", "text")


def deleted_mark(column: ColumnInfo, now: Callable[[], datetime], origin: str) -> Any:
    """What a delete of ours writes to the soft-delete column: the time for a time, true,
    1, or the sync's name for text (the column only has to be set)."""
    family = column.family
    if family in ("timestamp", "timestamptz"):
        return now()
    if family == "date":
        return now().date()
    if family == "bool":
        return True
    if family == "int":
        return 1
    if family == "text":
        return origin
    raise ConfigError(
        f"the soft-delete column {column.name} is {column.db_type}: the sync cannot mark a "
        "row deleted in it (a timestamp, date, boolean, integer or text column can)"
    )


def soft_deletes(
    batch: ApplyBatch,
    polls: Mapping[str, PollSpec],
    info: TableInfo,
    now: Callable[[], datetime],
) -> tuple[ApplyBatch, frozenset[str]]:
    """With a soft-delete column declared for the table: each delete as an update that
    sets that column (the application keeps its row and reads it as deleted, as it does
    its own deletes), and each insert with the column cleared (an insert that finds its
    record's row by the external id finds the soft-deleted row of a record created
    again: it is live again). Also the refs of the deletes made updates."""
    found = find_poll(polls, batch.origin, batch.table)
    column_name = None if found is None else found[1].deleted.column
    if column_name is None:
        return batch, frozenset()
    column = info.column(column_name)
    if column is None:
        raise ConfigError(f"the soft-delete column {column_name} does not exist in {info.name}")
    typ = arrow_type(column)
    inserts = batch.inserts
    if inserts.num_rows and column_name not in inserts.column_names:
        inserts = inserts.append_column(column_name, pa.nulls(inserts.num_rows, typ))
    deletes = batch.deletes
    if not deletes.num_rows:
        return replace(batch, inserts=inserts), frozenset()
    n = deletes.num_rows
    marked = deletes.select([*batch.key_columns, REF])
    marked = marked.append_column(
        column_name, pa.array([deleted_mark(column, now, batch.origin)] * n, typ)
    )
    marked = marked.append_column(SET, pa.array([[column_name]] * n, pa.list_(pa.string())))
    updates = batch.updates
    if updates.num_rows:
        if SET not in updates.column_names:  # their rows set every value column
            updates = updates.append_column(SET, pa.nulls(updates.num_rows, pa.list_(pa.string())))
        updates = pa.concat_tables([updates, marked], promote_options="permissive")
    else:
        updates = marked
    refs = frozenset(str(r) for r in marked.column(REF).to_pylist())
    return replace(batch, inserts=inserts, updates=updates, deletes=deletes.slice(0, 0)), refs


def count_soft_deletes(result: ApplyResult, refs: Collection[str]) -> ApplyResult:
    """`result` with the deletes written as updates counted as deletes."""
    if not refs:
        return result
    undone = set(result.missing) | set(result.stale) | set(result.rejected)
    done = sum(1 for r in refs if r not in undone)
    return replace(result, updated=result.updated - done, deleted=result.deleted + done)
