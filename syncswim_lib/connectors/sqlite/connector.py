"""SqliteConnector: the Connector Protocol over an application's SQLite file (kind
`sqlite`, setting `path`), captured by polling (docs/polling.md).

What `setup` changes in the file: the marker table `_syncswim_applied` (one row per
applied batch, for idempotent replay), and WAL journal mode, so the application's
writers and our polls do not block each other. Nothing else: no trigger, no column.

Rows whose soft-delete column is set are left out of `snapshot` and `fetch`: to the
merge they are deleted rows (their delete is captured by the poll).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from syncswim_lib.config.polling import PollSpec
from syncswim_lib.connectors.base import ApplyBatch, ApplyResult, CaptureBatch
from syncswim_lib.connectors.checks import Finding
from syncswim_lib.connectors.polling.capture import After, Poller
from syncswim_lib.connectors.polling.checks import poll_findings
from syncswim_lib.connectors.polling.kind import CAPABILITIES
from syncswim_lib.connectors.polling.rows import (
    arrow_batch,
    count_soft_deletes,
    soft_deleted_filter,
    soft_deletes,
    with_writer,
)
from syncswim_lib.connectors.sqlite import apply as apply_mod
from syncswim_lib.connectors.sqlite.apply import MARKER_DDL, MARKER_TABLE, quote, table_ref
from syncswim_lib.connectors.sqlite.types import family_of, from_db, to_db
from syncswim_lib.envelope import Position
from syncswim_lib.errors import ConfigError, RetriableError
from syncswim_lib.values import ColumnInfo, TableInfo
from syncswim_lib.values.coerce import coerce

# how long a statement waits for another writer's lock before it is a retriable error
BUSY_TIMEOUT_S = 10.0


class SqliteConnector:
    capabilities = CAPABILITIES  # declared with the kind (kind.py)

    def __init__(
        self,
        path: str,
        endpoint: str,
        polls: Mapping[str, PollSpec] | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.endpoint = endpoint
        self.polls: Mapping[str, PollSpec] = polls or {}
        # the file has no server clock: the poll's start time is this machine's (a
        # test's fake clock); the application writing the file runs on it too
        self._clock = clock or (lambda: datetime.now(UTC))
        self._conn: sqlite3.Connection | None = None
        # the last row of the last page polled: (table, modification value, key) as read,
        # and its modification value as the file holds it (see changed_rows)
        self._page_end: tuple[tuple[str, Any, tuple[Any, ...]], Any] | None = None
        self.poller = Poller(self, self.polls, now)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            if not Path(self.path).exists():
                raise ConfigError(
                    f"SQLite file {self.path} does not exist",
                    path=f"endpoints.{self.endpoint}.path",
                )
            self._conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- description ---------------------------------------------------------------------

    def describe(self, table: str) -> TableInfo:
        # read each time (a few PRAGMAs): the runtime keeps what it needs and forgets it
        # when the table changes, which a copy kept here would not
        conn = self._connection()
        schema, _, name = table.rpartition(".")
        prefix = f"{quote(schema)}." if schema else ""
        rows = conn.execute(f"PRAGMA {prefix}table_info({quote(name)})").fetchall()
        if not rows:
            raise ConfigError(f"table {table} does not exist in endpoint {self.endpoint}")
        pk = [r[1] for r in sorted((r for r in rows if r[5]), key=lambda r: r[5])]
        columns = []
        for _, col, declared, notnull, _default, in_pk in rows:
            family, precision, scale, length = family_of(declared or "")
            # an INTEGER PRIMARY KEY is the rowid: the file numbers new rows itself
            rowid = bool(in_pk) and len(pk) == 1 and (declared or "").upper() == "INTEGER"
            columns.append(
                ColumnInfo(
                    col,
                    family,
                    declared or "",
                    nullable=not notnull and not in_pk,
                    precision=precision,
                    scale=scale,
                    max_length=length,
                    auto_generated=rowid,
                )
            )
        unique: list[tuple[str, ...]] = [tuple(pk)] if pk else []
        for index in conn.execute(f"PRAGMA {prefix}index_list({quote(name)})").fetchall():
            if not index[2]:
                continue
            cols = conn.execute(f"PRAGMA {prefix}index_info({quote(index[1])})").fetchall()
            names = tuple(c[2] for c in sorted(cols))
            if names and names not in unique:
                unique.append(names)
        return TableInfo(table, tuple(columns), tuple(pk), tuple(unique))

    def check_server(self, syncs: Mapping[str, Sequence[str]]) -> list[Finding]:
        """What live `validate` says about the polled tables (modification column)."""
        return poll_findings(self, self.polls, syncs)

    def index_columns(self, table: str) -> list[tuple[str, ...]]:
        """The column lists of the table's indexes (first columns first)."""
        conn = self._connection()
        schema, _, name = table.rpartition(".")
        prefix = f"{quote(schema)}." if schema else ""
        out = []
        for index in conn.execute(f"PRAGMA {prefix}index_list({quote(name)})").fetchall():
            cols = conn.execute(f"PRAGMA {prefix}index_info({quote(index[1])})").fetchall()
            out.append(tuple(c[2] for c in sorted(cols)))
        return out

    def maintained(self, table: str, column: str) -> bool | None:
        """Whether an UPDATE trigger sets `column` (True), or nothing in the file does
        (None: SQLite has no ON UPDATE default, so only the application can)."""
        rows = (
            self._connection()
            .execute(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?",
                (table.rpartition(".")[2],),
            )
            .fetchall()
        )
        for (sql,) in rows:
            text = (sql or "").lower()
            if " update" in text and column.lower() in text.split(" begin", 1)[-1]:
                return True
        return None

    # -- setup -------------------------------------------------------------------------------

    def setup(self, sync: str, tables: Sequence[str]) -> None:
        for table in tables:
            if not self.describe(table).primary_key:
                raise ConfigError(
                    f"table {table} in endpoint {self.endpoint} has no primary key: polling "
                    "identifies rows by it"
                )
        conn = self._connection()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(MARKER_DDL)

    def teardown(self, sync: str) -> None:
        """The markers of `sync` go; the table goes with the last sync's."""
        conn = self._connection()
        try:
            conn.execute(f"DELETE FROM {MARKER_TABLE} WHERE origin = ?", (sync,))
            left = conn.execute(f"SELECT 1 FROM {MARKER_TABLE} LIMIT 1").fetchone()
            if left is None:
                conn.execute(f"DROP TABLE {MARKER_TABLE}")
        except sqlite3.OperationalError:
            return  # never set up

    # -- capture (polling) -------------------------------------------------------------------

    def current_position(self, sync: str) -> Position:
        return self.poller.current_position(sync)

    def capture(
        self,
        sync: str,
        tables: Sequence[str],
        since: Position | None,
        max_changes: int,
        skip_origin: str | None = None,
    ) -> CaptureBatch:
        return self.poller.capture(sync, tables, since, max_changes, skip_origin)

    def confirm(self, sync: str, position: Position) -> None:
        self.poller.confirm(sync, position)

    # PollSource ------------------------------------------------------------------------------

    def clock(self) -> datetime:
        return self._clock()

    def max_value(self, info: TableInfo, column: str) -> Any:
        row = self._execute(f"SELECT max({quote(column)}) FROM {table_ref(info.name)}", [])
        col = info.column(column)
        assert col is not None
        return from_db(row[0][0], col) if row else None

    def changed_rows(
        self,
        info: TableInfo,
        column: str,
        since: Any,
        after: After | None,
        key: Sequence[str],
        limit: int,
    ) -> list[dict[str, Any]]:
        col = info.column(column)
        assert col is not None
        order = [column, *key]
        where = [f"{quote(column)} IS NOT NULL"]
        args: list[Any] = []
        if since is not None:
            where.append(f"{quote(column)} >= ?")
            args.append(self._param(since, col))
        if after is not None:
            where.append(
                f"({', '.join(quote(c) for c in order)}) > ({', '.join('?' for _ in order)})"
            )
            # the page goes on after the previous page's last row as the file stores it:
            # a timestamp spelt with more digits than ours ('...01.500' for '...01.5')
            # sorts after our spelling, so compared with ours that row and every row of
            # its instant would be read again, without end for a full page of one instant
            end = self._page_end
            same = end is not None and end[0] == (info.name, after[0], tuple(after[1]))
            args.append(end[1] if end is not None and same else self._param(after[0], col))
            args.extend(
                self._param(v, self._col(info, k)) for k, v in zip(key, after[1], strict=True)
            )
        names = ", ".join(quote(c.name) for c in info.columns)
        sql = (
            f"SELECT {names} FROM {table_ref(info.name)} WHERE {' AND '.join(where)} "
            f"ORDER BY {', '.join(quote(c) for c in order)} LIMIT {int(limit)}"
        )
        raw = self._execute(sql, args)
        rows = [self._canonical(info, r) for r in raw]
        if rows:
            at = [c.name for c in info.columns].index(column)
            last = rows[-1]
            self._page_end = ((info.name, last[column], tuple(last[k] for k in key)), raw[-1][at])
        return rows

    def existing_keys(
        self, info: TableInfo, key: Sequence[str], keys: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        if not keys:
            return []
        cols = [self._col(info, k) for k in key]
        row_marks = "(" + ", ".join("?" for _ in key) + ")"
        args = [self._param(k[c.name], c) for k in keys for c in cols]
        sql = (
            f"SELECT {', '.join(quote(k) for k in key)} FROM {table_ref(info.name)} "
            f"WHERE ({', '.join(quote(k) for k in key)}) IN "
            f"(VALUES {', '.join(row_marks for _ in keys)})"
        )
        return [
            {c.name: from_db(v, c) for c, v in zip(cols, r, strict=True)}
            for r in self._execute(sql, args)
        ]

    # -- reading and writing rows ------------------------------------------------------------

    def snapshot(
        self, table: str, columns: Sequence[str], order_by: Sequence[str], batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        if batch_rows < 1:
            raise ConfigError(f"batch_rows must be at least 1, not {batch_rows}")
        info = self.describe(table)
        cols = [self._col(info, c) for c in columns]
        hidden = soft_deleted_filter(self.polls, table)
        select = ", ".join(quote(c.name) for c in cols)
        where = f" WHERE {quote(hidden)} IS NULL" if hidden else ""
        order = ", ".join(f"{quote(c)} IS NOT NULL, {quote(c)}" for c in order_by)
        sql = f"SELECT {select} FROM {table_ref(table)}{where}"
        if order:
            sql += f" ORDER BY {order}"
        cur = self._connection().execute(sql)

        def batches() -> Iterator[pa.RecordBatch]:
            while rows := cur.fetchmany(batch_rows):
                yield arrow_batch(
                    [{c.name: from_db(v, c) for c, v in zip(cols, r, strict=True)} for r in rows],
                    cols,
                )

        return batches()

    def fetch(self, table: str, column: str, values: Sequence[Any]) -> list[dict[str, Any]]:
        rows = self.fetch_all(table, column, values)
        hidden = soft_deleted_filter(self.polls, table)
        return [r for r in rows if hidden is None or r.get(hidden) is None]

    def fetch_all(self, table: str, column: str, values: Sequence[Any]) -> list[dict[str, Any]]:
        """`fetch` with the soft-deleted rows too."""
        info = self.describe(table)
        col = self._col(info, column)
        params = []
        for value in values:
            if value is None:
                continue  # NULL equals nothing
            try:
                params.append(to_db(coerce(value, col), col))
            except (ValueError, TypeError, ArithmeticError):
                continue  # a value the column cannot hold matches no row
        if not params:
            return []
        names = ", ".join(quote(c.name) for c in info.columns)
        out: list[dict[str, Any]] = []
        for start in range(0, len(params), 500):  # SQLite's bound on parameters per query
            chunk = params[start : start + 500]
            sql = (
                f"SELECT {names} FROM {table_ref(table)} WHERE {quote(column)} IN "
                f"({', '.join('?' for _ in chunk)})"
            )
            out.extend(self._canonical(info, r) for r in self._execute(sql, chunk))
        return out

    def apply(self, batch: ApplyBatch) -> ApplyResult:
        info = self.describe(batch.table)
        batch, soft = soft_deletes(batch, self.polls, info, self._clock)
        result = apply_mod.apply_batch(self._connection(), info, with_writer(batch, self.polls))
        return count_soft_deletes(result, soft)

    def applied_result(self, sync: str, batch_id: str) -> ApplyResult | None:
        return apply_mod.applied_result(self._connection(), sync, batch_id)

    def prune_markers(self, older_than: timedelta) -> int:
        return apply_mod.prune(self._connection(), older_than)

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _col(info: TableInfo, name: str) -> ColumnInfo:
        column = info.column(name)
        if column is None:
            raise ConfigError(f"column {name} does not exist in table {info.name}")
        return column

    @staticmethod
    def _param(value: Any, column: ColumnInfo) -> Any:
        return to_db(coerce(value, column), column)

    @staticmethod
    def _canonical(info: TableInfo, row: Sequence[Any]) -> dict[str, Any]:
        return {c.name: from_db(v, c) for c, v in zip(info.columns, row, strict=True)}

    def _execute(self, sql: str, args: Sequence[Any]) -> list[Any]:
        try:
            return self._connection().execute(sql, list(args)).fetchall()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise RetriableError(f"SQLite file of {self.endpoint} is busy: {exc}") from exc
            raise ConfigError(f"endpoint {self.endpoint}: {exc}") from exc
