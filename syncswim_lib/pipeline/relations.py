"""Before a parent's delete is applied to a side: the child rows there that still refer
to it (docs/relationships.md, "Deletes").

A child the deleting side moved elsewhere is synced first (the parent waits); the others
follow the reference's `on_delete`: deleted (children of theirs first), emptied, or the
parent's delete is refused. The children are written and unlinked through their own
entity's maps, so their own captured deletes later find both sides gone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from syncswim_lib.pipeline.mapping import EntityMap, Letter, other
from syncswim_lib.pipeline.plan import Plan, Write, key_words, link_key, tracked_of
from syncswim_lib.pipeline.report import EntityReport
from syncswim_lib.state.base import BatchRecord, EntryUpdate, Link
from syncswim_lib.values.codec import key_text
from syncswim_lib.values.coerce import coerce, same_value

if TYPE_CHECKING:
    from syncswim_lib.pipeline.engine import EntityEngine

Blocked = dict[str, dict[str, Any]]  # parent ref -> the detail of its waiting entries


@dataclass(frozen=True)
class _Parent:
    ref: str
    key_t: dict[str, Any]  # on the side the delete goes to
    key_s: dict[str, Any] | None  # on the deleting side, where it is gone


def clear_children(engine: EntityEngine, plan: Plan, batch_id: str, report: EntityReport) -> Plan:
    """Clear the way for the plan's deletes; the deletes that must wait leave the plan."""
    m = engine.m
    blocked: Blocked = {}
    for target in ("a", "b"):
        t: Letter = target
        parents = [
            _Parent(
                rec.ref,
                w.key,
                None if rec.old_link is None else link_key(rec.old_link, other(t)),
            )
            for rec in plan.records
            for w in rec.writes
            if w.action == "delete" and w.target == t and w.key is not None
        ]
        if parents:
            clearing = _Clearing(engine, t, f"{batch_id}.{t}c", report)
            blocked.update(clearing.clear(m, parents))
    if not blocked:
        return plan
    kept = []
    for rec in plan.records:
        if rec.ref in blocked:
            plan.updates += [EntryUpdate(i, "waiting", blocked[rec.ref]) for i in rec.entry_ids]
        else:
            kept.append(rec)
    plan.records = kept
    return plan


