"""The org: records, recycle bin and transactions; the single source of truth.

One re-entrant lock guards everything. A transaction holds it from start to commit, so
commits are totally ordered and published to the change sink in commit order.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from . import ids
from .contract import (
    ApiError,
    CallContext,
    ChangeSink,
    ChangeType,
    Clock,
    CommittedTransaction,
    RecordChange,
)
from .describe import describe_global, describe_object
from .schema import FieldDef, ObjectDef, Schema
from .soql import QueryResult, execute
from .validate import LookupErrors, Validator, ext_key
from .values import fmt_datetime

Rec = dict[str, Any]
NOT_FOUND = "The requested resource does not exist"


class MultipleMatches(ApiError):
    """Upsert or get by external id matched more than one record (HTTP 300)."""

    def __init__(self, sobject: str, matched: list[str]) -> None:
        super().__init__(300, "MULTIPLE_CHOICES", f"{len(matched)} records match")
        self.sobject = sobject
        self.ids = matched


class Journal(Protocol):
    def append(self, entry: Mapping[str, Any]) -> None: ...


_V4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_V4_SET = (0x8000 << 48) | (4 << 76)
# Own generator: a test's random.seed() must not make keys repeat; reseeded in a fork child.
_KEYS = random.Random()
os.register_at_fork(after_in_child=_KEYS.seed)


def _transaction_key() -> str:
    """str(uuid.uuid4()) without os.urandom (a syscall) and uuid.UUID's checks: a key
    needs to be unique, not secret."""
    h = f"{_KEYS.getrandbits(128) & _V4_CLEAR | _V4_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def public(rec: Rec) -> Rec:
    """The record without the org's bookkeeping keys (they start with an underscore)."""
    return {k: v for k, v in rec.items() if k[0] != "_"}


class _Tx:
    def __init__(self, ctx: CallContext, all_or_none: bool, ts: str, publish: bool) -> None:
        self.ctx = ctx
        self.publish = publish
        self.all_or_none = all_or_none
        self.ts = ts
        self.undo: list[tuple[str, Rec | None]] = []
        self.changes: list[RecordChange] = []
        self.touched: dict[str, None] = {}
        self.rollback_requested = False

    def rollback(self) -> None:
        """Ask for the whole transaction to be discarded when its block ends."""
        self.rollback_requested = True


class _Source:
    def __init__(self, org: Org, include_deleted: bool) -> None:
        self.org, self.all = org, include_deleted

    def scan(self, sobject: str) -> Iterable[Rec]:
        records = self.org._records
        for rid in self.org._by_type.get(sobject, {}):
            rec = records[rid]
            if self.all or not rec["IsDeleted"]:
                yield rec

    def get(self, record_id: str) -> Rec | None:
        rec = self.org._records.get(record_id)
        if rec is None or (rec["IsDeleted"] and not self.all):
            return None
        return rec

    def now(self) -> datetime:
        return self.org.clock.now()


