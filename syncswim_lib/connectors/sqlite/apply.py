"""Apply to a SQLite file: one ApplyBatch in one `BEGIN IMMEDIATE` transaction, with its
marker row.

The steps are the other connectors' (`postgres/apply.py`, `memory/apply.py`): the
marker row first (a batch already recorded returns its stored result and writes
nothing: replay is idempotent); then deletes, updates (only the `__set` columns),
inserts (an `insert_match` hit updates the row it finds), each update or delete only
when the row still holds what `expected` says (compare-and-set). Each row is written
under its own savepoint, so a row the file refuses (NOT NULL, UNIQUE, CHECK, a trigger's
RAISE, a value the column cannot hold) is rejected alone and the others commit.
`BEGIN IMMEDIATE` takes the file's write lock before anything is read, so the rows
compared are the rows written (SQLite has one writer at a time).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from syncswim_lib.connectors.base import ApplyBatch, ApplyResult
from syncswim_lib.connectors.memory.batch import check_batch
from syncswim_lib.connectors.results import (
    REF,
    Expected,
    expected_rows,
    null_key,
    result_from_data,
    result_to_data,
    set_columns,
    value_columns,
)
from syncswim_lib.connectors.sqlite.types import from_db, to_db
from syncswim_lib.errors import ConfigError, FatalError, RetriableError
from syncswim_lib.values import TableInfo
from syncswim_lib.values.coerce import coerce, holds

MARKER_TABLE = "_syncswim_applied"
MARKER_DDL = f"""
CREATE TABLE IF NOT EXISTS {MARKER_TABLE} (
    batch_id TEXT PRIMARY KEY,
    origin TEXT NOT NULL,
    result TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
)
"""


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_ref(name: str) -> str:
    """`schema.table` or `table`, quoted (the schema is an attached database's name)."""
    return ".".join(quote(p) for p in name.split(".", 1))


class _Writer:
    def __init__(self, conn: sqlite3.Connection, info: TableInfo, batch: ApplyBatch) -> None:
        self.conn = conn
        self.info = info
        self.batch = batch
        self.expected: dict[str, Expected] = expected_rows(batch.expected, info, batch.batch_id)
        self.keys: dict[str, dict[str, Any]] = {}
        self.missing: list[str] = []
        self.stale: list[str] = []
        self.rejected: dict[str, str] = {}
        pk = info.primary_key
        self.returning = [*pk, *(k for k in batch.key_columns if k not in pk)]
        self.t = table_ref(info.name)

    def _col(self, name: str) -> Any:
        column = self.info.column(name)
        assert column is not None  # check_batch has checked every name
        return column

    def _stored(self, row: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
        """The values as the file stores them; ValueError for one the column cannot hold."""
        return {n: to_db(coerce(row.get(n), self._col(n)), self._col(n)) for n in names}

    def _rows(self, key: Mapping[str, Any]) -> list[tuple[int, dict[str, Any]]]:
        """(rowid, canonical row) of the rows `key` (stored values) finds."""
        where = " AND ".join(f"{quote(k)} = ?" for k in key)
        names = [c.name for c in self.info.columns]
        cur = self.conn.execute(
            f"SELECT rowid, {', '.join(quote(n) for n in names)} FROM {self.t} WHERE {where}",
            list(key.values()),
        )
        return [
            (r[0], {c.name: from_db(v, c) for c, v in zip(self.info.columns, r[1:], strict=True)})
            for r in cur.fetchall()
        ]

    def _guarded(self, ref: str, statements: Sequence[tuple[str, Sequence[Any]]]) -> int | None:
        """Run the statements under a savepoint: the last row id, or None when the file
        refused one of them (the record is rejected alone, with the file's message)."""
        self.conn.execute("SAVEPOINT row")
        last = 0
        try:
            for sql, args in statements:
                last = self.conn.execute(sql, list(args)).lastrowid or 0
        except (sqlite3.IntegrityError, sqlite3.DataError, ValueError, OverflowError) as exc:
            self.conn.execute("ROLLBACK TO row")
            self.conn.execute("RELEASE row")
            self.rejected[ref] = str(exc)
            return None
        self.conn.execute("RELEASE row")
        return last

    def _write(self, ref: str, key: dict[str, Any], values: dict[str, Any] | None) -> bool:
        found = self._rows(key)
        if not found:
            self.missing.append(ref)
            return False
        want = self.expected.get(ref)
        if want is not None and not all(
            all(holds(row.get(c), want.values[c], self._col(c)) for c in want.check)
            for _, row in found
        ):
            self.stale.append(ref)
            return False

        statements: list[tuple[str, Sequence[Any]]] = []
        for rowid, _ in found:
            if values is None:
                statements.append((f"DELETE FROM {self.t} WHERE rowid = ?", (rowid,)))
            elif values:
                sets = ", ".join(f"{quote(n)} = ?" for n in values)
                sql = f"UPDATE {self.t} SET {sets} WHERE rowid = ?"
                statements.append((sql, [*values.values(), rowid]))
        if self._guarded(ref, statements) is None:
            return False
        after = found[0][1] if values is None else self._rows_by_id(found[0][0]) or found[0][1]
        self.keys[ref] = {c: after.get(c) for c in self.returning}
        return True

    def _rows_by_id(self, rowid: int) -> dict[str, Any] | None:
        names = ", ".join(quote(c.name) for c in self.info.columns)
        r = self.conn.execute(f"SELECT {names} FROM {self.t} WHERE rowid = ?", (rowid,)).fetchone()
        if r is None:
            return None
        return {c.name: from_db(v, c) for c, v in zip(self.info.columns, r, strict=True)}

    def _keyed(self, row: Mapping[str, Any], names: Sequence[str]) -> tuple[Any, ...] | None:
        ref = str(row[REF])
        if (why := null_key(row, self.batch.key_columns)) is not None:
            self.rejected[ref] = why
            return None
        try:
            return (ref, self._stored(row, self.batch.key_columns), self._stored(row, names))
        except (ValueError, TypeError, ArithmeticError) as exc:
            self.rejected[ref] = str(exc)
            return None

    def deletes(self) -> int:
        done = 0
        for row in self.batch.deletes.to_pylist():
            item = self._keyed(row, [])
            if item is not None:
                done += self._write(item[0], item[1], None)
        return done

    def updates(self) -> int:
        updates = self.batch.updates
        if not updates.num_rows:
            return 0
        values = value_columns(updates, self.batch.key_columns)
        done = 0
        for row in updates.to_pylist():
            item = self._keyed(row, set_columns(row, values, self.batch.batch_id))
            if item is not None:
                done += self._write(item[0], item[1], item[2])
        return done

    def inserts(self) -> tuple[int, int]:
        names = [n for n in self.batch.inserts.column_names if n != REF]
        match = list(self.batch.insert_match)
        inserted = matched = 0
        for row in self.batch.inserts.to_pylist():
            ref = str(row[REF])
            given = [n for n in names if row.get(n) is not None or not self._col(n).auto_generated]
            try:
                stored = self._stored(row, given)
            except (ValueError, TypeError, ArithmeticError) as exc:
                self.rejected[ref] = str(exc)
                continue
            if match and all(row.get(m) is not None for m in match):
                key = {m: stored[m] for m in match if m in stored}
                if len(key) == len(match) and self._rows(key):
                    rest = {n: v for n, v in stored.items() if n not in match}
                    matched += self._write(ref, key, rest)
                    continue
            cols = ", ".join(quote(n) for n in stored)
            marks = ", ".join("?" for _ in stored)
            sql = (
                f"INSERT INTO {self.t} ({cols}) VALUES ({marks})"
                if stored
                else f"INSERT INTO {self.t} DEFAULT VALUES"
            )
            rowid = self._guarded(ref, [(sql, list(stored.values()))])
            if rowid is not None:
                inserted += 1
                new = self._rows_by_id(rowid) or {}
                self.keys[ref] = {c: new.get(c) for c in self.returning}
        return inserted, matched


def apply_batch(conn: sqlite3.Connection, info: TableInfo, batch: ApplyBatch) -> ApplyResult:
    check_batch(batch, info)
    try:
        conn.execute("BEGIN IMMEDIATE")  # the write lock, before any row is read
    except sqlite3.OperationalError as exc:
        raise RetriableError(f"SQLite file is locked: {exc}") from exc
    try:
        try:
            conn.execute(
                f"INSERT INTO {MARKER_TABLE} (batch_id, origin) VALUES (?, ?)",
                (batch.batch_id, batch.origin),
            )
        except sqlite3.IntegrityError:
            row = conn.execute(
                f"SELECT result FROM {MARKER_TABLE} WHERE batch_id = ?", (batch.batch_id,)
            ).fetchone()
            conn.execute("ROLLBACK")
            return result_from_data(row[0])
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                raise FatalError(
                    f"{MARKER_TABLE} is missing: run the setup of sync {batch.origin} before "
                    "applying"
                ) from exc
            raise
        writer = _Writer(conn, info, batch)
        deleted = writer.deletes()
        updated = writer.updates()
        inserted, matched = writer.inserts()
        result = ApplyResult(
            batch_id=batch.batch_id,
            keys=writer.keys,
            inserted=inserted,
            updated=updated + matched,
            deleted=deleted,
            missing=tuple(writer.missing),
            rejected=dict(writer.rejected),
            stale=tuple(writer.stale),
        )
        conn.execute(
            f"UPDATE {MARKER_TABLE} SET result = ? WHERE batch_id = ?",
            (json.dumps(result_to_data(result)), batch.batch_id),
        )
        conn.execute("COMMIT")
        return result
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def applied_result(conn: sqlite3.Connection, sync: str, batch_id: str) -> ApplyResult | None:
    try:
        row = conn.execute(
            f"SELECT result FROM {MARKER_TABLE} WHERE batch_id = ? AND origin = ?",
            (batch_id, sync),
        ).fetchone()
    except sqlite3.OperationalError:
        return None  # never set up: nothing can have been applied
    return None if row is None or row[0] is None else result_from_data(row[0])


def prune(conn: sqlite3.Connection, older_than: timedelta) -> int:
    """Delete the markers recorded `older_than` ago or earlier (the file's clock keeps
    milliseconds: `<=`, so a marker of this very millisecond goes with an age of 0)."""
    if older_than < timedelta(0):
        raise ConfigError(f"older_than must not be negative, got {older_than}")
    seconds = older_than.total_seconds()
    try:
        cur = conn.execute(
            f"DELETE FROM {MARKER_TABLE} WHERE created_at <= "
            "strftime('%Y-%m-%d %H:%M:%f', 'now', ?)",
            (f"-{seconds} seconds",),
        )
    except sqlite3.OperationalError:
        return 0  # never set up: no markers to prune
    return max(cur.rowcount, 0)
