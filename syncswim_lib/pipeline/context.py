"""Load what the planner needs for one chunk, in a constant number of batched calls.

State store: links by the keys of each side, links by external id (or by SOR key), the
entity's open conflicts. Connectors: the current rows of each side by key, and by the
external-id column (to pair new records and to see duplicate ids). Whatever the chunk's
size, that is at most three state queries and six connector calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from syncswim_lib.connectors.base import Connector
from syncswim_lib.envelope import Op
from syncswim_lib.errors import RecordError
from syncswim_lib.pipeline.mapping import EntityMap, Letter, other
from syncswim_lib.pipeline.plan import ChunkContext, link_key
from syncswim_lib.state.base import JournalEntry, Link, StateStore
from syncswim_lib.values.codec import key_text
from syncswim_lib.values.coerce import coerce

LETTERS: tuple[Letter, Letter] = ("a", "b")


class _Rows:
    def __init__(self, emap: EntityMap, connectors: dict[Letter, Connector]) -> None:
        self.m = emap
        self.connectors = connectors
        self.by_key: dict[str, dict[str, dict[str, Any]]] = {"a": {}, "b": {}}
        self.asked: dict[str, set[str]] = {"a": set(), "b": set()}

    def add(self, letter: Letter, row: dict[str, Any]) -> None:
        self.by_key[letter][key_text(self.m.key_of(letter, row))] = row

    def fetch(self, letter: Letter, keys: Iterable[dict[str, Any] | None]) -> None:
        side = self.m.side(letter)
        todo: dict[str, dict[str, Any]] = {}
        for key in keys:
            if key is None or any(v is None for v in key.values()):
                continue
            kt = key_text(key)
            if kt not in self.asked[letter]:
                todo[kt] = key
        if not todo:
            return
        self.asked[letter].update(todo)
        first = side.key[0]
        values = list(dict.fromkeys(k[first] for k in todo.values()))
        for row in self.connectors[letter].fetch(side.table, first, values):
            kt = key_text(self.m.key_of(letter, row))
            if kt in todo:  # composite keys: fetched by the first column, kept if whole
                self.by_key[letter][kt] = row


def _keys(links: Iterable[Link], letter: Letter) -> list[dict[str, Any] | None]:
    return [link.key_a if letter == "a" else link.key_b for link in links]


def load_context(
    emap: EntityMap,
    store: StateStore,
    connectors: dict[Letter, Connector],
    entries: Sequence[JournalEntry],
    full: bool = False,
) -> ChunkContext:
    m = emap
    touched: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
    images: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
    for e in entries:
        if e.change.origin == m.sync:
            continue
        letter: Letter = "a" if e.side == m.a.endpoint else "b"
        key_cols = m.side(letter).key
        touched[letter].append({k: e.change.key.get(k) for k in key_cols})
        before = e.change.before
        if e.change.op == Op.UPDATE and before is not None:
            touched[letter].append({k: before.get(k) for k in key_cols})
        for image in (e.change.after, before):
            if image is not None:
                images[letter].append(image)
    links_by_key: dict[str, dict[str, Link]] = {
        letter: store.links_for_keys(m.sync, m.entity, letter, touched[letter])
        for letter in LETTERS
    }
    rows = _Rows(m, connectors)
    for letter in LETTERS:
        mine = touched[letter]
        linked = _keys(links_by_key[other(letter)].values(), letter)
        rows.fetch(letter, [*mine, *linked, *_keys(links_by_key[letter].values(), letter)])
    current = {letter: list(rows.by_key[letter].values()) for letter in LETTERS}

    links_by_ext: dict[str, Link] = {}
    rows_by_ext: dict[str, dict[str, list[dict[str, Any]]]] = {"a": {}, "b": {}}
    if m.mode == "external_id":
        ext_ids: set[str] = set()
        for letter in LETTERS:
            col = m.side(letter).ext_column
            for row in [*images[letter], *current[letter]]:
                if col and row.get(col) is not None:
                    ext_ids.add(m.ext_text(row[col]))
        for link in [*links_by_key["a"].values(), *links_by_key["b"].values()]:
            if link.ext_id is not None:
                ext_ids.add(link.ext_id)
        ids = sorted(ext_ids)
        links_by_ext = store.links_for_ext_ids(m.sync, m.entity, ids) if ids else {}
        for letter in LETTERS:
            rows.fetch(letter, _keys(links_by_ext.values(), letter))
            _by_ext(m, rows, letter, ids, rows_by_ext)
    else:
        sor: Letter = m.sor or "a"
        non = other(sor)
        col = m.side(non).ext_column
        sor_keys: list[dict[str, Any]] = []
        for row in [*images[non], *current[non]]:
            if col and row.get(col) is not None:
                try:
                    sor_keys.append(m.key_from_ext(row[col]))
                except RecordError:
                    continue  # the planner reports it for the record concerned
        # the links of linked rows are loaded already: only the others are looked up
        unknown = [k for k in sor_keys if key_text(k) not in links_by_key[sor]]
        more = store.links_for_keys(m.sync, m.entity, sor, unknown) if unknown else {}
        links_by_key[sor] = {**more, **links_by_key[sor]}
        rows.fetch(sor, [*sor_keys, *_keys(more.values(), sor)])
        rows.fetch(non, _keys(more.values(), non))
        # the other side's rows carrying a SOR key are read for the SOR's records not
        # linked yet (the planner pairs such a row, or refuses two): a linked record's
        # rows are read by its link's keys above, and reading them again by the external
        # id cost as much as that read
        wanted = sorted(
            {
                m.ext_text(m.sor_key_value(k))
                for k in touched[sor]
                if k is not None
                and all(v is not None for v in k.values())
                and key_text(k) not in links_by_key[sor]
            }
        )
        _by_ext(m, rows, non, wanted, rows_by_ext)
    conflicts = store.active_conflicts(m.sync, m.entity)
    parent_links, parent_present, parent_vanished = _parents(m, store, connectors, rows.by_key)
    return ChunkContext(
        links_by_key=links_by_key,
        links_by_ext=links_by_ext,
        rows=rows.by_key,
        rows_by_ext=rows_by_ext,
        conflicts=conflicts,
        full=full,
        parent_links=parent_links,
        parent_present=parent_present,
        parent_vanished=parent_vanished,
    )


def _parents(
    m: EntityMap,
    store: StateStore,
    connectors: dict[Letter, Connector],
    rows: dict[str, dict[str, dict[str, Any]]],
) -> tuple[
    dict[tuple[str, str], dict[str, Link]],
    dict[tuple[str, str], frozenset[str]],
    dict[tuple[str, str], dict[str, dict[str, Any]]],
]:
    """The links of every parent the chunk's rows refer to, and which of the unlinked
    parents exist (to tell "not synced yet" from "not there"): two calls per reference
    and side at most."""
    links: dict[tuple[str, str], dict[str, Link]] = {}
    present: dict[tuple[str, str], frozenset[str]] = {}
    vanished: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for ref in m.references:
        for letter in LETTERS:
            col, pk = ref.column(letter), ref.parent_key(letter)
            keys: dict[str, dict[str, Any]] = {}
            for row in rows[letter].values():
                value = row.get(col)
                if value is None:
                    continue
                try:
                    key = {pk.name: coerce(value, pk)}
                except (ValueError, TypeError):
                    continue  # the planner reports it for the record concerned
                keys[key_text(key)] = key
            if not keys:
                continue
            slot = links.setdefault((ref.parent, letter), {})
            todo = [k for kt, k in keys.items() if kt not in slot]
            if todo:
                slot.update(store.links_for_keys(m.sync, ref.parent, letter, todo))
            target = other(letter)
            unlinked = [
                k[pk.name]
                for kt, k in keys.items()
                if kt not in slot or link_key(slot[kt], target) is None
            ]
            # a linked parent whose row is gone on the target (its delete not applied yet,
            # or being recreated there) cannot be referred to: treated as unlinked
            there = {
                kt: link_key(slot[kt], target)
                for kt in keys
                if kt in slot and link_key(slot[kt], target) is not None
            }
            if there:
                t_pk = ref.parent_key(target).name
                wanted = [k[t_pk] for k in there.values() if k is not None]
                found_t = connectors[target].fetch(ref.parent_table(target), t_pk, wanted)
                alive = {key_text({t_pk: r.get(t_pk)}) for r in found_t}
                for kt, k in there.items():
                    if k is not None and key_text({t_pk: k[t_pk]}) not in alive:
                        del slot[kt]
                        unlinked.append(keys[kt][pk.name])
                        vanished.setdefault((ref.parent, letter), {})[kt] = k
            if unlinked:
                found = connectors[letter].fetch(ref.parent_table(letter), pk.name, unlinked)
                texts = {key_text({pk.name: r.get(pk.name)}) for r in found}
                present[(ref.parent, letter)] = (
                    present.get((ref.parent, letter), frozenset()) | texts
                )
    return links, present, vanished


def _by_ext(
    m: EntityMap,
    rows: _Rows,
    letter: Letter,
    ext_ids: Sequence[str],
    out: dict[str, dict[str, list[dict[str, Any]]]],
) -> None:
    side = m.side(letter)
    if not side.ext_column or not ext_ids:
        return
    found = rows.connectors[letter].fetch(side.table, side.ext_column, list(ext_ids))
    for row in found:
        value = row.get(side.ext_column)
        if value is None:
            continue
        out[letter].setdefault(m.ext_text(value), []).append(row)
        rows.add(letter, row)
