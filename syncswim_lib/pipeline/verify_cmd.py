"""`syncswim verify PATH [--entity E] [--limit N] [--json]`: are both sides the same?

Every entity (or one) is compared record by record under its mapping (`verify_compare`):
linked pairs field by field the way the sync compares them, rows on one side with nothing
on the other, links whose row is gone. Each difference is printed with the record's keys
on both sides, as `syncswim audit` shows keys. It only reads: nothing is captured,
journaled or written, in the databases or in the state.

A difference on a record with a change captured and `pending` in the journal is in flight
(the next run applies it): it is printed, marked so, and does not count as drift. Other
unsettled entries (waiting, failed, parked) and open conflicts are named beside the
difference, which counts as drift: they do not settle by themselves.

Exit code: 0 in step (or only in flight), 1 drift or an entity that could not be compared,
2 bad input (an unknown entity, a bad --limit, a declaration that cannot be loaded).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Generator, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncswim_lib.errors import ConfigError, SyncSwimError
from syncswim_lib.pipeline.audit_cmd import _entity
from syncswim_lib.pipeline.conflicts_cmd import (
    UsageError,
    _key,
    _one_line,
    _positive,
    _run,
    _runtime,
    _value,
)
from syncswim_lib.pipeline.verify_compare import Difference, Verdict, compare_entity
from syncswim_lib.redact import redact

if TYPE_CHECKING:
    from syncswim_lib.config import Project
    from syncswim_lib.pipeline.runtime import Runtime

DEFAULT_LIMIT = 100


def verify(
    path: str | Path,
    entity: str | None = None,
    limit: str | int = DEFAULT_LIMIT,
    as_json: bool = False,
) -> int:
    """Compare both sides of every entity (or `entity`); print every difference."""
    failed = False

    def run() -> Generator[str, None, None]:
        nonlocal failed
        count = _positive(limit, "--limit")
        try:
            rt = _runtime(path)
        except ConfigError as exc:
            raise UsageError(redact(str(exc), str(path))) from None
        with rt:
            secrets = _secrets(rt)
            targets = _targets(rt.project, entity)
            verdicts: list[Verdict] = []
            for sync, name in targets:
                try:
                    emap = rt.entity_map(sync, name)
                    chunk = rt.project.syncs[sync].batch_size or 1000
                    verdict = compare_entity(emap, rt.store, rt.side_connectors(emap), count, chunk)
                except SyncSwimError as exc:
                    failed = True
                    # the connectors redact where they raise; this is the guard for the rest
                    why = redact(_one_line(str(exc)), *secrets)
                    print(f"syncswim: error: {sync}.{name}: {why}", file=sys.stderr)
                    if as_json:
                        yield _dumps(
                            {"type": "entity", "sync": sync, "entity": name, "status": "error"}
                            | {"error": why}
                        )
                    continue
                failed = failed or verdict.drift > 0
                verdicts.append(verdict)
                if as_json:
                    yield from _json_lines(verdict)
                else:
                    yield from _text(verdict)
            if not as_json and len(targets) > 1:
                yield _summary(verdicts, len(targets))
            hidden = sum(v.total - len(v.shown) for v in verdicts)
            if as_json and hidden:
                # machines read stdout: the notice goes where a person sees it
                print(f"({hidden} differences not shown; --limit N shows more)", file=sys.stderr)

    code = _run(run)
    return code if code else (1 if failed else 0)


# checking the input ---------------------------------------------------------------------


def _targets(project: Project, entity: str | None) -> list[tuple[str, str]]:
    """(sync, entity) to compare, in each sync's apply order."""
    if entity is None:
        return [(s, name) for s, d in project.syncs.items() for name in d.apply_order()]
    decl = _entity(project, None, entity)  # `name` or `sync.name`; unknown: UsageError
    return [(decl.sync, decl.name)]


def _secrets(rt: Runtime) -> list[str]:
    """The connection strings at hand, whose passwords no message may carry."""
    found = [rt.state_url]
    for endpoint in rt.project.endpoints.values():
        for setting in endpoint.settings:
            try:
                found.append(endpoint.resolve_setting(setting))
            except SyncSwimError:
                continue  # an unset variable: nothing of it can leak
    return found


# what is shown --------------------------------------------------------------------------


def _record(d: Difference, endpoints: tuple[str, str]) -> str:
    """`app id=7 / shop id=1003`: the keys the record has on each side."""
    keys = zip(endpoints, (d.key_a, d.key_b), strict=True)
    return " / ".join(f"{ep} {_key(k)}" for ep, k in keys if k is not None)


