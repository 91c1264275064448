"""What `syncswim conflicts list|show|resolve|restore` do (exit codes returned).

A conflict is one field both sides changed to different values (see
`syncswim_lib.state.base.ConflictRecord`). `resolve` and `restore` store a person's choice
and journal a marker change of the record, so the next run of its entity picks the choice
up and writes it to both sides. An update-vs-delete conflict (`__record__`) is chosen by
side: the delete reads the surviving row first (the one place these commands connect to
an endpoint), so a record edited since the conflict is not deleted.

Bad input (an unknown conflict id or side, a value that is not JSON, a declaration that
cannot be loaded) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from syncswim_lib.envelope import Change, Op, WatermarkPosition
from syncswim_lib.errors import ConfigError
from syncswim_lib.state.base import BatchRecord, ConflictRecord, ConflictStatus
from syncswim_lib.values.coerce import same_value

if TYPE_CHECKING:
    from syncswim_lib.config import Entity, Project
    from syncswim_lib.config.models import SideSpec
    from syncswim_lib.pipeline.mapping import Letter
    from syncswim_lib.pipeline.runtime import Runtime

EXIT_USAGE = 2
STATUS_CHOICES = ("open", "decided", "resolved", "applied", "all")
DEFAULT_LIMIT = 100
_MAX_ID = 2**63 - 1  # the largest id (and limit) the stores can hold
_CELL = 40  # widest cell of the list table; longer text is cut with "…"
RECORD_FIELD = "__record__"  # the whole record: an update against a delete


class UsageError(Exception):
    """Input the command cannot act on: one line for stderr, exit code 2."""


# entry points ---------------------------------------------------------------------------


def list_conflicts(
    path: str | Path,
    sync: str | None = None,
    entity: str | None = None,
    status: str = "all",
    limit: str | int = DEFAULT_LIMIT,
) -> int:
    """The newest conflicts as a table: id, sync.entity, record, field, rule, outcome,
    status, created."""

    def run() -> Generator[str, None, None]:
        if status not in STATUS_CHOICES:
            raise UsageError(f"--status must be one of {', '.join(STATUS_CHOICES)}, not {status!r}")
        count = min(_positive(limit, "--limit"), _MAX_ID - 1)
        wanted = None if status == "all" else cast(ConflictStatus, status)
        with _runtime(path) as rt:
            found = rt.store.conflicts(sync=sync, entity=entity, status=wanted, limit=count + 1)
            yield from _table(rt.project, found[:count])
        if not found:
            yield "no conflicts"
        elif len(found) > count:
            yield f"(the newest {count}; --limit N shows more)"

    return _run(run)


def show_conflict(path: str | Path, conflict_id: str | int) -> int:
    """Everything about one conflict."""

    def run() -> Generator[str, None, None]:
        with _runtime(path) as rt:
            c = _load(rt, conflict_id)
            yield from _details(rt.project, c)

    return _run(run)


def resolve_conflict(
    path: str | Path,
    conflict_id: str | int,
    take: str | None = None,
    value: str | None = None,
) -> int:
    """Choose a conflict's value: one side's (`take`: an endpoint name, "a" or "b") or a
    value given as JSON in side-a form (`value`)."""

    def run() -> Generator[str, None, None]:
        if (take is None) == (value is None):
            raise UsageError("give exactly one of --take SIDE or --value JSON")
        with _runtime(path) as rt:
            c = _load(rt, conflict_id)
            decl = _entity(rt.project, c)
            if c.field == RECORD_FIELD:
                if take is None:
                    raise UsageError(
                        f"conflict {c.id} is about the whole record (updated on one side, "
                        "deleted on the other): choose it with --take SIDE, not --value"
                    )
                yield _settle_record(rt, decl, c, _letter(decl, take), "resolve")
                return
            if take is not None:
                letter = _letter(decl, take)
                outcome: str = letter
                chosen = c.value_a if letter == "a" else c.value_b
                note = f"chosen with `syncswim conflicts resolve`: {_side(decl, letter)}'s value"
            else:
                assert value is not None
                outcome, chosen = "value", _json(value)
                note = "chosen with `syncswim conflicts resolve`: a value given"
            yield _settle(rt, decl, c, outcome, chosen, note)

    return _run(run)


def restore_conflict(path: str | Path, conflict_id: str | int) -> int:
    """For a conflict a rule decided: choose the value that lost."""

    def run() -> Generator[str, None, None]:
        with _runtime(path) as rt:
            c = _load(rt, conflict_id)
            decl = _entity(rt.project, c)
            if c.field == RECORD_FIELD and c.status == "decided" and c.outcome in ("a", "b"):
                loser = "b" if c.outcome == "a" else "a"
                yield _settle_record(rt, decl, c, loser, "restore")
                return
            if c.status != "decided":
                raise UsageError(
                    f"conflict {c.id} is {c.status}, not decided: restore gives back the value "
                    "a rule decided against; choose with `resolve --take SIDE` instead"
                )
            if c.outcome not in ("a", "b"):
                raise UsageError(
                    f"conflict {c.id} was decided by {c.rule} with a value of its own, so no "
                    "side lost; choose with `resolve --take SIDE` instead"
                )
            loser = "b" if c.outcome == "a" else "a"
            chosen = c.value_a if loser == "a" else c.value_b
            note = f"restored with `syncswim conflicts restore`: {_side(decl, loser)}'s value"
            yield _settle(rt, decl, c, loser, chosen, note)

    return _run(run)


# the work -------------------------------------------------------------------------------


def _settle(
    rt: Runtime, decl: Entity, c: ConflictRecord, outcome: str, value: Any, note: str
) -> str:
    """Store the resolution and journal a marker change so the next run writes it."""
    assert c.id is not None
    if c.key_a is not None:
        side, key = decl.side_a, c.key_a
    elif c.key_b is not None:
        side, key = decl.side_b, c.key_b
    else:
        raise UsageError(f"conflict {c.id} names no record key, so no run can apply it")
    try:
        done = rt.store.resolve_conflict(c.id, outcome, value, note)
    except KeyError:
        raise UsageError(f"no conflict {c.id}") from None
    except TypeError as e:  # a value the store cannot keep
        raise UsageError(f"cannot store that value: {e}") from None
    _journal_marker(rt, side, c, key)
    whose = "a value given" if outcome == "value" else f"{_side(decl, outcome)}'s value"
    return (
        f"conflict {c.id} resolved: {c.field} = {_value(done.value)} ({whose}); the next run "
        f"of {c.sync}.{c.entity} writes it to both sides"
    )


def _journal_marker(rt: Runtime, side: SideSpec, c: ConflictRecord, key: dict[str, Any]) -> None:
    """A change of the record with no values: the next run of its entity merges it again
    and finds the resolution."""
    marker = Change(
        Op.UPDATE,
        side.table,
        key,
        after=None,
        before=None,
        position=WatermarkPosition(f"conflict:{c.id}:{uuid.uuid4().hex}"),
        commit_ts=None,
        detected_at=datetime.now(UTC),
    )
    rt.store.append_changes(c.sync, side.endpoint, [(c.entity, marker)], None)


def _runtime(path: str | Path) -> Runtime:
    from syncswim_lib.config import load_project
    from syncswim_lib.pipeline.runtime import Runtime

    return Runtime(load_project(path))


def _settle_record(rt: Runtime, decl: Entity, c: ConflictRecord, take: str, how: str) -> str:
    """An update-vs-delete conflict chosen again. The updating side (the one whose row
    the conflict recorded): the record stays, as the default outcome left it. The deleting
    side: the record is deleted on both sides by the next run, only if the row that
    survived still holds what the conflict recorded (checked now, and again by the run)."""
    assert c.id is not None
    updater = "a" if c.value_a is not None else "b"
    deleter = "b" if updater == "a" else "a"
    by = f"`syncswim conflicts {how}`"
    if c.status == "applied":
        raise UsageError(
            f"conflict {c.id} was resolved already ({_side(decl, c.outcome)} taken) and that "
            "reached both sides; edit or delete the rows themselves"
        )
    if c.status == "resolved" and take != c.outcome:
        raise UsageError(
            f"conflict {c.id} waits for the next run to apply {_side(decl, c.outcome)}'s "
            "choice; run the entity first"
        )
    if take == c.outcome:
        # the outcome stands as the run left it: nothing to write, the record says so
        what = "kept" if take == updater else "deleted"
        done = replace(
            c,
            status="applied",
            resolved_at=datetime.now(UTC),
            note=f"confirmed with {by}: the record stays {what}",
        )
        rt.store.record(BatchRecord(c.sync, c.entity, conflicts=[done]))
        return (
            f"conflict {c.id} confirmed: the record stays {what} "
            f"({_side(decl, take)}'s outcome); nothing to write"
        )
    if take == updater:
        # the delete won (on_delete: delete): the record is gone on both sides
        raise UsageError(
            f"conflict {c.id}: the delete won and the record is gone on both sides; taking "
            f"{_side(decl, updater)}'s update would create it again, which is not supported "
            "yet: `syncswim conflicts show` lists its values"
        )
    now = _surviving_row(rt, decl, c, updater)
    recorded: dict[str, Any] = (c.value_a if updater == "a" else c.value_b) or {}
    emap = rt.entity_map(c.sync, c.entity)
    # the record's data; not the SOR key the sync itself writes back when it recreates
    mine = (p[0] if updater == "a" else p[1] for p in emap.merge_fields())
    changed = [k for k in mine if k in recorded and not same_value(now.get(k), recorded[k])]
    if changed:
        what = ", ".join(
            f"{k}: {_value(recorded[k])} then, {_value(now.get(k))} now" for k in changed
        )
        raise UsageError(
            f"conflict {c.id}: the record changed on {_side(decl, updater)} since the conflict "
            f"({what}); "
            "deleting it would lose that edit, so nothing is chosen. Delete the rows themselves "
            "if that is what you want"
        )
    note = f"chosen with {by}: {_side(decl, deleter)}'s delete"
    try:
        rt.store.resolve_conflict(c.id, deleter, None, note)
    except KeyError:
        raise UsageError(f"no conflict {c.id}") from None
    _journal_marker(rt, decl.side(updater), c, _record_key(c, updater))
    return (
        f"conflict {c.id} resolved: the record is deleted ({_side(decl, deleter)}'s delete); "
        f"the next run of {c.sync}.{c.entity} deletes it on both sides"
    )


def _record_key(c: ConflictRecord, letter: str) -> dict[str, Any]:
    key = c.key_a if letter == "a" else c.key_b
    if key is None:
        raise UsageError(f"conflict {c.id} names no record key, so no run can apply it")
    return key


def _surviving_row(rt: Runtime, decl: Entity, c: ConflictRecord, letter: str) -> dict[str, Any]:
    """The row the update-vs-delete conflict kept, as its side holds it now."""
    from syncswim_lib.values.codec import key_text

    key = _record_key(c, letter)
    emap = rt.entity_map(c.sync, c.entity)
    L: Letter = "a" if letter == "a" else "b"
    side = emap.side(L)
    first = side.key[0]
    found = rt.connector(side.endpoint).fetch(side.table, first, [key.get(first)])
    rows = [r for r in found if key_text(emap.key_of(L, r)) == key_text(key)]
    if not rows:
        raise UsageError(
            f"conflict {c.id}: the record's row on {_side(decl, letter)} ({_key(key)}) is gone "
            "since the conflict; nothing is left to choose"
        )
    return emap.tracked_values(L, rows[0])


def _load(rt: Runtime, conflict_id: str | int) -> ConflictRecord:
    number = _positive(conflict_id, "a conflict id")
    c = rt.store.conflict(number) if number <= _MAX_ID else None
    if c is None:
        raise UsageError(f"no conflict {number}")
    return c


def _entity(project: Project, c: ConflictRecord) -> Entity:
    sync = project.syncs.get(c.sync)
    decl = None if sync is None else sync.entities.get(c.entity)
    if decl is None:
        where = project.source_name or "the declaration"
        raise UsageError(
            f"conflict {c.id} is of {c.sync}.{c.entity}, which {where} does not declare"
        )
    return decl


def _letter(decl: Entity, side: str) -> str:
    try:
        return decl.letter(side)
    except KeyError:
        names = f"a, b, {decl.side_a.endpoint} or {decl.side_b.endpoint}"
        raise UsageError(f"unknown side {side!r} of {decl.sync}.{decl.name}: use {names}") from None


def _json(text: str) -> Any:
    try:
        # numbers with a fraction stay exact (Decimal); the run coerces to the column type
        return json.loads(text, parse_float=Decimal)
    except ValueError as e:
        raise UsageError(f"--value is not valid JSON ({e}): {text!r}") from None


def _positive(text: str | int, what: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise UsageError(f"{what} must be a positive whole number, not {text!r}")
    return number


def _run(work: Callable[[], Generator[str, None, None]]) -> int:
    """Print what `work` yields; bad input is one line on stderr and exit code 2; a reader
    that stops reading (`| head`) ends the output quietly."""
    lines = work()
    try:
        for line in lines:
            print(line)
        sys.stdout.flush()
    except (UsageError, ConfigError) as e:
        print(f"syncswim: error: {_one_line(str(e))}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # the reader is gone: stop writing, and keep Python from failing again on the
        # flush at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    finally:
        lines.close()  # leaves the generator's `with`: the store is closed now
    return 0


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


# what is shown ----------------------------------------------------------------------------


def _side(decl: Entity | None, letter: str) -> str:
    """An endpoint name for a side letter (the letter itself when the entity is unknown)."""
    if decl is None or letter not in ("a", "b"):
        return letter
    return decl.side_a.endpoint if letter == "a" else decl.side_b.endpoint


def _declared(project: Project, c: ConflictRecord) -> Entity | None:
    sync = project.syncs.get(c.sync)
    return None if sync is None else sync.entities.get(c.entity)


def _value(v: Any) -> str:
    """A value as a person reads it: JSON-like, NULL for None, exact numbers."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float | Decimal):
        return str(v)
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, bytes | bytearray | memoryview):
        return "0x" + bytes(v).hex()
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    return json.dumps(v, ensure_ascii=False, default=_value)


