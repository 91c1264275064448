"""Schema drift, never silent: each run compares both tables of an entity with the columns
they had when the sync first ran it (its baseline, kept in the state store).

- a column that is neither mapped nor in the baseline (added since) is reported once per
  run as a warning and ignored: capture carries it, the mapping leaves it out;
- a column the entity maps (a field, a key, the external-id or clock column) that is gone,
  or whose type differs from the baseline's, stops the entity before anything is applied:
  a change captured without the column would write NULL to the other side, and one with
  another type may not mean the same. Its changes stay pending. Other entities go on.
- a mapped column widened within its family (pipeline/widening.py: a longer varchar, a
  bigger integer, a wider decimal, finer seconds) holds every value it held before: it is
  reported once as a warning and taken as the new baseline, and the entity goes on.

A `full` run (`syncswim sync --full`, or a materialisation with `full: true`) takes the
tables as they are now as the new baseline, after checking that every mapped column still
exists: that is how a person accepts a new type or silences a new unmapped column, once
the mapping says what they decided.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from syncswim_lib.envelope import WatermarkPosition
from syncswim_lib.errors import FatalError
from syncswim_lib.pipeline.mapping import Letter
from syncswim_lib.pipeline.truncate import TruncateRefused, check_truncated
from syncswim_lib.pipeline.widening import widens
from syncswim_lib.values import TableInfo

if TYPE_CHECKING:
    from syncswim_lib.pipeline.report import EntityReport
    from syncswim_lib.pipeline.runtime import Runtime

log = logging.getLogger(__name__)

# The baseline lives in the positions table, as the reconcile marks of seed.py do: one row
# per entity side, `schema:<entity>:<letter>`, the columns as JSON in a watermark
# position. No schema change to the state store is needed for it.
SCHEMA_PREFIX = "schema:"
_BASELINE = "columns:v1:"


class SchemaDrift(FatalError):
    """A column an entity maps was dropped or changed type: the entity stops."""


def baseline_side(entity: str, letter: Letter) -> str:
    return f"{SCHEMA_PREFIX}{entity}:{letter}"


def mapped_columns(rt: Runtime, sync: str, entity: str, letter: Letter) -> tuple[str, ...]:
    """The columns of one side the sync reads or writes, in a stable order."""
    ent = rt.project.syncs[sync].entities[entity]
    side = rt.entity_map(sync, entity).side(letter)
    cols = [*side.key, *side.tracked()]
    clock = ent.clock.get(letter)
    if clock is not None:
        cols.append(clock)
    return tuple(dict.fromkeys(cols))


def check_entity(rt: Runtime, sync: str, entity: str, *, accept: bool = False) -> list[str]:
    """Compare both tables of `entity` with its baseline; returns the warnings (new
    unmapped columns), raises SchemaDrift naming every dropped or retyped mapped column.
    The baseline is taken on the first check and, with `accept`, on every check that
    passes."""
    emap = rt.entity_map(sync, entity)
    notes: list[str] = []
    stops: list[str] = []
    widened: set[Letter] = set()
    fresh: list[tuple[Letter, TableInfo, dict[str, str] | None]] = []
    for letter in ("a", "b"):
        side = emap.side(letter)
        # the connector, not the runtime's cache: a long-lived runtime (streaming) must
        # see the table as it is now
        now = rt.connector(side.endpoint).describe(side.table)
        current = {c.name: c.db_type for c in now.columns}
        baseline = _read(rt, sync, baseline_side(entity, letter))
        where = f"table {side.table} in endpoint {side.endpoint}"
        mapped = mapped_columns(rt, sync, entity, letter)
        mysql = rt.project.endpoints[side.endpoint].kind == "mysql"
        for col in mapped:
            if col not in current:
                stops.append(f"column {col} of {where} is gone (dropped or renamed)")
            elif not accept and baseline and col in baseline and baseline[col] != current[col]:
                if widens(baseline[col], current[col], mysql=mysql):
                    notes.append(
                        f"{sync}.{entity}: column {col} of {where} widened from "
                        f"{baseline[col]} to {current[col]}: every value it held still fits, "
                        "taken as the column's type (a value the other side cannot hold is "
                        "refused there record by record)"
                    )
                    baseline = {**baseline, col: current[col]}
                    widened.add(letter)
                else:
                    stops.append(
                        f"column {col} of {where} changed type from {baseline[col]} to "
                        f"{current[col]}"
                    )
        if baseline is not None and not accept:
            for col in current:
                if col not in baseline and col not in mapped:
                    notes.append(
                        f"{sync}.{entity}: new column {col} of {where} is not mapped and is "
                        "ignored (map it under fields: to sync it; a full run stops this "
                        "warning)"
                    )
        fresh.append((letter, now, baseline))
    if stops:
        raise SchemaDrift(
            f"entity {sync}.{entity} stopped, a column it maps changed: {'; '.join(stops)}. "
            "Its changes wait in the journal. Fix the table or the entity's mapping, then "
            "run `syncswim sync --full` (or materialise the asset with full: true) to take "
            "the tables as they are now"
        )
    for letter, now, baseline in fresh:
        current = {c.name: c.db_type for c in now.columns}
        if baseline is None or (accept and baseline != current):
            _write(rt, sync, baseline_side(entity, letter), current)
        elif letter in widened:
            # only the widened columns move: a new unmapped column keeps being reported
            _write(rt, sync, baseline_side(entity, letter), baseline)
        side = emap.side(letter)
        if rt.describe(side.endpoint, side.table) != now:
            # the cached description is stale (a new column, an accepted type): the next
            # map of the entity is built from the table as it is
            rt.forget_table(side.endpoint, side.table)
    return notes


def check_entities(
    rt: Runtime,
    sync: str,
    names: Sequence[str],
    reports: dict[str, EntityReport],
    *,
    accept: Sequence[str] = (),
) -> dict[str, FatalError]:
    """`check_entity` for each of `names`: the warnings go into its report's events and
    the log (once per runtime for each, so a streaming run says it once, not per batch);
    returns the entities that must stop, with their error."""
    stopped: dict[str, FatalError] = {}
    for name in names:
        try:
            # a refused TRUNCATE (pipeline/truncate.py) stops the entity the same way
            check_truncated(rt.store, sync, name, clear=name in accept)
            notes = check_entity(rt, sync, name, accept=name in accept)
        except (SchemaDrift, TruncateRefused) as exc:
            log.error("%s", exc)
            stopped[name] = exc
            continue
        for note in notes:
            if note in rt.notes_given:
                continue
            rt.notes_given.add(note)
            log.warning("%s", note)
            reports[name].note_event("warning", note)
    return stopped


def _read(rt: Runtime, sync: str, side: str) -> dict[str, str] | None:
    pos = rt.store.get_position(sync, side)
    if not isinstance(pos, WatermarkPosition) or not pos.watermark.startswith(_BASELINE):
        return None
    data = json.loads(pos.watermark[len(_BASELINE) :])
    return {str(k): str(v) for k, v in data.items()}


def _write(rt: Runtime, sync: str, side: str, columns: dict[str, str]) -> None:
    rt.store.set_position(sync, side, WatermarkPosition(_BASELINE + json.dumps(columns)))


def raise_stopped(stopped: dict[str, FatalError], names: Sequence[str]) -> None:
    """Raise the errors of the entities of `names` that stopped (one error naming all)."""
    errors = [str(stopped[n]) for n in names if n in stopped]
    if len(errors) == 1:
        raise next(stopped[n] for n in names if n in stopped)
    if errors:
        raise SchemaDrift(" | ".join(errors))
