"""Deletes on a polled table without a soft-delete column (`deleted: {keyset_every: 10m}`):
the keys the sync has linked on that side are looked up in the table, a batch at a time,
keys only; a linked key the table no longer has is journaled as a delete.

Only the links are walked (a new row is the cursor's business, not this one's), so one
comparison costs one indexed lookup of KEYSET_BATCH keys per query and never holds more
than a batch in memory: a million links are 200 queries of primary-key lookups. When the
last comparison of an entity side ran is kept in the state store next to the positions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from syncswim_lib.envelope import Change, Op, WatermarkPosition
from syncswim_lib.state.base import StateStore
from syncswim_lib.values import TableInfo
from syncswim_lib.values.codec import key_text, loads

KEYSET_BATCH = 5000


@runtime_checkable
class KeySource(Protocol):
    def describe(self, table: str) -> TableInfo: ...

    def existing_keys(
        self, info: TableInfo, key: Sequence[str], keys: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class KeysetResult:
    compared: int  # linked keys looked up
    gone: int  # of them, missing from the table: journaled as deletes
    queries: int


def marker_side(endpoint: str, entity: str) -> str:
    """The name the time of an entity side's last comparison is stored under."""
    return f"{endpoint}#keyset:{entity}"


def last_compared(store: StateStore, sync: str, endpoint: str, entity: str) -> datetime | None:
    pos = store.get_position(sync, marker_side(endpoint, entity))
    if not isinstance(pos, WatermarkPosition):
        return None
    return datetime.fromisoformat(pos.watermark)


def compare_keys(
    store: StateStore,
    source: KeySource,
    sync: str,
    entity: str,
    letter: str,
    endpoint: str,
    table: str,
    key: Sequence[str],
    now: datetime | None = None,
    batch: int = KEYSET_BATCH,
) -> KeysetResult:
    """Journal a delete for every linked key of side `letter` that `table` lacks."""
    now = now or datetime.now(UTC)
    info = source.describe(table)
    scan = now.isoformat()
    compared = queries = 0
    chunk: list[dict[str, Any]] = []
    # journaled after the walk: the links are read through an open cursor of the store
    missing: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal compared, queries
        if not chunk:
            return
        present = {key_text(k) for k in source.existing_keys(info, key, chunk)}
        queries += 1
        compared += len(chunk)
        missing.extend(k for k in chunk if key_text(k) not in present)
        chunk.clear()

    for key_a, key_b, _ in store.link_texts(sync, entity):
        text = key_a if letter == "a" else key_b
        if text is None:
            continue  # not created on that side yet
        value = loads(text)
        if isinstance(value, dict) and all(c in value for c in key):
            chunk.append({c: value[c] for c in key})
        if len(chunk) >= batch:
            flush()
    flush()
    mark = json.dumps({"t": table, "keyset": scan}, sort_keys=True)
    entries = [
        (
            entity,
            Change(
                op=Op.DELETE,
                table=table,
                key=dict(k),
                after=None,
                before=dict(k),
                position=WatermarkPosition(mark, (key_text(k),)),
                commit_ts=None,  # unknown: the row was gone when we looked
                detected_at=now,
            ),
        )
        for k in missing
    ]
    gone = store.append_changes(sync, endpoint, entries, None) if entries else 0
    store.set_position(sync, marker_side(endpoint, entity), WatermarkPosition(scan))
    return KeysetResult(compared, gone, queries)
