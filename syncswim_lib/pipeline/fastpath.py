"""The common case decided in bulk: a linked record changed on one side only.

Under a steady stream of changes most records of a chunk are linked rows updated on one
side whose other side nobody touched. For such a record the three-way merge
(DESIGN.md, "How a merge decides") comes down to "the fields changed against the shadow
flow to the other side", provided the other side's row still holds its shadow. Deciding
that needs neither side's current row: the changed side's values are the journal entry's
after image (the last one of the record's entries), the other side's are the shadow. So
this module decides those records from the entries, the links and the shadows only (one
links query per side and one conflicts query per chunk, then dict look-ups), without the
two fetches and the general planner's per-record work.

What keeps it right:

- The write is the general path's: an update of the decided fields only, compare-and-set
  on the other side's row holding the shadow's tracked values. Where it does not any more
  (changed underneath, or gone), the write is refused as stale and its entries are
  released as the planner's are: the next run merges the record from both rows through
  the planner (a released entry has a try counted, and those are left to the planner).
- Everything not plainly this case goes to the planner unchanged: inserts, deletes, key
  changes (and what the chunk says about a key a row moved away from), our own echoes,
  entries waiting, released or failed before, records touched on both sides in the
  chunk (a key moved away from counts as touched), records without a link or whose
  shadow lacks a tracked column,
  after images without every tracked column (a PostgreSQL TOASTed value not resent, a
  Salesforce change event), a changed external id or reference, a value that does not
  convert, an open or resolved conflict of the record, and SOR `owns_all`.
- The entries must be the row's whole history since its shadow: the first before image
  holds the shadow's values and each entry starts where the one before ended. A write of
  ours made after an entry (the planner read the row with an edit capture had not brought
  yet, wrote it, and its echo was not journaled) leaves an after image older than the row;
  that record goes to the planner, which reads the row.
- A chunk reads before it writes: the fast path's writes go out once the planner has read
  the rows of the chunk's other records, as in a chunk without the fast path.
- The state record is the general path's: the entries' statuses with the same detail,
  the new shadow in the link, in the one transaction `EntityEngine` records with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from syncswim_lib.envelope import Op
from syncswim_lib.errors import RecordError
from syncswim_lib.pipeline.mapping import EntityMap, Letter, other
from syncswim_lib.pipeline.plan import UNSET, Plan, Planner, RecordPlan, Write, link_key
from syncswim_lib.state.base import ConflictRecord, JournalEntry, Link, StateStore
from syncswim_lib.values.codec import key_text
from syncswim_lib.values.coerce import same_value

LETTERS: tuple[Letter, Letter] = ("a", "b")

# On. The merge property test (tests/pipeline/test_merge_properties.py) runs with it and
# pins what it once decided differently from the planner; a switch for tests that need
# every record to go through the planner.
ENABLED = True


@dataclass
class Split:
    """A chunk's entries: the records decided here, and the entries left to the planner."""

    plan: Plan = field(default_factory=Plan)
    rest: list[JournalEntry] = field(default_factory=list)


@dataclass
class _Group:
    letter: Letter
    key: dict[str, Any]
    entries: list[JournalEntry]
    eligible: bool = True