class _Clearing:
    def __init__(self, engine: EntityEngine, target: Letter, batch_id: str, report: EntityReport):
        self.engine = engine
        self.t: Letter = target
        self.s: Letter = other(target)
        self.batch_id = batch_id
        self.report = report
        self.n = 0
        self.seen: set[tuple[str, str]] = set()  # (entity, key text) cleared: rows in a loop

    def clear(self, pmap: EntityMap, parents: Sequence[_Parent]) -> Blocked:
        engine, t, s = self.engine, self.t, self.s
        assert engine.maps is not None
        blocked: Blocked = {}
        pk_t, pk_s = pmap.side(t).key[0], pmap.side(s).key[0]
        by_value = {key_text({pk_t: p.key_t[pk_t]}): p for p in parents}
        for child in pmap.children:
            cmap = engine.maps(child.entity)
            col_t, col_s = child.column(t), child.column(s)
            values = [p.key_t[pk_t] for p in parents]
            rows_t = engine.connectors[t].fetch(cmap.side(t).table, col_t, values)
            rows_t = [
                r for r in rows_t if (child.entity, key_text(cmap.key_of(t, r))) not in self.seen
            ]
            if not rows_t:
                continue
            links = engine.store.links_for_keys(
                cmap.sync, child.entity, t, [cmap.key_of(t, r) for r in rows_t]
            )
            s_keys = [k for k in (link_key(x, s) for x in links.values()) if k is not None]
            rows_s = _rows_by_key(engine, cmap, s, s_keys)
            deletes: list[tuple[dict[str, Any], Link | None, _Parent]] = []
            restores: list[tuple[dict[str, Any], Link | None, Any]] = []
            nulls: list[tuple[dict[str, Any], Link | None, dict[str, Any] | None]] = []
            for row in rows_t:
                key = cmap.key_of(t, row)
                kt = key_text(key)
                parent = by_value.get(key_text({pk_t: _as(row.get(col_t), pmap, t, pk_t)}))
                if parent is None:
                    continue
                link = links.get(kt)
                s_key = None if link is None else link_key(link, s)
                s_row = None if s_key is None else rows_s.get(key_text(s_key))
                where = f"{child.entity} {key_words(key)} on {cmap.side(t).endpoint}"
                if s_row is not None:
                    gone_parent = None if parent.key_s is None else parent.key_s.get(pk_s)
                    s_ref = _as(s_row.get(col_s), pmap, s, pk_s)
                    if s_ref is None:
                        # emptied on the deleting side, maybe by its ON DELETE SET NULL,
                        # which MariaDB does not binlog: empty it here too
                        nulls.append((row, link, None))
                        continue
                    if gone_parent is None or not same_value(s_ref, gone_parent):
                        restored = self._moved_here(pmap, link, col_s, s_ref)
                        if restored is not None:
                            # moved *to* the deleted parent on this side while the deleting
                            # side kept it where it was: the delete wins, the move is undone
                            restores.append((row, link, restored))
                            continue
                        # moved away on the deleting side: that change first
                        blocked[parent.ref] = {
                            "waits_for": "children",
                            "reason": f"waiting for children: {where} is synced first",
                        }
                        continue
                orphan = s_row is not None or link is None
                if orphan and child.on_delete == "refuse":
                    blocked[parent.ref] = {
                        "waits_for": "children",
                        "reason": f"refused: {where} would be orphaned (on_delete: refuse)",
                        "children": child.entity,
                    }
                elif orphan and child.on_delete == "set_null":
                    nulls.append((row, link, s_row))
                else:
                    deletes.append((row, link, parent))
            # a child deleted here takes its own children with it, first
            grand = [
                _Parent(
                    f"c{key_text(cmap.key_of(t, r))}",
                    cmap.key_of(t, r),
                    None if x is None else link_key(x, s),
                )
                for r, x, _ in deletes
            ]
            for r, _, _ in deletes:
                self.seen.add((child.entity, key_text(cmap.key_of(t, r))))
            stuck = self.clear(cmap, grand) if grand and cmap.children else {}
            for r, _, parent in deletes:
                detail = stuck.get(f"c{key_text(cmap.key_of(t, r))}")
                if detail is not None:
                    blocked[parent.ref] = detail
            deletes = [d for d in deletes if d[2].ref not in blocked]
            self._restore(cmap, col_t, restores)
            failed = self._write(cmap, child.column(t), col_s, deletes, nulls)
            for parent_ref, detail in failed.items():
                blocked[parent_ref] = detail
        return blocked

    def _moved_here(self, pmap: EntityMap, link: Link | None, col_s: str, s_ref: Any) -> Any:
        """The child's reference on this side to put back, when the deleting side still
        holds the agreed one (so the move happened here): its parent's id here."""
        if link is None or not link.shadow:
            return None
        agreed = (link.shadow.get(self.s) or {}).get(col_s)
        if agreed is None or not same_value(
            _as(agreed, pmap, self.s, pmap.side(self.s).key[0]), s_ref
        ):
            return None
        pk_s, pk_t = pmap.side(self.s).key[0], pmap.side(self.t).key[0]
        found = self.engine.store.links_for_keys(pmap.sync, pmap.entity, self.s, [{pk_s: s_ref}])
        parent = found.get(key_text({pk_s: s_ref}))
        key = None if parent is None else link_key(parent, self.t)
        return None if key is None else key[pk_t]

    def _restore(
        self,
        cmap: EntityMap,
        col_t: str,
        restores: Sequence[tuple[dict[str, Any], Link | None, Any]],
    ) -> None:
        from syncswim_lib.pipeline.engine import build_batch

        if not restores:
            return
        engine, t = self.engine, self.t
        writes = [
            Write.update(f"r{i}", t, cmap.key_of(t, row), {col_t: value}, tracked_of(cmap, t, row))
            for i, (row, _, value) in enumerate(restores)
        ]
        self.n += 1
        res = engine.connectors[t].apply(build_batch(cmap, t, f"{self.batch_id}{self.n}", writes))
        upsert: list[Link] = []
        for w, (_, link, value) in zip(writes, restores, strict=True):
            if w.ref in res.rejected or w.ref in res.stale or link is None or not link.shadow:
                continue  # the child's own merge sees it next
            shadow = {k: dict(v) for k, v in link.shadow.items()}
            shadow.setdefault(t, {})[col_t] = value
            upsert.append(Link(link.sync, link.entity, link.key_a, link.key_b, shadow, link.ext_id))
        self.report.cascaded += len(upsert)
        if upsert:
            engine.store.record(BatchRecord(cmap.sync, cmap.entity, upsert_links=upsert))

    def _write(
        self,
        cmap: EntityMap,
        col_t: str,
        col_s: str,
        deletes: Sequence[tuple[dict[str, Any], Link | None, _Parent]],
        nulls: Sequence[tuple[dict[str, Any], Link | None, dict[str, Any] | None]],
    ) -> Blocked:
        from syncswim_lib.pipeline.engine import build_batch

        engine, t, s = self.engine, self.t, self.s
        if not deletes and not nulls:
            return {}
        writes: list[Write] = []
        owner: dict[str, str] = {}
        for row, _, parent in deletes:
            ref = f"d{len(writes)}"
            owner[ref] = parent.ref
            key = cmap.key_of(t, row)
            writes.append(Write.delete(ref, t, key, tracked_of(cmap, t, row)))
        for row, _, _ in nulls:
            ref = f"n{len(writes)}"
            key = cmap.key_of(t, row)
            writes.append(Write.update(ref, t, key, {col_t: None}, tracked_of(cmap, t, row)))
        self.n += 1
        res = engine.connectors[t].apply(build_batch(cmap, t, f"{self.batch_id}{self.n}", writes))
        blocked: Blocked = {}
        for ref, err in res.rejected.items():
            if ref in owner:
                blocked[owner[ref]] = {
                    "waits_for": "children",
                    "reason": f"waiting for children: {err}",
                }
        for ref in res.stale:
            if ref in owner:
                blocked[owner[ref]] = {
                    "waits_for": "children",
                    "reason": "waiting for children: one changed meanwhile",
                }
        done = [w.ref for w in writes if w.ref not in res.rejected and w.ref not in res.stale]
        self.report.cascaded += len(done)
        drop: list[Link] = []
        upsert: list[Link] = []
        for i, (_, link, _) in enumerate(deletes):
            if f"d{i}" in done and link is not None:
                drop.append(link)
        s_writes: list[Write] = []
        for j, (_, link, s_row) in enumerate(nulls, start=len(deletes)):
            if f"n{j}" not in done:
                continue
            if s_row is not None:
                key = cmap.key_of(s, s_row)
                s_writes.append(
                    Write.update(f"s{j}", s, key, {col_s: None}, tracked_of(cmap, s, s_row))
                )
            if link is not None and link.shadow is not None:
                # both sides hold NULL now (the deleting side had it, or is written next)
                shadow = {k: dict(v) for k, v in link.shadow.items()}
                shadow.setdefault(t, {})[col_t] = None
                shadow.setdefault(s, {})[col_s] = None
                upsert.append(
                    Link(link.sync, link.entity, link.key_a, link.key_b, shadow, link.ext_id)
                )
        if s_writes:
            self.n += 1
            batch = build_batch(cmap, s, f"{self.batch_id}{self.n}", s_writes)
            s_res = engine.connectors[s].apply(batch)
            # not written there (changed meanwhile): its shadow keeps the old value, so
            # the next merge of that child sees the NULL on this side as the change
            for w in s_writes:
                if w.ref in s_res.rejected or w.ref in s_res.stale:
                    j = int(w.ref[1:])
                    link = nulls[j - len(deletes)][1]
                    upsert = [
                        u
                        for u in upsert
                        if link is None or u.key_a != link.key_a or u.key_b != link.key_b
                    ]
        if drop or upsert:
            engine.store.record(
                BatchRecord(cmap.sync, cmap.entity, upsert_links=upsert, delete_links=drop)
            )
        return blocked


