"""What `syncswim audit` does: the journal of changes as a table (or JSON lines), and one
record's history on both sides.

A record key names a row on one side only (id 1 in PostgreSQL and id 1 in MySQL are two
customers), so `--key` needs `--side`; `--record` follows the record's link to the other
side and shows that side's history too. Bad input is one line on stderr and exit code 2;
a reader that stops reading (`| head`) ends the output quietly.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

from syncswim_lib.pipeline.conflicts_cmd import (
    UsageError,
    _cut,
    _key,
    _positive,
    _run,
    _runtime,
    _time,
)
from syncswim_lib.state.base import JournalEntry, Status

if TYPE_CHECKING:
    from syncswim_lib.config import Entity, Project
    from syncswim_lib.state.base import StateStore

DEFAULT_LIMIT = 200
STATUSES: tuple[str, ...] = get_args(Status)
_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_HEADER = (
    "ID",
    "SYNC.ENTITY",
    "SIDE",
    "OP",
    "KEY",
    "STATUS",
    "ATTEMPTS",
    "DETECTED (UTC)",
    "APPLIED (UTC)",
    "DETAIL",
)


@dataclass(frozen=True)
class Query:
    """What the user asked for, checked."""

    sync: str | None
    entity: str | None
    status: Status | None
    since: datetime | None
    limit: int
    side: str | None  # an endpoint name
    key: dict[str, Any] | None


def audit(
    path: str | Path,
    entity: str | None = None,
    key: str | None = None,
    *,
    sync: str | None = None,
    side: str | None = None,
    record: bool = False,
    status: str | None = None,
    since: str | None = None,
    limit: str | int = DEFAULT_LIMIT,
    as_json: bool = False,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Print the journal, newest first; exit code 2 on bad input."""

    def run() -> Generator[str, None, None]:
        count = _positive(limit, "--limit")
        wanted = _status(status)
        after = None if since is None else _since(since, now())
        with _runtime(path) as rt:
            if sync is not None and sync not in rt.project.syncs:
                raise UsageError(_unknown("sync", sync, list(rt.project.syncs)))
            decl = _entity(rt.project, sync, entity) if entity or key or side else None
            endpoint = None if side is None else _side(decl, side, key)
            parsed = None if key is None else _parse_key(decl, endpoint, key)
            if record and parsed is None:
                raise UsageError("--record follows one record: give --side and --key too")
            q = Query(
                sync=decl.sync if decl else sync,
                entity=decl.name if decl else entity,
                status=wanted,
                since=after,
                limit=count,
                side=endpoint,
                key=parsed,
            )
            found, more = _select(rt.store, q)
            if record and decl is not None and endpoint is not None and parsed is not None:
                other = _linked(rt.store, decl, endpoint, parsed)
                if other is not None:
                    extra, more_other = _select(rt.store, _replace_side(q, *other))
                    found = sorted([*found, *extra], key=lambda e: e.id, reverse=True)[:count]
                    more = more or more_other
                elif not as_json:
                    yield f"(no link: {endpoint} {_key(parsed)} has no record on the other side)"
            yield from (_json_line(e) for e in found) if as_json else _table(found)
        if not found and not as_json:
            yield "no journal entries"
        if more:
            note = f"(the newest {count} shown; --limit N shows more)"
            # machines read stdout: the notice goes where a person sees it
            if as_json:
                print(note, file=sys.stderr)
            else:
                yield note

    return _run(run)


# checking the input ---------------------------------------------------------------------


def _status(status: str | None) -> Status | None:
    if status is None or status == "all":
        return None
    if status not in STATUSES:
        raise UsageError(f"--status must be one of {', '.join(STATUSES)} or all, not {status!r}")
    return cast(Status, status)


def _since(text: str, now: datetime) -> datetime:
    """`30m`, `2h`, `7d` ago, or an ISO date or time (UTC unless it says otherwise)."""
    if match := _RELATIVE.match(text.strip()):
        amount, unit = match.groups()
        return now - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--since must be an ISO date or time (2024-05-01, 2024-05-01T10:00) or an age "
            f"(30m, 2h, 7d), not {text!r}"
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _unknown(what: str, name: str, known: Sequence[str]) -> str:
    return f"unknown {what} {name!r} (declared: {', '.join(known) or 'none'})"


def _entity(project: Project, sync: str | None, name: str | None) -> Entity:
    if name is None:
        raise UsageError("--side and --key name a record of one entity: give --entity too")
    sync_name, dot, entity_name = name.rpartition(".")
    if dot:
        sync = sync_name
    if sync is not None and sync not in project.syncs:
        raise UsageError(_unknown("sync", sync, list(project.syncs)))
    found = [
        d.entities[entity_name]
        for s, d in project.syncs.items()
        if (sync is None or s == sync) and entity_name in d.entities
    ]
    if not found:
        known = [f"{s}.{e}" for s, d in project.syncs.items() for e in d.entities]
        raise UsageError(_unknown("entity", name, known))
    if len(found) > 1:
        choices = ", ".join(f"{d.sync}.{d.name}" for d in found)
        raise UsageError(f"entity {entity_name!r} is in several syncs: use one of {choices}")
    return found[0]


