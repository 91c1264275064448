"""From pending journal entries to the writes for each side: identity, merge, conflicts.

Pure: `plan(emap, entries, ctx)` does no I/O. The engine loads everything a chunk needs
first (links, current rows of both sides, open conflicts: a few batched calls, see
`context.py`), then this module decides.

The journal says *which* records to look at (and when each side changed); the merge is
made from the rows as they are now on both sides against the shadow, three-way and per
field (DESIGN.md, "How a merge decides"). Every write is conditional on the target row
still holding what the plan saw, so a row changed underneath is merged again next run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from syncswim_lib.config.models import ConflictRule, Conflicts, FrozenDict
from syncswim_lib.envelope import Op
from syncswim_lib.errors import RecordError
from syncswim_lib.pipeline.mapping import EntityMap, FieldPair, Letter, RefView, other
from syncswim_lib.pipeline.resolve import Clock, Decision, FieldConflict, decide
from syncswim_lib.state.base import ConflictRecord, EntryUpdate, JournalEntry, Link, Status
from syncswim_lib.values.codec import key_text
from syncswim_lib.values.coerce import coerce, same_value

Action = Literal["insert", "update", "delete"]
RECORD_FIELD = "__record__"
# a side that looks deleted without a captured delete is only believed after this many
# tries (its delete, or its new key, is normally captured by the next run)
ABSENCE_TRIES = 3

# a value not computed (None is a value)
UNSET: Any = object()

# one record in a graph of waits: (entity, letter, key text on that side)
Node = tuple[str, str, str]


def key_words(key: dict[str, Any]) -> str:
    """A key as people read it: `id=5`."""
    return ", ".join(f"{k}={v}" for k, v in key.items())


class ParentMissing(RecordError):
    """A reference value cannot be translated: its parent is not linked (yet)."""

    def __init__(
        self, ref: RefView, letter: Letter, key: dict[str, Any], exists: bool, endpoint: str
    ) -> None:
        self.ref = ref
        self.letter: Letter = letter
        self.key = key
        self.exists = exists
        self.endpoint = endpoint
        words = f"{ref.parent} {key_words(key)}"
        self.reason = (
            f"waiting for parent {words} on {endpoint}"
            if exists
            else f"parent {words} does not exist on {endpoint}"
        )
        super().__init__(self.reason)

    @property
    def node(self) -> Node:
        return (self.ref.parent, self.letter, key_text(self.key))

    def detail(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "waits_for": "parent",
            "parent": {
                "entity": self.ref.parent,
                "endpoint": self.endpoint,
                "key": self.key,
            },
        }


@dataclass(frozen=True)
class Write:
    """One row write on one side. `values` are only the columns the merge decided."""

    ref: str
    target: Letter
    action: Action
    key: dict[str, Any] | None  # target key (update/delete)
    values: dict[str, Any]
    expected: dict[str, Any] | None  # compare-and-set: the row as the plan saw it

    @staticmethod
    def insert(ref: str, target: Letter, values: dict[str, Any]) -> Write:
        return Write(ref, target, "insert", None, values, None)

    @staticmethod
    def update(
        ref: str,
        target: Letter,
        key: dict[str, Any],
        values: dict[str, Any],
        seen: dict[str, Any] | None,
    ) -> Write:
        return Write(ref, target, "update", key, values, seen)

    @staticmethod
    def delete(ref: str, target: Letter, key: dict[str, Any], seen: dict[str, Any]) -> Write:
        return Write(ref, target, "delete", key, {}, seen)


@dataclass(frozen=True)
class RecordPlan:
    """Everything decided for one record (one link)."""

    ref: str
    entry_ids: tuple[int, ...]
    old_link: Link | None
    key_a: dict[str, Any] | None
    key_b: dict[str, Any] | None
    ext_id: str | None
    shadow: dict[str, Any] | None  # the new agreed values; None with drop_link
    writes: tuple[Write, ...] = ()
    conflicts: tuple[ConflictRecord, ...] = ()  # new ones, and resolutions now applied
    write_back: bool = False  # the SOR makes the key: store it in the other side's row
    drop_link: bool = False
    # inserted without a reference whose parent is new too (a cycle): linked now, its
    # entries stay pending so the next pass sets the reference
    hold: bool = False
    status: Status = "applied"
    detail: dict[str, Any] = field(default_factory=dict)

    def key(self, letter: Letter) -> dict[str, Any] | None:
        return self.key_a if letter == "a" else self.key_b


@dataclass
class Plan:
    records: list[RecordPlan] = field(default_factory=list)
    updates: list[EntryUpdate] = field(default_factory=list)  # settled without a write
    release: list[int] = field(default_factory=list)  # back to pending for the next run
    skipped: int = 0
    conflicts: int = 0
    waiting: int = 0
    failed: int = 0
    deferred: int = 0
    waiting_parent: int = 0
    # (child, parent) for each record that waits for a parent: cycles among them are
    # broken by inserting without the reference (docs/relationships.md)
    waits: list[tuple[Node, Node]] = field(default_factory=list)
    # (parent entity, letter, key there) of linked parents found gone on that side without
    # a captured delete (a MariaDB cascade): the engine journals their deletes
    vanished: list[tuple[str, Letter, dict[str, Any]]] = field(default_factory=list)

    @property
    def writes(self) -> list[Write]:
        return [w for r in self.records for w in r.writes]


@dataclass(frozen=True)
class ChunkContext:
    """What the planner may know about the world, loaded by the engine in batches."""

    links_by_key: dict[str, dict[str, Link]]  # letter -> key_text -> link
    links_by_ext: dict[str, Link]
    rows: dict[str, dict[str, dict[str, Any]]]  # letter -> key_text -> current row
    rows_by_ext: dict[str, dict[str, list[dict[str, Any]]]]  # letter -> ext text -> rows
    conflicts: Sequence[ConflictRecord] = ()  # open and resolved ones of the entity
    full: bool = False  # a snapshot run: a missing row is known to be missing
    # references: (parent entity, letter) -> key text of the parent there -> its link
    parent_links: dict[tuple[str, str], dict[str, Link]] = field(default_factory=dict)
    # (parent entity, letter) -> key texts of unlinked parents that exist on that side
    parent_present: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    # (parent entity, letter) -> key text -> the other side's key of a linked parent whose
    # row is gone there without a captured delete
    parent_vanished: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)


@dataclass
class Touch:
    """The pending entries of one side about one row (by its declared key now)."""

    letter: Letter
    key: dict[str, Any]
    entries: list[JournalEntry]
    old_key: dict[str, Any] | None = None  # the key before a key-changing update

    @property
    def image(self) -> dict[str, Any]:
        ch = self.entries[-1].change
        return dict(ch.after if ch.after is not None else (ch.before or ch.key))

    @property
    def deleted(self) -> bool:
        return any(e.change.op == Op.DELETE for e in self.entries)


@dataclass
class _Record:
    ident: tuple[str, ...]
    link: Link | None
    touches: list[Touch] = field(default_factory=list)
    keys: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    ext_id: str | None = None
    adopted: bool = False  # paired now with a row that carries the identity

    @property
    def entry_ids(self) -> tuple[int, ...]:
        return tuple(sorted(e.id for t in self.touches for e in t.entries))


def link_key(link: Link, letter: Letter) -> dict[str, Any] | None:
    return link.key_a if letter == "a" else link.key_b


def tracked_of(emap: EntityMap, letter: Letter, row: dict[str, Any]) -> dict[str, Any]:
    return {c: row.get(c) for c in emap.side(letter).tracked()}


class Planner:
    def __init__(self, emap: EntityMap) -> None:
        self.m = emap
        c = emap.conflicts
        if c is None:
            default = (
                ConflictRule("prefer", prefer=emap.sor) if emap.sor else ConflictRule("newest")
            )
            c = Conflicts(default, FrozenDict(), declared=False, tie_break=emap.sor or "a")
        self.rules: Conflicts = c

    # -- entry point -----------------------------------------------------------------------
    def plan(
        self,
        entries: Sequence[JournalEntry],
        ctx: ChunkContext,
        break_nodes: frozenset[Node] = frozenset(),
    ) -> Plan:
        """`break_nodes`: records on a cycle of waits, inserted without the forward
        references that cannot be translated yet."""
        plan = Plan()
        self._ctx = ctx
        self._break = break_nodes
        touches = self._touches(plan, entries)
        records: dict[tuple[str, ...], _Record] = {}
        reused: list[tuple[Touch, Link, Link]] = []
        touched = {(t.letter, key_text(t.key)) for t in touches}
        # links whose rows moved onto other linked keys (a swap, a rotation): freed from
        # their key on that side before the batch's links move
        detach: dict[tuple[str, ...], tuple[Letter, Link]] = {}
        for t in touches:
            try:
                claim = self._claim(t, ctx)
                if claim is not None:
                    old, named = claim
                    holder = self._holder(t, old, ctx)
                    if holder is None:
                        reused.append((t, old, named))
                        continue
                    self._moved_with(t, old, named, holder, touched)
                    detach[self._link_ident(old)] = (t.letter, old)
                    rec: _Record | str | None = _Record(
                        self._link_ident(named), named, [t], {t.letter: t.key}, named.ext_id
                    )
                else:
                    rec = self._identify(t, ctx)
            except RecordError as exc:
                self._settle(plan, [t], "failed", {"error": str(exc)})
                plan.failed += 1
                continue
            if rec is None:
                reason = "deleted before it was ever synced"
                self._settle(plan, [t], "skipped", {"reason": reason})
                plan.skipped += 1
                continue
            if isinstance(rec, str):
                self._settle(plan, [t], "waiting", {"reason": rec})
                plan.waiting += 1
                continue
            found = records.get(rec.ident)
            if found is None:
                records[rec.ident] = rec
            else:
                found.touches.extend(rec.touches)
                found.adopted = found.adopted and rec.adopted
                for letter, key in rec.keys.items():
                    if key is not None:
                        found.keys.setdefault(letter, key)
        # A row moved onto a key that another record held: that record is gone from the
        # row's side, and the row's own record (the one it names) waits for the next run,
        # when the key is free: one batch cannot hand a key from one link to another.
        held = {self._link_ident(named) for _, _, named in reused}
        work: list[tuple[_Record, Touch | None]] = []
        for t, old, _ in reused:
            rec = records.pop(self._link_ident(old), None) or _Record(
                self._link_ident(old), old, [], {}, old.ext_id
            )
            rec.touches.append(t)
            work.append((rec, t))
        for rec in records.values():
            if rec.ident in held:
                self._defer(plan, rec, "its row moved onto a key another record held")
                continue
            work.append((rec, None))
        for letter, link in detach.values():
            plan.records.append(self._detached(link, letter))
        for rec, moved in work:
            self._current_keys(rec, ctx)
            try:
                if moved is None:
                    self._merge(plan, rec, ctx)
                else:
                    self._left(plan, rec, moved, ctx)
            except ParentMissing as exc:
                self._settle(plan, rec.touches, "waiting", exc.detail())
                plan.waiting_parent += 1
                key = rec.keys.get(exc.letter)
                if key is not None:
                    plan.waits.append(((self.m.entity, exc.letter, key_text(key)), exc.node))
                gone = ctx.parent_vanished.get((exc.ref.parent, exc.letter), {}).get(
                    key_text(exc.key)
                )
                if gone is not None:
                    plan.vanished.append((exc.ref.parent, other(exc.letter), gone))
            except RecordError as exc:
                self._settle(plan, rec.touches, "failed", {"error": str(exc)})
                plan.failed += 1
        return plan

    # -- grouping and identity ---------------------------------------------------------------
    def letter_of(self, entry: JournalEntry) -> Letter:
        return "a" if entry.side == self.m.a.endpoint else "b"

    def _touches(self, plan: Plan, entries: Sequence[JournalEntry]) -> list[Touch]:
        groups: dict[tuple[str, str], Touch] = {}
        for e in entries:
            if e.change.origin == self.m.sync:
                # our own write coming back (origin tagging): never synced back
                plan.updates.append(EntryUpdate(e.id, "skipped", {"reason": "echo of our write"}))
                plan.skipped += 1
                continue
            letter = self.letter_of(e)
            key = {k: e.change.key.get(k) for k in self.m.side(letter).key}
            t = groups.setdefault((letter, key_text(key)), Touch(letter, key, []))
            before = e.change.before
            if e.change.op == Op.UPDATE and before is not None:
                old = {k: before.get(k) for k in self.m.side(letter).key}
                if key_text(old) != key_text(key):
                    # the row moved here from `old`: what was said about it there is its
                    # history too, so a chain of key changes (1 -> 2 -> 3) stays one record
                    moved = groups.pop((letter, key_text(old)), None)
                    if moved is not None:
                        t.entries[:0] = moved.entries
                        t.old_key = t.old_key or moved.old_key or old
                    elif t.old_key is None:
                        t.old_key = old
            t.entries.append(e)
        return list(groups.values())

    def _ext_text(self, value: Any) -> str | None:
        return None if value is None else self.m.ext_text(value)

    def _row(self, ctx: ChunkContext, letter: Letter, key: dict[str, Any] | None) -> Any:
        if key is None:
            return None
        return ctx.rows.get(letter, {}).get(key_text(key))

    def _identify(self, t: Touch, ctx: ChunkContext) -> _Record | str | None:
        """The record a touch is about: its link, or a new record. A str: waiting why."""
        m, L = self.m, t.letter
        row = self._row(ctx, L, t.key)
        links = ctx.links_by_key.get(L, {})
        link = links.get(key_text(t.key))
        if link is None and t.old_key is not None:
            link = links.get(key_text(t.old_key))
        if link is not None:
            return _Record(self._link_ident(link), link, [t], {L: t.key}, link.ext_id)
        image = row if row is not None else t.image
        ext_col = m.side(L).ext_column
        ext = image.get(ext_col) if ext_col else None
        if m.mode == "external_id":
            ext_id = self._ext_text(ext)
            if ext_id is None:
                if row is None:
                    return None
                return f"no external id in column {ext_col}"
            self._unique_ext(ctx, L, ext_id)
            link = ctx.links_by_ext.get(ext_id)
            if link is not None:
                self._moved_or_duplicate(ctx, link, t, ext_col, ext)
                return _Record(self._link_ident(link), link, [t], {L: t.key}, ext_id)
            rec = _Record(("x", ext_id), None, [t], {L: t.key}, ext_id)
            self._adopt(ctx, rec, other(L), ext_id)
            return rec
        sor: Letter = m.sor or "a"
        if sor == L:
            rec = _Record(("k", key_text(t.key)), None, [t], {L: t.key})
            self._adopt(ctx, rec, other(L), self._ext_text(m.sor_key_value(t.key)))
            return rec
        if ext is None:
            if row is None:
                return None
            # born on the non-SOR side: the SOR will create it and write its key back
            return _Record(("n", key_text(t.key)), None, [t], {L: t.key})
        sor_key = m.key_from_ext(ext)
        link = ctx.links_by_key.get(sor, {}).get(key_text(sor_key))
        if link is not None:
            self._moved_or_duplicate(ctx, link, t, ext_col, ext)
            return _Record(self._link_ident(link), link, [t], {L: t.key})
        if self._row(ctx, sor, sor_key) is None and row is not None:
            raise RecordError(
                f"{m.side(L).ext_column}={ext!r} points to no row in "
                f"{m.side(sor).endpoint} {m.side(sor).table}"
            )
        rec = _Record(("k", key_text(sor_key)), None, [t], {L: t.key, sor: sor_key}, None, True)
        return rec

    def _claim(self, t: Touch, ctx: ChunkContext) -> tuple[Link, Link] | None:
        """(the link of the touched key, the link of the record the row names) when the
        row at a linked key carries another linked record's identity and nothing says it
        is the row that was there (no before image: a poll, a snapshot, an insert). Such a
        row is the other record's, moved onto a key the linked record no longer holds: it
        was deleted (a key reused between two key-set comparisons) or moved too (keys
        swapped or rotated): `_holder` tells which. Raises when the named record's own row
        still carries the identity: two rows claim one, refused as a duplicate and never
        merged into one record."""
        m, L = self.m, t.letter
        if t.old_key is not None or t.deleted or any(e.change.before for e in t.entries):
            return None
        col = m.side(L).ext_column
        row = self._row(ctx, L, t.key)
        old = ctx.links_by_key.get(L, {}).get(key_text(t.key))
        if col is None or row is None or old is None or row.get(col) is None:
            return None
        sor: Letter = m.sor or "a"
        if m.mode == "external_id":
            named = ctx.links_by_ext.get(m.ext_text(row[col]))
        elif sor != L:
            try:
                sor_key = m.key_from_ext(row[col])
            except RecordError:
                return None  # reported by the planner for the record
            named = ctx.links_by_key.get(sor, {}).get(key_text(sor_key))
        else:
            return None  # the SOR's own rows carry no identity but their key
        if named is None or self._link_ident(named) == self._link_ident(old):
            return None
        there = link_key(named, L)
        if there is not None and key_text(there) != key_text(t.key):
            own = self._row(ctx, L, there)
            if own is not None and same_value(own.get(col), row[col]):
                side = m.side(L)
                raise RecordError(
                    f"duplicate external id {row[col]!r} in {side.endpoint} {side.table}."
                    f"{col}: rows {key_text(there)} and {key_text(t.key)}; each record "
                    "needs its own"
                )
        return old, named

    def _identity(self, link: Link, letter: Letter) -> str | None:
        """The identity text a row of `letter` carries for `link`'s record."""
        m = self.m
        if m.mode == "external_id":
            return link.ext_id
        held_sor = link_key(link, m.sor or "a")
        return None if held_sor is None else m.ext_text(m.sor_key_value(held_sor))

    def _holder(self, t: Touch, old: Link, ctx: ChunkContext) -> str | None:
        """The key text of another row of the touched side that carries `old`'s identity:
        the record that held the touched key moved to that row (keys swapped or rotated),
        it is not gone. None: no such row, the record is gone from that side."""
        m, L = self.m, t.letter
        col = m.side(L).ext_column
        mine = self._identity(old, L)
        if col is None or mine is None:
            return None
        for kt, other_row in ctx.rows.get(L, {}).items():
            value = other_row.get(col)
            if kt != key_text(t.key) and value is not None and m.ext_text(value) == mine:
                return kt
        return None

    def _moved_with(
        self, t: Touch, old: Link, named: Link, holder: str, touched: set[tuple[Letter, str]]
    ) -> None:
        """Keys moved among linked rows (a swap, a rotation) are followed when the row
        that now carries the held record's identity is touched in this chunk too: each
        record is merged at its new key in this batch. Otherwise the held record would
        keep its link on a key another record's row holds, so the row is refused (parked,
        retried) rather than merged into the wrong record."""
        if (t.letter, holder) in touched:
            return
        side = self.m.side(t.letter)
        there = link_key(named, t.letter)
        raise RecordError(
            f"keys swapped in {side.endpoint} {side.table}: the row at {key_text(t.key)} "
            f"carries the identity of the record linked at "
            f"{'no key' if there is None else key_text(there)}, and the row at {holder} "
            f"that of the record linked at {key_text(t.key)}, which has no change to merge "
            "in this batch; neither record is changed until both rows are merged together"
        )

    def _detached(self, link: Link, letter: Letter) -> RecordPlan:
        """`link` freed from its key on `letter`, recorded before the links of the batch
        that move onto the keys: a swap would otherwise ask one key of two links at once
        (the store upserts links that name the same key one by one, in order). Should
        the record's own merge not go through (a stale write), it stays linked without
        that key, and the next run finds its row by the identity it carries."""
        keys: dict[Letter, dict[str, Any] | None] = {"a": link.key_a, "b": link.key_b}
        keys[letter] = None
        why = f"its row on {self.m.side(letter).endpoint} moved to another linked key"
        return RecordPlan(
            f"d{key_text(link_key(link, letter) or {})}",
            (),
            link,
            keys["a"],
            keys["b"],
            link.ext_id,
            link.shadow,
            detail={"why": why},
        )

    def _left(self, plan: Plan, rec: _Record, moved: Touch, ctx: ChunkContext) -> None:
        """The linked record whose key now holds another record's row (`moved`): gone from
        that side, merged as a delete found there; `moved`'s entries go back to pending,
        for the record they are about."""
        L = moved.letter
        rec.keys[L] = link_key(rec.link, L) if rec.link is not None else None
        ids = {e.id for e in moved.entries}
        start = len(plan.records)
        self._merge(plan, rec, ctx, gone=L)
        why = f"its key on {self.m.side(L).endpoint} now holds another record's row"
        for i in range(start, len(plan.records)):
            r = plan.records[i]
            kept = tuple(x for x in r.entry_ids if x not in ids)
            plan.records[i] = replace(r, entry_ids=kept, detail={**r.detail, "why": why})
        plan.release.extend(sorted(ids))

    def _link_ident(self, link: Link) -> tuple[str, ...]:
        return (
            "l",
            "" if link.key_a is None else key_text(link.key_a),
            "" if link.key_b is None else key_text(link.key_b),
            link.ext_id or "",
        )

    def _unique_ext(self, ctx: ChunkContext, letter: Letter, ext_id: str) -> None:
        rows = ctx.rows_by_ext.get(letter, {}).get(ext_id, [])
        if len(rows) > 1:
            side = self.m.side(letter)
            keys = ", ".join(key_text(self.m.key_of(letter, r)) for r in rows)
            raise RecordError(
                f"duplicate external id {ext_id!r} in {side.endpoint} {side.table}."
                f"{side.ext_column}: rows {keys}; each record needs its own"
            )

    def _moved_or_duplicate(
        self, ctx: ChunkContext, link: Link, t: Touch, ext_col: str | None, ext: Any
    ) -> None:
        """The link of this identity points at another row on the same side: either that
        row's key changed (it is gone, or no longer carries the id) or two rows claim one
        identity — the latter is refused, never merged into one record."""
        held = link_key(link, t.letter)
        if held is None or key_text(held) == key_text(t.key):
            return
        if self._row(ctx, t.letter, t.key) is None:
            return  # the touched row is gone (a delete seen after its record moved on)
        old_row = self._row(ctx, t.letter, held)
        if old_row is None or ext_col is None:
            return
        if same_value(old_row.get(ext_col), ext):
            side = self.m.side(t.letter)
            raise RecordError(
                f"duplicate external id {ext!r} in {side.endpoint} {side.table}.{ext_col}: "
                f"rows {key_text(held)} and {key_text(t.key)}; each record needs its own"
            )

    def _adopt(self, ctx: ChunkContext, rec: _Record, letter: Letter, ext_id: str | None) -> None:
        """A new record: a row on the other side may already carry its identity."""
        if ext_id is None:
            return
        rows = ctx.rows_by_ext.get(letter, {}).get(ext_id, [])
        if len(rows) > 1:
            self._unique_ext(ctx, letter, ext_id)
        if rows:
            rec.keys[letter] = self.m.key_of(letter, rows[0])
            rec.adopted = True

    def _current_keys(self, rec: _Record, ctx: ChunkContext) -> None:
        """Each side's key now: a touched row that exists, else the paired row found by
        its identity, else the link's key (the row may be gone)."""
        for L in ("a", "b"):
            present = [t.key for t in rec.touches if t.letter == L and self._row(ctx, L, t.key)]
            if present:
                rec.keys[L] = present[-1]
                continue
            if self._row(ctx, L, rec.keys.get(L)) is not None:
                continue
            if rec.link is not None and link_key(rec.link, L) is not None:
                rec.keys[L] = link_key(rec.link, L)
            else:
                rec.keys.setdefault(L, None)

    # -- the merge -----------------------------------------------------------------------------
    def _clock(self, rec: _Record, letter: Letter, row: dict[str, Any] | None) -> Clock:
        col = (self.m.clock or {}).get(letter)
        if col and row is not None and isinstance(row.get(col), datetime):
            info = self.m.side(letter).info.column(col)
            digits = info.precision if info is not None and info.precision is not None else 6
            return Clock(row[col], timedelta(microseconds=10 ** (6 - min(max(digits, 0), 6))))
        changes = [e.change for t in rec.touches if t.letter == letter for e in t.entries]
        timed = [c for c in changes if c.commit_ts is not None]
        if not timed:
            return Clock(None)
        last = max(timed, key=lambda c: c.commit_ts)  # type: ignore[arg-type,return-value]
        return Clock.of_position(last.commit_ts, last.position)

    def _merge(
        self, plan: Plan, rec: _Record, ctx: ChunkContext, gone: Letter | None = None
    ) -> None:
        """`gone`: the record is known to be gone from that side (its key holds another
        record's row now), as if its delete there had been captured."""
        m = self.m
        rows: dict[Letter, dict[str, Any] | None] = {
            "a": self._row(ctx, "a", rec.keys.get("a")),
            "b": self._row(ctx, "b", rec.keys.get("b")),
        }
        if gone is not None:
            rows[gone] = None
        ref = f"r{min(rec.entry_ids)}"
        shadow = rec.link.shadow if rec.link is not None else None
        linked = rec.link is not None
        a, b = rows["a"], rows["b"]
        if a is None and b is None:
            if linked:
                plan.records.append(self._drop(rec, ref, "deleted on both sides"))
            else:
                self._settle(plan, rec.touches, "skipped", {"reason": "gone on both sides"})
                plan.skipped += 1
            return
        if a is not None and b is not None:
            declined = None
            chosen = self._record_resolution(rec, ctx)
            if chosen is not None:
                declined = self._delete_both(plan, rec, ref, rows, chosen)
                if declined is None:
                    return
            self._merge_both(plan, rec, ref, a, b, shadow, ctx)
            if declined is not None:  # the merge goes on; the conflict says why
                last = plan.records[-1]
                plan.records[-1] = replace(last, conflicts=(*last.conflicts, declined))
            return
        present: Letter = "a" if a is not None else "b"
        known_gone = gone is not None
        gone = other(present)
        row = rows[present]
        assert row is not None
        if not linked or link_key(rec.link, gone) is None:  # type: ignore[arg-type]
            if rec.adopted and rec.keys.get(gone) is not None:
                if any(t.deleted for t in rec.touches if t.letter == gone):
                    # deleted where it changed; the row found by its identity (one a run
                    # wrote before a crash kept it from linking them) goes with it, as a
                    # linked one would: waiting for it to come back would wait forever
                    key = rec.keys[present]
                    assert key is not None
                    w = Write.delete(ref, present, key, tracked_of(m, present, row))
                    decision = {"decision": f"deleted on {m.side(gone).endpoint}"}
                    plan.records.append(
                        self._for(rec, ref, None, writes=(w,), drop_link=True, detail=decision)
                    )
                    return
                # the row that carries the identity vanished meanwhile: look again next run
                self._defer(plan, rec, "the paired row is gone")
                return
            plan.records.append(self._create(rec, ref, present, row, shadow))
            return
        # linked, and gone on one side: a delete, unless nothing says so yet
        gone_touches = [t for t in rec.touches if t.letter == gone]
        # a full run's snapshot is the evidence, unless this run's snapshot saw the row: it
        # vanished since (its key changed, or a delete landed after capture), and the next
        # run captures which; believing it now would delete the other side's row for good
        snapshot_saw = any(e.change.op == Op.SNAPSHOT for t in gone_touches for e in t.entries)
        snapshot_says = ctx.full and not snapshot_saw
        evidence = snapshot_says or known_gone or any(t.deleted for t in gone_touches)
        tries = min((e.attempts for t in rec.touches for e in t.entries), default=0)
        if not evidence and tries < ABSENCE_TRIES:
            self._defer(plan, rec, f"{m.side(gone).endpoint} row missing without a delete")
            return
        base = (shadow or {}).get(present)
        changed = base is None or not all(
            c in base and same_value(row.get(c), base[c])
            for c in (p[0] if present == "a" else p[1] for p in m.merge_fields())
        )
        if not changed:
            key = rec.keys[present]
            assert key is not None
            seen = tracked_of(m, present, row)
            w = Write.delete(ref, present, key, seen)
            plan.records.append(
                self._for(
                    rec,
                    ref,
                    None,
                    writes=(w,),
                    drop_link=True,
                    detail={"decision": f"deleted on {m.side(gone).endpoint}"},
                )
            )
            return
        # update vs delete: a conflict with a declared outcome
        keep = self.rules.on_delete == "keep"
        conflict = ConflictRecord(
            m.sync,
            m.entity,
            rec.keys.get("a") if present == "a" else link_key(rec.link, "a"),  # type: ignore[arg-type]
            rec.keys.get("b") if present == "b" else link_key(rec.link, "b"),  # type: ignore[arg-type]
            rec.ext_id,
            RECORD_FIELD,
            (shadow or {}).get("a"),
            (shadow or {}).get("b"),
            tracked_of(m, "a", row) if present == "a" else None,
            tracked_of(m, "b", row) if present == "b" else None,
            self._clock(rec, "a", rows["a"]).at,
            self._clock(rec, "b", rows["b"]).at,
            f"on_delete:{self.rules.on_delete}",
            present if keep else gone,
            None,
            entry_ids=rec.entry_ids,
            note=f"updated on {m.side(present).endpoint}, deleted on {m.side(gone).endpoint}",
        )
        plan.conflicts += 1
        if keep:
            created = self._create(rec, ref, present, row, None, recreate=True)
            plan.records.append(replace(created, conflicts=(conflict,), status="conflict"))
            return
        key = rec.keys[present]
        assert key is not None
        w = Write.delete(ref, present, key, tracked_of(m, present, row))
        plan.records.append(
            self._for(
                rec,
                ref,
                None,
                writes=(w,),
                conflicts=(conflict,),
                drop_link=True,
                status="conflict",
                detail={"decision": "the delete wins (on_delete: delete)"},
            )
        )

    def _record_resolution(self, rec: _Record, ctx: ChunkContext) -> ConflictRecord | None:
        """An update-vs-delete conflict a person resolved for the delete (`syncswim
        conflicts resolve ID --take <the deleting side>`): the record goes on both sides."""
        for c in ctx.conflicts:
            if c.field == RECORD_FIELD and c.status == "resolved" and self._same_record(c, rec):
                return c
        return None

    def _delete_both(
        self,
        plan: Plan,
        rec: _Record,
        ref: str,
        rows: dict[Letter, dict[str, Any] | None],
        c: ConflictRecord,
    ) -> ConflictRecord | None:
        """Delete the record on both sides, compare-and-set, if the row that survived the
        conflict still holds what the conflict recorded (None: planned). Else the declined
        conflict (back to `decided`, the record kept, with the reason) for the merge to
        carry."""
        kept: Letter = "a" if c.value_a is not None else "b"
        recorded: dict[str, Any] = (c.value_a if kept == "a" else c.value_b) or {}
        row = rows[kept]
        assert row is not None
        # the record's data; not the SOR key the sync itself writes back when it recreates
        mine = (p[0] if kept == "a" else p[1] for p in self.m.merge_fields())
        changed = [k for k in mine if k in recorded and not same_value(row.get(k), recorded[k])]
        if changed:
            # the delete a person chose would lose an edit made since: kept, and said so
            note = (
                f"the delete chosen with `syncswim conflicts resolve` was not applied: the "
                f"row on {self.m.side(kept).endpoint} changed since the conflict "
                f"({', '.join(changed)}); delete the row itself to delete the record"
            )
            return replace(c, status="decided", outcome=kept, note=note)
        writes = []
        both: tuple[Letter, Letter] = ("a", "b")
        for L in both:
            target, key = rows[L], rec.keys.get(L)
            assert target is not None and key is not None
            writes.append(Write.delete(ref, L, key, tracked_of(self.m, L, target)))
        plan.records.append(
            self._for(
                rec,
                ref,
                None,
                writes=tuple(writes),
                conflicts=(replace(c, status="applied"),),
                drop_link=True,
                detail={"decision": f"deleted on both sides (conflict {c.id} resolved)"},
            )
        )
        return None

    def _for(
        self,
        rec: _Record,
        ref: str,
        shadow: dict[str, Any] | None,
        ext_id: str | Literal[False] | None = False,
        **decided: Any,
    ) -> RecordPlan:
        """The plan of a record that keeps its keys (False: its external id too)."""
        return RecordPlan(
            ref,
            rec.entry_ids,
            rec.link,
            rec.keys.get("a"),
            rec.keys.get("b"),
            rec.ext_id if ext_id is False else ext_id,
            shadow,
            **decided,
        )

    def _drop(self, rec: _Record, ref: str, why: str) -> RecordPlan:
        return self._for(
            rec,
            ref,
            None,
            drop_link=True,
            status="skipped",
            detail={"reason": why},
        )

    def _defer(self, plan: Plan, rec: _Record, why: str) -> None:
        plan.release.extend(rec.entry_ids)
        plan.deferred += 1

    def _create(
        self,
        rec: _Record,
        ref: str,
        source: Letter,
        row: dict[str, Any],
        shadow: dict[str, Any] | None,
        recreate: bool = False,
    ) -> RecordPlan:
        """The record exists on `source` only: create it on the other side."""
        m = self.m
        target = other(source)
        values: dict[str, Any] = {}
        held: list[tuple[str, str]] = []
        for pair in m.fields:
            col_src = pair[0] if source == "a" else pair[1]
            col_dst = pair[1] if source == "a" else pair[0]
            try:
                values[col_dst] = self._conv(source, pair, row.get(col_src))
            except ParentMissing as exc:
                if not self._may_break(exc, rec, source):
                    raise
                values[col_dst] = None
                held.append((col_src, col_dst))
        dst = m.side(target)
        ext_id = rec.ext_id
        if dst.ext_column:
            if m.mode == "external_id":
                ext = m.ext_value(source, row)
                values[dst.ext_column] = self._coerce_ext(ext, target)
                ext_id = self._ext_text(ext)
            elif m.sor == source:
                key = rec.keys[source]
                assert key is not None
                values[dst.ext_column] = self._coerce_ext(m.sor_key_value(key), target)
        keys: dict[str, Any] = {source: rec.keys[source], target: None}
        new_shadow: dict[str, Any] = {
            source: tracked_of(m, source, row),
            target: self._tracked_values(target, values),
        }
        for col_src, _ in held:
            # no agreed value yet: the next pass sees the source's reference as a change
            new_shadow[source].pop(col_src, None)
        return RecordPlan(
            ref,
            rec.entry_ids,
            rec.link,
            keys.get("a"),
            keys.get("b"),
            ext_id,
            new_shadow,
            (Write.insert(ref, target, values),),
            write_back=m.sor == target,
            hold=bool(held),
            detail={
                "decision": ("recreated on " if recreate else "created on ") + dst.endpoint,
                **({"held": [c for c, _ in held]} if held else {}),
            },
        )

    def _tracked_values(self, letter: Letter, values: dict[str, Any]) -> dict[str, Any]:
        return {c: values.get(c) for c in self.m.side(letter).tracked()}

    def _coerce_ext(self, value: Any, letter: Letter) -> Any:
        side = self.m.side(letter)
        assert side.ext_column is not None
        try:
            return coerce(value, side.col(side.ext_column))
        except ValueError as exc:
            raise RecordError(str(exc)) from exc

    def _conv(self, source: Letter, pair: FieldPair, value: Any) -> Any:
        """One field's value from `source` as the other side stores it; a reference is
        translated into the other side's id of the same parent."""
        ref = self.m.reference(pair[0])
        if ref is None:
            return self.m.convert(source, pair, value)
        return self._translate(ref, source, value)

    def _translate(self, ref: RefView, source: Letter, value: Any) -> Any:
        if value is None:
            return None
        target = other(source)
        src_key = ref.parent_key(source)
        try:
            parent_value = coerce(value, src_key)
        except (ValueError, TypeError) as exc:
            raise RecordError(
                f"field {ref.column(source)}: {value!r} is not a key of {ref.parent}: {exc}"
            ) from exc
        key = {src_key.name: parent_value}
        kt = key_text(key)
        link = self._ctx.parent_links.get((ref.parent, source), {}).get(kt)
        linked = None if link is None else link_key(link, target)
        if linked is None:
            present = self._ctx.parent_present.get((ref.parent, source), frozenset())
            raise ParentMissing(ref, source, key, kt in present, self.m.side(source).endpoint)
        dst = self.m.side(target).col(ref.column(target))
        try:
            return coerce(linked[ref.parent_key(target).name], dst)
        except (ValueError, TypeError, KeyError) as exc:
            raise RecordError(
                f"field {ref.column(source)} -> {self.m.side(target).endpoint}.{dst.name}: "
                f"{ref.parent} key {linked!r} does not fit: {exc}"
            ) from exc

    def _may_break(self, exc: ParentMissing, rec: _Record, source: Letter) -> bool:
        """Whether a reference of a new record may be left empty for now: its parent exists
        and waits too, in a circle with this record, and the target column takes NULL."""
        key = rec.keys.get(source)
        if not exc.exists or not exc.ref.forward or key is None:
            return False
        if (self.m.entity, source, key_text(key)) not in self._break:
            return False
        dst = self.m.side(other(source)).info.column(exc.ref.column(other(source)))
        return dst is not None and dst.nullable

    def _agreed(self, pair: FieldPair, va: Any, vb: Any) -> bool:
        """Both sides hold the same value, seen from either side (a lossy mapping rounds
        one way only)."""
        return self._agreement(pair, va, vb)[0]

    def _agreement(self, pair: FieldPair, va: Any, vb: Any) -> tuple[bool, Any, Any]:
        """`_agreed`, with a's value as b stores it and b's as a stores it (UNSET where
        not converted, or not convertible): the flow that follows writes one of them."""
        a_as_b: Any = UNSET
        b_as_a: Any = UNSET
        try:
            a_as_b = self._conv("a", pair, va)
            if same_value(a_as_b, vb):
                return True, a_as_b, b_as_a
        except RecordError:
            pass
        try:
            b_as_a = self._conv("b", pair, vb)
            return same_value(b_as_a, va), a_as_b, b_as_a
        except RecordError:
            return False, a_as_b, b_as_a

    def _merge_both(
        self,
        plan: Plan,
        rec: _Record,
        ref: str,
        a: dict[str, Any],
        b: dict[str, Any],
        shadow: dict[str, Any] | None,
        ctx: ChunkContext,
    ) -> None:
        m = self.m
        base_a = (shadow or {}).get("a") or {}
        base_b = (shadow or {}).get("b") or {}
        out: dict[Letter, dict[str, Any]] = {"a": {}, "b": {}}
        agreed: dict[Letter, dict[str, Any]] = {"a": dict(base_a), "b": dict(base_b)}
        conflicts: list[ConflictRecord] = []
        lost: set[Letter] = set()
        open_fields = {
            c.field: c
            for c in ctx.conflicts
            if self._same_record(c, rec) and c.status in ("open", "resolved")
        }
        sor = m.sor
        clocks = {"a": self._clock(rec, "a", a), "b": self._clock(rec, "b", b)}
        for pair in m.merge_fields():
            ca, cb = pair[0], pair[1]
            va, vb = a.get(ca), b.get(cb)
            # a side without an agreed value counts as changed (a new field; a reference
            # held back in a cycle, whose target side holds the NULL it was written with)
            a_changed = ca not in base_a or not same_value(va, base_a[ca])
            b_changed = cb not in base_b or not same_value(vb, base_b[cb])
            pending = open_fields.get(ca)
            if pending is not None and pending.status == "resolved":
                value_a, value_b = self._resolution(pending, pair)
                if not same_value(va, value_a):
                    out["a"][ca] = value_a
                if not same_value(vb, value_b):
                    out["b"][cb] = value_b
                agreed["a"][ca], agreed["b"][cb] = value_a, value_b
                conflicts.append(replace(pending, status="applied"))
                continue
            if not a_changed and not b_changed:
                continue
            same, a_as_b, b_as_a = self._agreement(pair, va, vb)
            if same:
                agreed["a"][ca], agreed["b"][cb] = va, vb
                if pending is not None:  # the sides agree now: nothing waits any more
                    conflicts.append(replace(pending, status="applied", note="sides agreed"))
                continue
            flow: Letter | None
            if ca not in base_a and cb in base_b and not b_changed:
                flow = "a"  # a held reference (or a new field) set on one side only
            elif cb not in base_b and ca in base_a and not a_changed:
                flow = "b"
            elif sor is not None and self.rules.owns_all:
                flow = sor
            elif a_changed and not b_changed:
                flow = "a"
            elif b_changed and not a_changed:
                flow = "b"
            else:
                flow = None
            if flow is not None:
                self._flow(out, agreed, pair, flow, va, vb, a_as_b if flow == "a" else b_as_a)
                continue
            if pending is not None:
                continue  # parked for a person: the field stays as each side has it
            rule = self.rules.rule_for(ca)
            if b_as_a is UNSET:
                b_as_a = self._conv("b", pair, vb)
            fc = FieldConflict(ca, va, b_as_a, base_a.get(ca), clocks["a"], clocks["b"])
            decision = decide(rule, fc, self.rules.tie_break)
            conflicts.append(self._conflict(rec, fc, va, vb, base_b.get(cb), decision))
            plan.conflicts += 1
            if decision.outcome == "manual":
                continue
            if decision.outcome in ("a", "b"):
                winner: Letter = decision.outcome
                lost.add(other(winner))
                converted = a_as_b if winner == "a" else b_as_a
                self._flow(out, agreed, pair, winner, va, vb, converted)
                continue
            value_a = self._coerce_a(pair, decision.value)
            value_b = self._conv("a", pair, value_a)
            if not same_value(va, value_a):
                out["a"][ca] = value_a
                lost.add("a")
            if not same_value(vb, value_b):
                out["b"][cb] = value_b
                lost.add("b")
            agreed["a"][ca], agreed["b"][cb] = value_a, value_b
        # SOR mode: the other side's external-id column always holds the SOR key
        if sor is not None:
            non: Letter = other(sor)
            col = m.side(non).ext_column
            sor_key = rec.keys.get(sor)
            if col and sor_key is not None:
                want = self._coerce_ext(m.sor_key_value(sor_key), non)
                if not same_value(b.get(col) if non == "b" else a.get(col), want):
                    out[non][col] = want
                agreed[non][col] = want
        ext_id = rec.ext_id
        if m.mode == "external_id" and m.a.ext_column:
            merged = agreed["a"].get(m.a.ext_column, a.get(m.a.ext_column))
            ext_id = self._ext_text(merged)
        new_shadow = {
            "a": {c: (out["a"][c] if c in out["a"] else a.get(c)) for c in m.a.tracked()},
            "b": {c: (out["b"][c] if c in out["b"] else b.get(c)) for c in m.b.tracked()},
        }
        for c in open_fields.values():
            if c.status == "open" and all(x.field != c.field for x in conflicts):
                # keep the base of a parked field so it stays "changed on both sides"
                self._keep_base(new_shadow, c.field, base_a, base_b)
        for c in conflicts:
            if c.status == "open":
                self._keep_base(new_shadow, c.field, base_a, base_b)
        writes = []
        for letter, row in (("a", a), ("b", b)):
            L: Letter = letter  # type: ignore[assignment]
            if out[L]:
                key = rec.keys[L]
                assert key is not None
                writes.append(Write.update(ref, L, key, out[L], tracked_of(m, L, row)))
        status: Status = "applied" if writes else "skipped"
        detail: dict[str, Any] = {}
        if conflicts:
            status = "conflict" if any(c.status == "decided" for c in conflicts) else status
            detail["conflicts"] = [
                {"field": c.field, "rule": c.rule, "outcome": c.outcome, "tie": c.tie}
                for c in conflicts
            ]
            if lost:
                detail["lost"] = sorted(m.side(x).endpoint for x in lost)
        if not writes and not conflicts:
            detail["reason"] = "already in step with the other side"
            plan.skipped += 1
        plan.records.append(
            self._for(
                rec,
                ref,
                new_shadow,
                ext_id=ext_id,
                writes=tuple(writes),
                conflicts=tuple(conflicts),
                status=status,
                detail=detail,
            )
        )

    def _keep_base(
        self, shadow: dict[str, Any], field_a: str, base_a: dict[str, Any], base_b: dict[str, Any]
    ) -> None:
        pair = next((p for p in self.m.merge_fields() if p[0] == field_a), None)
        if pair is None:
            return
        for letter, col, base in (("a", pair[0], base_a), ("b", pair[1], base_b)):
            if col in base:
                shadow[letter][col] = base[col]
            else:
                shadow[letter].pop(col, None)

    def _flow(
        self,
        out: dict[Letter, dict[str, Any]],
        agreed: dict[Letter, dict[str, Any]],
        pair: FieldPair,
        source: Letter,
        va: Any,
        vb: Any,
        converted: Any = None,
    ) -> None:
        """`converted`: the source's value as the target stores it, when already made
        (UNSET or None: made here; a conversion that failed fails again here)."""
        target = other(source)
        src_value = va if source == "a" else vb
        dst_value = vb if source == "a" else va
        if converted is None or converted is UNSET:
            converted = self._conv(source, pair, src_value)
        dst_col = pair[1] if source == "a" else pair[0]
        src_col = pair[0] if source == "a" else pair[1]
        if not same_value(converted, dst_value):
            out[target][dst_col] = converted
        agreed[source][src_col] = src_value
        agreed[target][dst_col] = converted

    def _coerce_a(self, pair: FieldPair, value: Any) -> Any:
        try:
            return coerce(value, self.m.a.col(pair[0]))
        except (ValueError, TypeError) as exc:
            raise RecordError(
                f"field {pair[0]}: the conflict rule's value {value!r} does not fit: {exc}"
            ) from exc

    def _resolution(self, c: ConflictRecord, pair: FieldPair) -> tuple[Any, Any]:
        """A person's decision as each side stores it."""
        if c.outcome == "b":
            value_b = coerce(c.value, self.m.b.col(pair[1]))
            return self._conv("b", pair, value_b), value_b
        value_a = self._coerce_a(pair, c.value)
        return value_a, self._conv("a", pair, value_a)

    def _same_record(self, c: ConflictRecord, rec: _Record) -> bool:
        if rec.link is None:
            return False
        if c.ext_id is not None and c.ext_id == rec.link.ext_id:
            return True
        for letter in ("a", "b"):
            mine = link_key(rec.link, letter)
            theirs = c.key_a if letter == "a" else c.key_b
            if mine is not None and theirs is not None and key_text(mine) == key_text(theirs):
                return True
        return False

    def _conflict(
        self,
        rec: _Record,
        fc: FieldConflict,
        va: Any,
        vb: Any,
        base_b: Any,
        d: Decision,
    ) -> ConflictRecord:
        m = self.m
        rule = d.rule
        if rule in ("prefer:a", "prefer:b"):
            rule = f"prefer:{m.side('a' if rule.endswith('a') else 'b').endpoint}"
        return ConflictRecord(
            m.sync,
            m.entity,
            rec.keys.get("a"),
            rec.keys.get("b"),
            rec.ext_id,
            fc.field,
            fc.base,
            base_b,
            va,
            vb,
            fc.clock_a.at,
            fc.clock_b.at,
            rule,
            d.outcome,
            d.value,
            d.tie,
            "open" if d.outcome == "manual" else "decided",
            entry_ids=rec.entry_ids,
        )

    def _settle(
        self, plan: Plan, touches: Sequence[Touch], status: Status, detail: dict[str, Any]
    ) -> None:
        for t in touches:
            for e in t.entries:
                plan.updates.append(EntryUpdate(e.id, status, detail))


def plan_chunk(emap: EntityMap, entries: Sequence[JournalEntry], ctx: ChunkContext) -> Plan:
    return Planner(emap).plan(entries, ctx)


__all__ = [
    "ChunkContext",
    "Node",
    "ParentMissing",
    "Plan",
    "Planner",
    "RecordPlan",
    "Write",
    "plan_chunk",
]
