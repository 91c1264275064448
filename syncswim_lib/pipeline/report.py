"""What one run of one entity did: the numbers the materialisation metadata shows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

# the materialisation carries at most this many changes and events; `syncswim audit`
# shows the rest (the counts say how many there were)
MAX_CHANGE_ROWS = 50
MAX_EVENTS = 100


@dataclass
class SideCounts:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0


@dataclass
class EntityReport:
    sync: str
    entity: str
    sides: dict[str, SideCounts] = field(default_factory=dict)  # endpoint -> counts
    captured: int = 0
    skipped_echoes: int = 0  # our own writes coming back, or values already agreed
    conflicts: int = 0
    waiting: int = 0  # external-id mode: rows without an external id yet
    failed: int = 0  # records the target rejected (or a rule raised) in this run
    parked: int = 0  # of those, the ones out of tries: left for `syncswim retry`
    requeued: int = 0  # failed and parked records taken again by this run
    # failed tries of retriable calls (apply, lookups) that the run retried, in order
    retries: list[dict[str, object]] = field(default_factory=list)
    write_backs: int = 0  # SOR keys written back into the other side
    recovered_batches: int = 0
    deferred: int = 0  # records looked at again next run (a row missing without a delete)
    stale: int = 0  # writes not made: the target row changed underneath (merged next run)
    # records decided in bulk as one-sided updates of linked records (pipeline/fastpath.py)
    fast_path: int = 0
    waiting_parent: int = 0  # records whose parent is not linked yet
    translated: int = 0  # reference values written in the other side's ids
    held: int = 0  # inserted without a reference of a cycle, set in a second pass
    cascaded: int = 0  # child rows deleted (or emptied) before a parent's delete
    snapshot_rows: int = 0
    in_step: int = 0  # `full`: linked pairs found holding their shadow's values on both sides
    created_in_bulk: int = 0  # `full`: rows created on the other side by the bulk path
    adopted: int = 0  # `full` with `match_on`: existing pairs linked by their natural key
    positions: dict[str, dict[str, Any]] = field(default_factory=dict)  # endpoint -> JSON
    taken: int = 0  # journal entries this run planned (captured by it or before it)
    # the writes of this run, one row each (at most MAX_CHANGE_ROWS), and how many in all
    changes: list[dict[str, str]] = field(default_factory=list)
    changes_total: int = 0
    # conflicts, failures and parked records, for the run log: (level, message)
    events: list[tuple[str, str]] = field(default_factory=list)
    events_total: int = 0
    duration_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    # endpoint -> {"calls": made by this run, "used"/"limit": the daily count and allowance
    # its last answer gave}, for endpoints that meter their calls (Salesforce)
    api_usage: dict[str, dict[str, int | None]] = field(default_factory=dict)
    # set when the run paused on an endpoint's API budget (pipeline/pausing.py): reason,
    # endpoint, retry_at, message
    paused: dict[str, Any] = field(default_factory=dict)

    def keeps_change(self) -> bool:
        """Whether the next change row would be kept (a row costs a few value texts, and
        a batch of thousands of writes keeps only the first MAX_CHANGE_ROWS)."""
        return len(self.changes) < MAX_CHANGE_ROWS

    def note_change(self, row: dict[str, str]) -> None:
        self.changes_total += 1
        if len(self.changes) < MAX_CHANGE_ROWS:
            self.changes.append(row)

    def note_event(self, level: str, message: str) -> None:
        """`level`: warning (a conflict a rule decided, a record to be tried again) or
        error (a record parked, a conflict waiting for a person)."""
        self.events_total += 1
        if len(self.events) < MAX_EVENTS:
            self.events.append((level, message))

    def side(self, endpoint: str) -> SideCounts:
        return self.sides.setdefault(endpoint, SideCounts())

    @property
    def writes(self) -> int:
        return sum(c.inserted + c.updated + c.deleted for c in self.sides.values())


def combine(reports: Sequence[EntityReport]) -> EntityReport:
    """Several runs of one entity as one report (a streaming run's batches reported
    together): counts added, change rows and events kept in order up to their caps with
    the totals added, the last positions and pause, API calls added with the last answer's
    daily count."""
    if not reports:
        raise ValueError("combine: no reports")
    first = reports[0]
    if any((r.sync, r.entity) != (first.sync, first.entity) for r in reports):
        raise ValueError("combine: reports of different entities")
    out = EntityReport(first.sync, first.entity)
    for f in fields(EntityReport):
        if f.name in ("sync", "entity"):
            continue
        values = [getattr(r, f.name) for r in reports]
        if isinstance(values[0], bool):
            raise TypeError(f"combine: no rule for the flag {f.name}")  # none today
        if isinstance(values[0], int | float):
            setattr(out, f.name, sum(values))
    for r in reports:
        for endpoint, counts in r.sides.items():
            mine = out.side(endpoint)
            mine.inserted += counts.inserted
            mine.updated += counts.updated
            mine.deleted += counts.deleted
        out.retries.extend(r.retries)
        out.changes.extend(r.changes[: max(0, MAX_CHANGE_ROWS - len(out.changes))])
        out.events.extend(r.events[: max(0, MAX_EVENTS - len(out.events))])
        out.errors.extend(r.errors)
        out.positions.update(r.positions)
        for endpoint, usage in r.api_usage.items():
            calls = int(out.api_usage.get(endpoint, {}).get("calls") or 0)
            out.api_usage[endpoint] = {**usage, "calls": calls + int(usage.get("calls") or 0)}
        if r.paused:
            out.paused = dict(r.paused)
    return out
