"""Runs of a sync's entities: capture, (snapshot), plan, apply, record — the assets' body.

Entities run in `Sync.apply_order()` (parents first). After that first pass, records
that waited for a parent (or a parent delete that waited for its children) are looked at
again while the passes make progress; when they stop making progress and the waits form
a circle, the records on it are inserted without their forward references, which the
next pass sets (docs/relationships.md).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

from syncswim_lib import failpoints
from syncswim_lib.errors import Paused
from syncswim_lib.pipeline import pausing
from syncswim_lib.pipeline.capture import capture_sync, ensure_setup
from syncswim_lib.pipeline.drift import check_entities, raise_stopped
from syncswim_lib.pipeline.engine import EntityEngine, waits_for_relative
from syncswim_lib.pipeline.plan import Node
from syncswim_lib.pipeline.report import EntityReport
from syncswim_lib.pipeline.runtime import Runtime
from syncswim_lib.pipeline.seed import Reconciler, RunMemo, unfinished
from syncswim_lib.values.codec import key_text

# passes after the first; a chain of new rows of one entity takes one pass per level
MAX_PASSES = 100


def run_entity(
    rt: Runtime, sync: str, entity: str, full: bool = False, requeue: bool = False
) -> EntityReport:
    """One entity (a Dagster asset's step). The entities before it in apply order that
    are related to it and still wait are looked at again after it (their parent or their
    children may have just been applied): their counts go into this entity's report.
    `requeue`: its failed and parked records are tried again now, due or not (a manual
    materialisation)."""
    decl = rt.project.syncs[sync]
    order = decl.apply_order()
    related = set(decl.ancestors(entity)) | set(decl.descendants(entity))
    before = [n for n in order[: order.index(entity)] if n in related]
    reports = run_entities(rt, sync, [entity], full, also=before, requeue=requeue)
    mine = reports[entity]
    for name in before:
        _add(mine, reports[name])
    return mine


def run_sync(
    rt: Runtime, sync: str, full: bool = False, requeue: bool = False
) -> list[EntityReport]:
    """Every entity of a sync, parents before children."""
    order = rt.project.syncs[sync].apply_order()
    reports = run_entities(rt, sync, order, full, requeue=requeue)
    return [reports[n] for n in order]


def run_with_parents(
    rt: Runtime, sync: str, entity: str, full: bool = False, requeue: bool = False
) -> list[EntityReport]:
    """`sync --entity E`: E's ancestors first (each writes only what is pending), then E."""
    decl = rt.project.syncs[sync]
    names = [*decl.ancestors(entity), entity]
    reports = run_entities(rt, sync, names, full, requeue=requeue)
    return [reports[n] for n in names]


def run_entities(
    rt: Runtime,
    sync: str,
    names: Sequence[str],
    full: bool = False,
    also: Sequence[str] = (),
    requeue: bool = False,
) -> dict[str, EntityReport]:
    """`names` in apply order, then more passes over what waits, in `names` and `also`.
    Failed records of `names` whose next try is due are taken again (`requeue`: every
    failed and parked one, due or not)."""
    decl = rt.project.syncs[sync]
    with _descriptions_held(rt, (decl.a, decl.b)):
        return _run_entities(rt, sync, names, full, also, requeue)


@contextlib.contextmanager
def _descriptions_held(rt: Runtime, endpoints: Sequence[str]) -> Iterator[None]:
    """For one run, connectors that can (`hold_descriptions`) describe a table once: the
    drift check reads every table of the run as it is now, and fetch and apply use that
    (a streaming run's batch of a hundred changes spent a sixth of its time describing)."""
    holding: list[Callable[[bool], None]] = []
    for endpoint in endpoints:
        hold = getattr(rt.connector(endpoint), "hold_descriptions", None)
        if callable(hold):
            hold(True)
            holding.append(hold)
    try:
        yield
    finally:
        for hold in holding:
            hold(False)


def _run_entities(
    rt: Runtime,
    sync: str,
    names: Sequence[str],
    full: bool,
    also: Sequence[str],
    requeue: bool,
) -> dict[str, EntityReport]:
    """A run, or a pause: an endpoint paused on its API budget and still over it is not
    called at all, and one that runs out during the run stops it where it is
    (pipeline/pausing.py); either way the run ends with its entities reported paused."""
    start = time.monotonic()
    decl = rt.project.syncs[sync]
    order = decl.apply_order()
    reports = {n: EntityReport(sync, n) for n in sorted({*names, *also}, key=order.index)}
    metered = _api_usage(rt, (decl.a, decl.b))
    pause = pausing.held(rt, sync, (decl.a, decl.b))
    if pause is None:
        try:
            return _run_unpaused(rt, sync, names, full, also, requeue, reports, metered, start)
        except Paused as exc:
            pause = pausing.record(rt, sync, exc)
    pausing.mark(reports, pause)
    first = next(iter(reports.values()))
    for r in reports.values():
        for endpoint in (decl.a, decl.b):
            pos = rt.store.get_position(sync, endpoint)
            if pos is not None:
                r.positions[endpoint] = pos.to_json()
    first.duration_s = time.monotonic() - start
    for endpoint, now in _api_usage(rt, (decl.a, decl.b)).items():
        calls = int(now["calls"] or 0) - int(metered.get(endpoint, {}).get("calls") or 0)
        first.api_usage[endpoint] = {**now, "calls": calls}
    return reports


def _run_unpaused(
    rt: Runtime,
    sync: str,
    names: Sequence[str],
    full: bool,
    also: Sequence[str],
    requeue: bool,
    reports: dict[str, EntityReport],
    metered: dict[str, dict[str, int | None]],
    start: float,
) -> dict[str, EntityReport]:
    decl = rt.project.syncs[sync]
    order = decl.apply_order()
    names = sorted(names, key=order.index)
    everyone = sorted({*names, *also}, key=order.index)
    echoes: Counter[str] = Counter()
    captured = sum(capture_sync(rt, sync, echoes=echoes).values())
    reports[names[0]].captured = captured
    for name in everyone:
        reports[name].skipped_echoes += echoes[name]
    # schema drift (pipeline/drift.py): an entity whose mapped column changed stops here,
    # before anything of it is applied, and is named once the others have run
    stopped = check_entities(rt, sync, everyone, reports, accept=names if full else ())
    asked = names
    names = [n for n in names if n not in stopped]
    everyone = [n for n in everyone if n not in stopped]
    if not names:
        raise_stopped(stopped, asked)
    for name in names:
        took = rt.store.requeue(sync, name) if requeue else rt.store.retry_due(sync, name)
        reports[name].requeued += took + _with_newer_changes(rt, sync, name)
    retried = len(rt.retrier(sync).attempts)
    engines = {n: _engine(rt, sync, n) for n in everyone}
    chunk = decl.batch_size or 1000
    # a `full` run's bulk part stopped by a crash is finished by whatever run comes next
    fulls = {n for n in names if full or unfinished(rt.store, sync, n)}
    if fulls:
        ensure_setup(rt, sync)
    memo = RunMemo()  # the parents' rows each side has, for their children's references
    for name in names:
        if name in fulls:
            eng = engines[name]
            eng.recover(reports[name])  # a crashed batch's rows linked before the compare
            rec = Reconciler(eng.m, rt.store, eng.connectors, chunk, memo=memo)
            seeded = rec.run(reports[name])
            reports[name].snapshot_rows = seeded.rows_read
            reports[name].in_step += seeded.in_step
            reports[name].created_in_bulk += seeded.created
    failpoints.hit(failpoints.AFTER_CAPTURE)
    for name in names:
        engines[name].run(reports[name], chunk_size=chunk, full=name in fulls)
    # the first pass of `also` only looks at what waits: their new work is their own run's
    waiting = {n: set(engines[n].waiting) for n in names}
    for n in also:
        waiting[n] = {
            e.id
            for e in rt.store.pending(sync, n)
            if e.status == "waiting" and waits_for_relative(e.detail)
        }
    progress = any(engines[n].progress for n in names)
    # entities given journal entries for rows that vanished (a MariaDB cascade): their
    # next pass looks at everything pending, not only what waited
    fresh = {v for n in everyone for v in engines[n].vanished if v in engines}
    for _ in range(MAX_PASSES):
        if not any(waiting.values()) and not fresh:
            break
        breaks: frozenset[Node] = frozenset()
        if not progress and not fresh:
            breaks = _cycles([w for n in everyone for w in engines[n].waits])
            if not breaks:
                break
        progress = False
        now_fresh, fresh = fresh, set()
        for name in everyone:
            if not waiting.get(name) and name not in now_fresh:
                continue
            eng = engines[name]
            only = None if name in now_fresh else waiting[name]
            eng.run(
                reports[name], chunk_size=chunk, full=name in fulls, only=only, break_nodes=breaks
            )
            waiting[name] = set(eng.waiting)
            progress = progress or eng.progress
            fresh |= {v for v in eng.vanished if v in engines}
    for name in everyone:
        r = reports[name]
        r.waiting_parent = engines[name].waiting_records  # what still waits after the passes
        for endpoint in (decl.a, decl.b):
            pos = rt.store.get_position(sync, endpoint)
            if pos is not None:
                r.positions[endpoint] = pos.to_json()
    reports[names[0]].retries += [
        {
            "try": a.number,
            "error": a.error,
            "failed_after_s": round(a.failed - a.started, 3),
            "waited_s": None if a.waited is None else round(a.waited, 3),
        }
        for a in rt.retrier(sync).attempts[retried:]
    ]
    reports[names[0]].duration_s = time.monotonic() - start
    for endpoint, now in _api_usage(rt, (decl.a, decl.b)).items():
        calls = int(now["calls"] or 0) - int(metered.get(endpoint, {}).get("calls") or 0)
        reports[names[0]].api_usage[endpoint] = {**now, "calls": calls}
    raise_stopped(stopped, asked)
    return reports


def _api_usage(rt: Runtime, endpoints: Sequence[str]) -> dict[str, dict[str, int | None]]:
    """The API usage of the endpoints whose connector meters its calls (`usage()`)."""
    out: dict[str, dict[str, int | None]] = {}
    for endpoint in endpoints:
        usage = getattr(rt.connector(endpoint), "usage", None)
        if callable(usage):
            u = usage()
            out[endpoint] = {"calls": u.calls, "used": u.used, "limit": u.limit}
    return out


def _with_newer_changes(rt: Runtime, sync: str, name: str) -> int:
    """Failed and parked entries of records that have a newer change pending go with it:
    the merge then sees the record's whole unapplied history (a field only the failed
    change touched is written too, or fails again with it). The journal is read only when
    the entity has such entries."""
    counts = rt.store.status_counts(sync, name)
    if not counts.get("failed") and not counts.get("parked"):
        return 0
    keys: dict[str, dict[str, dict[str, object]]] = {}
    for e in rt.store.pending(sync, name):
        if e.batch_id is None:
            keys.setdefault(e.side, {})[key_text(e.change.key)] = e.change.key
    return sum(
        rt.store.requeue(sync, name, side=side, keys=list(by_text.values()))
        for side, by_text in keys.items()
    )


def _engine(rt: Runtime, sync: str, name: str) -> EntityEngine:
    emap = rt.entity_map(sync, name)
    return EntityEngine(
        emap,
        rt.store,
        rt.side_connectors(emap),
        maps=lambda n: rt.entity_map(sync, n),
        retry=rt.project.syncs[sync].retry,
        run_id=rt.run_id,
    )


def _cycles(waits: Sequence[tuple[Node, Node]]) -> frozenset[Node]:
    """The records that wait for each other in a circle (a record waiting for itself
    included): following what each waits for comes back to it."""
    edges: dict[Node, set[Node]] = {}
    for child, parent in waits:
        edges.setdefault(child, set()).add(parent)
    on_cycle: set[Node] = set()
    for start in edges:
        seen: set[Node] = set()
        todo = list(edges[start])
        while todo:
            n = todo.pop()
            if n == start:
                on_cycle.add(start)
                break
            if n in seen:
                continue
            seen.add(n)
            todo.extend(edges.get(n, ()))
    return frozenset(on_cycle)


def _add(into: EntityReport, other: EntityReport) -> None:
    for endpoint, c in other.sides.items():
        mine = into.side(endpoint)
        mine.inserted += c.inserted
        mine.updated += c.updated
        mine.deleted += c.deleted
    for name in (
        "waiting_parent",
        "translated",
        "held",
        "cascaded",
        "failed",
        "parked",
        "conflicts",
    ):
        setattr(into, name, getattr(into, name) + getattr(other, name))
    into.errors += other.errors
