"""Apply: one ApplyBatch in one commit of the memory database, with its marker.

The steps are the SQL connectors' (see `postgres/apply.py`): claim the batch's marker (a
second delivery waits for the first, then gets its stored result and writes nothing); run
`MemoryDatabase.apply_hook` (a test's edit "during a run" lands here, before the rows
are read); lock the target rows of the updates and deletes (waiting for `hold_row`);
compare-and-set against `expected`; then deletes, updates (only the `__set` columns),
inserts (an `insert_match` hit updates the row it finds). A row the database refuses
(type, NOT NULL, unique) is rejected alone, the others are written; the marker and every
written row commit together, tagged with the batch's origin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from syncswim_lib.connectors.base import ApplyBatch, ApplyResult
from syncswim_lib.connectors.memory.batch import check_batch
from syncswim_lib.connectors.memory.database import Key, MemoryDatabase, Transaction, _Table
from syncswim_lib.connectors.memory.values import IntegrityError, copy_row, stored
from syncswim_lib.connectors.results import (
    REF,
    Expected,
    expected_rows,
    null_key,
    set_columns,
    value_columns,
)
from syncswim_lib.errors import FatalError
from syncswim_lib.values.coerce import holds

_Item = tuple[str, dict[str, Any], dict[str, Any]]  # (__ref, key, values to set)


class _Writer:
    def __init__(
        self, db: MemoryDatabase, t: _Table, batch: ApplyBatch, expected: dict[str, Expected]
    ) -> None:
        self.db = db
        self.t = t
        self.batch = batch
        self.expected = expected
        self.keys: dict[str, dict[str, Any]] = {}
        self.missing: list[str] = []
        self.stale: list[str] = []
        self.rejected: dict[str, str] = {}
        pk = t.info.primary_key
        self.returning = [*pk, *(k for k in batch.key_columns if k not in pk)]

    def stored_values(self, row: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
        return {n: stored(row.get(n), self.t.column(n)) for n in names}

    def find(self, key: Mapping[str, Any]) -> list[tuple[Key, dict[str, Any]]]:
        if any(v is None for v in key.values()):
            return []  # NULL equals nothing
        return self.db._matching(self.t, key)

    def targets(self) -> list[tuple[str, Key]]:
        """The rows this batch will update or delete (or update by `insert_match`), to
        lock before any is read for compare-and-set."""
        keys: list[dict[str, Any]] = []
        for part, names in (
            (self.batch.deletes, self.batch.key_columns),
            (self.batch.updates, self.batch.key_columns),
            (self.batch.inserts, self.batch.insert_match),
        ):
            if not names or not part.num_rows or any(n not in part.column_names for n in names):
                continue
            for row in part.select(list(names)).to_pylist():
                try:
                    keys.append(self.stored_values(row, names))
                except IntegrityError:
                    continue
        name = self.t.info.name
        return [(name, pk) for key in keys for pk, _ in self.find(key)]

    def record_key(self, ref: str, row: Mapping[str, Any]) -> None:
        self.keys[ref] = {c: row.get(c) for c in self.returning}

    def keyed(self, row: Mapping[str, Any], names: Sequence[str]) -> _Item | None:
        """An update/delete row's key (never NULL) and values to set; None if rejected."""
        ref = str(row[REF])
        if (why := null_key(row, self.batch.key_columns)) is not None:
            self.rejected[ref] = why
            return None
        try:
            values = self.stored_values(row, names)
            key = self.stored_values(row, self.batch.key_columns)
        except IntegrityError as exc:
            self.rejected[ref] = str(exc)
            return None
        return (ref, key, values)

    def verify(self, items: list[_Item]) -> list[_Item]:
        """The rows to write: those without an expected row, and those whose target still
        holds the expected values; the others go to `stale` or `missing`."""
        keep = []
        for item in items:
            ref, key, _ = item
            want = self.expected.get(ref)
            if want is None:
                keep.append(item)
                continue
            current = self.find(key)
            if not current:
                self.missing.append(ref)
            elif all(self._holds(row, want) for _, row in current):
                keep.append(item)
            else:
                self.stale.append(ref)
        return keep

    def _holds(self, row: Mapping[str, Any], want: Expected) -> bool:
        return all(holds(row.get(c), want.values[c], self.t.column(c)) for c in want.check)

    def write(self, txn: Transaction, ref: str, key: dict[str, Any], values: Any) -> bool:
        """Update (`values` a dict) or delete (`values` None) every row `key` finds, all or
        none of them; False when there was no row."""
        found = self.find(key)
        if not found:
            self.missing.append(ref)
            return False
        point = txn.savepoint()
        written = None
        try:
            for pk, row in found:
                if values is None:
                    txn._write(self.t, pk, None)
                    written = written or row
                else:
                    new = txn._update_row(self.t, pk, values)
                    written = written or new
        except IntegrityError as exc:
            txn.rollback_to(point)
            self.rejected[ref] = str(exc)
            return False
        assert written is not None
        self.record_key(ref, written)
        return True

    def deletes(self, txn: Transaction) -> int:
        rows = self.batch.deletes.to_pylist()
        items = [k for r in rows if (k := self.keyed(r, [])) is not None]
        return sum(self.write(txn, ref, key, None) for ref, key, _ in self.verify(items))

    def updates(self, txn: Transaction) -> int:
        updates = self.batch.updates
        if not updates.num_rows:
            return 0
        values = value_columns(updates, self.batch.key_columns)
        items = []
        for row in updates.to_pylist():
            names = set_columns(row, values, self.batch.batch_id)
            if (k := self.keyed(row, names)) is not None:
                items.append(k)
        return sum(self.write(txn, ref, key, vals) for ref, key, vals in self.verify(items))

    def inserts(self, txn: Transaction) -> tuple[int, int]:
        """(inserted, updated): an insert whose `insert_match` values exist updates that row."""
        rows = self.batch.inserts.to_pylist()
        names = [n for n in self.batch.inserts.column_names if n != REF]
        match = list(self.batch.insert_match)
        matched = 0
        if match and rows:
            set_names = [n for n in names if n not in match]
            rest = []
            for r in rows:
                ref = str(r[REF])
                try:
                    values = self.stored_values(r, set_names)
                    key = self.stored_values(r, match)
                except IntegrityError as exc:
                    self.rejected[ref] = str(exc)
                    continue
                if not self.find(key):
                    rest.append(r)
                elif self.write(txn, ref, key, values):
                    matched += 1
            rows = rest
        inserted = 0
        for r in rows:
            ref = str(r[REF])
            given = {
                n: r.get(n)
                for n in names
                if r.get(n) is not None or not self.t.column(n).auto_generated
            }
            point = txn.savepoint()
            try:
                new = txn.insert(self.t.info.name, given)
            except IntegrityError as exc:
                txn.rollback_to(point)
                self.rejected[ref] = str(exc)
                continue
            inserted += 1
            self.record_key(ref, new)
        return inserted, matched


