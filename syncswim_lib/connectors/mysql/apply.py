"""Writing one ApplyBatch in one transaction, marker row first, one statement per row."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from syncswim_lib.connectors.base import ApplyBatch, ApplyResult, ColumnInfo, TableInfo
from syncswim_lib.connectors.coerce import coerce
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
from syncswim_lib.connectors.mysql.types import to_driver
from syncswim_lib.errors import FatalError, RetriableError

if TYPE_CHECKING:
    import pymysql
    from pymysql.cursors import Cursor

REF = "__ref"
_UNKNOWN_COLUMN = 1054
# errors about the table itself, not the row: every other row would fail the same way
_SCHEMA_ERRORS = frozenset({NO_SUCH_TABLE, _UNKNOWN_COLUMN})


@dataclass
class _Outcome:
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    missing: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)

    def result(self, batch_id: str) -> ApplyResult:
        return ApplyResult(
            batch_id=batch_id,
            keys=self.keys,
            inserted=self.inserted,
            updated=self.updated,
            deleted=self.deleted,
            missing=tuple(self.missing),
            rejected=self.rejected,
        )


def _where(columns: Sequence[str]) -> str:
    return " AND ".join(f"{qident(c)} = %s" for c in columns)


class _Writer:
    def __init__(self, cur: Cursor, info: TableInfo, endpoint: str) -> None:
        self.cur = cur
        self.info = info
        self.table = qtable(*info.name.split(".", 1))
        self.endpoint = endpoint
        self.out = _Outcome()

    def column(self, name: str) -> ColumnInfo:
        col = self.info.column(name)
        if col is None:
            raise FatalError(
                f"column {name} does not exist in table {self.info.name} on endpoint "
                f"{self.endpoint}: the table changed or the mapping is wrong"
            )
        return col

    def values(self, row: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
        """Canonical values as each column stores them; ValueError names the column."""
        return {n: coerce(row[n], self.column(n)) for n in names}

    def driver(self, values: dict[str, Any]) -> list[Any]:
        return [to_driver(v, self.column(n)) for n, v in values.items()]

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

    # --- the three kinds of row ----------------------------------------------------------

    def delete(self, ref: str, key: dict[str, Any]) -> None:
        self.cur.execute(f"DELETE FROM {self.table} WHERE {_where(list(key))}", self.driver(key))
        if self.cur.rowcount:
            self.out.deleted += 1
            self.out.keys[ref] = key
        else:
            self.out.missing.append(ref)

    def update(self, ref: str, key: dict[str, Any], values: dict[str, Any]) -> None:
        if values:
            # FOUND_ROWS: rowcount counts matched rows, changed or not
            self.cur.execute(
                f"UPDATE {self.table} SET {', '.join(f'{qident(c)} = %s' for c in values)} "
                f"WHERE {_where(list(key))}",
                self.driver(values) + self.driver(key),
            )
            found = self.cur.rowcount > 0
        else:
            self.cur.execute(
                f"SELECT 1 FROM {self.table} WHERE {_where(list(key))}", self.driver(key)
            )
            found = self.cur.fetchone() is not None
        if found:
            self.out.updated += 1
            self.out.keys[ref] = key
        else:
            self.out.missing.append(ref)

    def insert(self, ref: str, values: dict[str, Any], match: Sequence[str]) -> None:
        pk = self.info.primary_key or tuple(match)
        if match and all(values.get(m) is not None for m in match):
            self.cur.execute(
                f"SELECT {', '.join(qident(c) for c in pk)} FROM {self.table} "
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
                found_key = self.values(dict(zip(pk, found[0], strict=True)), pk)
                self.update(ref, found_key, {c: v for c, v in values.items() if c not in pk})
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
        key: dict[str, Any] = {}
        for c in pk:
            if values.get(c) is not None:
                key[c] = values[c]
            elif self.column(c).auto_generated and self.cur.lastrowid:
                key[c] = int(self.cur.lastrowid)
            else:
                key[c] = None
        self.out.inserted += 1
        self.out.keys[ref] = key


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist() if table.num_rows else []


def _data_columns(table: pa.Table, exclude: Sequence[str] = ()) -> list[str]:
    return [c for c in table.column_names if c != REF and c not in exclude]


def _write_rows(w: _Writer, batch: ApplyBatch) -> None:
    keys = list(batch.key_columns)
    for c in keys:
        w.column(c)
    for table in (batch.deletes, batch.updates, batch.inserts):
        for c in _data_columns(table):
            w.column(c)
    for c in batch.insert_match:
        w.column(c)

    for row in _rows(batch.deletes):
        ref = str(row[REF])
        try:
            key = w.values(row, keys)
        except ValueError as exc:
            w.out.rejected[ref] = str(exc)
            continue
        w.guarded(ref, w.delete, key)

    set_cols = _data_columns(batch.updates, exclude=keys)
    for row in _rows(batch.updates):
        ref = str(row[REF])
        try:
            key, values = w.values(row, keys), w.values(row, set_cols)
        except ValueError as exc:
            w.out.rejected[ref] = str(exc)
            continue
        w.guarded(ref, w.update, key, values)

    ins_cols = _data_columns(batch.inserts)
    for row in _rows(batch.inserts):
        ref = str(row[REF])
        try:
            values = w.values(row, ins_cols)
        except ValueError as exc:
            w.out.rejected[ref] = str(exc)
            continue
        w.guarded(ref, w.insert, values, batch.insert_match)


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
            writer = _Writer(cur, info, endpoint)
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