def _why(d: Difference) -> str:
    parts = []
    if d.journal:
        parts.append("journal: " + ", ".join(f"{n} {status}" for status, n in d.journal))
    if d.conflicts:
        ids = ", ".join(str(i) for i in d.conflicts)
        parts.append(f"conflict {ids} (syncswim conflicts show ID)")
    if not parts:
        return ""
    return " [" + ("in flight, " if d.in_flight else "") + "; ".join(parts) + "]"


def _describe(d: Difference, endpoints: tuple[str, str]) -> Iterator[str]:
    a, b = endpoints
    record = _record(d, endpoints)
    if d.kind == "fields":
        what = "fields differ" if d.linked else "fields differ (matched, not linked yet)"
        yield f"  {record}: {what}{_why(d)}"
        for f in d.fields:
            left = f"{a}.{f.column_a} = {_value(f.value_a)}"
            yield f"    {left}, {b}.{f.column_b} = {_value(f.value_b)}"
    elif d.kind == "only":
        here = a if d.side == "a" else b
        there = b if d.side == "a" else a
        yield f"  {record}: only on {here} (not linked, no row on {there} matches it){_why(d)}"
    else:
        gone = a if d.side == "a" else b
        yield f"  {record}: linked, but its row on {gone} is gone{_why(d)}"


def _text(v: Verdict) -> Iterator[str]:
    a, b = v.endpoints
    facts = f"{v.rows[0]} rows on {a}, {v.rows[1]} on {b}"
    if v.journal:
        facts += "; journal: " + ", ".join(f"{n} {status}" for status, n in v.journal)
    head = f"{v.sync}.{v.entity}"
    if not v.total:
        yield f"{head}: in step ({facts})"
    else:
        state = "drift" if v.drift else "in flight"
        counted = _plural(v.total, "difference")
        if v.in_flight:
            counted += f", {v.in_flight} in flight"
        yield f"{head}: {state}, {counted} ({facts})"
    for d in v.shown:
        yield from _describe(d, v.endpoints)
    if v.total > len(v.shown):
        yield f"  ({v.total - len(v.shown)} more differences not shown; --limit N shows more)"
    if v.matched_unlinked:
        n = v.matched_unlinked
        yield (
            "  (1 matched pair agrees but is not linked yet; sync --full links it)"
            if n == 1
            else f"  ({n} matched pairs agree but are not linked yet; sync --full links them)"
        )
    for note in v.notes:
        yield f"  note: {_one_line(note)}"


def _summary(verdicts: list[Verdict], asked: int) -> str:
    drift = [f"{v.sync}.{v.entity}" for v in verdicts if v.drift]
    errors = asked - len(verdicts)
    parts = [f"{asked - len(drift) - errors} of {asked} entities in step"]
    if drift:
        parts.append("drift in " + ", ".join(drift))
    if errors:
        parts.append(f"{errors} not compared")
    return "; ".join(parts)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _json_lines(v: Verdict) -> Iterator[str]:
    a, b = v.endpoints
    for d in v.shown:
        keys = {ep: k for ep, k in ((a, d.key_a), (b, d.key_b)) if k is not None}
        yield _dumps(
            {
                "type": "difference",
                "sync": v.sync,
                "entity": v.entity,
                "kind": d.kind,
                "keys": keys,
                "side": None if d.side is None else (a if d.side == "a" else b),
                "linked": d.linked,
                "fields": [
                    {
                        "columns": {a: f.column_a, b: f.column_b},
                        "values": {a: f.value_a, b: f.value_b},
                    }
                    for f in d.fields
                ],
                "in_flight": d.in_flight,
                "journal": dict(d.journal),
                "conflicts": list(d.conflicts),
            }
        )
    status = "in_step" if not v.total else ("drift" if v.drift else "in_flight")
    yield _dumps(
        {
            "type": "entity",
            "sync": v.sync,
            "entity": v.entity,
            "status": status,
            "rows": {a: v.rows[0], b: v.rows[1]},
            "differences": v.total,
            "in_flight": v.in_flight,
            "not_shown": v.total - len(v.shown),
            "matched_unlinked": v.matched_unlinked,
            "journal": dict(v.journal),
            "notes": list(v.notes),
        }
    )


def _plain(value: Any) -> Any:
    """JSON for the values JSON has no type of: exact decimals and times as text."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "0x" + bytes(value).hex()
    return str(value)


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, default=_plain, ensure_ascii=False)
