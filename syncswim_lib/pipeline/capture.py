"""Capture: read each side's change stream into the journal, then release the source.

The order is the at-least-once contract: journal (with the position, one transaction)
first, `confirm` second. A crash between the two re-reads changes the journal already
holds, and the journal ignores them by position.

Before journaling, changes are put in the entity's terms (`normalise`): keyed by the
entity's declared key (which need not be the table's primary key), and a key-changing
update that the connector reported as a delete plus an insert is one update again, with
the old row as `before`, so the merge sees one record whose key moved.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from syncswim_lib import failpoints
from syncswim_lib.envelope import (
    BinlogPosition,
    Change,
    Op,
    PgPosition,
    Position,
    WatermarkPosition,
)
from syncswim_lib.errors import PositionLost
from syncswim_lib.pipeline.runtime import Runtime
from syncswim_lib.pipeline.seed import STARTED, mark_side
from syncswim_lib.pipeline.truncate import TruncatePolicy, answer_truncates

if TYPE_CHECKING:
    from syncswim_lib.config.models import Sync
    from syncswim_lib.connectors.base import Connector
    from syncswim_lib.pipeline.mapping import EntityMap, Letter
    from syncswim_lib.state.base import StateStore

MAX_CHANGES = 5000

log = logging.getLogger(__name__)


def sync_tables(rt: Runtime, sync: str, endpoint: str) -> dict[str, str]:
    """Source table name (as the connector spells it) -> entity, for one side of a sync."""
    out: dict[str, str] = {}
    for name in rt.project.syncs[sync].entities:
        emap = rt.entity_map(sync, name)
        for side in (emap.a, emap.b):
            if side.endpoint == endpoint:
                out[side.table] = name
    return out


def ensure_setup(rt: Runtime, sync: str, *, explicit: bool = False) -> None:
    """Create slots/publications/markers and record the starting positions, once; check
    that this state store owns the sync's streams (`pipeline/owner.py`). `explicit` (the
    `setup` command): set up again what is missing and record this store as the owner
    where none is recorded."""
    decl = rt.project.syncs[sync]
    for endpoint in (decl.a, decl.b):
        known = rt.store.get_position(sync, endpoint) is not None
        if known and not explicit:
            rt.claim(sync, endpoint, adopt=False)
            continue
        rt.check_free(sync, endpoint)  # before setup changes anything
        conn = rt.connector(endpoint)
        conn.setup(sync, sorted(sync_tables(rt, sync, endpoint)))
        rt.claim(sync, endpoint, adopt=True)
        if not known:
            rt.store.set_position(sync, endpoint, conn.current_position(sync))


def _same_statement(first: Position, second: Position) -> bool:
    """Whether `second` is the row right after `first` in one source event."""
    if isinstance(first, PgPosition) and isinstance(second, PgPosition):
        return first.lsn == second.lsn and second.seq == first.seq + 1
    if isinstance(first, BinlogPosition) and isinstance(second, BinlogPosition):
        return (first.file, first.pos) == (second.file, second.pos) and second.seq == first.seq + 1
    return False


def normalise(changes: Sequence[Change], key_columns: dict[str, tuple[str, ...]]) -> list[Change]:
    """Changes keyed by each table's declared key; delete+insert pairs of one key-changing
    update joined again. `key_columns`: table -> declared key."""
    out: list[Change] = []
    i = 0
    while i < len(changes):
        ch = changes[i]
        key = key_columns.get(ch.table)
        if key is None:
            out.append(ch)
            i += 1
            continue
        nxt = changes[i + 1] if i + 1 < len(changes) else None
        if (
            ch.op == Op.DELETE
            and nxt is not None
            and nxt.op == Op.INSERT
            and nxt.table == ch.table
            and ch.origin == nxt.origin
            and _same_statement(ch.position, nxt.position)
        ):
            # one UPDATE that moved the row to a new primary key
            ch = replace(nxt, op=Op.UPDATE, before=ch.before, position=ch.position)
            i += 1
        row = ch.after if ch.after is not None else ch.before
        if row is not None and all(k in row for k in key):
            ch = replace(ch, key={k: row[k] for k in key})
        out.append(ch)
        i += 1
    return out


def capture_endpoint(
    store: StateStore,
    conn: Connector,
    sync: str,
    endpoint: str,
    tables: dict[str, tuple[str, tuple[str, ...]]],
    max_rounds: int = 100,
    echoes: Counter[str] | None = None,
    truncates: Mapping[str, TruncatePolicy] | None = None,
) -> int:
    """Drain one side's change stream into the journal. `tables`: source table ->
    (entity, declared key). Returns how many changes were new. `truncates`: entity -> what
    a TRUNCATE of its table becomes (pipeline/truncate.py; refused when not given).

    Our own writes coming back (origin: this sync) are counted per entity in `echoes`
    and not journaled: the entries that caused them already record what was written,
    and journaling a bulk load's echo row by row would cost as much as the load."""
    total = 0
    keys = {t: k for t, (_, k) in tables.items()}
    for _ in range(max_rounds):
        since = store.get_position(sync, endpoint)
        try:
            batch = conn.capture(sync, sorted(tables), since, MAX_CHANGES, skip_origin=sync)
        except PositionLost as exc:
            reset = getattr(conn, "reset_position", None)
            if reset is None:
                raise
            entities = sorted({entity for entity, _ in tables.values()})
            recover_lost_position(store, sync, endpoint, entities, reset, exc)
            continue
        if echoes is not None:
            for table, n in batch.echoes.items():
                if table in tables:
                    echoes[tables[table][0]] += n
        changes = normalise([c for c in batch.changes if c.table in tables], keys)
        entries = []
        for c in changes:
            if c.origin == sync:
                if echoes is not None:
                    echoes[tables[c.table][0]] += 1
                continue
            entries.append((tables[c.table][0], c))
        if batch.truncates:
            entries = answer_truncates(
                store, sync, endpoint, batch.truncates, tables, entries, truncates or {}
            )
        if batch.end_position is not None and batch.end_position != since:
            total += store.append_changes(sync, endpoint, entries, batch.end_position)
            failpoints.hit(failpoints.CAPTURE_JOURNALED)
            conn.confirm(sync, batch.end_position)
        # a batch may be short of changes because our own writes were left out of it
        if len(batch.changes) + sum(batch.echoes.values()) < MAX_CHANGES:
            break
    return total


