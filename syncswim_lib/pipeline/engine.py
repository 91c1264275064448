"""Execute a plan: write each side's Arrow diff, write back SOR keys, record the state.

Crash safety: the entries of a chunk are claimed with a batch id; each target write
commits with a marker carrying that id (derived per side); the state is recorded last.
After a crash in between, a chunk is planned again from the rows as they are: what was
already written shows up as agreed values, rows inserted with an external id are found by
it. Two things a new plan could not see again are kept by saving the plan before any
write: rows inserted into a system of record (its generated key exists nowhere else yet)
and conflict decisions (once applied, both sides agree and the losing value is gone).
Such a saved plan is replayed with the same batch id: a target that already committed it
returns its stored result, one that did not writes it now (still compare-and-set).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from syncswim_lib import failpoints
from syncswim_lib.config.retry import RetrySettings
from syncswim_lib.connectors.base import ApplyBatch, ApplyResult, Connector
from syncswim_lib.pipeline import fastpath
from syncswim_lib.pipeline.backoff import cap
from syncswim_lib.pipeline.context import load_context
from syncswim_lib.pipeline.mapping import EntityMap, FieldPair, Letter, other
from syncswim_lib.pipeline.origin_ids import origin_match, with_origin_ids
from syncswim_lib.pipeline.plan import Node, Plan, Planner, RecordPlan, Write
from syncswim_lib.pipeline.plan_codec import plan_from_text, plan_to_text
from syncswim_lib.pipeline.relations import clear_children, journal_vanished, recheck_children
from syncswim_lib.pipeline.report import EntityReport
from syncswim_lib.pipeline.telling import (
    change_row,
    conflict_event,
    key_label,
    transforms_of,
)
from syncswim_lib.state.base import (
    BatchRecord,
    ConflictRecord,
    EntryUpdate,
    JournalEntry,
    Link,
    StateStore,
)
from syncswim_lib.values.arrow import REF, rows_to_table
from syncswim_lib.values.codec import key_text
from syncswim_lib.values.coerce import coerce

SET = "__set"
CHECK = "__check"


def build_batch(
    emap: EntityMap, target: Letter, batch_id: str, writes: Sequence[Write]
) -> ApplyBatch:
    side = emap.side(target)
    key_cols = [side.col(k) for k in side.key]
    inserts = [w for w in writes if w.action == "insert"]
    updates = [w for w in writes if w.action == "update"]
    # creates carrying the SOR key or the shared id, or in the SOR its origin_id column
    match = side.ext_column or origin_match(emap, target)
    deletes = [w for w in writes if w.action == "delete"]
    ins_names = _names(w.values for w in inserts)
    upd_names = [n for n in _names(w.values for w in updates) if n not in side.key]
    ins_cols = [side.col(c) for c in ins_names]
    ins_cols = [c for c in ins_cols if not (c.auto_generated and c.name in side.key)]
    checked = [w for w in (*updates, *deletes) if w.expected is not None]
    exp_names = _names(w.expected or {} for w in checked)
    expected = None
    if checked:
        expected = rows_to_table(
            [{REF: w.ref, CHECK: sorted(w.expected or {}), **(w.expected or {})} for w in checked],
            [side.col(c) for c in exp_names],
            lists=(CHECK,),
        )
    return ApplyBatch(
        batch_id=batch_id,
        origin=emap.sync,
        table=side.table,
        key_columns=side.key,
        inserts=rows_to_table([{REF: w.ref, **w.values} for w in inserts], ins_cols),
        updates=rows_to_table(
            [
                {
                    REF: w.ref,
                    SET: [c for c in w.values if c not in side.key],
                    **w.values,
                    **(w.key or {}),
                }
                for w in updates
            ],
            key_cols + [side.col(c) for c in upd_names],
            lists=(SET,),
        ),
        deletes=rows_to_table([{REF: w.ref, **(w.key or {})} for w in deletes], key_cols),
        insert_match=(match,) if match and inserts else (),
        expected=expected,
    )


def split_writes(
    batch_id: str, writes: Sequence[Write], max_rows: int
) -> list[tuple[str, list[Write]]]:
    """One side's writes as (batch id, writes) parts of at most `max_rows` rows each
    (`Capabilities.max_batch_rows`), deletes first, then updates, then inserts: the order
    in which a target writes one batch, so splitting never has a row written before a
    delete or update that frees its unique values. The first part keeps `batch_id` and
    the others add `.2`, `.3`, ...: the same writes give the same ids, so a replayed plan
    finds each part's marker (and a plan saved before splitting, its one batch)."""
    if max_rows < 1:
        raise ValueError(f"max_batch_rows must be at least 1, got {max_rows}")
    ordered = [w for action in ("delete", "update", "insert") for w in writes if w.action == action]
    return [
        (batch_id if n == 0 else f"{batch_id}.{n + 1}", ordered[start : start + max_rows])
        for n, start in enumerate(range(0, len(ordered), max_rows))
    ]