def _key(key: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v if isinstance(v, str) else _value(v)}" for k, v in key.items())


def _record(decl: Entity | None, c: ConflictRecord) -> str:
    """The record's keys by side (and its external id): `CUST-1 (app id=7 / shop id=9)`."""
    keys = " / ".join(
        f"{_side(decl, letter)} {_key(k)}"
        for letter, k in (("a", c.key_a), ("b", c.key_b))
        if k is not None
    )
    if c.ext_id is None:
        return keys or "-"
    return f"{c.ext_id} ({keys})" if keys else c.ext_id


def _outcome(decl: Entity | None, c: ConflictRecord) -> str:
    return _side(decl, c.outcome) if c.outcome in ("a", "b") else c.outcome


def _time(ts: datetime | None) -> str:
    return "-" if ts is None else ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _cut(text: str) -> str:
    return text if len(text) <= _CELL else text[: _CELL - 1] + "…"


def _table(project: Project, found: Sequence[ConflictRecord]) -> Iterator[str]:
    if not found:
        return
    header = ("ID", "SYNC.ENTITY", "RECORD", "FIELD", "RULE", "OUTCOME", "STATUS", "CREATED (UTC)")
    rows = [header]
    for c in found:
        decl = _declared(project, c)
        rows.append(
            (
                str(c.id),
                f"{c.sync}.{c.entity}",
                _record(decl, c),
                c.field,
                c.rule + (" (tie)" if c.tie else ""),
                _outcome(decl, c),
                c.status,
                _time(c.created_at),
            )
        )
    cells = [[_cut(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        yield "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()


def _details(project: Project, c: ConflictRecord) -> Iterator[str]:
    decl = _declared(project, c)
    a, b = (f"{letter} ({_side(decl, letter)})" if decl else letter for letter in ("a", "b"))
    if c.field == "__record__":
        field = "__record__ (the whole record: an update against a delete)"
    else:
        mapped = None if decl is None else decl.field(c.field)
        field = c.field if mapped is None else f"{c.field} (side a), {mapped.b} (side b)"
    value = "- (waiting for a person)" if c.status == "open" else _value(c.value)
    rows = [
        ("sync.entity", f"{c.sync}.{c.entity}" + ("" if decl else " (no longer declared)")),
        ("record", _record(decl, c)),
        (f"key {a}", "-" if c.key_a is None else _key(c.key_a)),
        (f"key {b}", "-" if c.key_b is None else _key(c.key_b)),
        ("ext id", c.ext_id or "-"),
        ("field", field),
        ("status", c.status),
        ("rule", c.rule),
        ("tie", "yes: the commit times could not be ordered" if c.tie else "no"),
        (
            "outcome",
            _outcome(decl, c) + (f" ({c.outcome})" if decl and c.outcome in ("a", "b") else ""),
        ),
        ("value", value),
        (f"base {a}", _value(c.base_a)),
        (f"base {b}", _value(c.base_b)),
        (f"value {a}", _value(c.value_a)),
        (f"value {b}", _value(c.value_b)),
        (f"committed {a}", _time_exact(c.ts_a)),
        (f"committed {b}", _time_exact(c.ts_b)),
        ("entries", ", ".join(str(i) for i in c.entry_ids) or "-"),
        ("created", _time_exact(c.created_at)),
        ("resolved", _time_exact(c.resolved_at)),
        ("note", c.note or "-"),
    ]
    width = max(len(label) for label, _ in rows)
    yield f"conflict {c.id}"
    for label, text in rows:
        yield f"  {label.ljust(width)}  {text}"


def _time_exact(ts: datetime | None) -> str:
    return "-" if ts is None else ts.astimezone(UTC).isoformat(sep=" ", timespec="microseconds")
