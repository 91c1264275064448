"""Writing one ApplyBatch through sObject Collections: 200 records a call, `allOrNone:
false`, so a record the org refuses is reported alone and the others are written.

Idempotence without transactions or markers (Salesforce has neither):

- inserts with `insert_match` (an external-id field: the shared id in external-id mode,
  the SOR key in SOR mode, or with Salesforce the system of record its `origin_id`
  field holding the database row's key) are upserts on that field: a batch written
  again, after a crash or a lost answer, finds its records by their external id and
  updates them with the same values instead of creating them twice (the Id answered,
  and written back, is the matched record's);
- updates set values by Id (writing the same values twice leaves the same record) and
  deletes of a record already gone are reported `missing`, not failed;
- a call that fails as a whole with a retriable error after earlier calls of the same
  batch succeeded is retried by the pipeline with the same batch: the calls already
  answered are remembered by batch id in this process and not sent again;
- what stays open: inserts without an external id (Salesforce the system of record
  creating records in it without `origin_id`: nothing to match them by) written by a
  call whose answer was lost, or by a process that crashed before recording the result,
  are created again by the replay; live `validate` warns about such entities.

Compare-and-set (`expected`): Salesforce has no conditional write. The records a batch
checks are read first (by sObject Collections retrieve, 2,000 a call) and compared with
what the plan saw: a record that differs is `stale` and not written, one that is gone is
`missing`. A change made between that read and the write (a window of one call) is
overwritten: the last writer wins there, and its change event (or the next poll) still
reaches the journal.

Every call carries `Sforce-Call-Options: client=<origin>` (the sync's name), which the
org copies into the change events' `changeOrigin`: capture recognises our own writes by
it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from syncswim_lib.connectors.base import ApplyBatch, ApplyResult
from syncswim_lib.connectors.results import (
    BATCH_META,
    REF,
    Expected,
    expected_rows,
    missing_keys,
    null_key,
    set_columns,
    value_columns,
)
from syncswim_lib.connectors.salesforce.bulk_write import (
    BulkJob,
    RowOutcome,
    WriteOp,
    cell,
    csv_safe,
)
from syncswim_lib.connectors.salesforce.client import Api
from syncswim_lib.connectors.salesforce.describe import ObjectInfo
from syncswim_lib.connectors.salesforce.snapshot import fetch_rows
from syncswim_lib.connectors.salesforce.types import ID_RE, to_salesforce
from syncswim_lib.errors import ConfigError
from syncswim_lib.values import ColumnInfo
from syncswim_lib.values.coerce import holds

COLLECTION_SIZE = 200  # the most records one sObject Collections call takes
# per-record errors that mean the record is not there (deleted, purged, never existed)
GONE = frozenset({"ENTITY_IS_DELETED", "NOT_FOUND"})
GONE_ON_DELETE = GONE | {"INVALID_CROSS_REFERENCE_KEY"}
REMEMBERED_BATCHES = 32


@dataclass
class _Result:
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    missing: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)


class Progress:
    """The answered calls of recent batches, by batch id and call: a batch retried in
    this process after a retriable failure does not send them again (a create would
    create twice)."""

    def __init__(self) -> None:
        self._done: OrderedDict[str, dict[str, list[Any]]] = OrderedDict()

    def get(self, batch_id: str, call: str) -> list[Any] | None:
        return self._done.get(batch_id, {}).get(call)

    def put(self, batch_id: str, call: str, answer: list[Any]) -> None:
        self._done.setdefault(batch_id, {})[call] = answer
        self._done.move_to_end(batch_id)
        while len(self._done) > REMEMBERED_BATCHES:
            self._done.popitem(last=False)

    def finish(self, batch_id: str) -> None:
        self._done.pop(batch_id, None)


def error_text(errors: Sequence[dict[str, Any]]) -> str:
    """Salesforce's per-record errors as one line: `CODE: message (fields: A, B)`."""
    parts = []
    for e in errors:
        text = f"{e.get('statusCode', 'UNKNOWN')}: {e.get('message', '')}".rstrip(": ")
        if e.get("fields"):
            text += f" (fields: {', '.join(e['fields'])})"
        parts.append(text)
    return "; ".join(parts) or "refused without an error"


def _codes(item: dict[str, Any]) -> set[str]:
    return {str(e.get("statusCode")) for e in item.get("errors") or ()}


def _chunks(items: list[Any], size: int = COLLECTION_SIZE) -> Iterator[tuple[int, list[Any]]]:
    for start in range(0, len(items), size):
        yield start // size, items[start : start + size]


