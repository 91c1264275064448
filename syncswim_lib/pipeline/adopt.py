"""Adopting records that already exist on both sides, by a natural key (`match_on:`).

Before a sync, the same customer often lives in both databases with nothing linking the
two rows. A `full` run would then create each on the other side: two rows per customer on
each side. With `match_on: email`, the first step of a `full` run pairs the unlinked rows
of the two sides whose `email` agrees (side a's value as the sync would write it to side
b, after `normalise` on both sides when declared) and writes the identity that links them:

- system-of-record mode: the SOR's key into the other row's external-id column, for rows
  whose external-id column is empty;
- external-id mode: the external id of the row that has one into the row that has none.
  A pair where neither row has an external id cannot be adopted (there is no identity to
  share); a pair whose rows hold two different ids is left alone. Both are counted.

Each write is a compare-and-set (the identity column must still be empty) through the
target's ordinary apply, tagged as our own, so capture does not echo it. The rest of the
`full` run then finds the pairs matched by identity and merges them field by field like
any matched record, so differing values are decided by the entity's conflict rules and the
losing values recorded.

A natural-key value that more than one candidate row holds on a side, while the other side
has it too, is ambiguous: the run stops before writing anything and names the values. A
row with a NULL in a `match_on` field matches nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from syncswim_lib.connectors.base import Connector
from syncswim_lib.errors import ConfigError, RecordError
from syncswim_lib.pipeline.engine import build_batch
from syncswim_lib.pipeline.mapping import EntityMap, Letter, other
from syncswim_lib.pipeline.plan import Write
from syncswim_lib.values import codec
from syncswim_lib.values.codec import key_text
from syncswim_lib.values.coerce import coerce

READ_ROWS = 5000
EXAMPLES = 3  # ambiguous values named in the error


class AmbiguousMatch(ConfigError):
    """`match_on` finds more than one row for a value on a side: nothing is written."""


@dataclass(frozen=True)
class Adoption:
    """What adopting found (and, unless a dry run, wrote)."""

    pairs: int = 0  # records matched by the natural key whose identity was (to be) written
    written: int = 0  # identities written
    refused: int = 0  # writes the target refused or found changed: left to the merge
    no_identity: int = 0  # external-id mode: matched, but neither row has an external id
    different_ids: int = 0  # external-id mode: matched, but the rows hold different ids
    paired: tuple[tuple[str, str], ...] = ()  # a dry run: (key text on a, on b) of each pair


@dataclass(frozen=True)
class _Side:
    keys: pa.Array  # key texts
    idents: pa.Array  # identity texts (the SOR key, or the external id), or null
    naturals: pa.Array  # natural-key texts, or null
    exts: list[Any]  # external-id values as read (external-id mode)


def natural_text(m: EntityMap, letter: Letter, row: dict[str, Any]) -> str | None:
    """The natural key of a row as comparable text, or None (a NULL, or a value the
    mapping cannot convert)."""
    values: list[Any] = []
    b = m.side("b")
    for pair in m.match_on:
        try:
            if letter == "a":
                value = m.convert("a", pair, row.get(pair[0]))
            else:
                value = coerce(row.get(pair[1]), b.col(pair[1]))
            if value is not None and m.match_normalise is not None:
                value = m.match_normalise(value)
        except (RecordError, ValueError, TypeError, ArithmeticError):
            return None
        if value is None:
            return None
        values.append(value)
    return codec.dumps(values)


class Adopter:
    def __init__(
        self,
        emap: EntityMap,
        connectors: dict[Letter, Connector],
        linked: dict[Letter, pa.Array],
        batch_rows: int,
    ) -> None:
        self.m = emap
        self.connectors = connectors
        self.linked = linked  # key texts of each side's linked rows
        self.batch_rows = batch_rows

    def _ident(self, letter: Letter, kt: str, row: dict[str, Any]) -> str | None:
        m = self.m
        ext = m.ext_value(letter, row)
        if m.mode == "system_of_record":
            if letter == m.sor:
                return kt
            if ext is None:
                return None
            try:
                return key_text(m.key_from_ext(ext))
            except RecordError:
                return "unreadable"  # not empty: never overwritten by adoption
        return None if ext is None else m.ext_text(ext)

    def _read(self, letter: Letter) -> _Side:
        m = self.m
        side = m.side(letter)
        natural = [p[0] if letter == "a" else p[1] for p in m.match_on]
        ext = [side.ext_column] if side.ext_column else []
        cols = list(dict.fromkeys([*side.key, *ext, *natural]))
        keys: list[str] = []
        idents: list[str | None] = []
        naturals: list[str | None] = []
        exts: list[Any] = []
        for batch in self.connectors[letter].snapshot(side.table, cols, list(side.key), READ_ROWS):
            for row in batch.to_pylist():
                kt = key_text({k: row[k] for k in side.key})
                keys.append(kt)
                idents.append(self._ident(letter, kt, row))
                naturals.append(natural_text(m, letter, row))
                exts.append(m.ext_value(letter, row))
        return _Side(
            pa.array(keys, pa.string()),
            pa.array(idents, pa.string()),
            pa.array(naturals, pa.string()),
            exts,
        )

    def _candidates(self, letter: Letter, sides: dict[Letter, _Side]) -> pa.Array:
        """Indexes of the rows of `letter` adoption may pair."""
        m = self.m
        mine, theirs = sides[letter], sides[other(letter)]
        ok = pc.and_(
            pc.invert(pc.is_in(mine.keys, value_set=self.linked[letter])),
            pc.is_valid(mine.naturals),
        )
        their_ids = pc.drop_null(theirs.idents)
        if m.mode == "system_of_record" and letter == m.sor:
            # a SOR row the other side already refers to is matched by identity
            ok = pc.and_(ok, pc.invert(pc.is_in(mine.keys, value_set=their_ids)))
        elif m.mode == "system_of_record":
            ok = pc.and_(ok, pc.is_null(mine.idents))
        else:
            known = pc.fill_null(pc.is_in(mine.idents, value_set=their_ids), False)
            ok = pc.and_(ok, pc.invert(known))
        return pc.indices_nonzero(ok)

    def find(self) -> tuple[dict[Letter, _Side], list[tuple[int, int]]]:
        """Both sides read, and the pairs (row index on a, row index on b)."""
        letters: tuple[Letter, Letter] = ("a", "b")
        sides = {letter: self._read(letter) for letter in letters}
        cand = {x: self._candidates(x, sides) for x in letters}
        nat = {x: sides[x].naturals.take(cand[x]) for x in letters}
        shared = pc.is_in(nat["a"], value_set=nat["b"])
        ambiguous: list[str] = []
        for letter in letters:
            there = other(letter)
            counts = pc.value_counts(nat[letter])
            repeated = counts.filter(pc.greater(counts.field("counts"), 1))
            hit = pc.is_in(repeated.field("values"), value_set=nat[there])
            for item in repeated.filter(hit).to_pylist()[:EXAMPLES]:
                ambiguous.append(
                    f"{json.loads(item['values'])} ({item['counts']} rows on "
                    f"{self.m.side(letter).endpoint})"
                )
        if ambiguous:
            names = ", ".join(p[0] for p in self.m.match_on)
            raise AmbiguousMatch(
                f"entity {self.m.entity}: match_on {names} finds more than one unlinked row "
                f"for {', '.join(ambiguous)}: make the values unique, or link those records "
                "by hand (set their identity column); nothing was written"
            )
        a_idx = cand["a"].filter(shared)
        b_pos = pc.index_in(nat["a"].filter(shared), value_set=nat["b"])
        b_idx = cand["b"].take(b_pos)
        return sides, list(zip(a_idx.to_pylist(), b_idx.to_pylist(), strict=True))

    def run(self, dry_run: bool = False) -> Adoption:
        m = self.m
        sides, pairs = self.find()
        writes: dict[Letter, list[Write]] = {"a": [], "b": []}
        no_identity = different = 0
        paired: list[tuple[str, str]] = []
        for ia, ib in pairs:
            ka = json.loads(sides["a"].keys[ia].as_py())
            kb = json.loads(sides["b"].keys[ib].as_py())
            if m.mode == "system_of_record":
                sor = m.sor or "a"
                target: Letter = other(sor)
                value = m.sor_key_value(ka if sor == "a" else kb)
                key_t = kb if target == "b" else ka
            else:
                ea, eb = sides["a"].exts[ia], sides["b"].exts[ib]
                if ea is None and eb is None:
                    no_identity += 1
                    continue
                if ea is not None and eb is not None:
                    different += 1  # equal ids would have been matched by identity
                    continue
                target = "b" if eb is None else "a"
                value = ea if eb is None else eb
                key_t = kb if target == "b" else ka
            col = m.side(target).ext_column
            assert col is not None  # both modes name the column adoption writes
            try:
                values = {col: coerce(value, m.side(target).col(col))}
            except (ValueError, TypeError, ArithmeticError):
                no_identity += 1  # an id the other side cannot hold: the merge parks it
                continue
            ref = f"m{len(writes[target])}"
            writes[target].append(Write.update(ref, target, key_t, values, {col: None}))
            paired.append((sides["a"].keys[ia].as_py(), sides["b"].keys[ib].as_py()))
        total = len(writes["a"]) + len(writes["b"])
        if dry_run:
            return Adoption(total, 0, 0, no_identity, different, tuple(paired))
        written = refused = 0
        for target, todo in writes.items():
            # no more than the target takes in one apply (Capabilities.max_batch_rows)
            limit = min(self.batch_rows, self.connectors[target].capabilities.max_batch_rows)
            for chunk in _chunks(todo, limit):
                batch_id = f"{m.sync}.{m.entity}.adopt.{uuid.uuid4().hex[:16]}.{target}"
                result = self.connectors[target].apply(build_batch(m, target, batch_id, chunk))
                bad = len(result.rejected) + len(result.stale) + len(result.missing)
                refused += bad
                written += len(chunk) - bad
        return Adoption(total, written, refused, no_identity, different)


def _chunks(items: Sequence[Write], size: int) -> Iterator[Sequence[Write]]:
    for start in range(0, len(items), max(size, 1)):
        yield items[start : start + size]
