"""A TRUNCATE captured on one side, answered as the entity's `on_truncate` says.

The source does not say which rows a TRUNCATE removed, and replaying it as is would empty
the other side in one step, so it is never passed on silently:

- `refuse` (the default): capture records a mark for the entity (in the state store's
  positions, as seed.py's reconcile marks are) and goes on; every run of the entity then
  stops, naming the table and what to do, until a `full` run (which clears the mark and
  reconciles both sides, treating the rows missing on the truncated side as deleted);
- `propagate`: capture journals a delete, at the TRUNCATE's position, of every record
  the truncated side had as far as the sync knows (its links, and the records of changes
  not applied yet), so the normal apply deletes them on the other side and the audit
  shows each. Changes after the TRUNCATE come after those deletes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from syncswim_lib.config.models import OnTruncate
from syncswim_lib.envelope import Change, Op, Position, WatermarkPosition
from syncswim_lib.errors import FatalError
from syncswim_lib.pipeline.mapping import Letter
from syncswim_lib.state.base import StateStore
from syncswim_lib.values.codec import key_text

log = logging.getLogger(__name__)

TRUNCATE_PREFIX = "truncated:"
_MARK = "truncate:v1:"


class TruncateRefused(FatalError):
    """A TRUNCATE was captured for an entity with `on_truncate: refuse`."""


@dataclass(frozen=True)
class TruncatePolicy:
    on_truncate: OnTruncate
    letter: Letter  # the entity's side on the endpoint being captured


def mark_side(entity: str) -> str:
    return TRUNCATE_PREFIX + entity


def answer_truncates(
    store: StateStore,
    sync: str,
    endpoint: str,
    truncates: Sequence[tuple[str, Position]],
    tables: Mapping[str, tuple[str, tuple[str, ...]]],
    entries: list[tuple[str, Change]],
    policies: Mapping[str, TruncatePolicy],
) -> list[tuple[str, Change]]:
    """The entries to journal with the batch, given its TRUNCATEs (`tables`: source table
    -> (entity, key)); records the marks of refused ones first (before the position they
    come with is stored, so a crash in between captures them again)."""
    out = list(entries)
    for table, position in truncates:
        if table not in tables:
            continue
        entity = tables[table][0]
        policy = policies.get(entity)
        if policy is None or policy.on_truncate == "refuse":
            mark = {"table": table, "endpoint": endpoint, "position": position.to_json()}
            store.set_position(sync, mark_side(entity), WatermarkPosition(_MARK + json.dumps(mark)))
            log.warning(
                "%s.%s: TRUNCATE of %s in endpoint %s captured; on_truncate: refuse stops the "
                "entity until a full run",
                sync,
                entity,
                table,
                endpoint,
            )
            continue
        out = _with_deletes(store, sync, endpoint, entity, table, position, policy.letter, out)
    return out


def _with_deletes(
    store: StateStore,
    sync: str,
    endpoint: str,
    entity: str,
    table: str,
    position: Position,
    letter: Letter,
    entries: list[tuple[str, Change]],
) -> list[tuple[str, Change]]:
    before = [(e, c) for e, c in entries if not (e == entity and _after(c.position, position))]
    after = [(e, c) for e, c in entries if e == entity and _after(c.position, position)]
    keys: dict[str, dict[str, Any]] = {}
    for link in store.links(sync, entity):
        key = link.key_a if letter == "a" else link.key_b
        if key is not None:
            keys[key_text(key)] = key
    for entry in store.pending(sync, entity):
        if entry.side == endpoint:
            keys[key_text(entry.change.key)] = entry.change.key
    for e, c in before:
        if e == entity and c.table == table:
            keys[key_text(c.key)] = c.key
    now = datetime.now(UTC)
    deletes = [
        (
            entity,
            Change(
                op=Op.DELETE,
                table=table,
                key=dict(key),
                after=None,
                before=dict(key),
                position=position,  # one position for them all: the journal tells by key
                commit_ts=None,
                detected_at=now,
            ),
        )
        for key in keys.values()
    ]
    log.warning(
        "%s.%s: TRUNCATE of %s in endpoint %s captured; on_truncate: propagate deletes the "
        "%d records the sync knows there on the other side",
        sync,
        entity,
        table,
        endpoint,
        len(deletes),
    )
    return [*before, *deletes, *after]


def _after(a: Position, b: Position) -> bool:
    return type(a) is type(b) and a > b  # type: ignore[operator]


def check_truncated(store: StateStore, sync: str, entity: str, *, clear: bool) -> None:
    """Raise TruncateRefused while the entity has a refused TRUNCATE; `clear` (a full run):
    forget it instead."""
    pos = store.get_position(sync, mark_side(entity))
    if not isinstance(pos, WatermarkPosition) or not pos.watermark.startswith(_MARK):
        return
    if clear:
        store.set_position(sync, mark_side(entity), WatermarkPosition(""))
        return
    mark = json.loads(pos.watermark[len(_MARK) :])
    raise TruncateRefused(
        f"entity {sync}.{entity} stopped: a TRUNCATE of table {mark['table']} in endpoint "
        f"{mark['endpoint']} was captured, and on_truncate: refuse keeps it from emptying "
        "the other side. Decide which side is right (restore the truncated table, or let "
        "the other side's rows go), then run `syncswim sync --full` (or materialise the "
        "asset with full: true): a full run treats the rows missing on one side as "
        "deleted. With on_truncate: propagate a TRUNCATE deletes the other side's rows"
    )
