"""The comparison behind `syncswim verify`: both sides of one entity, record by record.

Read only, from the pieces a `full` run decides with (`seed.Reconciler`): the keys and
identities of every row of both sides, the entity's links, the rows fetched by key, and the
planner's own test of whether two values agree under the mapping (`Planner._agreed`: the
value converted from either side, so a lossy mapping the sync calls equal is equal here).
Nothing is captured, journaled or written, in the databases or in the state; the journal
is only read, to say which differences a change already captured explains.

What is found, per record:

- `fields`: a linked pair (or a pair the sync would match by identity or `match_on`)
  whose mapped fields differ, each field with both sides' values;
- `only`: a row on one side with no link and nothing on the other side that matches it;
- `gone`: a link whose row is gone on one side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from syncswim_lib.connectors.base import Connector
from syncswim_lib.errors import ConfigError
from syncswim_lib.pipeline.context import _parents
from syncswim_lib.pipeline.mapping import EntityMap, Letter, other
from syncswim_lib.pipeline.plan import ChunkContext, Planner
from syncswim_lib.pipeline.seed import LETTERS, PAIR_CHUNK, Reconciler, _flat
from syncswim_lib.state.base import JournalEntry, StateStore
from syncswim_lib.values import codec
from syncswim_lib.values.codec import key_text

Kind = Literal["fields", "only", "gone"]
# journal statuses of changes captured and not applied yet; only `pending` ones are applied
# by the next run as they are (the others wait for a parent, a retry or a person)
UNSETTLED: tuple[str, ...] = ("pending", "waiting", "failed", "parked")
JOURNAL_PAGE = 10_000


@dataclass(frozen=True)
class FieldDiff:
    """One mapped field whose two values do not agree, each in its side's stored form."""

    column_a: str
    column_b: str
    value_a: Any
    value_b: Any


@dataclass(frozen=True)
class Difference:
    kind: Kind
    key_a: dict[str, Any] | None  # None: no row on side a (`only` on b, `gone` from a)
    key_b: dict[str, Any] | None
    # `only`: the side the row is on; `gone`: the side whose row is gone; `fields`: None
    side: Letter | None = None
    fields: tuple[FieldDiff, ...] = ()
    linked: bool = True  # `fields`: False for a pair matched but not linked yet
    journal: tuple[tuple[str, int], ...] = ()  # (status, count) of the record's changes
    conflicts: tuple[int, ...] = ()  # ids of the record's open or resolved conflicts

    @property
    def in_flight(self) -> bool:
        """Explained by changes already captured that the next run applies as they are."""
        return any(status == "pending" for status, _ in self.journal)


@dataclass(frozen=True)
class Verdict:
    """One entity compared: the first `limit` differences and how many there were."""

    sync: str
    entity: str
    endpoints: tuple[str, str]  # side a's, side b's
    rows: tuple[int, int]  # rows read on a, on b
    shown: tuple[Difference, ...]
    total: int  # differences found, shown or not
    in_flight: int  # of those, explained by pending changes
    matched_unlinked: int = 0  # pairs that agree but are not linked yet (a full run links them)
    journal: tuple[tuple[str, int], ...] = ()  # the entity's unsettled entries by status
    notes: tuple[str, ...] = ()

    @property
    def drift(self) -> int:
        return self.total - self.in_flight


@dataclass
class _Journal:
    """What the journal holds about each record: by (letter, key text)."""

    statuses: dict[tuple[Letter, str], dict[str, int]] = field(default_factory=dict)
    conflicts: dict[tuple[Letter, str], list[int]] = field(default_factory=dict)

    def about(self, d: Difference) -> Difference:
        counts: dict[str, int] = {}
        ids: list[int] = []
        sides: tuple[tuple[Letter, dict[str, Any] | None], ...] = (("a", d.key_a), ("b", d.key_b))
        for letter, key in sides:
            if key is None:
                continue
            at = (letter, key_text(key))
            for status, n in self.statuses.get(at, {}).items():
                counts[status] = counts.get(status, 0) + n
            ids.extend(i for i in self.conflicts.get(at, []) if i not in ids)
        journal = tuple((s, counts[s]) for s in UNSETTLED if s in counts)
        return replace(d, journal=journal, conflicts=tuple(sorted(ids)))


