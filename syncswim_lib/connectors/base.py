"""The roles a connector plays for the pipeline, and what it declares about itself.

Every endpoint of a two-way sync is read and written, so a connector plays both roles:
a change source (`ChangeSource`: describe, position, capture, confirm, snapshot) and a
change target (`ChangeTarget`: describe, apply, fetch). What only some systems have is
declared in `Capabilities`, and the pipeline uses it only where it is declared:

- batch markers (`batch_markers`, the methods of `BatchMarkers`): a SQL target records
  each batch's result in the batch's own transaction, so a replayed batch is answered
  from it and old markers are pruned; Salesforce has no transactions, its apply is
  idempotent by external-id upserts instead, and nobody asks it for markers;
- origin tagging (`origin_tagging`): our own writes come back marked with
  `Change.origin` (replication origin, session marker, `Sforce-Call-Options`);
- the most rows one `apply` takes (`max_batch_rows`): the engine splits a side's
  writes into batches of at most that many.

One package per system implements the roles and describes its kind in its `kind.py`
(`connectors.kinds`: settings, table word, positions, these capabilities, how to open
it). Generic code branches on `Capabilities`, never on a class.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

from syncswim_lib.connectors.kinds import Capabilities
from syncswim_lib.envelope import Change, Position
from syncswim_lib.values import TableInfo

__all__ = [
    "ApplyBatch",
    "ApplyResult",
    "BatchMarkers",
    "Capabilities",
    "CaptureBatch",
    "ChangeSource",
    "ChangeTarget",
    "Connector",
    "ContinuousReader",
    "LagReporter",
    "StreamLag",
    "markers_of",
    "without_origin",
]


@dataclass(frozen=True)
class CaptureBatch:
    changes: tuple[Change, ...]
    # Position to store once the journal holds `changes`; resume from it next time.
    end_position: Position | None
    # capture(skip_origin=...): table -> changes left out as that origin's own writes
    # (MySQL counts row events there: it skips them without decoding their rows)
    echoes: dict[str, int] = field(default_factory=dict)
    # (table, position) of each TRUNCATE of a captured table, in stream order: the rows it
    # removed are not in `changes` (the source does not say which they were)
    truncates: tuple[tuple[str, Position], ...] = ()


def without_origin(batch: CaptureBatch, origin: str | None) -> CaptureBatch:
    """`batch` without the changes `origin` wrote, counted per table instead (for a
    stream that has to decode them to know)."""
    if origin is None:
        return batch
    echoes = dict(batch.echoes)
    kept = []
    for c in batch.changes:
        if c.origin == origin:
            echoes[c.table] = echoes.get(c.table, 0) + 1
        else:
            kept.append(c)
    return CaptureBatch(tuple(kept), batch.end_position, echoes, batch.truncates)


@dataclass(frozen=True)
class ApplyBatch:
    """The diff for one table on one side, as Arrow tables.

    inserts: `__ref` (string, chosen by the pipeline to map generated keys back) plus the
        target columns to write. When `insert_match` is set, a row whose `insert_match`
        columns equal the incoming values already exists is updated instead (idempotent
        insert by external id).
    updates: the key columns (`key_columns`) plus the value columns, plus `__ref`, plus an
        optional `__set` column (list of strings): the value columns to set for that row
        (the merge writes only the fields it decided). A row whose `__set` is null, or a
        table without `__set`, sets every value column.
    deletes: the key columns, plus `__ref`.
    expected: compare-and-set. `__ref`, a `__check` column (list of strings) and the
        columns named there: for each update or delete whose `__ref` has a row here, the
        target row is locked in the batch's transaction and written only if every
        `__check` column still holds the expected value (compared as canonical values with
        `same_value`). A row that holds something else is not written and its ref is
        reported in `ApplyResult.stale`; a row that is gone is reported in `missing`.
    """

    batch_id: str  # unique; recorded in the target in the same transaction as the writes
    origin: str  # the sync's name: the tag our writes carry so capture can recognise them
    table: str
    key_columns: tuple[str, ...]
    inserts: pa.Table
    updates: pa.Table
    deletes: pa.Table
    insert_match: tuple[str, ...] = ()
    expected: pa.Table | None = None


@dataclass(frozen=True)
class ApplyResult:
    batch_id: str
    # __ref -> the target's key of the row written (generated keys for inserts included)
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    # __refs whose update/delete found no row (already gone): not an error, reported
    missing: tuple[str, ...] = ()
    # __ref -> error text for rows the target rejected (parked by the pipeline)
    rejected: dict[str, str] = field(default_factory=dict)
    # __refs of updates/deletes not written: the row no longer held the expected values
    stale: tuple[str, ...] = ()


@dataclass(frozen=True)
class StreamLag:
    """How far one sync's capture is behind a source's change stream (health figures).

    `status`: "ok"; PostgreSQL's wal_status of the slot when it is not "reserved"
    ("extended", "unreserved": the server may soon drop the WAL the slot needs, "lost");
    "lost" also for a binlog file purged past the stored position; "missing" for a slot
    that does not exist (the sync was never set up there, or it was dropped); "not started"
    when no position is stored yet."""

    endpoint: str
    stream: str  # what is measured, e.g. "replication slot syncswim_app_shop", "binlog"
    status: str
    lag_bytes: int | None  # written at the source, not yet in the journal (confirmed)
    retained_bytes: int | None = None  # WAL the server keeps for the slot (PostgreSQL)
    files_behind: int | None = None  # binlog files after the stored one (MySQL)
    current: str | None = None  # the source's position now, as the source writes it
    confirmed: str | None = None  # the position the sync has (slot confirmed / stored)


class ContinuousReader(Protocol):
    """A change stream the server pushes to, read by a thread of the streaming run
    (`run: streaming`): it captures from its buffer instead of asking the server."""

    buffer: Any

    def start(self) -> None: ...

    def capture(
        self,
        sync: str,
        tables: Sequence[str],
        since: Position | None,
        max_changes: int,
        skip_origin: str | None = None,
    ) -> CaptureBatch: ...

    def confirm(self, sync: str, position: Position) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class LagReporter(Protocol):
    """The optional role of a connector whose change stream can say how far behind a
    sync is (PostgreSQL, MySQL); others have no health figures of their own."""

    def lag(self, sync: str, stored: Position | None) -> StreamLag:
        """The sync's lag on this endpoint; `stored` is the position its journal holds.
        Reads only; raises the connector's errors when the server cannot be asked."""
        ...