def _side(decl: Entity | None, side: str, key: str | None) -> str:
    assert decl is not None  # _entity was asked whenever a side is given
    try:
        return decl.side(side).endpoint
    except KeyError:
        sides = f"{decl.side_a.endpoint} or {decl.side_b.endpoint}"
        raise UsageError(f"unknown side {side!r} of {decl.sync}.{decl.name}: use {sides}") from None


def _parse_key(decl: Entity | None, endpoint: str | None, text: str) -> dict[str, Any]:
    """`id=7`, `region=eu,id=7` or JSON (`{"id": 7}`); values read as JSON when they are
    (7 is a number, "7" and eu are text). Checked against the side's key columns."""
    assert decl is not None
    if endpoint is None:
        sides = f"{decl.side_a.endpoint} or {decl.side_b.endpoint}"
        raise UsageError(
            f"--key names a row of one side (each side has its own keys): add --side {sides}"
        )
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            key = json.loads(stripped)
        except ValueError as e:
            raise UsageError(f"--key is not valid JSON ({e}): {text!r}") from None
        if not isinstance(key, dict):
            raise UsageError(f"--key must be a JSON object, not {text!r}")
    else:
        key = {}
        for part in stripped.split(","):
            name, eq, value = part.partition("=")
            if not eq or not name.strip():
                raise UsageError(
                    f"--key must be column=value[,column=value] or a JSON object, not {text!r}"
                )
            key[name.strip()] = _scalar(value.strip())
    columns = decl.side(endpoint).key
    if sorted(key) != sorted(columns):
        raise UsageError(
            f"the key of {decl.sync}.{decl.name} on {endpoint} is {', '.join(columns)}, "
            f"not {', '.join(key) or 'nothing'}"
        )
    return key


def _scalar(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str | int | float | bool) or value is None else text


# reading --------------------------------------------------------------------------------


def _select(store: StateStore, q: Query) -> tuple[list[JournalEntry], bool]:
    """At most `q.limit` entries, newest first, and whether there were more. The store
    filters by sync, entity, status and key; side and time are filtered here, reading
    further back until enough entries are found (ids grow with detection time)."""
    fetch = q.limit + 1
    while True:
        rows = store.entries(sync=q.sync, entity=q.entity, status=q.status, key=q.key, limit=fetch)
        kept: list[JournalEntry] = []
        old = False
        for e in rows:
            if q.since is not None and _detected(e) < q.since:
                old = True
                break
            if q.side is None or e.side == q.side:
                kept.append(e)
        if len(kept) > q.limit or old or len(rows) < fetch:
            return kept[: q.limit], len(kept) > q.limit
        fetch *= 4


def _detected(e: JournalEntry) -> datetime:
    at = e.change.detected_at
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _linked(
    store: StateStore, decl: Entity, endpoint: str, key: dict[str, Any]
) -> tuple[str, dict[str, Any]] | None:
    """The other side's endpoint and key of the record `key` names on `endpoint`."""
    letter: Literal["a", "b"] = decl.letter(endpoint)
    link = store.link_by_key(decl.sync, decl.name, letter, key)
    if link is None:
        return None
    other = link.key_b if letter == "a" else link.key_a
    return None if other is None else (decl.other(endpoint).endpoint, other)


def _replace_side(q: Query, endpoint: str, key: dict[str, Any]) -> Query:
    return Query(q.sync, q.entity, q.status, q.since, q.limit, endpoint, key)


# what is shown --------------------------------------------------------------------------


def _detail(e: JournalEntry) -> str:
    d = e.detail or {}
    for name in ("error", "reason", "decision"):
        if d.get(name):
            text = d[name]
            return text if isinstance(text, str) else json.dumps(text, default=str)
    writes = d.get("writes") or []
    if writes:
        return ", ".join(f"{w.get('action')} on {w.get('target')}" for w in writes)
    return "-"


def _table(found: Sequence[JournalEntry]) -> Iterator[str]:
    if not found:
        return
    rows = [_HEADER]
    for e in found:
        rows.append(
            (
                str(e.id),
                f"{e.sync}.{e.entity}",
                e.side,
                e.change.op.value,
                _key(e.change.key),
                e.status,
                str(e.attempts),
                _time(e.change.detected_at),
                _time(e.applied_at),
                _detail(e),
            )
        )
    cells = [[_cut(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(_HEADER))]
    for row in cells:
        yield "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()


def _json_line(e: JournalEntry) -> str:
    ch = e.change
    return json.dumps(
        {
            "id": e.id,
            "sync": e.sync,
            "entity": e.entity,
            "side": e.side,
            "op": ch.op.value,
            "key": ch.key,
            "status": e.status,
            "attempts": e.attempts,
            "detail": e.detail,
            "commit_ts": ch.commit_ts,
            "detected_at": ch.detected_at,
            "applied_at": e.applied_at,
            "origin": ch.origin,
        },
        default=str,
    )
