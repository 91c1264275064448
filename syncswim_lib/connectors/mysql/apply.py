"""Writing one ApplyBatch in one transaction, marker row first, one statement per row.

Updates are grouped by the columns they set (`__set`), one statement text per group.
Before the deletes and updates run, the target rows that need reading are locked and read
with one `SELECT ... FOR UPDATE` per LOCK_ROWS keys: those with an `expected` row
(compare-and-set: a row that no longer holds the expected values is left alone and
reported stale) and, when the declared key is not the primary key, every one (to report
the primary key of the rows written, as `keys` holds primary key and declared key).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from syncswim_lib.connectors.base import ApplyBatch, ApplyResult, ColumnInfo, TableInfo
from syncswim_lib.connectors.coerce import coerce, holds
from syncswim_lib.connectors.mysql.connection import (
    DUPLICATE_KEY,
    MARKER_TABLE,
    NO_SUCH_TABLE,
    error_code,
    error_text,
    is_retriable,
    map_error,
    qident,
    qtable,
)
from syncswim_lib.connectors.mysql.markers import read_result, result_to_json
from syncswim_lib.connectors.mysql.types import to_canonical, to_driver
from syncswim_lib.connectors.results import (
    BATCH_META,
    REF,
    check_columns,
    expected_rows,
    missing_keys,
    null_key,
    set_columns,
    value_columns,
)
from syncswim_lib.errors import FatalError, RetriableError

if TYPE_CHECKING:
    import pyarrow as pa
    import pymysql
    from pymysql.cursors import Cursor

_UNKNOWN_COLUMN = 1054
# errors about the table itself, not the row: every other row would fail the same way
_SCHEMA_ERRORS = frozenset({NO_SUCH_TABLE, _UNKNOWN_COLUMN})
LOCK_ROWS = 500  # keys per locking SELECT

Row = dict[str, Any]


@dataclass
class _Outcome:
    keys: dict[str, Row] = field(default_factory=dict)
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    missing: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)

    def result(self, batch_id: str) -> ApplyResult:
        return ApplyResult(
            batch_id=batch_id,
            keys=self.keys,
            inserted=self.inserted,
            updated=self.updated,
            deleted=self.deleted,
            missing=tuple(self.missing),
            rejected=self.rejected,
            stale=tuple(self.stale),
        )


@dataclass(frozen=True)
class _Keyed:
    """One update or delete row, its key and values as the columns store them."""

    ref: str
    key: Row
    values: Row
    current: list[Row] | None = None  # the locked target rows, when they were read


def _where(columns: Sequence[str]) -> str:
    return " AND ".join(f"{qident(c)} = %s" for c in columns)


def _folded(value: Any) -> Any:
    # what a case-insensitive, PAD SPACE collation (MySQL's default kind) takes as equal
    return value.casefold().rstrip(" ") if isinstance(value, str) else value


class _Writer:
    def __init__(self, cur: Cursor, info: TableInfo, batch: ApplyBatch, endpoint: str) -> None:
        self.cur = cur
        self.info = info
        self.batch = batch
        self.table = qtable(*info.name.split(".", 1))
        self.endpoint = endpoint
        self.out = _Outcome()
        self.expected = expected_rows(batch.expected, info, batch.batch_id)
        pk, keys = info.primary_key, batch.key_columns
        self.reported = (*pk, *(k for k in keys if k not in pk))  # what `keys` holds
        # the primary key of a row found by another declared key must be read
        self.read_all = bool(set(pk) - set(keys))

    def column(self, name: str) -> ColumnInfo:
        col = self.info.column(name)
        if col is None:
            raise FatalError(
                f"column {name} does not exist in table {self.info.name} on endpoint "
                f"{self.endpoint}: the table changed or the mapping is wrong"
            )
        return col

    def values(self, row: Row, names: Sequence[str]) -> Row:
        """Canonical values as each column stores them; ValueError names the column."""
        return {n: coerce(row.get(n), self.column(n)) for n in names}

    def driver(self, values: Row) -> list[Any]:
        return [to_driver(v, self.column(n)) for n, v in values.items()]

    def keyed(self, row: Row, names: Sequence[str]) -> _Keyed | None:
        """An update/delete row with its key (never NULL) and `names`; None if rejected."""
        ref = str(row[REF])
        keys = self.batch.key_columns
        why = null_key(row, keys)
        if why is None:
            try:
                return _Keyed(ref, self.values(row, keys), self.values(row, names))
            except ValueError as exc:
                why = str(exc)
        self.out.rejected[ref] = why
        return None

    def guarded(self, ref: str, action: Callable[..., None], *args: Any) -> None:
        """Run one row's statements; a row the database rejects is rolled back alone.

        Each row writes with exactly one statement, and InnoDB undoes a failed statement
        by itself while keeping the transaction: a SAVEPOINT per row would add a round
        trip per row for no extra safety (and cannot undo non-transactional tables either).
        The errors that abort the whole transaction (deadlock, lock timeout) are raised as
        RetriableError and the batch is retried whole.
        """
        try:
            action(ref, *args)
        except Exception as exc:
            import pymysql

            if not isinstance(exc, pymysql.err.MySQLError):
                raise
            if is_retriable(exc) or error_code(exc) in _SCHEMA_ERRORS:
                raise
            self.out.rejected[ref] = error_text(exc)

    # --- locking and compare-and-set -------------------------------------------------------

    def _lock(self, rows: list[_Keyed]) -> list[_Keyed]:
        """`rows` with the target rows each one finds, locked and read as `fetch` reads
        them; the server's collation decides which rows a key finds, so a key that found
        none exactly takes those equal to it case- and trailing-space-insensitively."""
        keys = self.batch.key_columns
        wanted = (*keys, *self.reported, *check_columns(self.expected))
        read = [self.column(c) for c in dict.fromkeys(wanted)]
        select = ", ".join(qident(c.name) for c in read)
        if len(keys) == 1:
            where, mark = qident(keys[0]), "%s"
        else:
            where = "(" + ", ".join(qident(k) for k in keys) + ")"
            mark = "(" + ", ".join(["%s"] * len(keys)) + ")"
        order = ", ".join(qident(c) for c in (self.info.primary_key or keys))
        out: list[_Keyed] = []
        for start in range(0, len(rows), LOCK_ROWS):
            chunk = rows[start : start + LOCK_ROWS]
            self.cur.execute(
                f"SELECT {select} FROM {self.table} WHERE {where} IN "
                f"({', '.join([mark] * len(chunk))}) ORDER BY {order} FOR UPDATE",
                [p for r in chunk for p in self.driver(r.key)],
            )
            exact: dict[tuple[Any, ...], list[Row]] = {}
            folded: dict[tuple[Any, ...], list[Row]] = {}
            for values in self.cur.fetchall():
                found = {c.name: to_canonical(v, c) for c, v in zip(read, values, strict=True)}
                exact.setdefault(tuple(found[k] for k in keys), []).append(found)
                folded.setdefault(tuple(_folded(found[k]) for k in keys), []).append(found)
            for r in chunk:
                token = tuple(r.key[k] for k in keys)
                current = exact.get(token) or folded.get(tuple(_folded(v) for v in token), [])
                out.append(_Keyed(r.ref, r.key, r.values, current))
        return out

    def verify(self, rows: list[_Keyed]) -> list[_Keyed]:
        """The rows to write; the others go to `stale` or `missing`. Rows are read (and
        locked) when they have an expected row, or when the primary key must be read."""
        needed = [r for r in rows if self.read_all or r.ref in self.expected]
        if not needed:
            return rows
        read = {r.ref: r for r in self._lock(needed)}
        keep = []
        for row in rows:
            r = read.get(row.ref, row)
            want = self.expected.get(r.ref)
            if r.current is None:  # not read: written as it comes
                keep.append(r)
            elif not r.current:
                self.out.missing.append(r.ref)
            elif want is None or all(
                holds(c[n], want.values[n], self.column(n)) for c in r.current for n in want.check
            ):
                keep.append(r)
            else:
                self.out.stale.append(r.ref)
        return keep

    def report(self, ref: str, values: Row, current: Row | None) -> None:
        """`keys[ref]`: primary key and declared key, from `values`, else the row read."""
        self.out.keys[ref] = {
            c: values[c] if c in values or current is None else current.get(c)
            for c in self.reported
        }

    def report_found(self, ref: str, row: _Keyed) -> None:
        # the row read holds the key as stored, which the batch's key may only equal
        # (another case under a case-insensitive collation)
        if row.current:
            self.report(ref, {}, row.current[0])
        else:
            self.report(ref, row.key, None)

    # --- the three kinds of row ----------------------------------------------------------

    def delete(self, ref: str, row: _Keyed) -> None:
        self.cur.execute(
            f"DELETE FROM {self.table} WHERE {_where(list(row.key))}", self.driver(row.key)
        )
        if self.cur.rowcount:
            self.out.deleted += 1
            self.report_found(ref, row)
        else:
            self.out.missing.append(ref)

    def _update(self, where: Row, values: Row) -> bool:
        """UPDATE the rows `where` finds; whether there was one."""
        if values:
            # FOUND_ROWS: rowcount counts matched rows, changed or not
            self.cur.execute(
                f"UPDATE {self.table} SET {', '.join(f'{qident(c)} = %s' for c in values)} "
                f"WHERE {_where(list(where))}",
                self.driver(values) + self.driver(where),
            )
            return bool(self.cur.rowcount > 0)
        self.cur.execute(
            f"SELECT 1 FROM {self.table} WHERE {_where(list(where))}", self.driver(where)
        )
        return self.cur.fetchone() is not None

    def update(self, ref: str, row: _Keyed) -> None:
        if self._update(row.key, row.values):
            self.out.updated += 1
            self.report_found(ref, row)
        else:
            self.out.missing.append(ref)

    def insert(self, ref: str, values: Row, match: Sequence[str]) -> None:
        pk = self.info.primary_key or tuple(match)
        if match and all(values.get(m) is not None for m in match):
            read = list(dict.fromkeys((*pk, *self.reported)))
            self.cur.execute(
                f"SELECT {', '.join(qident(c) for c in read)} FROM {self.table} "
                f"WHERE {_where(match)} LIMIT 2 FOR UPDATE",
                self.driver({m: values[m] for m in match}),
            )
            found = self.cur.fetchall()
            if len(found) > 1:
                self.out.rejected[ref] = f"more than one row of {self.info.name} has " + ", ".join(
                    f"{m}={values[m]!r}" for m in match
                )
                return
            if found:
                current = {
                    c: to_canonical(v, self.column(c)) for c, v in zip(read, found[0], strict=True)
                }
                where = self.values(current, pk)
                set_values = {c: v for c, v in values.items() if c not in pk}
                if self._update(where, set_values):
                    self.out.updated += 1
                    self.report(ref, set_values, current)
                else:
                    self.out.missing.append(ref)
                return
        # leave out generated columns not given, so the database makes them
        written = {
            c: v for c, v in values.items() if v is not None or not self.column(c).auto_generated
        }
        cols = ", ".join(qident(c) for c in written)
        marks = ", ".join(["%s"] * len(written))
        self.cur.execute(
            f"INSERT INTO {self.table} ({cols}) VALUES ({marks})", self.driver(written)
        )
        key: Row = {}
        for c in pk:
            if values.get(c) is not None:
                key[c] = values[c]
            elif self.column(c).auto_generated and self.cur.lastrowid:
                key[c] = int(self.cur.lastrowid)
            else:
                key[c] = None
        self.out.inserted += 1
        given = {c: v for c, v in written.items() if c in self.reported and v is not None}
        unknown = [c for c in self.reported if c not in key and c not in given]
        filled: Row | None = None
        if unknown and all(v is not None for v in key.values()):
            # a declared key column the database filled in (a default, a generated column)
            self.cur.execute(
                f"SELECT {', '.join(qident(c) for c in unknown)} FROM {self.table} "
                f"WHERE {_where(list(key))}",
                self.driver(key),
            )
            got = self.cur.fetchone()
            if got is not None:
                filled = {
                    c: to_canonical(v, self.column(c)) for c, v in zip(unknown, got, strict=True)
                }
        self.report(ref, {**given, **key}, filled)


def _rows(table: pa.Table) -> list[Row]:
    return table.to_pylist() if table.num_rows else []


def _data_columns(table: pa.Table) -> list[str]:
    return [c for c in table.column_names if c not in BATCH_META]


def _write_rows(w: _Writer, batch: ApplyBatch) -> None:
    keys = list(batch.key_columns)
    for c in keys:
        w.column(c)
    for table in (batch.deletes, batch.updates, batch.inserts):
        for c in _data_columns(table):
            w.column(c)
    for c in batch.insert_match:
        w.column(c)
    missing_keys(batch)

    deletes = [k for row in _rows(batch.deletes) if (k := w.keyed(row, [])) is not None]
    for d in w.verify(deletes):
        w.guarded(d.ref, w.delete, d)

    values = value_columns(batch.updates, keys)
    groups: dict[tuple[str, ...], list[_Keyed]] = {}
    for row in _rows(batch.updates):
        names = set_columns(row, values, batch.batch_id)
        if (k := w.keyed(row, names)) is not None:
            groups.setdefault(names, []).append(k)
    written = {u.ref: u for u in w.verify([u for group in groups.values() for u in group])}
    for group in groups.values():
        for u in group:
            if u.ref in written:
                w.guarded(u.ref, w.update, written[u.ref])

    ins_cols = _data_columns(batch.inserts)
    for row in _rows(batch.inserts):
        ref = str(row[REF])
        try:
            inserted = w.values(row, ins_cols)
        except ValueError as exc:
            w.out.rejected[ref] = str(exc)
            continue
        w.guarded(ref, w.insert, inserted, batch.insert_match)


def apply_batch(
    conn: pymysql.Connection, info: TableInfo, marker_db: str, batch: ApplyBatch, endpoint: str
) -> ApplyResult:
    """One transaction: marker row, deletes, updates, inserts, result, commit."""
    import pymysql

    marker = qtable(marker_db, MARKER_TABLE)
    what = f"applying batch {batch.batch_id} to {info.name} on endpoint {endpoint}"
    try:
        conn.begin()
        with conn.cursor() as cur:
            try:
                # first row event of the transaction: capture tags everything after it
                cur.execute(
                    f"INSERT INTO {marker} (batch_id, origin) VALUES (%s, %s)",
                    (batch.batch_id, batch.origin),
                )
            except pymysql.err.IntegrityError as exc:
                if error_code(exc) != DUPLICATE_KEY:
                    raise
                conn.rollback()
                done = read_result(conn, marker_db, batch.batch_id)
                if done is None:
                    raise RetriableError(f"{what}: the batch is being applied right now") from None
                return done
            writer = _Writer(cur, info, batch, endpoint)
            _write_rows(writer, batch)
            result = writer.out.result(batch.batch_id)
            cur.execute(
                f"UPDATE {marker} SET result = %s WHERE batch_id = %s",
                (result_to_json(result), batch.batch_id),
            )
        conn.commit()
        return result
    except BaseException as exc:
        _rollback_quietly(conn)
        if isinstance(exc, pymysql.err.MySQLError):
            raise map_error(exc, what) from exc
        raise


def _rollback_quietly(conn: pymysql.Connection) -> None:
    # the connection may be gone: the server then rolls back on its own
    with contextlib.suppress(Exception):
        conn.rollback()
