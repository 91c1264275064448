"""The model of test_relation_properties.py: what a sync of related entities must leave
on both sides (docs/relationships.md, and DESIGN.md "How a merge decides").

A record's values are its data field (`name`, `label`) and, for an entity with a
reference, the *record* its parent is (a record id of the model, or None): a reference is
compared and merged as "which parent", never as a key, so the model needs no translation.
Each side's key of every record is kept beside, to look the rows up.

The merge, per record and field, three-way against the last agreed values: a field
changed on one side takes that value; changed on both, side a's (the test declares
`conflicts: {default: {prefer: app}}`). A record on one side only: new, created on the
other; deleted on the other side, unchanged here: deleted; changed here: kept and created
again there (update vs delete, `on_delete: keep`).

Then the deletes of parents, children first (docs/relationships.md, "Deletes", with the
default `on_delete: propagate`): when a parent's delete is applied to the side that still
has it, every child row there that still refers to it is deleted too (its own children
first) when the child is gone on the deleting side, or was never synced; a child the
deleting side moved to another parent (the only other possibility where foreign keys are
enforced) is merged as usual and the parent's delete waits for it.

A child that the other side moved *to* such a parent is a case the contract does not
decide (see `unclear`): the test keeps it out of the generated steps.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from typing import Any, Literal

Letter = Literal["a", "b"]
Key = int | str  # a database's integer key, an org's Id
LETTERS: tuple[Letter, Letter] = ("a", "b")


def other(letter: Letter) -> Letter:
    return "b" if letter == "a" else "a"


@dataclass(frozen=True)
class Kind:
    """An entity of the model: a table of the same name on both sides."""

    name: str
    data: str  # its data column
    ref: str | None = None  # its reference column (the same name on both sides)
    parent: str | None = None  # the entity that column refers to

    @property
    def fields(self) -> tuple[str, ...]:
        """The model's names of its values: `data`, and `ref` for a reference."""
        return ("data", "ref") if self.ref else ("data",)


PARENTS = Kind("parents", "name")
CHILDREN = Kind("children", "label", "parent_id", "parents")
NODES = Kind("nodes", "label", "up", "nodes")

Values = dict[str, Any]  # {"data": str, "ref": record id | None}


@dataclass
class Record:
    rid: int
    kind: Kind
    rows: dict[Letter, Values | None]  # None: no row on that side
    keys: dict[Letter, Key | None]  # None: not known (yet)
    code: str | None = None  # external-id mode: the shared id, given at birth
    base: Values | None = None  # the last agreed values; None: never synced


class Model:
    def __init__(self, kinds: tuple[Kind, ...]) -> None:
        self.kinds = kinds
        self.records: dict[int, Record] = {}
        self.ids = itertools.count(1)

    def copy(self) -> Model:
        return copy.deepcopy(self)

    # -- edits -------------------------------------------------------------------------------
    def add(self, kind: Kind, letter: Letter, values: Values, key: Key, code: str | None) -> Record:
        rows: dict[Letter, Values | None] = {letter: dict(values), other(letter): None}
        keys: dict[Letter, Key | None] = {letter: key, other(letter): None}
        rec = Record(next(self.ids), kind, rows, keys, code)
        self.records[rec.rid] = rec
        return rec

    def present(self, kind: Kind, letter: Letter) -> list[Record]:
        return [r for r in self.records.values() if r.kind == kind and r.rows[letter]]

    def children_on(self, letter: Letter, parent: Record) -> list[Record]:
        """The records whose row on `letter` refers to `parent` (its rows, as they are)."""
        out = []
        for rec in self.records.values():
            row = rec.rows[letter]
            if rec.kind.parent == parent.kind.name and row is not None and row["ref"] == parent.rid:
                out.append(rec)
        return out

    def descendants_on(self, letter: Letter, rec: Record) -> list[Record]:
        """What an `ON DELETE CASCADE` of `rec` on `letter` removes with it, deepest
        first (a loop of references ends where it comes back)."""
        order: list[Record] = []
        seen = {rec.rid}
        todo = [rec]
        while todo:
            parent = todo.pop(0)
            for child in self.children_on(letter, parent):
                if child.rid not in seen:
                    seen.add(child.rid)
                    order.append(child)
                    todo.append(child)
        return order[::-1]

    # -- the sync ----------------------------------------------------------------------------
    def merged(self, rec: Record) -> Values | None:
        """What a merge of `rec` alone gives; None: the record goes."""
        a, b = rec.rows["a"], rec.rows["b"]
        if a is None and b is None:
            return None
        if a is not None and b is not None:
            assert rec.base is not None, f"record {rec.rid} born on both sides"
            return {
                f: (b[f] if a[f] == rec.base[f] else a[f])  # both changed: a wins
                for f in rec.kind.fields
            }
        row = a if a is not None else b
        assert row is not None
        if rec.base is None or row != rec.base:
            return dict(row)  # new; or update vs delete: the update survives
        return None  # deleted on one side, unchanged on the other

    def outcome(self) -> tuple[dict[int, Values | None], list[str]]:
        """Each record's values after a sync (None: gone), and the cases the contract
        leaves open (`unclear`)."""
        out = {rid: self.merged(rec) for rid, rec in self.records.items()}
        unclear: list[str] = []
        # deletes applied to the side that still has the row: children first
        todo = [r for r in self.records.values() if out[r.rid] is None and self._one_side(r)]
        done: set[int] = set()
        while todo:
            parent = todo.pop(0)
            if parent.rid in done:
                continue
            done.add(parent.rid)
            there: Letter = "a" if parent.rows["a"] is not None else "b"
            gone = other(there)
            for child in self.children_on(there, parent):
                if child.rid == parent.rid:
                    continue  # a row referring to itself goes with itself
                if child.rows[gone] is None:
                    out[child.rid] = None  # on_delete: propagate
                    todo.append(child)
                    continue
                merged = out[child.rid]
                if merged is not None and merged["ref"] == parent.rid:
                    unclear.append(
                        f"{child.kind.name} {child.rid} is moved to {parent.kind.name} "
                        f"{parent.rid} on {there}, which is deleted on {gone}"
                    )
        return out, unclear

    @staticmethod
    def _one_side(rec: Record) -> bool:
        return (rec.rows["a"] is None) != (rec.rows["b"] is None)

    def unclear(self) -> list[str]:
        return self.outcome()[1]

    def sync(self) -> None:
        out, unclear = self.outcome()
        assert not unclear, f"the generated steps reached a case the model leaves open: {unclear}"
        for rid, values in out.items():
            rec = self.records[rid]
            if values is None:
                del self.records[rid]
                continue
            for letter in LETTERS:
                if rec.rows[letter] is None:
                    rec.keys[letter] = None  # created by the sync: learnt from the database
                rec.rows[letter] = dict(values)
            rec.base = dict(values)
