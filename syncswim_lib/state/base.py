"""The state store: journal, links (with their shadows), positions, apply batches.

Two implementations share one schema: SQLite (default, embedded under the Dagster home)
and PostgreSQL. Everything that must be atomic is one method = one transaction.

Values (keys, before/after rows, shadows) are stored as JSON produced by
`syncswim_lib.values.codec.dumps` which round-trips the canonical value types of
`syncswim_lib.envelope` (Decimal, date, datetime, bytes keep their type).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from syncswim_lib.envelope import Change, Position

# failed: the target rejected the record (or a rule raised); later runs try it again,
# each time after a longer wait (`retry.records`). parked: it failed that many times and
# waits for `syncswim retry` or a manual materialisation of its asset.
Status = Literal["pending", "waiting", "applied", "skipped", "conflict", "failed", "parked"]


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


ConflictStatus = Literal["decided", "open", "resolved", "applied"]


@dataclass(frozen=True)
class ConflictRecord:
    """One field that both sides changed to different values, and what became of it.

    `decided`: a rule chose the value (the loser's value is kept here and can be restored).
    `open`: the rule is `manual`; the field waits for a person while the rest syncs.
    `resolved`: a person (or `restore`) chose `value`; the next run writes it to both sides.
    `applied`: that resolution reached both sides.
    `field` is the side-a column; `__record__` stands for the whole record (update vs delete).
    Values are in each side's stored form; `value` is the chosen value in side-a form.
    """

    sync: str
    entity: str
    key_a: dict[str, Any] | None
    key_b: dict[str, Any] | None
    ext_id: str | None
    field: str
    base_a: Any
    base_b: Any
    value_a: Any
    value_b: Any
    ts_a: datetime | None
    ts_b: datetime | None
    rule: str  # the rule that decided, e.g. "newest", "prefer:app", "manual", "rule:m:f"
    outcome: str  # "a", "b" (whose value won), "value" (a chosen value), "manual" (waiting)
    value: Any  # the decided value in side-a form (None while open)
    tie: bool = False  # the commit times could not be ordered; the tie-break decided
    status: ConflictStatus = "decided"
    id: int | None = None  # None until stored
    entry_ids: tuple[int, ...] = ()
    created_at: datetime | None = None
    resolved_at: datetime | None = None
    note: str | None = None


@dataclass(frozen=True)
class Backlog:
    """The changes of one entity journaled and not applied yet (health figures)."""

    pending: int
    oldest_detected_at: datetime | None  # detection time of the oldest of them


@dataclass(frozen=True)
class EntryUpdate:
    entry_id: int
    status: Status
    detail: dict[str, Any] | None = None
    next_attempt_at: datetime | None = None  # status failed: not tried again before this


@dataclass(frozen=True)
class BatchRecord:
    """Everything one applied batch changes in the state, committed together."""

    sync: str
    entity: str
    entries: Sequence[EntryUpdate] = ()
    upsert_links: Sequence[Link] = ()  # matched by key_a, else key_b, else ext_id
    delete_links: Sequence[Link] = ()
    positions: Sequence[tuple[str, Position]] = ()  # (side, position) to store
    finished_batch_ids: Sequence[str] = ()  # apply batches this record closes (their
    # saved plans are deleted with them)
    # conflicts to store (id None) or to update (id set: status, value, resolved_at, note)
    conflicts: Sequence[ConflictRecord] = ()
    # entries to hand back: status pending, batch cleared (a write found its row changed
    # underneath; the next run merges the record again)
    release: Sequence[int] = ()


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
        """entity -> number of `pending` entries and of `failed` ones due for another try
        (entities with none are absent); `waiting` entries do not count: they wait for a
        newer change of their record, nor do `parked` ones: they wait for `retry`."""
        ...

    def retry_due(self, sync: str, entity: str, now: datetime | None = None) -> int:
        """`failed` entries of the entity whose next try is due (by `now`) become `pending`
        again, attempts kept; returns how many."""
        ...

    def requeue(
        self,
        sync: str,
        entity: str,
        side: str | None = None,
        keys: Sequence[dict[str, Any]] | None = None,
    ) -> int:
        """`failed` and `parked` entries (those captured on `side`, with one of `keys`)
        become `pending` again, due or not, attempts kept; returns how many."""
        ...

    def backlog(self, sync: str) -> dict[str, Backlog]:
        """entity -> its `pending` entries (not our own writes coming back): how many, and
        when the oldest was detected. Entities with none are absent. Failed, parked and
        waiting entries are not backlog: they are reported as such."""
        ...

    def status_counts(self, sync: str, entity: str) -> dict[str, int]:
        """status -> number of the entity's entries that are not settled (pending, waiting,
        failed, parked); statuses with none are absent."""
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
        """Entry statuses, released entries, links, shadows, conflicts, positions of one
        batch, and the removal of the finished batches' plans: one transaction."""
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

    def links_for_keys(
        self, sync: str, entity: str, side: Literal["a", "b"], keys: Sequence[dict[str, Any]]
    ) -> dict[str, Link]:
        """The links of many keys of one side at once: key_text(key) -> link (absent keys
        are left out). A constant number of queries whatever the number of keys."""
        ...

    def links_for_ext_ids(self, sync: str, entity: str, ext_ids: Sequence[str]) -> dict[str, Link]:
        """ext_id -> link, for many external ids at once."""
        ...

    # apply plans ---------------------------------------------------------------
    def save_plan(self, sync: str, entity: str, batch_id: str, plan: str) -> None:
        """Keep a batch's plan (JSON text) before any target write, so a crash between the
        writes and `record` replays exactly the writes that were planned."""
        ...

    def load_plan(self, batch_id: str) -> str | None: ...

    # conflicts -----------------------------------------------------------------
    def active_conflicts(self, sync: str, entity: str) -> list[ConflictRecord]:
        """Conflicts of the entity with status open or resolved (one query)."""
        ...

    def conflicts(
        self,
        sync: str | None = None,
        entity: str | None = None,
        status: ConflictStatus | None = None,
        limit: int = 1000,
    ) -> list[ConflictRecord]:
        """Newest first."""
        ...

    def conflict(self, conflict_id: int) -> ConflictRecord | None: ...

    def resolve_conflict(
        self, conflict_id: int, outcome: str, value: Any, note: str
    ) -> ConflictRecord:
        """Set status `resolved`: outcome "a" (side a's value, `value` = value_a), "b"
        (side b's, `value` = value_b in side-b form) or "value" (`value` in side-a form).
        Any conflict can be resolved again, a decided one too (that restores the loser).
        KeyError if unknown."""
        ...

    def links(self, sync: str, entity: str) -> list[Link]: ...

    def link_texts(
        self, sync: str, entity: str
    ) -> Iterator[tuple[str | None, str | None, str | None]]:
        """(key_a text, key_b text, ext_id) of every link of the entity, undecoded."""
        ...

    # positions ---------------------------------------------------------------
    def get_position(self, sync: str, side: str) -> Position | None: ...

    def set_position(self, sync: str, side: str, position: Position) -> None: ...

    def close(self) -> None: ...