class _Endpoint(Protocol):
    """What both roles share: the declaration, the tables, the lifetime."""

    capabilities: Capabilities

    def describe(self, table: str) -> TableInfo:
        """Columns and primary key of `table`; raises ConfigError if it does not exist."""
        ...

    def setup(self, sync: str, tables: Sequence[str]) -> None:
        """Create what capture and apply need (slot, publication, marker table). Idempotent."""
        ...

    def teardown(self, sync: str) -> None:
        """Drop what `setup` created for `sync`. Idempotent."""
        ...

    def close(self) -> None: ...


class ChangeSource(_Endpoint, Protocol):
    """Where changes are read: the stream (or poll) and the rows as they are now."""

    def current_position(self, sync: str) -> Position:
        """The position capture would start from now (before a snapshot is taken)."""
        ...

    def capture(
        self,
        sync: str,
        tables: Sequence[str],
        since: Position | None,
        max_changes: int,
        skip_origin: str | None = None,
    ) -> CaptureBatch:
        """Changes after `since` on `tables`, oldest first, whole transactions only.
        `skip_origin`: the changes this source can tell that origin wrote (origin
        tagging, or a polled table's written_by column) are left out and counted in
        `echoes` (our own writes: not worth decoding); a source that cannot tell
        returns them with no origin."""
        ...

    def confirm(self, sync: str, position: Position) -> None:
        """The journal holds everything up to `position`: the source may release it."""
        ...

    def snapshot(
        self, table: str, columns: Sequence[str], order_by: Sequence[str], batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        """All rows, ordered by `order_by` (NULLs first), streamed in record batches."""
        ...


class ChangeTarget(_Endpoint, Protocol):
    """Where the merge's writes go, and the rows it reads to plan them."""

    def fetch(self, table: str, column: str, values: Sequence[Any]) -> list[dict[str, Any]]:
        """Rows whose `column` is one of `values` (canonical values)."""
        ...

    def apply(self, batch: ApplyBatch) -> ApplyResult:
        """Write the batch (at most `capabilities.max_batch_rows` rows); idempotent. With
        batch markers: in one transaction with the marker, a replayed id answered from it."""
        ...


class Connector(ChangeSource, ChangeTarget, Protocol):
    """Both roles: what one endpoint of a two-way sync is."""


@runtime_checkable
class BatchMarkers(Protocol):
    """The optional capability `Capabilities.batch_markers`: the results of committed
    batches, kept in the target beside the rows they wrote."""

    def applied_result(self, sync: str, batch_id: str) -> ApplyResult | None:
        """The recorded result of `batch_id` if its transaction committed, else None."""
        ...

    def prune_markers(self, older_than: timedelta) -> int:
        """Delete the apply markers (of every sync) recorded more than `older_than` ago by
        the target's clock; returns how many. A pruned batch is forgotten: `applied_result`
        answers None and a replay of it writes again, so keep markers longer than a batch
        can stay in flight. Capture emits nothing for these deletes. ConfigError if
        `older_than` is negative; 0 when there is no marker store yet."""
        ...


def markers_of(target: ChangeTarget) -> BatchMarkers | None:
    """The target's batch markers when it declares them (`Capabilities.batch_markers`),
    else None. A declaration without the methods is a programming error, said here
    rather than as an AttributeError in the middle of a run."""
    if not target.capabilities.batch_markers:
        return None
    if not isinstance(target, BatchMarkers):
        raise TypeError(
            f"{type(target).__name__} declares batch_markers but has no applied_result "
            "and prune_markers"
        )
    return target
