"""From pending journal entries to the writes for each side: identity, echoes, conflicts.

Pure planning: reads links (and, for adopting an existing pairing, the rows themselves)
but writes nothing. `engine.py` executes the plan and records it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from syncswim_lib.connectors.base import Connector
from syncswim_lib.connectors.coerce import coerce, same_value
from syncswim_lib.envelope import Op
from syncswim_lib.errors import RecordError
from syncswim_lib.pipeline.mapping import EntityMap, Letter, other
from syncswim_lib.state.base import EntryUpdate, JournalEntry, Link, StateStore
from syncswim_lib.state.codec import key_text


@dataclass
class Write:
    """One row write on the target side, and what recording it will need."""

    ref: str  # e<entry id> of the entry whose state wins
    target: Letter
    action: str  # insert | update | delete
    key: dict[str, Any] | None  # target key (update/delete)
    values: dict[str, Any]  # target columns
    source: Letter
    source_key: dict[str, Any]
    source_values: dict[str, Any]  # tracked values on the source side
    link: Link | None
    ext_id: str | None
    entry_ids: tuple[int, ...]
    write_back: bool = False  # SOR created the row: write its key into the other side


@dataclass
class Plan:
    writes: list[Write] = field(default_factory=list)
    updates: list[EntryUpdate] = field(default_factory=list)  # entries settled without a write
    skipped: int = 0
    conflicts: int = 0
    waiting: int = 0
    failed: int = 0


@dataclass
class _Group:
    letter: Letter
    entries: list[JournalEntry]

    @property
    def last(self) -> JournalEntry:
        return self.entries[-1]

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(e.id for e in self.entries)

    @property
    def row(self) -> dict[str, Any]:
        ch = self.last.change
        return dict(ch.after if ch.after is not None else (ch.before or ch.key))

    @property
    def deleted(self) -> bool:
        return self.last.change.op == Op.DELETE


def _settle(plan: Plan, group: _Group, status: str, detail: dict[str, Any]) -> None:
    for e in group.entries:
        plan.updates.append(EntryUpdate(e.id, status, detail))  # type: ignore[arg-type]


class Planner:
    def __init__(
        self, emap: EntityMap, store: StateStore, connectors: dict[Letter, Connector]
    ) -> None:
        self.m = emap
        self.store = store
        self.connectors = connectors

    def _letter_of(self, entry: JournalEntry) -> Letter:
        return "a" if entry.side == self.m.a.endpoint else "b"

    def plan(self, entries: Sequence[JournalEntry]) -> Plan:
        plan = Plan()
        groups: dict[tuple[str, str], _Group] = {}
        for e in entries:
            letter = self._letter_of(e)
            if e.change.origin == self.m.sync:
                # our own write coming back (origin tagging): never synced back
                plan.updates.append(EntryUpdate(e.id, "skipped", {"reason": "echo of our write"}))
                plan.skipped += 1
                continue
            gk = (letter, key_text(e.change.key))
            groups.setdefault(gk, _Group(letter, [])).entries.append(e)

        # identity: which record (link) each group is about
        by_identity: dict[str, list[tuple[_Group, Link | None, str | None]]] = {}
        for g in groups.values():
            try:
                ident, link, ext = self._identify(g)
            except RecordError as exc:
                _settle(plan, g, "failed", {"error": str(exc)})
                plan.failed += 1
                continue
            if ident is None:
                col = self.m.side(g.letter).ext_column
                _settle(plan, g, "waiting", {"reason": f"no external id in column {col}"})
                plan.waiting += 1
                continue
            by_identity.setdefault(ident, []).append((g, link, ext))

        for candidates in by_identity.values():
            winner = self._resolve(plan, candidates)
            g, link, ext = winner
            try:
                self._plan_group(plan, g, link, ext)
            except RecordError as exc:
                _settle(plan, g, "failed", {"error": str(exc)})
                plan.failed += 1
        return plan

    def _identify(self, g: _Group) -> tuple[str | None, Link | None, str | None]:
        m, store = self.m, self.store
        key = dict(g.last.change.key)
        link = store.link_by_key(m.sync, m.entity, g.letter, key)
        if m.mode == "external_id":
            ext = m.ext_value(g.letter, g.row)
            if link is not None and link.ext_id is not None:
                return "x:" + link.ext_id, link, link.ext_id
            if ext is None:
                return None, None, None
            ext_id = m.ext_text(ext)
            link = link or store.link_by_ext_id(m.sync, m.entity, ext_id)
            return "x:" + ext_id, link, ext_id
        sor = m.sor or "a"
        if g.letter == sor:
            return "k:" + key_text(key), link, None
        if link is not None and link.key_a is not None and link.key_b is not None:
            sor_key = link.key_a if sor == "a" else link.key_b
            return "k:" + key_text(sor_key), link, None
        ext = m.ext_value(g.letter, g.row)
        if ext is None:
            # a row created on the non-SOR side: the SOR will create it
            return "n:" + key_text(key), link, None
        sor_key = m.key_from_ext(ext)
        link = store.link_by_key(m.sync, m.entity, sor, sor_key)
        if link is None and not g.deleted:
            found = self.connectors[sor].fetch(
                m.side(sor).table, m.side(sor).key[0], [m.sor_key_value(sor_key)]
            )
            if not found:
                raise RecordError(
                    f"{m.side(g.letter).ext_column}={ext!r} points to no row in "
                    f"{m.side(sor).endpoint} {m.side(sor).table}"
                )
            # adopt the pairing the row itself declares
            pair = {sor: sor_key, g.letter: key}
            link = Link(m.sync, m.entity, pair.get("a"), pair.get("b"), None)
        return "k:" + key_text(sor_key), link, None

    def _resolve(
        self, plan: Plan, candidates: list[tuple[_Group, Link | None, str | None]]
    ) -> tuple[_Group, Link | None, str | None]:
        if len(candidates) == 1:
            return candidates[0]
        # the same record changed on both sides: resolve the whole record (field-level
        # merging comes with the conflict rules)
        if self.m.sor is not None:
            winner = next((c for c in candidates if c[0].letter == self.m.sor), candidates[0])
            rule = f"system of record ({self.m.side(self.m.sor).endpoint}) wins"
        else:

            def ts(c: tuple[_Group, Link | None, str | None]) -> tuple[float, int]:
                ct = c[0].last.change.commit_ts
                return (ct.timestamp() if ct else 0.0, 1 if c[0].letter == "a" else 0)

            winner = max(candidates, key=ts)
            rule = "newest source commit wins"
        link = next((c[1] for c in candidates if c[1] is not None), None)
        for c in candidates:
            if c is winner:
                continue
            g = c[0]
            known = winner[1] or link
            shadow = known.shadow if known is not None else None
            if self._agrees(g, winner[0]) or (
                not g.deleted and self.m.same_as_shadow(g.letter, g.row, shadow)
            ):
                # not a conflict: this side holds what was agreed, or already what wins
                _settle(plan, g, "skipped", {"reason": "already in step with the other side"})
                plan.skipped += 1
                continue
            _settle(
                plan,
                g,
                "conflict",
                {
                    "rule": rule,
                    "winner": self.m.side(winner[0].letter).endpoint,
                    "losing_values": self.m.tracked_values(g.letter, g.row),
                    "losing_op": g.last.change.op.value,
                },
            )
            plan.conflicts += 1
        return winner[0], winner[1] or link, winner[2]

    def _agrees(self, side: _Group, winner: _Group) -> bool:
        """Whether `side` already holds what `winner` would write to it."""
        if side.deleted or winner.deleted:
            return side.deleted and winner.deleted
        try:
            expected = self.m.translate(winner.letter, winner.row)
        except RecordError:
            return False
        row = side.row
        return all(same_value(row.get(col), value) for col, value in expected.items())

    def _plan_group(self, plan: Plan, g: _Group, link: Link | None, ext: str | None) -> None:
        m = self.m
        src, dst = g.letter, other(g.letter)
        src_key = dict(g.last.change.key)
        target_key = None
        if link is not None:
            target_key = link.key_b if dst == "b" else link.key_a
        ref = f"e{g.last.id}"
        if g.deleted:
            if target_key is None:
                _settle(plan, g, "skipped", {"reason": "deleted before it was ever synced"})
                plan.skipped += 1
                return
            plan.writes.append(
                Write(ref, dst, "delete", target_key, {}, src, src_key, {}, link, ext, g.ids)
            )
            return
        row = g.row
        if link is not None and target_key is not None and m.same_as_shadow(src, row, link.shadow):
            _settle(plan, g, "skipped", {"reason": "no change since last sync"})
            plan.skipped += 1
            return
        values = m.translate(src, row)
        dst_side = m.side(dst)
        if m.mode == "external_id" and dst_side.ext_column:
            values[dst_side.ext_column] = m.ext_value(src, row)
        elif m.sor == src and dst_side.ext_column:
            values[dst_side.ext_column] = m.sor_key_value(src_key)
        if dst_side.ext_column and dst_side.ext_column in values:
            try:
                values[dst_side.ext_column] = coerce(
                    values[dst_side.ext_column], dst_side.col(dst_side.ext_column)
                )
            except ValueError as exc:
                raise RecordError(str(exc)) from exc
        action = "update" if target_key is not None else "insert"
        write_back = action == "insert" and m.sor == dst
        plan.writes.append(
            Write(
                ref,
                dst,
                action,
                target_key,
                values,
                src,
                src_key,
                m.tracked_values(src, row),
                link,
                ext,
                g.ids,
                write_back,
            )
        )
