"""Reading an ApplyBatch as `base.ApplyBatch` documents it: the `__set` lists of updates,
the `expected` rows of compare-and-set, NULL keys, and malformed batches (the caller's
mistake: ConfigError, nothing written)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from syncswim_lib.connectors.base import ApplyBatch, ColumnInfo, TableInfo
from syncswim_lib.connectors.coerce import coerce, same_value
from syncswim_lib.errors import ConfigError

REF = "__ref"
SET = "__set"
CHECK = "__check"
BATCH_META = frozenset({REF, SET})  # columns of the batch's tables that are not the target's


def check_batch(batch: ApplyBatch, info: TableInfo) -> None:
    """ConfigError for a batch that names columns the table lacks, or whose updates or
    deletes lack `__ref` or a key column."""
    for part, table in (
        ("inserts", batch.inserts),
        ("updates", batch.updates),
        ("deletes", batch.deletes),
    ):
        if table.num_rows and REF not in table.column_names:
            raise ConfigError(f"apply batch {batch.batch_id}: {part} has no {REF} column")
        for name in table.column_names:
            if name not in BATCH_META and info.column(name) is None:
                raise ConfigError(f"column {name} does not exist in table {info.name}")
    for name in (*batch.key_columns, *batch.insert_match):
        if info.column(name) is None:
            raise ConfigError(f"column {name} does not exist in table {info.name}")
    if (batch.updates.num_rows or batch.deletes.num_rows) and not batch.key_columns:
        raise ConfigError(f"apply batch {batch.batch_id}: updates and deletes need key_columns")
    for part, table in (("updates", batch.updates), ("deletes", batch.deletes)):
        absent = [k for k in batch.key_columns if k not in table.column_names]
        if table.num_rows and absent:
            raise ConfigError(
                f"apply batch {batch.batch_id}: {part} lack key column {', '.join(absent)}"
            )


def null_key(row: Mapping[str, Any], key_columns: Sequence[str]) -> str | None:
    """The rejection text of an update/delete row whose key has a NULL (NULL equals
    nothing: such a row would silently find no row)."""
    for name in key_columns:
        if row.get(name) is None:
            return f"key column {name} is NULL"
    return None


def value_columns(updates: pa.Table, key_columns: Sequence[str]) -> tuple[str, ...]:
    """The columns an update row may set: all but the key and `__ref`/`__set`."""
    return tuple(n for n in updates.column_names if n not in BATCH_META and n not in key_columns)


def set_columns(row: Mapping[str, Any], values: Sequence[str], batch_id: str) -> tuple[str, ...]:
    """The value columns `row` sets: its `__set` list, or every value column without one.
    ConfigError when the list names a column that is not a value column of the updates."""
    wanted = row.get(SET)
    if wanted is None:
        return tuple(values)
    unknown = [n for n in wanted if n not in values]
    if unknown:
        raise ConfigError(
            f"apply batch {batch_id}: {SET} of {row.get(REF)} names {', '.join(unknown)}, "
            f"not a value column of the updates ({', '.join(values) or 'none'})"
        )
    chosen = set(wanted)
    return tuple(n for n in values if n in chosen)


@dataclass(frozen=True)
class Expected:
    """What the plan saw in one target row: the columns to check and their values."""

    check: tuple[str, ...]
    values: dict[str, Any]


def expected_rows(expected: pa.Table | None, info: TableInfo, batch_id: str) -> dict[str, Expected]:
    """`ApplyBatch.expected` by `__ref`; ConfigError for a malformed table."""
    if expected is None or not expected.num_rows:
        return {}
    names = set(expected.column_names)
    for needed in (REF, CHECK):
        if needed not in names:
            raise ConfigError(f"apply batch {batch_id}: expected has no {needed} column")
    out: dict[str, Expected] = {}
    for row in expected.to_pylist():
        ref = str(row[REF])
        if ref in out:
            raise ConfigError(f"apply batch {batch_id}: expected holds {ref} twice")
        check = tuple(dict.fromkeys(row[CHECK] or ()))
        for name in check:
            if info.column(name) is None:
                raise ConfigError(
                    f"apply batch {batch_id}: expected checks column {name}, which does "
                    f"not exist in table {info.name}"
                )
            if name not in names:
                raise ConfigError(
                    f"apply batch {batch_id}: expected checks column {name} but has no such column"
                )
        out[ref] = Expected(check, {n: row[n] for n in check})
    return out


def holds(actual: Any, expected: Any, column: ColumnInfo) -> bool:
    """Does a stored value still equal what the plan saw? `expected` is coerced to the
    column first (JSON text parsed, times to the column's digits), as a write would be."""
    try:
        want = coerce(expected, column)
    except (ValueError, TypeError, ArithmeticError):
        want = expected
    if same_value(actual, want):
        return True
    if column.family in ("time", "other") and actual is not None and want is not None:
        return str(actual) == str(want)
    return False