def apply_batch(db: MemoryDatabase, batch: ApplyBatch) -> ApplyResult:
    with db._cond:
        t = db._table(batch.table)
    check_batch(batch, t.info)
    expected = expected_rows(batch.expected, t.info, batch.batch_id)
    owner = object()
    batch_id = batch.batch_id
    with db._cond:
        if db._markers is None:
            raise FatalError(
                f"memory database {db.name} has no marker store: run the setup of sync "
                f"{batch.origin} before applying"
            )
        # a second delivery waits for the first to commit or roll back
        db._wait_until(lambda: db._claims.get(batch_id, owner) is owner, f"batch {batch_id}")
        done = db._markers.get(batch_id)
        if done is not None:
            return done.result  # a committed batch again: write nothing
        db._claims[batch_id] = owner
    try:
        hook = db.apply_hook
        if hook is not None:
            hook(batch)
        with db._cond:
            if db._markers is None:
                raise FatalError(f"memory database {db.name}: the marker store was dropped")
            t = db._table(batch.table)
            writer = _Writer(db, t, batch, expected)
            db._wait_until(
                lambda: db._free(writer.targets(), owner), f"rows of {t.info.name} for {batch_id}"
            )
            txn = Transaction(db, batch.origin, owner)
            try:
                deleted = writer.deletes(txn)
                updated = writer.updates(txn)
                inserted, matched = writer.inserts(txn)
                result = ApplyResult(
                    batch_id=batch_id,
                    keys={ref: copy_row(key) for ref, key in writer.keys.items()},
                    inserted=inserted,
                    updated=updated + matched,
                    deleted=deleted,
                    missing=tuple(writer.missing),
                    rejected=dict(writer.rejected),
                    stale=tuple(writer.stale),
                )
                txn.markers.append((batch_id, batch.origin, result))
                db._commit(txn)
            except BaseException:
                txn.rollback()
                raise
            return result
    finally:
        with db._cond:
            if db._claims.get(batch_id) is owner:
                del db._claims[batch_id]
            db._cond.notify_all()
