"""Checking an ApplyBatch before anything is written: a batch that names columns the
table lacks, or whose updates or deletes lack `__ref` or a key column, is the caller's
mistake (ConfigError, nothing written). Reading its parts (`__set`, `expected`, NULL
keys) is shared with the SQL connectors: `connectors/results.py`."""

from __future__ import annotations

from syncswim_lib.connectors.base import ApplyBatch
from syncswim_lib.connectors.results import BATCH_META, REF, missing_keys
from syncswim_lib.errors import ConfigError
from syncswim_lib.values import TableInfo


def check_batch(batch: ApplyBatch, info: TableInfo) -> None:
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
    missing_keys(batch)
