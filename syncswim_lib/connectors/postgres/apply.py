"""Apply: write one ApplyBatch in one transaction, marked so capture knows it is ours.

The transaction starts with the batch's row in `syncswim.applied` (see `marker.py`), then
deletes, updates and inserts, then stores the ApplyResult on the marker row. Rows run in
groups inside a savepoint; a group a row of which the database rejects is replayed row by
row, each in its own savepoint, so one bad row is reported and the others are written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from syncswim_lib.connectors.base import ApplyBatch, ApplyResult, ColumnInfo, TableInfo
from syncswim_lib.connectors.coerce import coerce
from syncswim_lib.connectors.postgres.connection import (
    error_text,
    is_record_error,
    raise_translated,
    split_table,
)
from syncswim_lib.connectors.postgres.marker import begin_batch, finish_batch
from syncswim_lib.connectors.postgres.types import db_param, from_db
from syncswim_lib.errors import ConfigError

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

REF = "__ref"
GROUP_ROWS = 200  # rows per savepoint before falling back to one savepoint per row

Item = tuple[str, list[Any]]  # (__ref, statement parameters)


class _Writer:
    def __init__(self, conn: psycopg.Connection, batch: ApplyBatch, info: TableInfo) -> None:
        from psycopg import sql

        self.conn = conn
        self.batch = batch
        self.info = info
        self.target = sql.Identifier(*split_table(info.name))
        self.rejected: dict[str, str] = {}
        self.keys: dict[str, dict[str, Any]] = {}
        self.missing: list[str] = []
        ret = list(info.primary_key) + [k for k in batch.key_columns if k not in info.primary_key]
        self.returning = [self.column(c) for c in ret]

    def column(self, name: str) -> ColumnInfo:
        col = self.info.column(name)
        if col is None:
            raise ConfigError(f"column {name} does not exist in table {self.info.name}")
        return col

    def params(self, ref: str, row: dict[str, Any], names: Sequence[str]) -> list[Any] | None:
        """The row's values for `names` as the columns store them, or None if rejected."""
        out = []
        for name in names:
            col = self.column(name)
            try:
                out.append(db_param(coerce(row.get(name), col), col))
            except ValueError as exc:
                self.rejected[ref] = str(exc)
                return None
        return out

    def _returning_sql(self) -> sql.Composed:
        from psycopg import sql

        if not self.returning:
            return sql.Composed([sql.SQL(" RETURNING 1")])
        return sql.SQL(" RETURNING {}").format(
            sql.SQL(", ").join(sql.Identifier(c.name) for c in self.returning)
        )

    def _where(self, names: Sequence[str]) -> sql.Composable:
        from psycopg import sql

        return sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(n)) for n in names)

    def _set(self, names: Sequence[str], fallback: str) -> sql.Composable:
        from psycopg import sql

        if not names:  # nothing to set: touch the row so RETURNING tells it exists
            return sql.SQL("{0} = {0}").format(sql.Identifier(fallback))
        return sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(n)) for n in names)

    def run(self, query: sql.Composed, items: list[Item]) -> list[tuple[str, list[Any]]]:
        """Execute `query` once per item; (ref, returned rows) for every item not rejected."""
        import psycopg

        done: list[tuple[str, list[Any]]] = []
        for start in range(0, len(items), GROUP_ROWS):
            group = items[start : start + GROUP_ROWS]
            try:
                with self.conn.transaction(), self.conn.cursor() as cur:
                    cur.executemany(query, [p for _, p in group], returning=True)
                    results = [cur.fetchall()]
                    while cur.nextset():
                        results.append(cur.fetchall())
                done.extend((ref, rows) for (ref, _), rows in zip(group, results, strict=True))
                continue
            except psycopg.Error as exc:
                if not is_record_error(exc):
                    raise_translated(exc, f"apply to {self.info.name}")
            for ref, params in group:
                try:
                    with self.conn.transaction():
                        rows = self.conn.execute(query, params).fetchall()
                    done.append((ref, rows))
                except psycopg.Error as exc:
                    if not is_record_error(exc):
                        raise_translated(exc, f"apply to {self.info.name}")
                    self.rejected[ref] = error_text(exc)
        return done

    def record_key(self, ref: str, rows: list[Any]) -> None:
        if self.returning:
            self.keys[ref] = {
                c.name: from_db(v, c.family) for c, v in zip(self.returning, rows[0], strict=True)
            }
        else:
            self.keys[ref] = {}

    def deletes(self) -> int:
        from psycopg import sql

        keys = list(self.batch.key_columns)
        if not self.batch.deletes.num_rows:
            return 0
        query = sql.SQL("DELETE FROM {} WHERE {}").format(self.target, self._where(keys))
        return self._keyed(query + self._returning_sql(), self.batch.deletes.to_pylist(), keys)

    def updates(self) -> int:
        from psycopg import sql

        keys = list(self.batch.key_columns)
        if not self.batch.updates.num_rows:
            return 0
        names = [n for n in self.batch.updates.column_names if n != REF and n not in keys]
        query = sql.SQL("UPDATE {} SET {} WHERE {}").format(
            self.target, self._set(names, keys[0]), self._where(keys)
        )
        return self._keyed(
            query + self._returning_sql(), self.batch.updates.to_pylist(), names + keys
        )

    def _keyed(self, query: sql.Composed, rows: list[dict[str, Any]], names: list[str]) -> int:
        items = [(r[REF], p) for r in rows if (p := self.params(r[REF], r, names)) is not None]
        count = 0
        for ref, returned in self.run(query, items):
            if returned:
                count += 1
                self.record_key(ref, returned)
            else:
                self.missing.append(ref)
        return count

    def inserts(self) -> tuple[int, int]:
        """(inserted, updated): an insert whose `insert_match` values exist updates that row."""
        from psycopg import sql

        rows = self.batch.inserts.to_pylist()
        names = [n for n in self.batch.inserts.column_names if n != REF]
        updated = 0
        match = list(self.batch.insert_match)
        if match and rows:
            set_names = [n for n in names if n not in match]
            query = sql.SQL("UPDATE {} SET {} WHERE {}").format(
                self.target, self._set(set_names, match[0]), self._where(match)
            )
            items = [
                (r[REF], p)
                for r in rows
                if (p := self.params(r[REF], r, set_names + match)) is not None
            ]
            found = set()
            for ref, returned in self.run(query + self._returning_sql(), items):
                if returned:
                    found.add(ref)
                    updated += 1
                    self.record_key(ref, returned)
            rows = [r for r in rows if r[REF] not in found and r[REF] not in self.rejected]
        # a generated column left NULL is left to the database (serial, identity, default)
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for r in rows:
            cols = tuple(
                n for n in names if r.get(n) is not None or not self.column(n).auto_generated
            )
            groups.setdefault(cols, []).append(r)
        inserted = 0
        for cols, group in groups.items():
            if cols:
                query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                    self.target,
                    sql.SQL(", ").join(sql.Identifier(c) for c in cols),
                    sql.SQL(", ").join(sql.Placeholder() * len(cols)),
                )
            else:
                query = sql.SQL("INSERT INTO {} DEFAULT VALUES").format(self.target)
            items = [(r[REF], p) for r in group if (p := self.params(r[REF], r, cols)) is not None]
            for ref, returned in self.run(query + self._returning_sql(), items):
                inserted += 1
                self.record_key(ref, returned)
        return inserted, updated


