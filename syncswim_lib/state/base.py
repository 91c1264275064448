"""The state store: journal, links (with their shadows), positions, apply batches.

Two implementations share one schema: SQLite (default, embedded under the Dagster home)
and PostgreSQL. Everything that must be atomic is one method = one transaction.

Values (keys, before/after rows, shadows) are stored as JSON produced by
`syncswim_lib.state.codec.dumps` which round-trips the canonical value types of
`syncswim_lib.envelope` (Decimal, date, datetime, bytes keep their type).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from syncswim_lib.envelope import Change, Position

Status = Literal["pending", "waiting", "applied", "skipped", "conflict", "failed"]


@dataclass(frozen=True)
class JournalEntry:
    id: int
    sync: str
    entity: str
    side: str  # the endpoint the change was captured on
    change: Change
    status: Status
    batch_id: str | None  # set while an apply of this entry is in flight
    detail: dict[str, Any] | None  # why: decision, error, written values
    applied_at: datetime | None
    attempts: int


@dataclass(frozen=True)
class Link:
    """The pairing of one record on side A with one on side B, and its shadow."""

    sync: str
    entity: str
    key_a: dict[str, Any] | None  # primary key on side A (None while not created yet)
    key_b: dict[str, Any] | None
    shadow: dict[str, Any] | None  # last agreed values, by canonical field name
    ext_id: str | None = None  # external-id mode: the shared identifier


@dataclass(frozen=True)
class EntryUpdate:
    entry_id: int
    status: Status
    detail: dict[str, Any] | None = None


@dataclass(frozen=True)
class BatchRecord:
    """Everything one applied batch changes in the state, committed together."""

    sync: str
    entity: str
    entries: Sequence[EntryUpdate] = ()
    upsert_links: Sequence[Link] = ()  # matched by key_a, else key_b, else ext_id
    delete_links: Sequence[Link] = ()
    positions: Sequence[tuple[str, Position]] = ()  # (side, position) to store
    finished_batch_ids: Sequence[str] = ()  # apply batches this record closes


class StateStore(Protocol):
    # journal -----------------------------------------------------------------
    def append_changes(
        self,
        sync: str,
        side: str,
        entries: Sequence[tuple[str, Change]],  # (entity, change)
        position: Position | None,
    ) -> int:
        """Insert the changes as `pending` and store the side's position, in one transaction.

        A change whose (sync, side, table, position) is already journaled is ignored, so
        capture after a crash before the source was confirmed does not duplicate.
        Returns how many were new.
        """
        ...

    def pending(
        self, sync: str, entity: str, limit: int = 10_000, after_id: int = 0
    ) -> list[JournalEntry]:
        """Entries with status pending or waiting and an id above `after_id`, oldest first."""
        ...

    def pending_counts(self, sync: str) -> dict[str, int]:
        """entity -> number of `pending` entries (entities with none are absent); `waiting`
        entries do not count: they wait for a newer change of their record."""
        ...

    def set_batch(self, entry_ids: Sequence[int], batch_id: str) -> list[int]:
        """Claim entries for `batch_id` (before writing to a target): only entries not yet
        claimed by another batch are taken. Returns the ids this batch now holds, so two
        runs working at once never plan the same change."""
        ...

    def in_flight_batches(self, sync: str, entity: str) -> list[str]:
        """batch ids set on pending entries (an apply that may or may not have committed)."""
        ...

    def record(self, batch: BatchRecord) -> None:
        """Entry statuses, links, shadows, positions of one batch: one transaction."""
        ...

    def entries(
        self,
        sync: str | None = None,
        entity: str | None = None,
        status: Status | None = None,
        key: dict[str, Any] | None = None,
        limit: int = 1000,
    ) -> list[JournalEntry]:
        """Audit query, newest first."""
        ...

    # links -------------------------------------------------------------------
    def link_by_key(
        self, sync: str, entity: str, side: Literal["a", "b"], key: dict[str, Any]
    ) -> Link | None: ...

    def link_by_ext_id(self, sync: str, entity: str, ext_id: str) -> Link | None: ...

    def links(self, sync: str, entity: str) -> list[Link]: ...

    # positions ---------------------------------------------------------------
    def get_position(self, sync: str, side: str) -> Position | None: ...

    def set_position(self, sync: str, side: str, position: Position) -> None: ...

    def close(self) -> None: ...
