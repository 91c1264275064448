"""Apply: write one ApplyBatch in one transaction, marked so capture knows it is ours.

The transaction starts with the batch's row in `syncswim.applied` (see `marker.py`), then
deletes, updates and inserts, then stores the ApplyResult on the marker row. Rows run in
groups inside a savepoint; a group a row of which the database rejects is replayed row by
row, each in its own savepoint, so one bad row is reported and the others are written.

Updates are grouped by the columns they set (`__set`), one statement text per group.
Compare-and-set: the target rows of the updates and deletes that have an `expected` row
are first locked (`SELECT ... FOR UPDATE`, one query per LOCK_ROWS keys, joined to the
keys so the server's own equality decides which row is whose) and read as `fetch` reads
them; a row that no longer holds the expected values is left alone and reported stale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from syncswim_lib.connectors.base import ApplyBatch, ApplyResult, ColumnInfo, TableInfo
from syncswim_lib.connectors.coerce import coerce, holds
from syncswim_lib.connectors.postgres.connection import (
    error_text,
    is_record_error,
    raise_translated,
    split_table,
)
from syncswim_lib.connectors.postgres.marker import begin_batch, finish_batch
from syncswim_lib.connectors.postgres.types import TEXT_CAST_FAMILIES, db_param, from_db
from syncswim_lib.connectors.results import (
    BATCH_META,
    REF,
    Expected,
    check_columns,
    expected_rows,
    missing_keys,
    null_key,
    set_columns,
    value_columns,
)
from syncswim_lib.errors import ConfigError

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

GROUP_ROWS = 200  # rows per savepoint before falling back to one savepoint per row
LOCK_ROWS = 1000  # keys per locking query of compare-and-set

Item = tuple[str, list[Any]]  # (__ref, statement parameters)


@dataclass(frozen=True)
class _Keyed:
    """One update or delete row, its values already as the columns store them."""

    ref: str
    key: list[Any]  # driver values of the key columns
    params: list[Any]  # the statement's parameters: set values, then the key


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
        self.stale: list[str] = []
        self.expected = expected_rows(batch.expected, info, batch.batch_id)
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

    def keyed(self, row: dict[str, Any], names: Sequence[str]) -> _Keyed | None:
        """An update/delete row with its key (never NULL) and `names`; None if rejected."""
        ref = str(row[REF])
        keys = self.batch.key_columns
        if (why := null_key(row, keys)) is not None:
            self.rejected[ref] = why
            return None
        params = self.params(ref, row, [*names, *keys])
        if params is None:
            return None
        return _Keyed(ref, params[len(names) :], params)

    def _returning_sql(self) -> sql.Composed:
        from psycopg import sql

        if not self.returning:
            return sql.Composed([sql.SQL(" RETURNING 1")])
        # uuid, time and other types come back as the server's text, as fetch reads them
        return sql.SQL(" RETURNING {}").format(
            sql.SQL(", ").join(
                sql.SQL("{}::text").format(sql.Identifier(c.name))
                if c.family in TEXT_CAST_FAMILIES
                else sql.Identifier(c.name)
                for c in self.returning
            )
        )

    def _where(self, names: Sequence[str]) -> sql.Composable:
        from psycopg import sql

        return sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(n)) for n in names)

    def _set(self, names: Sequence[str], fallback: str) -> sql.Composable:
        from psycopg import sql

        if not names:  # nothing to set: touch the row so RETURNING tells it exists
            return sql.SQL("{0} = {0}").format(sql.Identifier(fallback))
        return sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(n)) for n in names)

    def _record_errors(self, exc: psycopg.Error, ref: str) -> None:
        if not is_record_error(exc):
            raise_translated(exc, f"apply to {self.info.name}")
        self.rejected[ref] = error_text(exc)

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
                    self._record_errors(exc, ref)
        return done

    def record_key(self, ref: str, rows: list[Any]) -> None:
        if self.returning:
            self.keys[ref] = {
                c.name: from_db(v, c.family) for c, v in zip(self.returning, rows[0], strict=True)
            }
        else:
            self.keys[ref] = {}

    # --- compare-and-set ---------------------------------------------------------------

    def _lock_query(self) -> tuple[sql.Composed, list[ColumnInfo]]:
        """Lock the rows of a list of keys (parameters: one array per key column, then the
        keys' ordinals); each row comes back with the ordinal of the key that found it,
        then the checked columns as `fetch` reads them."""
        from psycopg import sql

        keys = [self.column(k) for k in self.batch.key_columns]
        read = [self.column(c) for c in check_columns(self.expected)]

        def item(c: ColumnInfo) -> sql.Composable:
            ident = sql.Identifier("_t", c.name)
            return sql.SQL("{}::text").format(ident) if c.family in TEXT_CAST_FAMILIES else ident

        names = [f"_k{i}" for i in range(len(keys))]
        # one order for every apply, so that two of them lock shared rows in the same order
        order = self.info.primary_key or self.batch.key_columns
        query = sql.SQL(
            "SELECT _v._i{} FROM {} AS _t JOIN unnest({}, %s::int[]) AS _v({}, _i) ON {}"
            " ORDER BY {} FOR UPDATE OF _t"
        ).format(
            sql.SQL("").join(sql.SQL(", ") + item(c) for c in read),
            self.target,
            sql.SQL(", ").join(sql.SQL("%s::{}[]").format(sql.SQL(c.db_type)) for c in keys),
            sql.SQL(", ").join(sql.Identifier(n) for n in names),
            sql.SQL(" AND ").join(
                sql.SQL("{} = {}").format(sql.Identifier("_t", c.name), sql.Identifier("_v", n))
                for c, n in zip(keys, names, strict=True)
            ),
            sql.SQL(", ").join(sql.Identifier("_t", c) for c in order),
        )
        return query, read

    def _lock(self, rows: list[_Keyed]) -> dict[str, list[dict[str, Any]]]:
        """The current values of the rows `rows` find, locked, by ref (absent: none)."""
        import psycopg

        found: dict[str, list[dict[str, Any]]] = {}
        width = len(self.batch.key_columns)

        def lock(chunk: list[_Keyed]) -> None:
            query, read = self._lock_query()
            args: list[Any] = [[r.key[i] for r in chunk] for i in range(width)]
            args.append(list(range(len(chunk))))
            for ordinal, *values in self.conn.execute(query, args).fetchall():
                found.setdefault(chunk[ordinal].ref, []).append(
                    {c.name: from_db(v, c.family) for c, v in zip(read, values, strict=True)}
                )

        for start in range(0, len(rows), LOCK_ROWS):
            chunk = rows[start : start + LOCK_ROWS]
            try:
                with self.conn.transaction():
                    lock(chunk)
                continue
            except psycopg.Error as exc:
                if not is_record_error(exc):
                    raise_translated(exc, f"locking rows of {self.info.name}")
            for one in chunk:  # a key the server cannot compare: that row alone is rejected
                try:
                    with self.conn.transaction():
                        lock([one])
                except psycopg.Error as exc:
                    self._record_errors(exc, one.ref)
        return found

    def _holds(self, row: dict[str, Any], want: Expected) -> bool:
        return all(holds(row[c], want.values[c], self.column(c)) for c in want.check)

    def verify(self, rows: list[_Keyed]) -> list[_Keyed]:
        """The rows to write: those without an expected row, and those whose target row
        still holds the expected values. The others go to `stale` or `missing`."""
        checked = [r for r in rows if r.ref in self.expected]
        if not checked:
            return rows
        found = self._lock(checked)
        keep = []
        for r in rows:
            want = self.expected.get(r.ref)
            if want is None:
                keep.append(r)
            elif r.ref in self.rejected:
                continue
            elif not (current := found.get(r.ref)):
                self.missing.append(r.ref)
            elif all(self._holds(c, want) for c in current):
                keep.append(r)
            else:
                self.stale.append(r.ref)
        return keep

    # --- the three kinds of row --------------------------------------------------------

    def deletes(self) -> int:
        from psycopg import sql

        if not self.batch.deletes.num_rows:
            return 0
        keys = list(self.batch.key_columns)
        query = sql.SQL("DELETE FROM {} WHERE {}").format(self.target, self._where(keys))
        rows = [k for r in self.batch.deletes.to_pylist() if (k := self.keyed(r, [])) is not None]
        return self._keyed(query + self._returning_sql(), self.verify(rows))

    def updates(self) -> int:
        from psycopg import sql

        if not self.batch.updates.num_rows:
            return 0
        keys = list(self.batch.key_columns)
        values = value_columns(self.batch.updates, keys)
        groups: dict[tuple[str, ...], list[_Keyed]] = {}
        for row in self.batch.updates.to_pylist():
            names = set_columns(row, values, self.batch.batch_id)
            if (k := self.keyed(row, names)) is not None:
                groups.setdefault(names, []).append(k)
        written = self.verify([k for group in groups.values() for k in group])
        keep = {k.ref for k in written}
        count = 0
        for names, group in groups.items():
            query = sql.SQL("UPDATE {} SET {} WHERE {}").format(
                self.target, self._set(names, keys[0]), self._where(keys)
            )
            count += self._keyed(query + self._returning_sql(), [k for k in group if k.ref in keep])
        return count

    def _keyed(self, query: sql.Composed, rows: list[_Keyed]) -> int:
        count = 0
        for ref, returned in self.run(query, [(r.ref, r.params) for r in rows]):
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
            if name not in BATCH_META and info.column(name) is None:
                raise ConfigError(f"column {name} does not exist in table {info.name}")
    for name in (*batch.key_columns, *batch.insert_match):
        if info.column(name) is None:
            raise ConfigError(f"column {name} does not exist in table {info.name}")
    if (batch.updates.num_rows or batch.deletes.num_rows) and not batch.key_columns:
        raise ConfigError(f"apply batch {batch.batch_id}: updates and deletes need key_columns")
    missing_keys(batch)


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
                stale=tuple(writer.stale),
            )
            finish_batch(conn, result)
            return result
    except psycopg.Error as exc:
        raise_translated(exc, f"apply of batch {batch.batch_id} to {info.name}")