class Comparer:
    """Compare one entity's two sides (see the module's docstring)."""

    def __init__(
        self,
        emap: EntityMap,
        store: StateStore,
        connectors: dict[Letter, Connector],
        limit: int,
        chunk_size: int = 1000,
    ) -> None:
        self.m = emap
        self.store = store
        self.connectors = connectors
        self.limit = limit
        # a dry-run reconciler: its readers only (it writes nothing unless run, and a dry
        # run's never journals either)
        self.rec = Reconciler(emap, store, connectors, chunk_size, dry_run=True)
        self.planner = Planner(emap)
        self.journal = _Journal()
        self.shown: list[Difference] = []
        self.total = 0
        self.in_flight = 0
        self.matched_unlinked = 0
        self.notes: list[str] = []

    def run(self) -> Verdict:
        m = self.m
        # the journal before the rows: a change pending now and applied before its rows are
        # read shows as in step; read after, it could have been applied meanwhile and its
        # difference, seen before, would look unexplained
        self.journal = self._read_journal()
        ids = {x: self.rec._read_ids(x) for x in LETTERS}
        links = self.rec._links()
        pairs: pa.Table | None = None
        unlinked: dict[Letter, list[tuple[str, str | None]]] = {}
        for letter in LETTERS:
            there = other(letter)
            mine = ids[letter]
            # the same plain kernels as `Reconciler.decide` (see there why not joins)
            at = pc.index_in(mine["k"], value_set=_flat(links[letter]))
            joined = mine.append_column("partner", links[there].take(at)).append_column(
                "l", links["l"].take(at)
            )
            is_linked = pc.fill_null(joined["l"], False)
            linked = joined.filter(is_linked)
            present = pc.fill_null(
                pc.is_in(linked["partner"], value_set=_flat(ids[there]["k"])), False
            )
            if letter == "a":
                pairs = linked.filter(present).select(["k", "partner"])
            lost = linked.filter(pc.invert(present))
            for kt, partner in zip(lost["k"].to_pylist(), lost["partner"].to_pylist(), strict=True):
                self._gone(letter, kt, partner)
            free = joined.filter(pc.invert(is_linked))
            unlinked[letter] = list(zip(free["k"].to_pylist(), free["i"].to_pylist(), strict=True))
        matched = self._match(unlinked)
        if pairs is not None:
            for start in range(0, pairs.num_rows, PAIR_CHUNK):
                part = pairs.slice(start, PAIR_CHUNK)
                chunk = list(zip(part["k"].to_pylist(), part["partner"].to_pylist(), strict=True))
                self._compare(chunk, linked=True)
        for start in range(0, len(matched), PAIR_CHUNK):
            self._compare(matched[start : start + PAIR_CHUNK], linked=False)
        counts = self.store.status_counts(m.sync, m.entity)
        return Verdict(
            sync=m.sync,
            entity=m.entity,
            endpoints=(m.a.endpoint, m.b.endpoint),
            rows=(ids["a"].num_rows, ids["b"].num_rows),
            shown=tuple(self.shown),
            total=self.total,
            in_flight=self.in_flight,
            matched_unlinked=self.matched_unlinked,
            journal=tuple((s, counts[s]) for s in UNSETTLED if counts.get(s)),
            notes=tuple(self.notes),
        )

    # -- the journal ---------------------------------------------------------------------
    def _read_journal(self) -> _Journal:
        m = self.m
        out = _Journal()
        letter_of: dict[str, Letter] = {m.a.endpoint: "a", m.b.endpoint: "b"}

        def note(e: JournalEntry) -> None:
            # the sync's own writes, captured back, explain nothing (the planner skips them)
            if e.side not in letter_of or e.change.origin == m.sync:
                return
            letter = letter_of[e.side]
            keys = [e.change.key]
            if e.change.before:  # a key-changing update names the old key too
                keys.append(m.key_of(letter, e.change.before))
            for kt in {key_text(k) for k in keys}:
                counts = out.statuses.setdefault((letter, kt), {})
                counts[e.status] = counts.get(e.status, 0) + 1

        after = 0
        while True:  # pending and waiting entries, oldest first, a page at a time
            page = self.store.pending(m.sync, m.entity, JOURNAL_PAGE, after)
            for e in page:
                note(e)
            if len(page) < JOURNAL_PAGE:
                break
            after = page[-1].id
        for status in ("failed", "parked"):
            for e in self.store.entries(
                sync=m.sync, entity=m.entity, status=status, limit=JOURNAL_PAGE
            ):
                note(e)
        for c in self.store.active_conflicts(m.sync, m.entity):
            sides: tuple[tuple[Letter, dict[str, Any] | None], ...] = (
                ("a", c.key_a),
                ("b", c.key_b),
            )
            for letter, key in sides:
                if key is not None and c.id is not None:
                    out.conflicts.setdefault((letter, key_text(key)), []).append(c.id)
        return out

    # -- what is found -------------------------------------------------------------------
    def _add(self, d: Difference) -> None:
        d = self.journal.about(d)
        self.total += 1
        if d.in_flight:
            self.in_flight += 1
        if len(self.shown) < self.limit:
            self.shown.append(d)

    def _keys(self, letter: Letter, kt: str | None, partner: str | None) -> tuple[Any, Any]:
        mine = None if kt is None else codec.loads(kt)
        theirs = None if partner is None else codec.loads(partner)
        return (mine, theirs) if letter == "a" else (theirs, mine)

    def _gone(self, letter: Letter, kt: str, partner: str | None) -> None:
        """`letter`'s row is linked; its partner on the other side is not there."""
        key_a, key_b = self._keys(letter, kt, partner)
        self._add(Difference("gone", key_a, key_b, side=other(letter)))

    def _only(self, letter: Letter, kt: str) -> None:
        key_a, key_b = self._keys(letter, kt, None)
        self._add(Difference("only", key_a, key_b, side=letter))

    def _match(self, unlinked: dict[Letter, list[tuple[str, str | None]]]) -> list[tuple[str, str]]:
        """Unlinked rows the sync would pair (the same identity, or `match_on`); the rest
        are rows with no counterpart."""
        free = {x: dict(unlinked[x]) for x in LETTERS}
        by_ident: dict[str, str] = {}
        for kt, ident in unlinked["b"]:
            if ident is not None:
                by_ident.setdefault(ident, kt)
        matched: list[tuple[str, str]] = []
        for kt, ident in unlinked["a"]:
            kb = by_ident.pop(ident, None) if ident is not None else None
            if kb is not None:
                matched.append((kt, kb))
                del free["a"][kt], free["b"][kb]
        if self.m.match_on and free["a"] and free["b"]:
            try:
                adoption = self.rec._adopter().run(dry_run=True)
            except ConfigError as exc:  # an ambiguous natural key: named, not guessed
                self.notes.append(f"match_on cannot pair rows: {exc}")
            else:
                for ka, kb in adoption.paired:
                    if ka in free["a"] and kb in free["b"]:
                        matched.append((ka, kb))
                        del free["a"][ka], free["b"][kb]
        for letter in LETTERS:
            for kt in free[letter]:
                self._only(letter, kt)
        return matched

    def _compare(self, chunk: Sequence[tuple[str, str]], linked: bool) -> None:
        rows = {
            letter: self.rec._fetch(letter, [p[0 if letter == "a" else 1] for p in chunk])
            for letter in LETTERS
        }
        self.planner._ctx = self._context(rows)
        for ka, kb in chunk:
            row_a, row_b = rows["a"].get(ka), rows["b"].get(kb)
            if row_a is None or row_b is None:
                # deleted since the keys were read
                left: Letter = "a" if row_a is not None else "b"
                kt = ka if left == "a" else kb
                if row_a is None and row_b is None:
                    continue  # gone from both: the two sides agree
                if linked:
                    self._gone(left, kt, kb if left == "a" else ka)
                else:
                    self._only(left, kt)
                continue
            diffs = self._fields(row_a, row_b, ka, kb, linked)
            if diffs:
                key_a, key_b = codec.loads(ka), codec.loads(kb)
                self._add(Difference("fields", key_a, key_b, fields=diffs, linked=linked))
            elif not linked:
                self.matched_unlinked += 1

    def _context(self, rows: dict[Letter, dict[str, dict[str, Any]]]) -> ChunkContext:
        """What the planner's comparison needs: the links of the parents referred to."""
        by_key: dict[str, dict[str, dict[str, Any]]] = {x: rows[x] for x in LETTERS}
        parents: tuple[Any, Any, Any] = ({}, {}, {})
        if self.m.references:
            parents = _parents(self.m, self.store, self.connectors, by_key)
        return ChunkContext(
            links_by_key={"a": {}, "b": {}},
            links_by_ext={},
            rows=by_key,
            rows_by_ext={"a": {}, "b": {}},
            parent_links=parents[0],
            parent_present=parents[1],
            parent_vanished=parents[2],
        )

    def _fields(
        self, row_a: dict[str, Any], row_b: dict[str, Any], ka: str, kb: str, linked: bool
    ) -> tuple[FieldDiff, ...]:
        m = self.m
        out = [
            FieldDiff(pair[0], pair[1], row_a.get(pair[0]), row_b.get(pair[1]))
            for pair in m.merge_fields()
            if not self.planner._agreed(pair, row_a.get(pair[0]), row_b.get(pair[1]))
        ]
        if m.mode == "system_of_record" and linked and m.sor is not None:
            # the non-SOR row's external-id column must name the SOR row it is linked to
            sor, non = m.sor, other(m.sor)
            rows = {"a": row_a, "b": row_b}
            kts = {"a": ka, "b": kb}
            col = m.side(non).ext_column
            if col and self.rec._ident(non, kts[non], rows[non]) != kts[sor]:
                key_col = m.side(sor).key[0]
                names = {sor: key_col, non: col}
                values = {sor: rows[sor].get(key_col), non: rows[non].get(col)}
                out.append(FieldDiff(names["a"], names["b"], values["a"], values["b"]))
        return tuple(out)


def compare_entity(
    emap: EntityMap,
    store: StateStore,
    connectors: dict[Letter, Connector],
    limit: int,
    chunk_size: int = 1000,
) -> Verdict:
    return Comparer(emap, store, connectors, limit, chunk_size).run()
