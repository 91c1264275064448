"""One tick of a sync with a polled side, as the polling sensor and schedule run it: the
streamed endpoints captured as the capture sensor does, each polled endpoint polled when
its interval is due, then the key-set comparisons that are due. Each poll is timed: the
interval backs off for a source slow to answer (interval.py). `syncswim sync` runs the
due comparisons too (`compare_due_keysets`) before its run, which polls every side.

It drives the pipeline's own capture (`pipeline/capture.py`), so the journal, positions
and echo counting are the streamed sources' ones; this module only decides when.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from syncswim_lib.config.polling import PollCadence
from syncswim_lib.connectors.polling.interval import Decision, decide, first
from syncswim_lib.connectors.polling.keyset import (
    KeysetResult,
    KeySource,
    compare_keys,
    last_compared,
)
from syncswim_lib.errors import ConfigError, RetriableError
from syncswim_lib.pipeline.capture import capture_endpoint, ensure_setup, entity_tables
from syncswim_lib.pipeline.runtime import Runtime


@dataclass(frozen=True)
class TickResult:
    captured: dict[str, int]  # endpoint -> new changes journaled this tick
    decisions: dict[str, Decision]  # polled endpoint -> its interval decision (kept or new)
    polled: tuple[str, ...]  # the polled endpoints read this tick
    keyset_deletes: dict[str, int] = field(default_factory=dict)  # entity -> deletes found
    errors: dict[str, str] = field(default_factory=dict)  # polled endpoint -> error


def polled_endpoints(rt: Runtime, sync: str) -> list[str]:
    decl = rt.project.syncs[sync]
    return [e for e in (decl.a, decl.b) if rt.project.endpoints[e].polled]


def cadence(rt: Runtime, sync: str) -> PollCadence:
    return rt.project.syncs[sync].poll or PollCadence()


def tick(
    rt: Runtime,
    sync: str,
    decisions: Mapping[str, Decision],
    now: Callable[[], float],
    *,
    force: bool = False,
) -> TickResult:
    """Capture the streamed sides, poll the polled sides whose decision is due (all of
    them with `force`: a schedule's tick, a person's request), compare the key sets that
    are due. A polled side's retriable error is recorded in its decision (backing off)
    rather than raised, so the other side's capture still counts; any other is raised."""
    ensure_setup(rt, sync)
    decl = rt.project.syncs[sync]
    emaps = [rt.entity_map(sync, name) for name in decl.entities]
    polled = polled_endpoints(rt, sync)
    out: dict[str, Decision] = dict(decisions)
    captured: dict[str, int] = {}
    read: list[str] = []
    errors: dict[str, str] = {}
    keyset: dict[str, int] = {}
    for endpoint in (decl.a, decl.b):
        tables = entity_tables(emaps, endpoint)
        if endpoint not in polled:
            captured[endpoint] = capture_endpoint(
                rt.store, rt.connector(endpoint), sync, endpoint, tables
            )
            continue
        at = now()
        prev = out.get(endpoint)
        if not force and prev is not None and at < prev.due_at:
            continue
        read.append(endpoint)
        try:
            n = capture_endpoint(rt.store, rt.connector(endpoint), sync, endpoint, tables)
            found = compare_due_keysets(rt, sync, endpoint)
        except RetriableError as exc:  # the source struggles: ask it less often
            errors[endpoint] = str(exc)
            base = prev or first(cadence(rt, sync), at)
            out[endpoint] = decide(cadence(rt, sync), base, 0, at, str(exc))
            continue
        # how long the source took to answer: the load it reports without saying so
        took = max(0.0, now() - at)
        keyset.update((entity, r.gone) for entity, r in found.items())
        captured[endpoint] = n
        n += sum(r.gone for r in found.values())
        out[endpoint] = decide(cadence(rt, sync), prev, n, at, took_s=took)
    return TickResult(captured, out, tuple(read), keyset, errors)


def compare_due_keysets(
    rt: Runtime, sync: str, endpoint: str, entities: Collection[str] | None = None
) -> dict[str, KeysetResult]:
    """The due key-set comparisons of `endpoint`'s entities (of `entities` when given):
    those whose last comparison is `keyset_every` ago or more, each journaling the
    deletes it finds; entity -> its result."""
    decl = rt.project.syncs[sync]
    found: dict[str, KeysetResult] = {}
    conn = rt.connector(endpoint)
    for entity in decl.entities.values():
        if entities is not None and entity.name not in entities:
            continue
        for letter in ("a", "b"):
            side = entity.side(letter)
            spec = entity.poll.get(letter)
            if side.endpoint != endpoint or spec is None or spec.deleted.keyset_every_s is None:
                continue
            when = datetime.now(UTC)
            last = last_compared(rt.store, sync, endpoint, entity.name)
            if last is not None and when - last < timedelta(seconds=spec.deleted.keyset_every_s):
                continue
            if not isinstance(conn, KeySource):
                raise ConfigError(f"endpoint {endpoint} cannot compare key sets")
            found[entity.name] = compare_keys(
                rt.store, conn, sync, entity.name, letter, endpoint, side.table, side.key, when
            )
    return found
