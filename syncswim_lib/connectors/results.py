"""What the SQL connectors' apply shares: an `ApplyResult` as the JSON the marker row
keeps, and reading the parts of an `ApplyBatch` the same way on every connector (`__set`
lists, `expected` rows, NULL keys).

Generated keys keep their canonical type through the state codec's tagged JSON, so a
replayed batch hands back exactly the keys the first delivery produced."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from syncswim_lib.connectors.base import ApplyBatch, ApplyResult
from syncswim_lib.errors import ConfigError
from syncswim_lib.values import TableInfo
from syncswim_lib.values.codec import decode, encode

REF = "__ref"
SET = "__set"
CHECK = "__check"
# columns of the batch's tables that are not columns of the target
BATCH_META = frozenset({REF, SET})


def result_to_data(result: ApplyResult) -> dict[str, Any]:
    return {
        "batch_id": result.batch_id,
        "keys": {ref: encode(key) for ref, key in result.keys.items()},
        "inserted": result.inserted,
        "updated": result.updated,
        "deleted": result.deleted,
        "missing": list(result.missing),
        "rejected": dict(result.rejected),
        "stale": list(result.stale),
    }


def result_from_data(data: dict[str, Any] | str | bytes) -> ApplyResult:
    if isinstance(data, str | bytes):
        data = json.loads(data)
    assert isinstance(data, dict)
    return ApplyResult(
        batch_id=str(data["batch_id"]),
        keys={ref: decode(key) for ref, key in data["keys"].items()},
        inserted=int(data["inserted"]),
        updated=int(data["updated"]),
        deleted=int(data["deleted"]),
        missing=tuple(data["missing"]),
        rejected=dict(data["rejected"]),
        stale=tuple(data.get("stale", ())),  # markers written before compare-and-set
    )


# --- reading an ApplyBatch -------------------------------------------------------------


def null_key(row: Mapping[str, Any], key_columns: Sequence[str]) -> str | None:
    """The rejection text for an update/delete row whose key has a NULL, else None: NULL
    equals nothing, so `WHERE key = NULL` would silently find no row."""
    for name in key_columns:
        if row.get(name) is None:
            return f"key column {name} is NULL"
    return None


def missing_keys(batch: ApplyBatch) -> None:
    """ConfigError when updates or deletes (with rows) lack a key column altogether."""
    for part, table in (("updates", batch.updates), ("deletes", batch.deletes)):
        if table.num_rows:
            absent = [k for k in batch.key_columns if k not in table.column_names]
            if absent:
                raise ConfigError(
                    f"apply batch {batch.batch_id}: {part} lack key column {', '.join(absent)}"
                )


def value_columns(updates: pa.Table, key_columns: Sequence[str]) -> tuple[str, ...]:
    """The columns an update row may set: every column but the key and `__ref`/`__set`."""
    return tuple(n for n in updates.column_names if n not in BATCH_META and n not in key_columns)


def set_columns(row: Mapping[str, Any], values: Sequence[str], batch_id: str) -> tuple[str, ...]:
    """The value columns `row` sets: its `__set` list (in the table's column order), or
    every value column when it has none. ConfigError when the list names a column the
    updates do not carry as a value column."""
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
    checked: set[tuple[str, ...]] = set()  # the column lists found valid (a few per batch)
    for row in expected.to_pylist():
        ref = str(row[REF])
        if ref in out:
            raise ConfigError(f"apply batch {batch_id}: expected holds {ref} twice")
        check = tuple(dict.fromkeys(row[CHECK] or ()))
        if check in checked:
            out[ref] = Expected(check, {n: row[n] for n in check})
            continue
        checked.add(check)
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


def check_columns(expected: Mapping[str, Expected]) -> tuple[str, ...]:
    """Every column some expected row checks, once."""
    return tuple(dict.fromkeys(n for e in expected.values() for n in e.check))