def split(planner: Planner, store: StateStore, entries: Sequence[JournalEntry]) -> Split:
    """Decide the one-sided updates of linked records; the rest, in order, is left."""
    m = planner.m
    out = Split()
    if not entries or planner.rules.owns_all:
        out.rest = list(entries)
        return out
    groups: dict[tuple[Letter, str], _Group] = {}
    # keys rows moved away from (a primary-key change): what was said about the old key is
    # the moved row's history too, which the planner merges into one record
    moved: set[tuple[Letter, str]] = set()
    for e in entries:
        letter: Letter = "a" if e.side == m.a.endpoint else "b"
        key = {k: e.change.key.get(k) for k in m.side(letter).key}
        g = groups.setdefault((letter, key_text(key)), _Group(letter, key, []))
        g.entries.append(e)
        if not _plain_update(m, e, letter, key):
            g.eligible = False
        before = e.change.before
        if e.change.op == Op.UPDATE and before is not None:
            old = key_text({k: before.get(k) for k in m.side(letter).key})
            if old != key_text(key):
                moved.add((letter, old))
    for where in moved:
        if where in groups:
            groups[where].eligible = False
    touched = {letter: {kt for (L, kt) in (*groups, *moved) if letter == L} for letter in LETTERS}
    # the identities the chunk's rows carry on each side (their images, before and after):
    # a row of the other side found by the record's identity rather than its key (a new
    # row with the same external id, one whose key changed) makes it the planner's too
    claimed: dict[Letter, set[str]] = {"a": set(), "b": set()}
    for (letter, _), g in groups.items():
        col = m.side(letter).ext_column
        if not col:
            continue
        for e in g.entries:
            for image in (e.change.after, e.change.before):
                if image is not None and image.get(col) is not None:
                    claimed[letter].add(_identity(m, image[col]))
    wanted = {
        letter: [g.key for (L, _), g in groups.items() if letter == L and g.eligible]
        for letter in LETTERS
    }
    links = {
        letter: store.links_for_keys(m.sync, m.entity, letter, wanted[letter])
        if wanted[letter]
        else {}
        for letter in LETTERS
    }
    conflicts: list[ConflictRecord] | None = None
    decided: set[int] = set()
    for (letter, kt), g in groups.items():
        if not g.eligible:
            continue
        link = links[letter].get(kt)
        if link is None or link.shadow is None:
            continue
        there = link_key(link, other(letter))
        if there is None or link_key(link, letter) is None:
            continue
        if key_text(there) in touched[other(letter)]:
            continue  # touched on both sides: a real three-way merge
        if _identity_of(m, link) & claimed[other(letter)]:
            continue  # a row of the other side claims its identity
        if conflicts is None:
            conflicts = store.active_conflicts(m.sync, m.entity)
        if any(_concerns(c, link) for c in conflicts):
            continue
        rec = _decide(planner, out.plan, g, link)
        if rec is not None:
            out.plan.records.append(rec)
            decided.update(e.id for e in g.entries)
    out.rest = [e for e in entries if e.id not in decided]
    return out


def _plain_update(m: EntityMap, e: JournalEntry, letter: Letter, key: dict[str, Any]) -> bool:
    ch = e.change
    if (
        e.status != "pending"
        or e.attempts
        or ch.op != Op.UPDATE
        or ch.origin == m.sync
        or ch.after is None
    ):
        return False
    if ch.before is not None:
        old = {k: ch.before.get(k) for k in m.side(letter).key}
        if key_text(old) != key_text(key):
            return False  # a key change moves the record
    return True


def _chains_from(
    entries: Sequence[JournalEntry], shadow: dict[str, Any], cols: Sequence[str]
) -> bool:
    """Whether the entries are the row's whole history since the shadow: the first one's
    before image holds the shadow's values and each next one starts where the one before
    ended. Only then is the last after image the row as it is now. A write of ours made
    after an entry (its echo dropped at capture) breaks the chain: the shadow holds what
    we wrote, the entry's before image what was there before it, and the row is newer
    than the after image (the planner reads it)."""
    expected: dict[str, Any] | None = shadow
    for e in entries:
        before = e.change.before
        if before is None or expected is None:
            return False
        if any(c not in before or not same_value(before[c], expected[c]) for c in cols):
            return False
        expected = e.change.after
    return True


def _identity(m: EntityMap, value: Any) -> str:
    """An external-id column's value as the identity it names (SOR mode: the SOR key's
    text, external-id mode: the shared id's)."""
    try:
        if m.mode == "external_id":
            return "x:" + m.ext_text(value)
        return "k:" + key_text(m.key_from_ext(value))
    except RecordError:
        return "?"