def recover_lost_position(
    store: StateStore,
    sync: str,
    endpoint: str,
    entities: Sequence[str],
    reset: Callable[[str], Position],
    lost: PositionLost,
) -> None:
    """The stored position is gone from the source (`lost`): whatever changed on that
    side since is unknown. Mark the endpoint's entities for reconciliation (the next run
    of each is a `full` one, which compares both sides with their shadows), then capture
    again from the source's current position. The marks go first: a crash between the two
    finds the old position lost again and comes back here."""
    for entity in entities:
        store.set_position(sync, mark_side(entity), WatermarkPosition(STARTED))
    store.set_position(sync, endpoint, reset(sync))
    log.warning(
        "%s: %s. Capture goes on from the current position, and the next run of %s "
        "reconciles both sides (a full run)",
        sync,
        lost,
        ", ".join(entities),
    )


def entity_tables(
    emaps: Sequence[EntityMap], endpoint: str
) -> dict[str, tuple[str, tuple[str, ...]]]:
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for emap in emaps:
        for letter in ("a", "b"):
            side = emap.side(letter)
            if side.endpoint == endpoint:
                out[side.table] = (emap.entity, side.key)
    return out


def capture_side(store: StateStore, conn: Connector, emap: EntityMap, letter: Letter) -> int:
    """One entity's side alone (tests and tools that drive a single entity)."""
    side = emap.side(letter)
    return capture_endpoint(
        store, conn, emap.sync, side.endpoint, {side.table: (emap.entity, side.key)}
    )


def truncate_policies(decl: Sync, endpoint: str) -> dict[str, TruncatePolicy]:
    """entity -> what a TRUNCATE of its table on `endpoint` becomes (`on_truncate`)."""
    return {
        e.name: TruncatePolicy(e.on_truncate, e.letter(endpoint)) for e in decl.entities.values()
    }


def capture_sync(
    rt: Runtime, sync: str, max_rounds: int = 100, echoes: Counter[str] | None = None
) -> dict[str, int]:
    """Drain both sides' change streams into the journal; returns new changes per side
    (`echoes`: our own writes seen coming back, per entity)."""
    ensure_setup(rt, sync)
    decl = rt.project.syncs[sync]
    emaps = [rt.entity_map(sync, name) for name in decl.entities]
    counts: dict[str, int] = {}
    for endpoint in (decl.a, decl.b):
        tables = entity_tables(emaps, endpoint)
        policies = truncate_policies(decl, endpoint)
        counts[endpoint] = capture_endpoint(
            rt.store, rt.connector(endpoint), sync, endpoint, tables, max_rounds, echoes, policies
        )
    return counts