def _check_columns(batch: ApplyBatch, info: TableInfo) -> None:
    for part, table in (
        ("inserts", batch.inserts),
        ("updates", batch.updates),
        ("deletes", batch.deletes),
    ):
        if table.num_rows and REF not in table.column_names:
            raise ConfigError(f"apply batch {batch.batch_id}: {part} has no {REF} column")
        for name in table.column_names:
            if name != REF and info.column(name) is None:
                raise ConfigError(f"column {name} does not exist in table {info.name}")
    for name in (*batch.key_columns, *batch.insert_match):
        if info.column(name) is None:
            raise ConfigError(f"column {name} does not exist in table {info.name}")
    if (batch.updates.num_rows or batch.deletes.num_rows) and not batch.key_columns:
        raise ConfigError(f"apply batch {batch.batch_id}: updates and deletes need key_columns")


def apply_batch(conn: psycopg.Connection, batch: ApplyBatch, info: TableInfo) -> ApplyResult:
    import psycopg

    _check_columns(batch, info)
    try:
        with conn.transaction():
            replayed = begin_batch(conn, batch.batch_id, batch.origin)
            if replayed is not None:  # a committed batch again: write nothing
                return replayed
            writer = _Writer(conn, batch, info)
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
                rejected=writer.rejected,
            )
            finish_batch(conn, result)
            return result
    except psycopg.Error as exc:
        raise_translated(exc, f"apply of batch {batch.batch_id} to {info.name}")