def _identity_of(m: EntityMap, link: Link) -> set[str]:
    if m.mode == "external_id":
        return {"x:" + link.ext_id} if link.ext_id is not None else set()
    sor_key = link_key(link, m.sor or "a")
    return {"k:" + key_text(sor_key)} if sor_key is not None else set()


def _concerns(c: ConflictRecord, link: Link) -> bool:
    if c.ext_id is not None and c.ext_id == link.ext_id:
        return True
    for mine, theirs in ((link.key_a, c.key_a), (link.key_b, c.key_b)):
        if mine is not None and theirs is not None and key_text(mine) == key_text(theirs):
            return True
    return False


def _decide(planner: Planner, plan: Plan, g: _Group, link: Link) -> RecordPlan | None:
    """The record's plan as `Planner._merge_both` makes it when the other side's row holds
    its shadow; None where that is not plainly the case (the planner decides it)."""
    m = planner.m
    src: Letter = g.letter
    dst: Letter = other(src)
    assert link.shadow is not None
    base = {letter: link.shadow.get(letter) or {} for letter in LETTERS}
    last = max(g.entries, key=lambda e: e.id)
    image = last.change.after
    assert image is not None
    tracked = {letter: m.side(letter).tracked() for letter in LETTERS}
    if any(c not in image for c in tracked[src]):
        return None  # the after image lacks a value (a TOASTed one not resent)
    if any(c not in base[letter] for letter in LETTERS for c in tracked[letter]):
        return None  # a field not agreed yet (new, or a reference held in a cycle)
    if not _chains_from(sorted(g.entries, key=lambda e: e.id), base[src], tracked[src]):
        return None
    values: dict[Letter, dict[str, Any]] = {src: image, dst: base[dst]}
    write: dict[str, Any] = {}
    for pair in m.merge_fields():
        s_col, d_col = (pair[0], pair[1]) if src == "a" else (pair[1], pair[0])
        vs = image.get(s_col)
        if same_value(vs, base[src][s_col]):
            continue
        if m.reference(pair[0]) is not None or s_col == m.side(src).ext_column:
            return None  # a reference to translate, or the identity itself changed
        va, vb = values["a"].get(pair[0]), values["b"].get(pair[1])
        try:
            same, a_as_b, b_as_a = planner._agreement(pair, va, vb)
            if same:
                continue
            converted = a_as_b if src == "a" else b_as_a
            if converted is UNSET:
                converted = planner._conv(src, pair, vs)
        except RecordError:
            return None  # the planner fails the record with its own words
        if not same_value(converted, base[dst][d_col]):
            write[d_col] = converted
    if m.sor is not None:
        # the non-SOR side's external-id column holds the SOR key; if not, the planner
        # writes it
        non: Letter = other(m.sor)
        col = m.side(non).ext_column
        sor_key = link_key(link, m.sor)
        if col and sor_key is not None:
            try:
                want = planner._coerce_ext(m.sor_key_value(sor_key), non)
            except RecordError:
                return None
            if not same_value(values[non].get(col), want):
                return None
    ref = f"r{min(e.id for e in g.entries)}"
    keys = {src: g.key, dst: link_key(link, dst)}
    shadow: dict[str, Any] = {
        src: {c: image.get(c) for c in tracked[src]},
        dst: {c: write.get(c, base[dst][c]) for c in tracked[dst]},
    }
    writes: tuple[Write, ...] = ()
    detail: dict[str, Any] = {}
    if write:
        target_key = keys[dst]
        assert target_key is not None
        expected = {c: base[dst][c] for c in tracked[dst]}
        writes = (Write.update(ref, dst, target_key, write, expected),)
    else:
        detail["reason"] = "already in step with the other side"
        plan.skipped += 1
    return RecordPlan(
        ref,
        tuple(sorted(e.id for e in g.entries)),
        link,
        keys["a"],
        keys["b"],
        link.ext_id,
        shadow,
        writes=writes,
        status="applied" if writes else "skipped",
        detail=detail,
    )