def merge_results(batch_id: str, parts: Sequence[ApplyResult]) -> ApplyResult:
    """The results of one side's parts as one, as if it had been one batch."""
    keys: dict[str, dict[str, Any]] = {}
    rejected: dict[str, str] = {}
    for r in parts:
        keys.update(r.keys)
        rejected.update(r.rejected)
    return ApplyResult(
        batch_id=batch_id,
        keys=keys,
        inserted=sum(r.inserted for r in parts),
        updated=sum(r.updated for r in parts),
        deleted=sum(r.deleted for r in parts),
        missing=tuple(ref for r in parts for ref in r.missing),
        rejected=rejected,
        stale=tuple(ref for r in parts for ref in r.stale),
    )


def _set_of(w: Write, key: Sequence[str]) -> list[str]:
    return [c for c in w.values if c not in key]


def _names(dicts: Any) -> list[str]:
    seen: dict[str, None] = {}
    for d in dicts:
        for c in d:
            seen.setdefault(c, None)
    return list(seen)


def waits_for_relative(detail: dict[str, Any] | None) -> bool:
    """A record that waits for a parent or for children: worth another pass in the same
    run once they move (one waiting for an external id is not)."""
    return (detail or {}).get("waits_for") in ("parent", "children")


class EntityEngine:
    def __init__(
        self,
        emap: EntityMap,
        store: StateStore,
        connectors: dict[Letter, Connector],
        maps: Callable[[str], EntityMap] | None = None,
        retry: RetrySettings | None = None,
        run_id: str | None = None,
    ) -> None:
        """`maps`: the other entities of the sync by name (a parent delete looks at the
        children that refer to it); `retry`: the sync's `retry:` (a failed record's next
        try, and when it is parked)."""
        self.m = emap
        self.retry = retry or RetrySettings()
        self._attempts: dict[int, int] = {}  # entry id -> its failed tries before this run
        self._entries: dict[int, JournalEntry] = {}  # the entries being planned, by id
        self.run_id = run_id  # the Dagster run (or CLI process) recorded with each outcome
        self.store = store
        self.connectors = connectors
        self.maps = maps
        self.planner = Planner(emap)
        # what the last `run` did, for the passes of docs/relationships.md
        self.progress = False  # wrote a row or linked a record
        self.waiting: set[int] = set()  # entries waiting for a parent or for children
        self.waits: list[tuple[Node, Node]] = []
        self.waiting_records = 0  # records left waiting for a parent by the last run
        self.vanished: set[str] = set()  # entities given journal entries for vanished rows
        self._told: set[tuple[str, str, str]] = set()  # vanished rows journaled, once each

    def run(
        self,
        report: EntityReport,
        chunk_size: int = 1000,
        full: bool = False,
        only: set[int] | None = None,
        break_nodes: frozenset[Node] = frozenset(),
    ) -> None:
        """Apply everything pending for the entity: first in-flight batches, then the rest
        (`only`: just these entries, another pass over records that waited)."""
        start = time.monotonic()
        m = self.m
        self.progress = False
        self.waiting = set()
        self.waits = []
        self.waiting_records = 0
        self.vanished = set()
        self.recover(report)
        after = 0 if not only else min(only) - 1
        while True:
            entries = self.store.pending(m.sync, m.entity, limit=chunk_size, after_id=after)
            if not entries:
                break
            after = entries[-1].id
            fresh = [e for e in entries if e.batch_id is None and (only is None or e.id in only)]
            if fresh:
                batch_id = f"{m.sync}.{m.entity}.{uuid.uuid4().hex[:16]}"
                self._chunk(fresh, batch_id, report, full, break_nodes)
        report.duration_s += time.monotonic() - start

    def recover(self, report: EntityReport) -> None:
        """Finish the batches a crash left in flight: a saved plan is replayed, one without
        is handed back to be planned again. A `full` run does this before it compares both
        sides, which would otherwise take a row such a batch created for a record and the
        record itself for two unlinked rows."""
        m = self.m
        for batch_id in self.store.in_flight_batches(m.sync, m.entity):
            entries = [e for e in self.store.pending(m.sync, m.entity) if e.batch_id == batch_id]
            self._attempts.update((e.id, e.attempts) for e in entries)
            self._entries.update((e.id, e) for e in entries)
            saved = self.store.load_plan(batch_id)
            if saved is None:
                # nothing was written for it (the plan is saved before any write): plan again
                self.store.record(
                    BatchRecord(
                        m.sync,
                        m.entity,
                        release=[e.id for e in entries],
                        finished_batch_ids=[batch_id],
                    )
                )
                continue
            report.recovered_batches += 1
            self._execute(plan_from_text(saved), batch_id, report)

    def _chunk(
        self,
        entries: list[JournalEntry],
        batch_id: str,
        report: EntityReport,
        full: bool,
        break_nodes: frozenset[Node],
    ) -> None:
        claimed = set(self.store.set_batch([e.id for e in entries], batch_id))
        entries = [e for e in entries if e.id in claimed]
        if not entries:
            return  # another run took them
        failpoints.hit(failpoints.AFTER_CLAIM)
        self._attempts.update((e.id, e.attempts) for e in entries)
        self._entries.update((e.id, e) for e in entries)
        report.taken += len(entries)
        fast: fastpath.Split | None = None
        if fastpath.ENABLED and not full and not break_nodes:
            # one-sided updates of linked records, decided in bulk (pipeline/fastpath.py);
            # what it does not take goes through the planner
            fast = fastpath.split(self.planner, self.store, entries)
            entries = fast.rest
        if not entries:
            if fast is not None:
                self._fast(fast, batch_id, report, finish=True)
            return
        ctx = load_context(self.m, self.store, self.connectors, entries, full)
        plan = self.planner.plan(entries, ctx, break_nodes)
        if fast is not None:
            # written once the planner's rows are read: a chunk reads both sides before it
            # writes either, as a chunk without the fast path does
            self._fast(fast, batch_id, report, finish=False)
        if self.maps is not None and self.m.children:
            plan = clear_children(self, plan, batch_id, report)
        self.waits += plan.waits
        todo = [v for v in plan.vanished if (v[0], v[1], key_text(v[2])) not in self._told]
        if todo and self.maps is not None:
            self._told.update((v[0], v[1], key_text(v[2])) for v in todo)
            self.vanished |= journal_vanished(self, todo)
        self.waiting.update(u.entry_id for u in plan.updates if waits_for_relative(u.detail))
        if plan.writes and any(r.write_back or r.conflicts for r in plan.records):
            self.store.save_plan(self.m.sync, self.m.entity, batch_id, plan_to_text(plan))
        failpoints.hit(failpoints.AFTER_PLAN_SAVED)
        self._execute(plan, batch_id, report)
        if self.maps is not None and self.m.children:
            recheck_children(self, plan)

    def _fast(
        self, fast: fastpath.Split, batch_id: str, report: EntityReport, finish: bool
    ) -> None:
        """Apply and record the records the fast path decided (`finish`: nothing of the
        batch is left for the planner). A fast write found stale is released like the
        planner's: the next run merges it from both rows (a released entry has a try
        counted, which the fast path leaves to the planner)."""
        if not fast.plan.records:
            return
        report.fast_path += len(fast.plan.records)
        self._execute(fast.plan, batch_id, report, fast=True, finish=finish)

    def _execute(
        self,
        plan: Plan,
        batch_id: str,
        report: EntityReport,
        fast: bool = False,
        finish: bool = True,
    ) -> None:
        """Write and record a plan; `finish`: the batch is done with it (the fast path's
        part of a batch leaves it claimed for the planner's part)."""
        report.skipped_echoes += plan.skipped
        report.conflicts += plan.conflicts
        report.waiting += plan.waiting
        report.failed += plan.failed
        report.deferred += plan.deferred
        self.waiting_records += plan.waiting_parent
        report.translated += sum(
            1
            for w in plan.writes
            for r in self.m.references
            if w.values.get(r.column(w.target)) is not None
        )
        # the fast path's writes carry batch ids of their own: a target's marker of
        # `<batch>.b` must not answer for the planner's writes of the same batch
        write_id = f"{batch_id}.f" if fast else batch_id
        results = self._apply_sides(plan, write_id) if plan.writes else {}
        out = _Outcome()
        for rec in plan.records:
            self._settle(rec, results, report, out)
        if out.write_backs:
            self._write_back(out, results, batch_id, report)
        failpoints.hit(failpoints.AFTER_APPLY)
        if out.links or out.drop or any(r.writes for r in plan.records):
            self.progress = True
        self.store.record(
            BatchRecord(
                self.m.sync,
                self.m.entity,
                entries=self._schedule([*plan.updates, *out.updates], report),
                upsert_links=out.links,
                delete_links=out.drop,
                finished_batch_ids=[batch_id] if finish else [],
                conflicts=out.conflicts,
                release=[*plan.release, *out.release],
            )
        )

    def _schedule(self, updates: Sequence[EntryUpdate], report: EntityReport) -> list[EntryUpdate]:
        """A failed record's next try: no sooner than the `retry.records` backoff after
        this one; after `retry.records.attempts` tries in all it is parked (left for
        `syncswim retry` or a manual materialisation) so it stops costing every run."""
        rules = self.retry.records
        now = datetime.now(UTC)
        out: list[EntryUpdate] = []
        for u in updates:
            if u.status != "failed":
                out.append(u)
                continue
            tries = self._attempts.get(u.entry_id, 0) + 1
            detail = {**(u.detail or {}), "attempts": tries}
            if self.run_id is not None:
                detail.setdefault("run_id", self.run_id)
            entry = self._entries.get(u.entry_id)
            where = f"{self.m.sync}.{self.m.entity}"
            if entry is not None:
                where += f" {key_label(entry.side, entry.change.key)} ({entry.change.op.value})"
            error = detail.get("error", "")
            if tries >= rules.attempts:
                report.parked += 1
                detail["parked"] = f"after {tries} tries (retry.records.attempts)"
                out.append(EntryUpdate(u.entry_id, "parked", detail))
                report.note_event(
                    "error",
                    f"parked {where} after {tries} tries: {error}; fix the cause, then "
                    "syncswim retry (or materialise the asset by hand)",
                )
                continue
            due = now + timedelta(seconds=cap(tries, rules.base_seconds, rules.max_seconds))
            detail["next_attempt_at"] = due.isoformat()
            out.append(EntryUpdate(u.entry_id, "failed", detail, due))
            report.note_event(
                "warning",
                f"failed {where} (try {tries} of {rules.attempts}): {error}; "
                f"tried again from {due:%Y-%m-%d %H:%M:%S} UTC",
            )
        return out

    def _apply_sides(self, plan: Plan, batch_id: str) -> dict[Letter, ApplyResult]:
        results: dict[Letter, ApplyResult] = {}
        targets: tuple[Letter, Letter] = ("a", "b")
        for t in targets:
            writes = [w for w in plan.writes if w.target == t]
            writes = with_origin_ids(self.m, t, plan.records, writes)
            if not writes:
                results[t] = ApplyResult(batch_id=f"{batch_id}.{t}")
                continue
            results[t] = self._apply(t, f"{batch_id}.{t}", writes)
            failpoints.hit(failpoints.BETWEEN_SIDES)
        return results

    def _apply(self, target: Letter, batch_id: str, writes: Sequence[Write]) -> ApplyResult:
        """One side's writes for the entity's table, in batches the target takes."""
        conn = self.connectors[target]
        limit = conn.capabilities.max_batch_rows
        parts = [
            conn.apply(build_batch(self.m, target, part_id, part))
            for part_id, part in split_writes(batch_id, writes, limit)
        ]
        return merge_results(batch_id, parts)

    def _settle(
        self,
        rec: RecordPlan,
        results: dict[Letter, ApplyResult],
        report: EntityReport,
        out: _Outcome,
    ) -> None:
        m = self.m
        keys: dict[Letter, dict[str, Any] | None] = {"a": rec.key_a, "b": rec.key_b}
        detail: dict[str, Any] = dict(rec.detail)
        written: list[dict[str, Any]] = []
        failed: list[str] = []
        stale: list[Write] = []
        outcomes: list[tuple[Write, str]] = []
        for w in rec.writes:
            res = results[w.target]
            endpoint = m.side(w.target).endpoint
            written.append({"target": endpoint, "action": w.action, "values": w.values})
            if w.ref in res.rejected:
                failed.append(f"{endpoint}: {res.rejected[w.ref]}")
                outcomes.append((w, f"rejected: {res.rejected[w.ref]}"))
                continue
            if w.ref in res.stale:
                stale.append(w)
                outcomes.append((w, "stale: the row changed underneath, merged next run"))
                continue
            if w.ref in res.missing and w.action == "update":
                stale.append(w)  # gone underneath: its delete comes with the next capture
                outcomes.append((w, "stale: the row is gone, its delete comes next"))
                continue
            counts = report.side(endpoint)
            if w.action == "insert":
                counts.inserted += 1
                keys[w.target] = res.keys.get(w.ref, keys[w.target])
            elif w.action == "update":
                counts.updated += 1
            elif w.ref not in res.missing:
                counts.deleted += 1
            outcomes.append((w, "applied" if w.ref not in res.missing else "already gone"))
        for w, outcome in outcomes:
            if report.keeps_change():
                report.note_change(change_row(m, w, outcome, keys))
            else:
                report.changes_total += 1  # counted; its row would not be kept
        # both sides' keys: a key alone names a row of one side only
        detail["record"] = {m.a.endpoint: keys["a"], m.b.endpoint: keys["b"]}
        if self.run_id is not None:
            detail["run_id"] = self.run_id
        transforms = {
            f"{m.side(w.target).endpoint}.{col}": name
            for w in rec.writes
            for col, name in transforms_of(m, w).items()
        }
        if transforms:
            detail["transforms"] = transforms
        if written:
            detail["writes"] = written
        if failed:
            report.failed += 1
            report.errors.extend(failed)
            detail["error"] = "; ".join(failed)
            out.updates += [EntryUpdate(i, "failed", detail) for i in rec.entry_ids]
            return
        if stale:
            report.stale += 1
            out.release += rec.entry_ids
            if len(stale) < len(rec.writes) and rec.shadow is not None and not rec.drop_link:
                # the other side's write went through: what it wrote is agreed now, or the
                # next run would take it for a change (and undo the edit that made the
                # first write stale); the stale side's fields keep their old base
                shadow = self._partial_shadow(rec, stale)
                out.links.append(Link(m.sync, m.entity, keys["a"], keys["b"], shadow, rec.ext_id))
                out.conflicts += [c for c in rec.conflicts if not _touches(c, stale, m)]
            return
        if rec.hold:
            # linked now; the entries come back so the next pass sets the held reference
            report.held += 1
            out.release += rec.entry_ids
            self.waiting.update(rec.entry_ids)
        else:
            out.updates += [EntryUpdate(i, rec.status, detail) for i in rec.entry_ids]
        out.conflicts += rec.conflicts
        for c in rec.conflicts:
            report.note_event(*conflict_event(m, c))
        if rec.drop_link:
            if rec.old_link is not None:
                out.drop.append(rec.old_link)
            return
        link = Link(m.sync, m.entity, keys["a"], keys["b"], rec.shadow, rec.ext_id)
        if rec.write_back:
            out.write_backs.append((rec, link))
        else:
            out.links.append(link)

    def _partial_shadow(self, rec: RecordPlan, stale: Sequence[Write]) -> dict[str, Any]:
        m = self.m
        assert rec.shadow is not None
        new = {letter: dict(values) for letter, values in rec.shadow.items()}
        old = (rec.old_link.shadow if rec.old_link is not None else None) or {}
        for w in stale:
            target = w.target
            source = other(target)
            for col in w.values:
                cols: list[tuple[Letter, str]] = [(target, col)]
                pair = next((p for p in m.merge_fields() if _col(p, target) == col), None)
                if pair is not None:
                    cols.append((source, _col(pair, source)))
                for letter, c in cols:
                    base = old.get(letter) or {}
                    if c in base:
                        new.setdefault(letter, {})[c] = base[c]
                    else:
                        new.setdefault(letter, {}).pop(c, None)
        return new

    def _write_back(
        self,
        out: _Outcome,
        results: dict[Letter, ApplyResult],
        batch_id: str,
        report: EntityReport,
    ) -> None:
        """The SOR generated keys for rows born on the other side: store them there."""
        m = self.m
        sor: Letter = m.sor or "a"
        back: Letter = other(sor)
        side = m.side(back)
        assert side.ext_column is not None
        ext_col = side.col(side.ext_column)
        failpoints.hit(failpoints.BEFORE_WRITE_BACK)
        writes: list[Write] = []
        for rec, link in out.write_backs:
            sor_key = link.key_a if sor == "a" else link.key_b
            back_key = link.key_b if sor == "a" else link.key_a
            if sor_key is None or back_key is None:
                continue
            value = coerce(m.sor_key_value(sor_key), ext_col)
            writes.append(Write.update(rec.ref, back, back_key, {ext_col.name: value}, None))
        by_ref = {w.ref: w for w in writes}
        res = self._apply(back, f"{batch_id}.wb", writes)
        failpoints.hit(failpoints.AFTER_WRITE_BACK)
        report.write_backs += res.updated
        for ref, err in res.rejected.items():
            report.failed += 1
            report.errors.append(f"write-back of {ref}: {err}")
        for rec, link in out.write_backs:
            w = by_ref.get(rec.ref)
            if w is not None and w.ref not in res.rejected and link.shadow is not None:
                shadow = dict(link.shadow)
                shadow[back] = {**shadow.get(back, {}), **w.values}
                link = Link(link.sync, link.entity, link.key_a, link.key_b, shadow, link.ext_id)
            out.links.append(link)


def _col(pair: FieldPair, letter: Letter) -> str:
    return pair[0] if letter == "a" else pair[1]


def _touches(c: ConflictRecord, stale: Sequence[Write], m: EntityMap) -> bool:
    """Whether a conflict's decided field was to be written by one of the stale writes
    (then the next run decides it again and records it then)."""
    pair = next((p for p in m.merge_fields() if p[0] == c.field), None)
    if pair is None:
        return False
    return any(_col(pair, w.target) in w.values for w in stale)


class _Outcome:
    def __init__(self) -> None:
        self.updates: list[EntryUpdate] = []
        self.links: list[Link] = []
        self.drop: list[Link] = []
        self.conflicts: list[ConflictRecord] = []
        self.release: list[int] = []
        self.write_backs: list[tuple[RecordPlan, Link]] = []