def _as(value: Any, pmap: EntityMap, letter: Letter, column: str) -> Any:
    """A reference value in the parent key's own type (to compare and to look it up)."""
    if value is None:
        return None
    try:
        return coerce(value, pmap.side(letter).col(column))
    except (ValueError, TypeError):
        return value


def _rows_by_key(
    engine: EntityEngine, cmap: EntityMap, letter: Letter, keys: Sequence[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    if not keys:
        return {}
    side = cmap.side(letter)
    first = side.key[0]
    found = engine.connectors[letter].fetch(side.table, first, [k[first] for k in keys])
    return {key_text(cmap.key_of(letter, r)): r for r in found}


def recheck_children(engine: EntityEngine, plan: Plan) -> int:
    """After parents were created again where they had been deleted (an update beat the
    delete): their children linked on that side may be gone without a captured delete
    (MariaDB does not binlog the rows an ON DELETE CASCADE removes). Each such child gets
    a journal entry saying its row is gone there, so its own merge (after this entity, in
    apply order) decides it as a delete. Returns how many were found."""
    import uuid
    from datetime import UTC, datetime

    from syncswim_lib.envelope import Change, Op, WatermarkPosition

    m = engine.m
    if engine.maps is None or not m.children:
        return 0
    run = uuid.uuid4().hex[:12]
    found = 0
    for rec in plan.records:
        decision = str(rec.detail.get("decision", ""))
        if not decision.startswith("recreated on ") or rec.old_link is None:
            continue
        inserts = [w for w in rec.writes if w.action == "insert"]
        if not inserts:
            continue
        x: Letter = inserts[0].target  # where the parent was deleted
        y = other(x)
        parent_y = link_key(rec.old_link, y)
        if parent_y is None:
            continue
        for child in m.children:
            cmap = engine.maps(child.entity)
            rows_y = engine.connectors[y].fetch(
                cmap.side(y).table, child.column(y), [parent_y[m.side(y).key[0]]]
            )
            if not rows_y:
                continue
            links = engine.store.links_for_keys(
                cmap.sync, child.entity, y, [cmap.key_of(y, r) for r in rows_y]
            )
            x_keys = [k for k in (link_key(li, x) for li in links.values()) if k is not None]
            alive = set(_rows_by_key(engine, cmap, x, x_keys))
            gone = [k for k in x_keys if key_text(k) not in alive]
            if not gone:
                continue
            now = datetime.now(UTC)
            side = cmap.side(x)
            entries = [
                (
                    child.entity,
                    Change(
                        Op.DELETE,
                        side.table,
                        k,
                        None,
                        dict(k),
                        WatermarkPosition(f"gone-with-parent:{run}:{found + i:09d}"),
                        None,
                        now,
                    ),
                )
                for i, k in enumerate(gone)
            ]
            engine.store.append_changes(cmap.sync, side.endpoint, entries, None)
            found += len(gone)
    return found


def journal_vanished(
    engine: EntityEngine, vanished: Sequence[tuple[str, Letter, dict[str, Any]]]
) -> set[str]:
    """Linked parents found gone on a side without a captured delete: journal that delete,
    as the binlog would have had it, so their own merge decides them (in the next pass).
    Returns the entities concerned."""
    import uuid
    from datetime import UTC, datetime

    from syncswim_lib.envelope import Change, Op, WatermarkPosition

    assert engine.maps is not None
    run = uuid.uuid4().hex[:12]
    now = datetime.now(UTC)
    done: set[str] = set()
    seen: set[tuple[str, str, str]] = set()
    for n, (entity, letter, key) in enumerate(vanished):
        if (entity, letter, key_text(key)) in seen:
            continue
        seen.add((entity, letter, key_text(key)))
        side = engine.maps(entity).side(letter)
        pos = WatermarkPosition(f"vanished:{run}:{n:09d}")
        change = Change(Op.DELETE, side.table, dict(key), None, dict(key), pos, None, now)
        engine.store.append_changes(engine.m.sync, side.endpoint, [(entity, change)], None)
        done.add(entity)
    return done