class BatchWriter:
    def __init__(
        self,
        api: Api,
        info: ObjectInfo,
        batch: ApplyBatch,
        progress: Progress,
        bulk_write_threshold: int,
    ) -> None:
        self.api = api
        self.info = info
        self.batch = batch
        self.progress = progress
        self.bulk_write_threshold = bulk_write_threshold
        self.out = _Result()
        if tuple(batch.key_columns) != ("Id",):
            raise ConfigError(
                f"apply batch {batch.batch_id}: a Salesforce object is written by its Id, "
                f"not by {', '.join(batch.key_columns)} (declare key: Id)"
            )

    def _send(self, call: str, path: str, method: str, **kw: Any) -> list[Any]:
        done = self.progress.get(self.batch.batch_id, call)
        if done is not None:
            return done
        what = f"writing {self.info.name} (batch {self.batch.batch_id})"
        self.api.check_budget(what)
        answer = self.api.restful(what, path, method, origin=self.batch.origin, **kw)
        results = list(answer or [])
        self.progress.put(self.batch.batch_id, call, results)
        return results

    # -- Bulk API 2.0 ------------------------------------------------------------------

    def _bulk_part(
        self, rows: list[dict[str, Any]], names: Sequence[str]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(rows for one bulk job, rows for collections): all of them to the job when
        more than bulk_write_threshold, but for those a CSV cell cannot carry."""
        if len(rows) <= self.bulk_write_threshold:
            return [], rows
        bulk: list[dict[str, Any]] = []
        rest: list[dict[str, Any]] = []
        for row in rows:
            (bulk if all(csv_safe(row.get(n)) for n in names) else rest).append(row)
        if len(bulk) <= self.bulk_write_threshold:
            return [], rows
        return bulk, rest

    def _column(self, name: str) -> ColumnInfo:
        col = self.info.table.column(name)
        if col is None:
            raise ConfigError(
                f"apply batch {self.batch.batch_id}: {self.info.name} has no field {name}"
            )
        return col

    def _bulk(
        self,
        operation: WriteOp,
        header: Sequence[str],
        rows: Sequence[tuple[str, str, Sequence[str]]],
        external_id: str | None = None,
    ) -> list[RowOutcome]:
        call = f"bulk-{operation}"
        done = self.progress.get(self.batch.batch_id, call)
        if done is not None:
            return done
        what = f"writing {self.info.name} (batch {self.batch.batch_id}, Bulk API 2.0)"
        self.api.check_budget(what)
        job = BulkJob(self.api, self.info.name, self.batch.origin, what)
        outcomes = job.run(operation, header, rows, external_id)
        self.progress.put(self.batch.batch_id, call, list(outcomes))
        return outcomes

    def _bulk_upserts(self, rows: list[dict[str, Any]], names: list[str], ext: str) -> None:
        header = [ext, *(n for n in names if n != ext)]
        cols = [self._column(n) for n in header]
        lines = []
        for row in rows:
            # a null is no value on create (defaults apply), as collections skip it
            cells = ["" if row.get(c.name) is None else cell(row[c.name], c) for c in cols]
            lines.append((str(row[REF]), cells[0], cells))
        for o in self._bulk("upsert", header, lines, ext):
            if not o.ok:
                self.out.rejected[o.ref] = o.error
                continue
            self.out.keys[o.ref] = {"Id": str(o.record_id)}
            if o.created:
                self.out.inserted += 1
            else:
                self.out.updated += 1  # matched by its external id: written again

    def _bulk_updates(self, rows: list[tuple[dict[str, Any], list[str]]]) -> None:
        names = list(dict.fromkeys(n for _, set_ in rows for n in set_))
        cols = [self._column(n) for n in names]
        lines = []
        for row, set_ in rows:
            # an empty cell leaves the field as it is: only the merge's fields are set
            cells = [cell(row.get(c.name), c) if c.name in set_ else "" for c in cols]
            lines.append((str(row[REF]), str(row["Id"]), [str(row["Id"]), *cells]))
        by_ref = {str(row[REF]): row for row, _ in rows}
        for o in self._bulk("update", ["Id", *names], lines):
            if o.ok:
                self.out.keys[o.ref] = {"Id": str(by_ref[o.ref]["Id"])}
                self.out.updated += 1
            elif o.error_code in GONE:
                self.out.missing.append(o.ref)
            else:
                self.out.rejected[o.ref] = o.error

    def _bulk_deletes(self, rows: list[dict[str, Any]]) -> None:
        lines = [(str(r[REF]), str(r["Id"]), [str(r["Id"])]) for r in rows]
        by_ref = {str(r[REF]): r for r in rows}
        for o in self._bulk("delete", ["Id"], lines):
            if o.ok:
                self.out.keys[o.ref] = {"Id": str(by_ref[o.ref]["Id"])}
                self.out.deleted += 1
            elif o.error_code in GONE_ON_DELETE:
                self.out.missing.append(o.ref)
            else:
                self.out.rejected[o.ref] = o.error

    # -- collections -----------------------------------------------------------------

    def _body(self, row: dict[str, Any], names: Sequence[str], skip_nulls: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"attributes": {"type": self.info.name}}
        for name in names:
            value = row.get(name)
            if value is None and skip_nulls:
                continue  # on create a null is no value: defaults apply
            col = self.info.table.column(name)
            if col is None:
                raise ConfigError(
                    f"apply batch {self.batch.batch_id}: {self.info.name} has no field {name}"
                )
            body[name] = to_salesforce(value, col)
        return body

    # -- inserts ---------------------------------------------------------------------

    def inserts(self) -> None:
        rows = self.batch.inserts.to_pylist()
        if not rows:
            return
        names = [n for n in self.batch.inserts.column_names if n not in BATCH_META and n != "Id"]
        match = self.batch.insert_match
        if len(match) > 1:
            raise ConfigError(
                f"apply batch {self.batch.batch_id}: Salesforce upserts by one external-id "
                f"field, not {', '.join(match)}"
            )
        ext = match[0] if match else None
        if ext is not None:
            f = self.info.field(ext)
            if f is None or not f.external_id:
                raise ConfigError(
                    f"field {ext} of {self.info.name} is not an external-id field: inserts "
                    "cannot be matched by it (mark it External ID in the org)"
                )
        upserts = [r for r in rows if ext is not None and r.get(ext) is not None]
        creates = [r for r in rows if ext is None or r.get(ext) is None]
        if ext is not None:
            bulk, upserts = self._bulk_part(upserts, names)
            if bulk:
                self._bulk_upserts(bulk, names, ext)
        for n, chunk in _chunks(upserts):
            body = {
                "allOrNone": False,
                "records": [self._body(r, names, skip_nulls=True) for r in chunk],
            }
            path = f"composite/sobjects/{self.info.name}/{ext}"
            self._inserted(chunk, self._send(f"upsert{n}", path, "PATCH", json=body))
        for n, chunk in _chunks(creates):
            body = {
                "allOrNone": False,
                "records": [self._body(r, names, skip_nulls=True) for r in chunk],
            }
            self._inserted(chunk, self._send(f"create{n}", "composite/sobjects", "POST", json=body))

    def _inserted(self, rows: list[dict[str, Any]], results: list[Any]) -> None:
        for row, item in zip(rows, results, strict=True):
            ref = str(row[REF])
            if not item.get("success"):
                self.out.rejected[ref] = error_text(item.get("errors") or ())
                continue
            self.out.keys[ref] = {"Id": str(item["id"])}
            if item.get("created", True):
                self.out.inserted += 1
            else:
                self.out.updated += 1  # matched by its external id: written again

    # -- compare-and-set -------------------------------------------------------------

    def _checked(self, rows: list[dict[str, Any]], expected: dict[str, Expected]) -> list[Any]:
        """`rows` without those whose record no longer holds what the plan expected
        (stale) or is gone (missing); reads the checked ones first."""
        checked = [r for r in rows if str(r[REF]) in expected and r.get("Id") is not None]
        if not checked:
            return rows
        ids = [str(r["Id"]) for r in checked]
        current = {str(rec["Id"])[:15]: rec for rec in fetch_rows(self.api, self.info, "Id", ids)}
        keep = []
        for row in rows:
            ref = str(row[REF])
            exp = expected.get(ref)
            if exp is None or row.get("Id") is None:
                keep.append(row)
                continue
            now = current.get(str(row["Id"])[:15])
            if now is None:
                self.out.missing.append(ref)
                continue
            cols = {n: self.info.table.column(n) for n in exp.check}
            if all(
                c is not None and holds(now.get(n), exp.values.get(n), c) for n, c in cols.items()
            ):
                keep.append(row)
            else:
                self.out.stale.append(ref)
        return keep

    # -- updates and deletes ---------------------------------------------------------

    def updates(self, expected: dict[str, Expected]) -> None:
        rows = self.batch.updates.to_pylist()
        values = value_columns(self.batch.updates, self.batch.key_columns)
        todo: list[dict[str, Any]] = []
        for row in rows:
            ref = str(row[REF])
            bad = null_key(row, self.batch.key_columns)
            if bad is None and not ID_RE.fullmatch(str(row["Id"])):
                bad = f"Id {row['Id']!r} is not a Salesforce id"
            if bad is not None:
                self.out.rejected[ref] = bad
                continue
            todo.append(row)
        todo = self._checked(todo, expected)
        writes = []
        for row in todo:
            names = set_columns(row, values, self.batch.batch_id)
            if not names:
                self.out.keys[str(row[REF])] = {"Id": str(row["Id"])}
                self.out.updated += 1  # nothing to set: the record already holds it
                continue
            writes.append((row, list(names)))
        bulk_rows, _ = self._bulk_part([r for r, _ in writes], values)
        if bulk_rows:
            chosen = {id(r) for r in bulk_rows}
            self._bulk_updates([(r, n) for r, n in writes if id(r) in chosen])
            writes = [(r, n) for r, n in writes if id(r) not in chosen]
        bodies = []
        for row, fields in writes:
            body = self._body(row, fields, skip_nulls=False)
            body["id"] = str(row["Id"])
            bodies.append((row, body))
        for n, chunk in _chunks(bodies):
            body = {"allOrNone": False, "records": [b for _, b in chunk]}
            results = self._send(f"update{n}", "composite/sobjects", "PATCH", json=body)
            for (row, _), item in zip(chunk, results, strict=True):
                ref = str(row[REF])
                if item.get("success"):
                    self.out.keys[ref] = {"Id": str(row["Id"])}
                    self.out.updated += 1
                elif _codes(item) & GONE:
                    self.out.missing.append(ref)
                else:
                    self.out.rejected[ref] = error_text(item.get("errors") or ())

    def deletes(self, expected: dict[str, Expected]) -> None:
        rows = []
        for row in self.batch.deletes.to_pylist():
            ref = str(row[REF])
            bad = null_key(row, self.batch.key_columns)
            if bad is not None:
                self.out.rejected[ref] = bad
            elif not ID_RE.fullmatch(str(row["Id"])):
                self.out.missing.append(ref)  # no record can have that id
            else:
                rows.append(row)
        rows = self._checked(rows, expected)
        bulk, rows = self._bulk_part(rows, ["Id"])
        if bulk:
            self._bulk_deletes(bulk)
        for n, chunk in _chunks(rows):
            ids = ",".join(str(r["Id"]) for r in chunk)
            results = self._send(
                f"delete{n}",
                "composite/sobjects",
                "DELETE",
                params={"ids": ids, "allOrNone": "false"},
            )
            for row, item in zip(chunk, results, strict=True):
                ref = str(row[REF])
                if item.get("success"):
                    self.out.keys[ref] = {"Id": str(row["Id"])}
                    self.out.deleted += 1
                elif _codes(item) & GONE_ON_DELETE:
                    self.out.missing.append(ref)
                else:
                    self.out.rejected[ref] = error_text(item.get("errors") or ())

    def result(self) -> ApplyResult:
        o = self.out
        return ApplyResult(
            batch_id=self.batch.batch_id,
            keys=o.keys,
            inserted=o.inserted,
            updated=o.updated,
            deleted=o.deleted,
            missing=tuple(o.missing),
            rejected=o.rejected,
            stale=tuple(o.stale),
        )


def apply_batch(
    api: Api,
    info: ObjectInfo,
    batch: ApplyBatch,
    progress: Progress,
    bulk_write_threshold: int,
) -> ApplyResult:
    """Deletes first (a record deleted and created again in one batch, by external id,
    must not be found by the upsert and then deleted), then inserts, then updates. Each
    operation with more than `bulk_write_threshold` records goes through one Bulk API
    2.0 ingest job (bulk_write.py), the others through collections."""
    missing_keys(batch)
    # before the compare-and-set reads too: past the share nothing of the batch is sent
    api.check_budget(f"writing {info.name} (batch {batch.batch_id})")
    writer = BatchWriter(api, info, batch, progress, bulk_write_threshold)
    expected = expected_rows(batch.expected, info.table, batch.batch_id)
    writer.deletes(expected)
    writer.inserts()
    writer.updates(expected)
    progress.finish(batch.batch_id)
    return writer.result()
