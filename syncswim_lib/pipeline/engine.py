"""Execute a plan: write each side's Arrow diff, write back SOR keys, record the state.

Crash safety: the entries of a chunk are marked with a batch id before any target write;
each target write commits with a marker carrying that id (derived per side); the state is
recorded last. After a crash anywhere in between, the same entries are planned again with
the same batch id, and a target that already committed that id returns its stored result
instead of writing again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from syncswim_lib import failpoints
from syncswim_lib.connectors.base import ApplyBatch, ApplyResult, Connector
from syncswim_lib.connectors.coerce import coerce
from syncswim_lib.pipeline.arrow import REF, rows_to_table
from syncswim_lib.pipeline.mapping import EntityMap, Letter, other
from syncswim_lib.pipeline.plan import Plan, Planner, Write
from syncswim_lib.pipeline.report import EntityReport
from syncswim_lib.state.base import BatchRecord, EntryUpdate, JournalEntry, Link, StateStore
from syncswim_lib.state.codec import key_text


def _batch(emap: EntityMap, target: Letter, batch_id: str, writes: Sequence[Write]) -> ApplyBatch:
    side = emap.side(target)
    key_cols = [side.col(k) for k in side.key]
    inserts = [w for w in writes if w.action == "insert"]
    updates = [w for w in writes if w.action == "update"]
    deletes = [w for w in writes if w.action == "delete"]
    value_cols = [side.col(c) for c in _value_columns(writes)]
    set_cols = [c for c in value_cols if c.name not in side.key]
    ins_cols = [c for c in value_cols if not (c.auto_generated and c.name in side.key)]
    return ApplyBatch(
        batch_id=batch_id,
        origin=emap.sync,
        table=side.table,
        key_columns=side.key,
        inserts=rows_to_table([{REF: w.ref, **w.values} for w in inserts], ins_cols),
        updates=rows_to_table(
            [{REF: w.ref, **w.values, **(w.key or {})} for w in updates], key_cols + set_cols
        ),
        deletes=rows_to_table([{REF: w.ref, **(w.key or {})} for w in deletes], key_cols),
        insert_match=(side.ext_column,) if side.ext_column and inserts else (),
    )


def _value_columns(writes: Sequence[Write]) -> list[str]:
    seen: dict[str, None] = {}
    for w in writes:
        for c in w.values:
            seen.setdefault(c, None)
    return list(seen)


class EntityEngine:
    def __init__(
        self, emap: EntityMap, store: StateStore, connectors: dict[Letter, Connector]
    ) -> None:
        self.m = emap
        self.store = store
        self.connectors = connectors
        self.planner = Planner(emap, store, connectors)

    def run(self, report: EntityReport, chunk_size: int = 1000) -> None:
        """Apply everything pending for the entity: first in-flight batches, then the rest."""
        start = time.monotonic()
        m = self.m
        for batch_id in self.store.in_flight_batches(m.sync, m.entity):
            entries = [e for e in self.store.pending(m.sync, m.entity) if e.batch_id == batch_id]
            if entries:
                report.recovered_batches += 1
                self._chunk(entries, batch_id, report)
        after = 0
        while True:
            entries = self.store.pending(m.sync, m.entity, limit=chunk_size, after_id=after)
            if not entries:
                break
            after = entries[-1].id
            fresh = [e for e in entries if e.batch_id is None]
            if fresh:
                self._chunk(fresh, f"{m.sync}.{m.entity}.{uuid.uuid4().hex[:16]}", report)
        report.duration_s += time.monotonic() - start

    def _chunk(self, entries: list[JournalEntry], batch_id: str, report: EntityReport) -> None:
        claimed = set(self.store.set_batch([e.id for e in entries], batch_id))
        entries = [e for e in entries if e.id in claimed]
        if not entries:
            return  # another run took them
        plan = self.planner.plan(entries)
        report.skipped_echoes += plan.skipped
        report.conflicts += plan.conflicts
        report.waiting += plan.waiting
        report.failed += plan.failed
        results = self._apply_sides(plan, batch_id) if plan.writes else {}
        updates, links, delete_links = self._settle(plan, results, report)
        write_backs = [w for w in plan.writes if w.write_back and w.ref in results[w.target].keys]
        if write_backs:
            links = self._write_back(write_backs, results, links, batch_id, report)
        failpoints.hit(failpoints.AFTER_APPLY)
        self.store.record(
            BatchRecord(
                self.m.sync,
                self.m.entity,
                entries=list(plan.updates) + updates,
                upsert_links=links,
                delete_links=delete_links,
                finished_batch_ids=[batch_id],
            )
        )

    def _apply_sides(self, plan: Plan, batch_id: str) -> dict[Letter, ApplyResult]:
        results: dict[Letter, ApplyResult] = {}
        targets: tuple[Letter, Letter] = ("a", "b")
        for t in targets:
            writes = [w for w in plan.writes if w.target == t]
            if not writes:
                results[t] = ApplyResult(batch_id=f"{batch_id}.{t}")
                continue
            results[t] = self.connectors[t].apply(_batch(self.m, t, f"{batch_id}.{t}", writes))
        return results

    def _settle(
        self, plan: Plan, results: dict[Letter, ApplyResult], report: EntityReport
    ) -> tuple[list[EntryUpdate], list[Link], list[Link]]:
        m = self.m
        updates: list[EntryUpdate] = []
        links: list[Link] = []
        delete_links: list[Link] = []
        for t, res in results.items():
            counts = report.side(m.side(t).endpoint)
            counts.inserted += res.inserted
            counts.updated += res.updated
            counts.deleted += res.deleted
        for w in plan.writes:
            res = results[w.target]
            detail: dict[str, Any] = {
                "target": m.side(w.target).endpoint,
                "action": w.action,
                "values": w.values,
                "target_key": res.keys.get(w.ref, w.key),
            }
            if w.ref in res.rejected:
                report.failed += 1
                report.errors.append(res.rejected[w.ref])
                updates += [
                    EntryUpdate(i, "failed", {**detail, "error": res.rejected[w.ref]})
                    for i in w.entry_ids
                ]
                continue
            if w.action == "delete":
                if w.link is not None:
                    delete_links.append(w.link)
                updates += [EntryUpdate(i, "applied", detail) for i in w.entry_ids]
                continue
            if w.ref in res.missing:
                # the target row vanished under us: unlink so the next change recreates it
                if w.link is not None:
                    delete_links.append(w.link)
                report.failed += 1
                updates += [
                    EntryUpdate(
                        i,
                        "failed",
                        {
                            **detail,
                            "error": (
                                f"row {w.key} no longer exists in {m.side(w.target).endpoint}"
                            ),
                        },
                    )
                    for i in w.entry_ids
                ]
                continue
            target_key = res.keys.get(w.ref, w.key or {})
            keys = {w.source: w.source_key, w.target: target_key}
            shadow: dict[str, Any] = {
                w.source: w.source_values,
                w.target: {c: w.values.get(c) for c in m.side(w.target).tracked()},
            }
            links.append(Link(m.sync, m.entity, keys.get("a"), keys.get("b"), shadow, w.ext_id))
            updates += [EntryUpdate(i, "applied", detail) for i in w.entry_ids]
        return updates, links, delete_links

    def _write_back(
        self,
        writes: list[Write],
        results: dict[Letter, ApplyResult],
        links: list[Link],
        batch_id: str,
        report: EntityReport,
    ) -> list[Link]:
        """The SOR generated keys for rows born on the other side: store them there."""
        m = self.m
        sor: Letter = m.sor or "a"
        back: Letter = other(sor)
        side = m.side(back)
        assert side.ext_column is not None
        ext_col = side.col(side.ext_column)
        wb = [
            Write(
                w.ref,
                back,
                "update",
                w.source_key,
                {ext_col.name: coerce(m.sor_key_value(results[sor].keys[w.ref]), ext_col)},
                sor,
                results[sor].keys[w.ref],
                {},
                None,
                None,
                w.entry_ids,
            )
            for w in writes
        ]
        res = self.connectors[back].apply(_batch(m, back, f"{batch_id}.wb", wb))
        report.write_backs += res.updated
        # the row written back is the one the write came from: find its link by that key
        written = {
            key_text(w.key or {}): w.values[ext_col.name] for w in wb if w.ref not in res.rejected
        }
        out: list[Link] = []
        for link in links:
            back_key = link.key_b if back == "b" else link.key_a
            value_key = key_text(back_key) if back_key is not None else None
            if value_key in written and link.shadow is not None:
                shadow = dict(link.shadow)
                shadow[back] = {**shadow.get(back, {}), ext_col.name: written[value_key]}
                link = Link(link.sync, link.entity, link.key_a, link.key_b, shadow, link.ext_id)
            out.append(link)
        for ref, err in res.rejected.items():
            report.failed += 1
            report.errors.append(f"write-back of {ref}: {err}")
        return out