class Org:
    def __init__(
        self,
        clock: Clock,
        schema: Schema,
        sink: ChangeSink,
        journal: Journal | None = None,
        org_id: str = "00D5e0000000001",
    ) -> None:
        self.clock = clock
        self.schema = schema
        self.sink = sink
        self.journal = journal
        self.org_id = ids.to18(org_id)
        self.lock = threading.RLock()
        self.ids = ids.IdGenerator()
        self.lookup_errors = LookupErrors()
        self.sink_errors: list[str] = []
        self._records: dict[str, Rec] = {}
        self._by_type: dict[str, dict[str, None]] = {}
        self._ext: dict[tuple[str, str], dict[str, set[str]]] = {}
        self._tx: _Tx | None = None
        self.commit_number = 0
        self.last_purge: str | None = None
        self._validator = Validator(schema, self._live, self.find_ext, self.lookup_errors)

    # --- sessions (set by the emulator; CometD authenticates through here) ---------------
    authenticate: Callable[[str], CallContext | None] | None = None

    def context_for_token(self, token: str) -> CallContext | None:
        return self.authenticate(token) if self.authenticate is not None else None

    def object_names(self) -> list[str]:
        with self.lock:
            return [o.name for o in self.schema.objects.values()]

    def derived_fields(self, sobject: str) -> set[str]:
        """Fields a change event never carries: compound wrappers and calculated fields."""
        obj = self.schema.get(sobject)
        if obj is None:
            return set()
        return set(obj.derived_names)

    # --- storage primitives ------------------------------------------------------------
    def _live(self, rid: str) -> Rec | None:
        rec = self._records.get(rid)
        return None if rec is None or rec["IsDeleted"] else rec

    def _indexed(self, obj: ObjectDef) -> tuple[FieldDef, ...]:
        return obj.indexed_fields

    def _index(self, rec: Rec, add: bool) -> None:
        if rec["IsDeleted"]:
            return
        obj = self.schema.get(rec["_type"])
        if obj is None:
            return
        for f in self._indexed(obj):
            v = rec.get(f.name)
            if v is None:
                continue
            bucket = self._ext.setdefault((obj.name, f.name), {})
            key = ext_key(f, v)
            if add:
                bucket.setdefault(key, set()).add(rec["Id"])
            else:
                ids_ = bucket.get(key)
                if ids_:
                    ids_.discard(rec["Id"])
                    if not ids_:
                        del bucket[key]

    def _put(self, rid: str, new: Rec | None, log_undo: bool = True) -> None:
        prev = self._records.get(rid)
        if log_undo and self._tx is not None:
            self._tx.undo.append((rid, prev))
            self._tx.touched[rid] = None
        if prev is not None:
            self._index(prev, add=False)
        if new is None:
            self._records.pop(rid, None)
            if prev is not None:
                self._by_type.get(prev["_type"], {}).pop(rid, None)
            return
        self._records[rid] = new
        self._by_type.setdefault(new["_type"], {})[rid] = None
        self._index(new, add=True)

    def find_ext(self, sobject: str, field_name: str, value: Any) -> list[str]:
        obj = self.schema.require(sobject)
        f = obj.field(field_name)
        if f is None:
            return []
        if not (f.external_id or f.unique):
            return [
                r["Id"]
                for r in _Source(self, False).scan(obj.name)
                if r.get(f.name) is not None and ext_key(f, r[f.name]) == ext_key(f, value)
            ]
        return sorted(self._ext.get((obj.name, f.name), {}).get(ext_key(f, value), ()))

    # --- transactions ----------------------------------------------------------------
    @contextmanager
    def transaction(
        self, ctx: CallContext, all_or_none: bool = True, publish: bool = True
    ) -> Iterator[_Tx]:
        """Group operations into one committed transaction (one change-sink publish).

        With all_or_none an exception undoes everything; otherwise what succeeded is
        committed and the exception still propagates. `tx.rollback()` discards all.
        `publish=False` is for bootstrap writes (default users) that must not show as events.
        """
        with self.lock:
            if self._tx is not None:  # nested: join the caller's transaction
                yield self._tx
                return
            ts = fmt_datetime(self.clock.now())
            tx = _Tx(ctx, all_or_none, ts, publish)
            self._tx = tx
            try:
                yield tx
            except BaseException:
                if all_or_none:
                    self._rollback_to(tx, 0)
                else:
                    self._commit(tx)
                raise
            else:
                if tx.rollback_requested:
                    self._rollback_to(tx, 0)
                else:
                    self._commit(tx)
            finally:
                self._tx = None

    @contextmanager
    def _atomic(self) -> Iterator[_Tx]:
        """One operation: all its effects or none, inside the current transaction."""
        assert self._tx is not None
        tx = self._tx
        mark, changes = len(tx.undo), len(tx.changes)
        try:
            yield tx
        except BaseException:
            self._rollback_to(tx, mark)
            del tx.changes[changes:]
            raise

    def _rollback_to(self, tx: _Tx, mark: int) -> None:
        while len(tx.undo) > mark:
            rid, prev = tx.undo.pop()
            self._put(rid, prev, log_undo=False)
        if mark == 0:
            tx.changes.clear()
            tx.touched.clear()

    def _commit(self, tx: _Tx) -> None:
        if not tx.touched:
            return
        self.commit_number += 1
        if self.journal is not None:
            puts = {rid: self._records.get(rid) for rid in tx.touched}
            self.journal.append(
                {
                    "k": "tx",
                    "n": self.commit_number,
                    "seq": self.ids.last,
                    "purge": self.last_purge,
                    "puts": puts,
                }
            )
        changes = _coalesce(tx.changes)
        if not changes or not tx.publish:
            return
        committed = CommittedTransaction(
            changes=tuple(changes),
            ctx=tx.ctx,
            commit_timestamp=self.clock.now(),
            transaction_key=_transaction_key(),
            commit_number=self.commit_number,
        )
        try:
            self.sink.publish(committed)
        except Exception as exc:  # the data is committed; a broken bus must not undo it
            self.sink_errors.append(repr(exc))

    def _change(
        self,
        tx: _Tx,
        kind: ChangeType,
        rec_type: str,
        rid: str,
        before: Rec | None,
        after: Rec | None,
    ) -> None:
        tx.changes.append(
            RecordChange(
                rec_type,
                kind,
                rid,
                public(before) if before else None,
                public(after) if after else None,
            )
        )

    # --- record access -----------------------------------------------------------------
    def _resolve_id(self, obj: ObjectDef, record_id: str) -> str:
        rid = ids.normalize(record_id)
        if rid is None:
            raise ApiError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {record_id}",
            )
        if ids.prefix(rid) != obj.key_prefix:
            raise ApiError(
                400,
                "MALFORMED_ID",
                f"{obj.label} ID: id value of incorrect type: {record_id}",
                ["Id"],
            )
        return rid

    def _existing(self, obj: ObjectDef, record_id: str) -> Rec:
        rec = self._records.get(self._resolve_id(obj, record_id))
        if rec is None:
            raise ApiError(404, "NOT_FOUND", NOT_FOUND)
        if rec["IsDeleted"]:
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        return rec

    def get(self, sobject: str, record_id: str) -> Rec:
        """The live record (bookkeeping stripped); raises like a REST GET would."""
        with self.lock:
            return public(self._existing(self.schema.require(sobject), record_id))

    def record(self, record_id: str) -> Rec | None:
        """Any stored record by id, deleted included, with `_type`; None when purged."""
        with self.lock:
            rid = ids.normalize(record_id)
            rec = self._records.get(rid) if rid else None
            return dict(rec) if rec else None

    def object_of(self, record_id: str) -> ObjectDef | None:
        return self.schema.by_prefix.get(record_id[:3])

    # --- writes --------------------------------------------------------------------------
    def create(
        self, ctx: CallContext, sobject: str, fields: Mapping[str, Any], allow_system: bool = False
    ) -> str:
        with self.transaction(ctx) as tx, self._atomic():
            obj = self.schema.require(sobject)
            if any(k.lower() == "id" for k in fields) and not allow_system:
                raise ApiError(
                    400,
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    "Unable to create/update fields: Id. Please check the security "
                    "settings of this field and verify that it is read/write for "
                    "your profile or permission set.",
                    ["Id"],
                )
            rid = self.ids.next(obj.key_prefix)
            rec: Rec = dict(obj.blank_record)
            rec.update(
                {
                    "_type": obj.name,
                    "Id": rid,
                    "IsDeleted": False,
                    "CreatedDate": tx.ts,
                    "CreatedById": ctx.user_id,
                    "LastModifiedDate": tx.ts,
                    "LastModifiedById": ctx.user_id,
                    "SystemModstamp": tx.ts,
                }
            )
            if "ownerid" in obj.by_lower:
                rec["OwnerId"] = ctx.user_id
            self._validator.apply(obj, rec, fields, creating=True, allow_system=allow_system)
            self._check_unique(obj, rec)
            self._put(rid, rec)
            self._change(tx, "CREATE", obj.name, rid, None, rec)
            return rid

    def update(
        self,
        ctx: CallContext,
        sobject: str,
        record_id: str,
        fields: Mapping[str, Any],
        allow_system: bool = False,
    ) -> None:
        with self.transaction(ctx) as tx, self._atomic():
            obj = self.schema.require(sobject)
            before = self._existing(obj, record_id)
            rec = dict(before)
            self._validator.apply(obj, rec, fields, creating=False, allow_system=allow_system)
            if not allow_system or "LastModifiedDate" not in fields:
                rec.update({"LastModifiedDate": tx.ts, "LastModifiedById": ctx.user_id})
            if not allow_system or "SystemModstamp" not in fields:
                rec["SystemModstamp"] = tx.ts
            self._check_unique(obj, rec)
            self._put(rec["Id"], rec)
            self._change(tx, "UPDATE", obj.name, rec["Id"], before, rec)

    def upsert(
        self,
        ctx: CallContext,
        sobject: str,
        ext_field: str,
        ext_value: str,
        fields: Mapping[str, Any],
        update_only: bool = False,
    ) -> tuple[str, bool]:
        with self.transaction(ctx), self._atomic():
            obj = self.schema.require(sobject)
            f = obj.field(ext_field)
            if f is None or not f.id_lookup:
                raise ApiError(
                    404,
                    "NOT_FOUND",
                    f"Provided external ID field does not exist or is not accessible: {ext_field}",
                )
            body = dict(fields)
            for key in [k for k in body if k.lower() == f.name.lower()]:
                if f.type != "id" and ext_key(f, body[key]) == ext_key(f, ext_value):
                    del body[key]
                else:
                    raise ApiError(
                        400,
                        "INVALID_FIELD",
                        f"The {f.name} field can't be set in the request body: it is "
                        "the external ID used for the upsert",
                        [f.name],
                    )
            if f.type == "id":
                if not ext_value:
                    return self.create(ctx, obj.name, body), True
                rid = self._existing(obj, ext_value)["Id"]
                self.update(ctx, obj.name, rid, body)
                return rid, False
            matched = self.find_ext(obj.name, f.name, ext_value)
            if len(matched) > 1:
                raise MultipleMatches(obj.name, matched)
            if matched:
                self.update(ctx, obj.name, matched[0], body)
                return matched[0], False
            if update_only:
                raise ApiError(404, "NOT_FOUND", NOT_FOUND)
            return self.create(ctx, obj.name, {**body, f.name: ext_value}), True

    def delete(self, ctx: CallContext, sobject: str, record_id: str) -> None:
        with self.transaction(ctx) as tx, self._atomic():
            obj = self.schema.require(sobject)
            if obj.name == "User":
                raise ApiError(400, "DELETE_FAILED", "Users cannot be deleted")
            rec = self._existing(obj, record_id)
            self._soft_delete(tx, obj, rec, None)

    def _soft_delete(self, tx: _Tx, obj: ObjectDef, rec: Rec, root: str | None) -> None:
        after = dict(rec)
        after.update(
            {
                "IsDeleted": True,
                "_deleted_at": tx.ts,
                "_cascade": root,
                "LastModifiedDate": tx.ts,
                "LastModifiedById": tx.ctx.user_id,
                "SystemModstamp": tx.ts,
            }
        )
        self._put(rec["Id"], after)
        self._change(tx, "DELETE", obj.name, rec["Id"], rec, None)
        for child, f in self.schema.children(obj.name):
            if not f.cascade_delete:
                continue
            for kid in list(_Source(self, False).scan(child.name)):
                if kid.get(f.name) == rec["Id"]:
                    self._soft_delete(tx, child, kid, root or rec["Id"])

    def undelete(self, ctx: CallContext, record_id: str) -> None:
        with self.transaction(ctx) as tx, self._atomic():
            rid = ids.normalize(record_id) or ""
            rec = self._records.get(rid)
            if rec is None:
                raise ApiError(404, "NOT_FOUND", NOT_FOUND)
            if not rec["IsDeleted"]:
                raise ApiError(400, "UNDELETE_FAILED", "Entity is not in the recycle bin")
            self._restore(tx, rec)
            for kid in [
                r for r in self._records.values() if r["IsDeleted"] and r.get("_cascade") == rid
            ]:
                self._restore(tx, kid)

    def _restore(self, tx: _Tx, rec: Rec) -> None:
        obj = self.schema.require(rec["_type"])
        after = {k: v for k, v in rec.items() if k not in ("_deleted_at", "_cascade")}
        after.update(
            {
                "IsDeleted": False,
                "LastModifiedDate": tx.ts,
                "LastModifiedById": tx.ctx.user_id,
                "SystemModstamp": tx.ts,
            }
        )
        self._check_unique(obj, after)
        self._put(rec["Id"], after)
        self._change(tx, "UNDELETE", obj.name, rec["Id"], rec, after)

    def purge(self, ctx: CallContext, record_ids: Iterable[str]) -> int:
        """Empty records from the recycle bin: a hard delete, no change event."""
        with self.transaction(ctx):
            n = 0
            for raw in record_ids:
                rid = ids.normalize(raw) or ""
                rec = self._records.get(rid)
                if rec is not None and rec["IsDeleted"]:
                    self._put(rid, None)
                    n += 1
            if n:
                self.last_purge = fmt_datetime(self.clock.now())
            return n

    def system_touch(self, ctx: CallContext, sobject: str, record_id: str) -> None:
        """A system job: bumps SystemModstamp only; no change event."""
        with self.transaction(ctx) as tx:
            rec = dict(self._existing(self.schema.require(sobject), record_id))
            rec["SystemModstamp"] = tx.ts
            self._put(rec["Id"], rec)

    def _check_unique(self, obj: ObjectDef, rec: Rec) -> None:
        for f in obj.unique_fields:
            if rec.get(f.name) is None:
                continue
            for other in self._ext.get((obj.name, f.name), {}).get(ext_key(f, rec[f.name]), ()):
                if other != rec["Id"]:
                    raise ApiError(
                        400,
                        "DUPLICATE_VALUE",
                        f"duplicate value found: {f.name} duplicates value on record "
                        f"with id: {other}",
                        [f.name],
                    )

    # --- reads -----------------------------------------------------------------------------
    def run_query(self, ctx: CallContext, soql: str, include_deleted: bool = False) -> QueryResult:
        with self.lock:
            return execute(self.schema, _Source(self, include_deleted), soql, ctx.api_version)

    def query(self, ctx: CallContext, soql: str, include_deleted: bool = False) -> list[Rec]:
        return self.run_query(ctx, soql, include_deleted).records

    def describe(self, sobject: str, version: str = "62.0") -> dict[str, Any]:
        with self.lock:
            return describe_object(self.schema, self.schema.require(sobject), version)

    def describe_global(self, version: str = "62.0") -> dict[str, Any]:
        with self.lock:
            return describe_global(self.schema, version)

    def updated_ids(self, sobject: str, start: str, end: str) -> list[str]:
        with self.lock:
            return [
                r["Id"]
                for r in _Source(self, False).scan(self.schema.require(sobject).name)
                if start <= r["SystemModstamp"] < end
            ]

    def deleted_ids(self, sobject: str, start: str, end: str) -> list[tuple[str, str]]:
        with self.lock:
            obj = self.schema.require(sobject)
            return [
                (r["Id"], r["_deleted_at"])
                for r in _Source(self, True).scan(obj.name)
                if r["IsDeleted"] and start <= r["_deleted_at"] < end
            ]

    def count(self, sobject: str | None = None) -> int:
        with self.lock:
            if sobject is None:
                return len(self._records)
            return len(self._by_type.get(self.schema.require(sobject).name, {}))

    # --- state (persistence and reset) ------------------------------------------------------
    def dump_state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "records": list(self._records.values()),
                "seq": self.ids.last,
                "commit": self.commit_number,
                "purge": self.last_purge,
                "schema": self.schema.specs,
            }

    def load_state(self, state: Mapping[str, Any]) -> None:
        with self.lock:
            self.schema.__init__(state.get("schema", self.schema.specs))  # type: ignore[misc]
            self.clear_records()
            for rec in sorted(state.get("records", []), key=lambda r: ids.decode_seq(r["Id"])):
                self._put(rec["Id"], rec, log_undo=False)
            self.ids.bump_to(int(state.get("seq", 0)))
            self.commit_number = int(state.get("commit", 0))
            self.last_purge = state.get("purge")

    def replay(self, entry: Mapping[str, Any]) -> None:
        """Re-apply one journal entry written by _commit."""
        with self.lock:
            for rid, rec in entry["puts"].items():
                self._put(rid, rec, log_undo=False)
            self.ids.bump_to(int(entry.get("seq", 0)))
            self.commit_number = max(self.commit_number, int(entry.get("n", 0)))
            self.last_purge = entry.get("purge", self.last_purge)

    def clear_records(self, keep: Iterable[str] = ()) -> None:
        with self.lock:
            kept = {k: self._records[k] for k in keep if k in self._records}
            self._records.clear()
            self._by_type.clear()
            self._ext.clear()
            for rid, rec in kept.items():
                self._put(rid, rec, log_undo=False)
            self.last_purge = None

    def window_floor(self, days: int) -> datetime:
        now = self.clock.now().astimezone(UTC)
        return (now - timedelta(days=days)).replace(second=0, microsecond=0)


def _coalesce(changes: list[RecordChange]) -> list[RecordChange]:
    """Several DML on one record in one transaction → one change of the first type, end state."""
    first: dict[str, int] = {}
    out: list[RecordChange] = []
    for ch in changes:
        i = first.get(ch.record_id)
        prev = out[i] if i is not None else None
        if prev is None or ch.change_type in ("DELETE", "UNDELETE") or prev.change_type == "DELETE":
            first[ch.record_id] = len(out)
            out.append(ch)
            continue
        assert i is not None
        out[i] = RecordChange(prev.sobject, prev.change_type, prev.record_id, prev.before, ch.after)
    return out
