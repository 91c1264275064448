"""Writing one ApplyBatch in one transaction, marker row first, set-based.

The parts run in order, deletes, updates, inserts, each in as few statements as its rows
allow (the statement shapes and their bounds are in `bulk.py`):

- The target rows of the updates and deletes are first locked and read, one
  `SELECT ... FOR UPDATE` per CHUNK_ROWS keys, joined to a derived table of the keys so
  that the server's own equality (collation, trailing spaces, type conversion) decides
  which rows a key finds. What was read decides `missing` (no row) and `stale`
  (compare-and-set: a row that no longer holds its `expected` values is left alone),
  gives the primary key reported in `keys` when the declared key is not the primary key,
  and names the rows the writes then touch, by primary key.
- Deletes and updates are one statement per chunk (updates, per group of rows that set
  the same columns, `__set`); inserts are multi-row `INSERT ... VALUES`. Generated keys:
  MariaDB's `INSERT ... RETURNING` gives each row's values in the order of the rows,
  whatever other sessions insert meanwhile. MySQL has no RETURNING, and under
  innodb_autoinc_lock_mode=2 (its default) a multi-row insert is not promised
  consecutive keys: a chunk is read back by a unique column set all of its rows give,
  else it is inserted one row per statement (LAST_INSERT_ID).
- A statement refused for a row's sake (duplicate key, too long, foreign key, check
  constraint, bad value) is bisected down to the rows it refuses, which are reported in
  `rejected` with the database's message; the others are written.
- Where the server allows LOAD DATA LOCAL (`@@local_infile`) and the user may create a
  temporary table, inserts are loaded from memory into a staging table and moved by one
  `INSERT ... SELECT ... RETURNING` per chunk, the file made column by column from the
  batch's Arrow arrays (`_Stage`, `infile.py`); else, and for a column the file cannot
  spell exactly, multi-row `INSERT ... VALUES`. Such a statement reserves generated ids
  in doubling blocks (InnoDB does not know its row count beforehand): ids skip values
  between batches.
- An update or delete statement must touch exactly the rows read for it. When one does
  not (a cascade of an earlier delete of the batch took a row away), its chunk is rolled
  back to the savepoint taken before it and written one row per statement, as before
  set-based writes, so the counts stay exact.
- A row whose target rows an earlier row of the same part (and `__set` group) writes, or
  an `insert_match` row whose match values an earlier row repeats, is written after the
  others, one statement per row, in batch order: it sees what the earlier one wrote.
- A table of a non-transactional engine (MyISAM) keeps the rows of a statement that
  fails half-way, which bisection would write twice: it is written one row per
  statement throughout.
"""

from __future__ import annotations

import contextlib
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from syncswim_lib.connectors.base import ApplyBatch, ApplyResult
from syncswim_lib.connectors.mysql import bulk
from syncswim_lib.connectors.mysql.bulk import CHUNK_ROWS, ServerTraits
from syncswim_lib.connectors.mysql.connection import (
    DUPLICATE_KEY,
    MARKER_TABLE,
    NO_SUCH_TABLE,
    PARSE_ERROR,
    error_code,
    error_text,
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
from syncswim_lib.values import ColumnInfo, TableInfo
from syncswim_lib.values.coerce import coerce, holds

if TYPE_CHECKING:
    import pyarrow as pa
    import pymysql
    from pymysql.cursors import Cursor

_UNKNOWN_COLUMN = 1054
# errors about the table or the statement, not the row: every other row would fail alike
_SCHEMA_ERRORS = frozenset({NO_SUCH_TABLE, _UNKNOWN_COLUMN, PARSE_ERROR})
_SAVEPOINT = "syncswim_chunk"
_ENGINE_SQL = (
    "SELECT e.TRANSACTIONS FROM information_schema.TABLES t"
    " JOIN information_schema.ENGINES e ON e.ENGINE = t.ENGINE"
    " WHERE t.TABLE_SCHEMA = %s AND t.TABLE_NAME = %s"
)

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


@dataclass
class _Keyed:
    """One update or delete row, its key and values as the columns store them."""

    ref: str
    key: Row
    values: Row
    current: list[Row] = field(default_factory=list)  # the target rows it finds, locked


@dataclass
class _Unit:
    """One batch row in a set-based UPDATE or DELETE: a derived-table row per target row."""

    ref: str
    rows: list[list[str]]  # literals: the target row's primary key, then the values to set
    count: int  # target rows the statement must touch for it
    written: Callable[[], None]  # counts and reports it once its statement ran
    alone: Callable[[], None]  # writes it with a statement of its own instead
    size: int = 0

    def __post_init__(self) -> None:
        self.size = sum(len(v) + 2 for r in self.rows for v in r) + 20 * len(self.rows)


@dataclass
class _Insert:
    ref: str
    values: Row  # the columns' values; on the load path those keys and matching need
    literals: list[str]
    size: int = 0
    # on the load path: every column's values, made when a row is written on its own
    full: Callable[[], Row] | None = None

    def __post_init__(self) -> None:
        self.size = sum(len(v) + 2 for v in self.literals) + 4


class _Stage:
    """A session's temporary table of text columns that LOAD DATA LOCAL fills from memory
    and one INSERT ... SELECT empties into the target.

    Every staging column is utf8mb4 text (bytes travel as hex), so loading never converts
    and never warns: the conversion to the target's types happens in the INSERT, under
    the session's strict sql_mode, with the errors (too long, out of range, duplicate,
    CHECK) a multi-row INSERT of the same values gives, and bisection finds the rows they
    are about. Creating and dropping a temporary table commits nothing, and with row-based
    binary logging neither it nor its rows reach the binlog: capture sees the marker and
    the target's rows of one transaction, as for a multi-row INSERT."""

    NAME = "`_syncswim_stage`"

    def __init__(
        self, conn: pymysql.Connection, cur: Cursor, table: str, columns: Sequence[ColumnInfo]
    ) -> None:
        from syncswim_lib.connectors.mysql import infile

        self.conn = conn
        self.cur = cur
        self.columns = columns
        names = ", ".join(f"c{j}" for j in range(len(columns)))
        self.load_sql = (
            f"LOAD DATA LOCAL INFILE %s INTO TABLE {self.NAME} CHARACTER SET utf8mb4"
            " FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"
            f" (__i{', ' if columns else ''}{names})"
        )
        picks = ", ".join(infile.picked(c, f"c{j}") for j, c in enumerate(columns))
        targets = ", ".join(qident(c.name) for c in columns)
        self.insert_sql = (
            f"INSERT INTO {table} ({targets}) SELECT {picks} FROM {self.NAME} ORDER BY __i"
        )

    def create(self) -> None:
        """The staging table, empty; NotLoadable when the user may not create one."""
        from syncswim_lib.connectors.mysql import infile
        from syncswim_lib.connectors.mysql.connection import STATEMENT_CODES

        cols = "".join(f", c{j} LONGTEXT NULL" for j in range(len(self.columns)))
        try:
            self.cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {self.NAME}")
            self.cur.execute(
                f"CREATE TEMPORARY TABLE {self.NAME} (__i INT UNSIGNED NOT NULL PRIMARY KEY"
                f"{cols}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
            )
        except Exception as exc:
            # no CREATE TEMPORARY TABLES privilege (or a read-only server: the statements
            # would fail alike and say so)
            if error_code(exc) in STATEMENT_CODES:
                raise infile.NotLoadable(error_text(exc)) from exc
            raise

    def execute(self, part: list[_Insert], tail: str) -> None:
        from syncswim_lib.connectors.mysql import infile

        lines = ["\t".join([str(i), *u.literals]) for i, u in enumerate(part)]
        data = ("\n".join(lines) + "\n").encode("utf-8")
        self.cur.execute(f"DELETE FROM {self.NAME}")
        with infile.offered(self.conn, data) as name:
            try:
                self.cur.execute(self.load_sql, (name,))
            except Exception as exc:
                if error_code(exc) in bulk.LOCAL_REFUSED:
                    raise infile.NotLoadable(error_text(exc)) from exc
                raise
        loaded, warnings = self.cur.rowcount, self.cur.warning_count
        if loaded != len(part) or warnings:
            # text columns take any text: a short count or a warning is our file's fault
            self.cur.execute("SHOW WARNINGS LIMIT 3")
            raise FatalError(
                f"loading {len(part)} rows into the staging table: {loaded} loaded, "
                f"warnings {self.cur.fetchall()}"
            )
        self.cur.execute(self.insert_sql + tail)

    def drop(self) -> None:
        self.cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {self.NAME}")


class _TooLarge(Exception):
    """One row's statement over max_allowed_packet: the server would drop the connection,
    every retry alike; the row is rejected instead."""


def _or_default(render: Callable[[Any], str], value: Any) -> str:
    return "DEFAULT" if value is None else render(value)


def _where(columns: Sequence[str]) -> str:
    return " AND ".join(f"{qident(c)} = %s" for c in columns)


def _fold(value: Any) -> Any:
    # as loose as the loosest common collation (case, accents, trailing spaces): two match
    # values that may find the same row fold alike
    if not isinstance(value, str):
        return value
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().rstrip(" ")


def _lock_order(keys: Sequence[Row], on: Sequence[str]) -> list[int]:
    """Positions of `keys` sorted by value, so that concurrent applies lock in one order."""
    try:
        return sorted(range(len(keys)), key=lambda i: tuple(keys[i][c] for c in on))
    except TypeError:  # values that do not order (cannot be a key of a real table)
        return list(range(len(keys)))


class _Writer:
    def __init__(
        self,
        conn: pymysql.Connection,
        cur: Cursor,
        info: TableInfo,
        batch: ApplyBatch,
        endpoint: str,
        traits: ServerTraits,
        transactional: bool,
    ) -> None:
        self.conn = conn
        self.cur = cur
        self.info = info
        self.batch = batch
        self.table = qtable(*info.name.split(".", 1))
        self.endpoint = endpoint
        self.traits = traits
        self.bulk = transactional
        self.out = _Outcome()
        self.expected = expected_rows(batch.expected, info, batch.batch_id)
        pk, keys = info.primary_key, batch.key_columns
        self.reported = (*pk, *(k for k in keys if k not in pk))  # what `keys` holds
        # the primary key of a row found by another declared key must be read
        self.read_all = bool(set(pk) - set(keys))
        self.ident = pk or keys  # how the writes name a target row they read
        self._renderers: dict[str, Callable[[Any], str]] = {}
        self._columns: dict[tuple[str, ...], list[tuple[str, ColumnInfo]]] = {}

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
        cols = self._columns.get(tuple(names))
        if cols is None:
            cols = self._columns[tuple(names)] = [(n, self.column(n)) for n in names]
        return {n: coerce(row.get(n), c) for n, c in cols}

    def driver(self, values: Row) -> list[Any]:
        return [to_driver(v, self.column(n)) for n, v in values.items()]

    def renderer(self, column: ColumnInfo) -> Callable[[Any], str]:
        render = self._renderers.get(column.name)
        if render is None:
            render = self._renderers[column.name] = bulk.literal_function(column, self.conn)
        return render

    def renderers(self, names: Sequence[str]) -> list[Callable[[Any], str]]:
        return [self.renderer(self.column(n)) for n in names]

    def rendered(
        self, ref: str, render: Sequence[Callable[[Any], str]], values: Iterable[Any]
    ) -> list[str] | None:
        """One row's values as literals; None, the row rejected, for a value the driver
        cannot send (a NaN or an infinite float)."""
        import pymysql

        try:
            return [f(v) for f, v in zip(render, values, strict=True)]
        except pymysql.err.Error as exc:
            self.out.rejected[ref] = error_text(exc)
            return None

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

    # --- errors ------------------------------------------------------------------------

    def row_error(self, exc: BaseException) -> bool:
        """Whether the database refused a statement for the sake of (one of) its rows.

        The errors that end the whole transaction (deadlock, lock timeout, a lost
        connection) are retriable and raised, so the batch is retried whole."""
        from syncswim_lib.connectors.mysql.connection import is_record_error

        if isinstance(exc, _TooLarge):
            return True
        return is_record_error(exc)

    def reject(self, item: _Unit | _Insert, exc: BaseException) -> None:
        self.out.rejected[item.ref] = error_text(exc)

    def guarded(self, ref: str, action: Callable[..., None], *args: Any) -> None:
        """Run one row's own statements; a row the database rejects is rolled back alone
        (InnoDB undoes a failed statement by itself and keeps the transaction)."""
        try:
            action(ref, *args)
        except Exception as exc:
            if not self.row_error(exc):
                raise
            self.out.rejected[ref] = error_text(exc)

    def fits(self, sql: str) -> None:
        if not self.traits.fits(sql):
            raise _TooLarge(
                f"the statement writing this row takes {len(sql.encode('utf-8'))} bytes, "
                f"more than the server's max_allowed_packet ({self.traits.max_packet})"
            )

    # --- finding and locking target rows -------------------------------------------------

    def find(self, keys: Sequence[Row], on: Sequence[str], *, lock: bool) -> list[list[Row]]:
        """For each of `keys` (values of the columns `on`), the target rows it finds as the
        server compares them, in primary key order, read as `fetch` reads them; locked
        (FOR UPDATE) when `lock`."""
        wanted = (*on, *self.reported, *check_columns(self.expected))
        read = [self.column(c) for c in dict.fromkeys(wanted)]
        render = list(zip(on, self.renderers(on), strict=True))
        names = ["__i", *(f"__k{j}" for j in range(len(on)))]
        select = ", ".join(f"__t.{qident(c.name)}" for c in read)
        join = " AND ".join(f"__t.{qident(c)} = __v.__k{j}" for j, c in enumerate(on))
        order = ", ".join(f"__t.{qident(c)}" for c in (self.info.primary_key or on))
        tail = " FOR UPDATE" if lock else ""
        rows = [[str(i), *(f(keys[i][c]) for c, f in render)] for i in _lock_order(keys, on)]
        found: list[list[Row]] = [[] for _ in keys]
        size: Callable[[list[str]], int] = lambda r: sum(len(v) + 2 for v in r) + 20  # noqa: E731
        for chunk in bulk.chunks(rows, size, CHUNK_ROWS, self.traits.chunk_chars):
            # STRAIGHT_JOIN: the keys drive, so only the rows they find are read and locked
            self.cur.execute(
                f"SELECT __v.__i, {select} FROM ({bulk.derived(names, chunk)}) AS __v"
                f" STRAIGHT_JOIN {self.table} AS __t ON {join}"
                f" ORDER BY __v.__i, {order}{tail}"
            )
            for i, *values in self.cur.fetchall():
                found[int(i)].append(
                    {c.name: to_canonical(v, c) for c, v in zip(read, values, strict=True)}
                )
        return found

    def verify(self, rows: list[_Keyed]) -> list[_Keyed]:
        """The rows to write, each with the target rows it finds, locked; the others go to
        `missing` (none found) or `stale` (no longer holding the expected values)."""
        found = self.find([r.key for r in rows], self.batch.key_columns, lock=True)
        keep = []
        for r, current in zip(rows, found, strict=True):
            r.current = current
            want = self.expected.get(r.ref)
            if not current:
                self.out.missing.append(r.ref)
            elif want is None or all(
                holds(c[n], want.values[n], self.column(n)) for c in current for n in want.check
            ):
                keep.append(r)
            else:
                self.out.stale.append(r.ref)
        return keep

    def claim(self, rows: list[_Keyed], ident: Sequence[str]) -> tuple[list[_Keyed], list[_Keyed]]:
        """`rows` split into those whose target rows no earlier one of `rows` touches (one
        set-based statement may write them together) and the others."""
        claimed: set[tuple[Any, ...]] = set()
        first, later = [], []
        for r in rows:
            ids = {tuple(c[n] for n in ident) for c in r.current}
            if claimed.isdisjoint(ids):
                claimed |= ids
                first.append(r)
            else:
                later.append(r)
        return first, later

    def ident_literals(self, current: list[Row], ident: Sequence[str]) -> list[list[str]]:
        render = self.renderers(ident)
        distinct = dict.fromkeys(tuple(c[n] for n in ident) for c in current)
        return [[f(v) for f, v in zip(render, t, strict=True)] for t in distinct]

    # --- keys reported ---------------------------------------------------------------------

    def report(self, ref: str, values: Row, current: Row | None) -> None:
        """`keys[ref]`: primary key and declared key, from `values`, else the row read."""
        self.out.keys[ref] = {
            c: values[c] if c in values or current is None else current.get(c)
            for c in self.reported
        }

    def report_found(self, row: _Keyed) -> None:
        # the row read holds the key as stored, which the batch's key may only equal
        # (another case under a case-insensitive collation); it is reported, as it always
        # was, for rows read for compare-and-set or for their primary key
        if self.read_all or row.ref in self.expected:
            self.report(row.ref, {}, row.current[0])
        else:
            self.report(row.ref, row.key, None)

    def report_insert(self, ref: str, values: Row, back: Row | None) -> None:
        """The values given, else what the database made (read back or returned)."""
        self.out.keys[ref] = {
            c: values[c] if values.get(c) is not None else (back or {}).get(c)
            for c in self.reported
        }

    # --- set-based UPDATE and DELETE -------------------------------------------------------

    def write_units(self, units: list[_Unit], statement: Callable[[list[_Unit]], str]) -> None:
        def execute(chunk: list[_Unit]) -> None:
            sql = statement(chunk)
            self.fits(sql)
            self.cur.execute(f"SAVEPOINT {_SAVEPOINT}")
            self.cur.execute(sql)

        def done(chunk: list[_Unit]) -> None:
            # rowcount counts matched rows, changed or not (CLIENT.FOUND_ROWS)
            if self.cur.rowcount == sum(u.count for u in chunk):
                for u in chunk:
                    u.written()
                return
            # other rows than those read (a cascade of an earlier delete of this batch):
            # one statement per row tells which of them still found their row
            self.cur.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
            for u in chunk:
                u.alone()

        for chunk in bulk.chunks(units, lambda u: u.size, CHUNK_ROWS, self.traits.chunk_chars):
            bulk.write_bisected(chunk, execute, done, self.reject, self.row_error)

    def on(self, ident: Sequence[str]) -> str:
        return " AND ".join(f"__t.{qident(c)} = __v.__w{j}" for j, c in enumerate(ident))

    def delete_sql(self, chunk: list[_Unit]) -> str:
        names = [f"__w{j}" for j in range(len(self.ident))]
        rows = [r for u in chunk for r in u.rows]
        return (
            f"DELETE __t FROM ({bulk.derived(names, rows)}) AS __v"
            f" STRAIGHT_JOIN {self.table} AS __t ON {self.on(self.ident)}"
        )

    def update_sql(self, chunk: list[_Unit], ident: Sequence[str], names: Sequence[str]) -> str:
        cols = [*(f"__w{j}" for j in range(len(ident))), *(f"__s{j}" for j in range(len(names)))]
        rows = [r for u in chunk for r in u.rows]
        sets = ", ".join(f"__t.{qident(c)} = __v.__s{j}" for j, c in enumerate(names))
        return (
            f"UPDATE ({bulk.derived(cols, rows)}) AS __v"
            f" STRAIGHT_JOIN {self.table} AS __t ON {self.on(ident)} SET {sets}"
        )

    # --- one statement per row: where set-based writing does not apply --------------------

    def delete_one(self, ref: str, row: _Keyed) -> None:
        self.cur.execute(
            f"DELETE FROM {self.table} WHERE {_where(list(row.key))}", self.driver(row.key)
        )
        if self.cur.rowcount:
            self.deleted(row)
        else:
            self.out.missing.append(ref)

    def _update(self, where: Row, values: Row) -> bool:
        """UPDATE the rows `where` finds; whether there was one."""
        if values:
            # FOUND_ROWS: rowcount counts matched rows, changed or not
            sql = (
                f"UPDATE {self.table} SET {', '.join(f'{qident(c)} = %s' for c in values)} "
                f"WHERE {_where(list(where))}"
            )
            self.cur.execute(sql, self.driver(values) + self.driver(where))
            return bool(self.cur.rowcount > 0)
        self.cur.execute(
            f"SELECT 1 FROM {self.table} WHERE {_where(list(where))}", self.driver(where)
        )
        return self.cur.fetchone() is not None

    def update_one(self, ref: str, row: _Keyed) -> None:
        if self._update(row.key, row.values):
            self.updated(row)
        else:
            self.out.missing.append(ref)

    def insert_one(self, ref: str, values: Row, match: Sequence[str]) -> None:
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
                self.out.rejected[ref] = self.ambiguous(values, match)
                return
            if found:
                current = {
                    c: to_canonical(v, self.column(c)) for c, v in zip(read, found[0], strict=True)
                }
                self.match_update_one(ref, values, current, pk)
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

    def match_update_one(self, ref: str, values: Row, current: Row, ident: Sequence[str]) -> None:
        """An insert whose match values found `current`: update that row instead."""
        set_values = {c: v for c, v in values.items() if c not in ident}
        if self._update(self.values(current, ident), set_values):
            self.out.updated += 1
            self.report(ref, set_values, current)
        else:
            self.out.missing.append(ref)

    def ambiguous(self, values: Row, match: Sequence[str]) -> str:
        return f"more than one row of {self.info.name} has " + ", ".join(
            f"{m}={values[m]!r}" for m in match
        )

    # --- the three parts -------------------------------------------------------------------

    def deleted(self, row: _Keyed) -> None:
        self.out.deleted += 1
        self.report_found(row)

    def updated(self, row: _Keyed) -> None:
        self.out.updated += 1
        self.report_found(row)

    def deletes(self) -> None:
        rows = [k for row in _rows(self.batch.deletes) if (k := self.keyed(row, [])) is not None]
        keep = self.verify(rows)
        first, later = self.claim(keep, self.ident) if self.bulk else ([], keep)
        units = [
            _Unit(
                r.ref,
                self.ident_literals(r.current, self.ident),
                len(r.current),
                partial(self.deleted, r),
                partial(self.guarded, r.ref, self.delete_one, r),
            )
            for r in first
        ]
        self.write_units(units, self.delete_sql)
        for r in later:
            self.guarded(r.ref, self.delete_one, r)

    def updates(self) -> None:
        values = value_columns(self.batch.updates, self.batch.key_columns)
        groups: dict[tuple[str, ...], list[_Keyed]] = {}
        for row in _rows(self.batch.updates):
            names = set_columns(row, values, self.batch.batch_id)
            if (k := self.keyed(row, names)) is not None:
                groups.setdefault(names, []).append(k)
        kept = {id(u) for u in self.verify([u for group in groups.values() for u in group])}
        for names, group in groups.items():
            self.update_group(names, [u for u in group if id(u) in kept])

    def update_group(self, names: tuple[str, ...], rows: list[_Keyed]) -> None:
        if not names:
            for r in rows:  # nothing to set: a row found is a row updated
                self.updated(r)
            return
        if not self.bulk or not set(names).isdisjoint(self.ident):
            # a row setting its primary key would move it from under the key read for a
            # later row: each row by the batch's key, one statement each
            first: list[_Keyed] = []
            later = rows
        else:
            first, later = self.claim(rows, self.ident)
        units = []
        render = self.renderers(names)
        for r in first:
            sets = self.rendered(r.ref, render, (r.values[n] for n in names))
            if sets is None:
                continue
            units.append(
                _Unit(
                    r.ref,
                    [w + sets for w in self.ident_literals(r.current, self.ident)],
                    len(r.current),
                    partial(self.updated, r),
                    partial(self.guarded, r.ref, self.update_one, r),
                )
            )
        self.write_units(units, partial(self.update_sql, ident=self.ident, names=names))
        for r in later:
            self.guarded(r.ref, self.update_one, r)

    def inserts(self) -> None:
        columns = _data_columns(self.batch.inserts)
        if self.bulk and self.batch.inserts.num_rows and bulk.loadable(self.conn, self.traits):
            from syncswim_lib.connectors.mysql.infile import NotLoadable

            # NotLoadable: raised before anything is written, every row goes as statements
            with contextlib.suppress(NotLoadable):
                self.load_inserts(columns)
                return
        rows: list[tuple[str, Row]] = []
        for row in _rows(self.batch.inserts):
            ref = str(row[REF])
            try:
                rows.append((ref, self.values(row, columns)))
            except ValueError as exc:
                self.out.rejected[ref] = str(exc)
        match = self.batch.insert_match
        if not self.bulk:
            for ref, values in rows:
                self.guarded(ref, self.insert_one, values, match)
            return
        later: list[tuple[str, Row]] = []
        if match:
            rows, later = self.match_existing(rows, columns, match)
        self.insert_new(rows, columns)
        for ref, values in later:
            self.guarded(ref, self.insert_one, values, match)

    def load_inserts(self, columns: Sequence[str]) -> None:
        """The inserts through a staging table filled by LOAD DATA LOCAL from memory, one
        set-based INSERT ... SELECT per chunk, bisected like the multi-row statements.

        The file is made column by column from the batch's Arrow arrays (`infile`), so a
        value becomes text without becoming a Python object; the server, in strict mode,
        checks each value against its column and refuses the rows the Python checks would
        have (bisection names them). Python values are made only for the columns the keys,
        the matching by `insert_match` and the read back need, and for all columns of a
        row written on its own. Rows whose match values find a row, or repeat an earlier
        row's, take the statements' path after the others. NotLoadable (a column the file
        cannot spell exactly, a generated column given for some rows only) is raised
        before anything is written; a server refusing LOCAL gets the statements from the
        chunk it refused on."""
        from syncswim_lib.connectors.mysql import infile

        table = self.batch.inserts
        match = self.batch.insert_match
        refs = [str(r) for r in table.column(REF).to_pylist()]
        wanted = {*self.reported, *match, *(c for u in self.info.unique for c in u)}
        light: list[Row] = [{} for _ in refs]
        bad: dict[int, str] = {}
        for name in (c for c in columns if c in wanted):
            col = self.column(name)
            for i, v in enumerate(table.column(name).to_pylist()):
                if i not in bad:
                    try:
                        light[i][name] = coerce(v, col)
                    except ValueError as exc:
                        bad[i] = str(exc)
        cols = [self.column(c) for c in columns]
        keep = [
            c
            for c in cols
            if not (c.auto_generated and table.column(c.name).null_count == len(refs))
        ]
        if not keep or any(c.auto_generated and table.column(c.name).null_count for c in keep):
            # DEFAULT per row is what a SELECT cannot say
            raise infile.NotLoadable("a generated column given for some rows only")
        texts = [infile.column_texts(table.column(c.name), c, bad) for c in keep]
        lines = infile.joined(texts).to_pylist()
        for i, why in bad.items():
            self.out.rejected[refs[i]] = why

        def full(i: int) -> Callable[[], Row]:
            return lambda: self.values(table.slice(i, 1).to_pylist()[0], columns)

        units: dict[int, _Insert] = {}
        for i, ref in enumerate(refs):
            if i in bad:
                continue
            unit = _Insert(ref, light[i], [lines[i]], full=full(i))
            if unit.size * 4 > self.traits.max_packet:
                # the file streams in packets, but the row's binlog event must fit in one,
                # as a multi-row statement's row must
                try:
                    self.fits(lines[i])
                except _TooLarge as exc:
                    self.reject(unit, exc)
                    continue
            units[i] = unit
        aside = self.matched_aside(units, match) if match else []
        stage = _Stage(self.conn, self.cur, self.table, keep)
        stage.create()
        rest: list[_Insert] = []
        try:
            first = [u for i, u in units.items() if i not in set(aside)]
            chunks = list(bulk.chunks(first, lambda u: u.size, bulk.LOAD_ROWS, bulk.LOAD_CHARS))
            for n, chunk in enumerate(chunks):
                try:
                    self.insert_units(chunk, stage.execute)
                except infile.NotLoadable:
                    # refused at its first statement, so nothing of it was written
                    bulk.refuse_loading(self.conn)
                    rest = [u for c in chunks[n:] for u in c]
                    break
        finally:
            stage.drop()
        full_rows: list[tuple[str, Row]] = []
        for u in [*rest, *(units[i] for i in aside)]:
            try:
                full_rows.append((u.ref, u.full() if u.full is not None else u.values))
            except ValueError as exc:
                self.out.rejected[u.ref] = str(exc)
        later: list[tuple[str, Row]] = []
        if match:
            full_rows, later = self.match_existing(full_rows, columns, match)
        self.insert_new(full_rows, columns)
        for ref, values in later:
            self.guarded(ref, self.insert_one, values, match)

    def matched_aside(self, units: dict[int, _Insert], match: Sequence[str]) -> list[int]:
        """Positions of the rows whose `insert_match` values find a row (locked), or repeat
        an earlier row's: they go through `match_existing` after the others are loaded."""
        seen: set[tuple[Any, ...]] = set()
        looked: list[int] = []
        aside: list[int] = []
        for i, u in units.items():
            if any(u.values.get(m) is None for m in match):
                continue  # NULL equals nothing: inserted
            token = tuple(_fold(u.values[m]) for m in match)
            (aside if token in seen else looked).append(i)
            seen.add(token)
        found = self.find(
            [{m: units[i].values[m] for m in match} for i in looked], match, lock=True
        )
        aside += [i for i, hits in zip(looked, found, strict=True) if hits]
        return sorted(aside)

    def match_existing(
        self, rows: list[tuple[str, Row]], columns: Sequence[str], match: Sequence[str]
    ) -> tuple[list[tuple[str, Row]], list[tuple[str, Row]]]:
        """Inserts whose `insert_match` values find a row update it instead. Returns the
        rows to insert, and those to write one by one after them (their match values repeat
        an earlier row's, or they find a row an earlier one updates)."""
        seen: set[tuple[Any, ...]] = set()
        looked: list[int] = []
        later: list[int] = []
        for i, (_, values) in enumerate(rows):
            if any(values.get(m) is None for m in match):
                continue  # NULL equals nothing: inserted
            token = tuple(_fold(values[m]) for m in match)
            (later if token in seen else looked).append(i)
            seen.add(token)
        found = self.find([{m: rows[i][1][m] for m in match} for i in looked], match, lock=True)
        hits = dict(zip(looked, found, strict=True))
        ident = self.info.primary_key or tuple(match)
        names = [c for c in columns if c not in ident]
        new: list[tuple[str, Row]] = []
        existing: list[tuple[int, _Keyed]] = []
        deferred = set(later)
        for i, (ref, values) in enumerate(rows):
            current = hits.get(i, [])
            if i in deferred:
                continue
            if len(current) > 1:
                self.out.rejected[ref] = self.ambiguous(values, match)
            elif current:
                existing.append((i, _Keyed(ref, {}, values, current)))
            else:
                new.append((ref, values))
        render = self.renderers(names)
        first, again = self.claim([k for _, k in existing], ident)
        moved = {id(k) for k in again}
        later += [i for i, k in existing if id(k) in moved]
        units = []
        for k in first:
            set_values = {c: k.values[c] for c in names}
            sets = self.rendered(k.ref, render, set_values.values())
            if sets is None:
                continue
            row = k.current[0]
            units.append(
                _Unit(
                    k.ref,
                    [w + sets for w in self.ident_literals(k.current, ident)],
                    1,
                    partial(self.match_updated, k.ref, set_values, row),
                    partial(self.guarded, k.ref, self.match_update_one, k.values, row, ident),
                )
            )
        if names:
            self.write_units(units, partial(self.update_sql, ident=ident, names=names))
        else:
            for u in units:  # nothing to set: the row found is the row written
                u.written()
        return new, [rows[i] for i in sorted(later)]

    def match_updated(self, ref: str, set_values: Row, current: Row) -> None:
        self.out.updated += 1
        self.report(ref, set_values, current)

    def insert_new(self, rows: list[tuple[str, Row]], columns: Sequence[str]) -> None:
        render = [
            # DEFAULT makes what leaving the column out would: a generated value
            partial(_or_default, f) if self.column(c).auto_generated else f
            for c, f in zip(columns, self.renderers(columns), strict=True)
        ]
        units = [
            _Insert(ref, values, literals)
            for ref, values in rows
            if (literals := self.rendered(ref, render, values.values())) is not None
        ]
        head = f"INSERT INTO {self.table} ({', '.join(qident(c) for c in columns)}) VALUES "

        def statement(part: list[_Insert], tail: str) -> None:
            sql = head + ", ".join(f"({', '.join(u.literals)})" for u in part) + tail
            self.fits(sql)
            self.cur.execute(sql)

        for chunk in bulk.chunks(units, lambda u: u.size, CHUNK_ROWS, self.traits.chunk_chars):
            self.insert_units(chunk, statement)

    def insert_units(
        self, chunk: list[_Insert], statement: Callable[[list[_Insert], str], None]
    ) -> None:
        """One chunk of inserts by `statement` (given the rows and a RETURNING tail), the
        keys the database makes returned, read back, or made one row at a time."""
        made = any(u.values.get(c) is None for u in chunk for c in self.reported)
        if not made:
            self.insert_chunk(chunk, statement, returning=False, read_back=())
        elif self.traits.returning:
            self.insert_chunk(chunk, statement, returning=True, read_back=())
        elif by := self.given_unique(chunk):
            self.insert_chunk(chunk, statement, returning=False, read_back=by)
        else:
            for u in chunk:
                try:
                    values = u.full() if u.full is not None else u.values
                except ValueError as exc:
                    self.out.rejected[u.ref] = str(exc)
                    continue
                self.guarded(u.ref, self.insert_one, values, ())

    def given_unique(self, chunk: list[_Insert]) -> tuple[str, ...]:
        """A unique column set every row of `chunk` gives a value for, or ()."""
        for unique in self.info.unique:
            if all(u.values.get(c) is not None for u in chunk for c in unique):
                return unique
        return ()

    def insert_chunk(
        self,
        chunk: list[_Insert],
        statement: Callable[[list[_Insert], str], None],
        *,
        returning: bool,
        read_back: tuple[str, ...],
    ) -> None:
        """Insert `chunk` in one statement, bisected; the keys the database made come back
        by RETURNING, or are read back by the unique columns `read_back`."""
        tail = f" RETURNING {', '.join(qident(c) for c in self.reported)}" if returning else ""
        back_cols = [self.column(c) for c in self.reported]

        def execute(part: list[_Insert]) -> None:
            statement(part, tail)

        def done(part: list[_Insert]) -> None:
            back: list[Row | None] = [None] * len(part)
            if returning:
                got = self.cur.fetchall()
                if len(got) != len(part):
                    raise FatalError(
                        f"inserting into {self.info.name} on endpoint {self.endpoint}: "
                        f"{len(part)} rows written, {len(got)} returned"
                    )
                back = [
                    {c.name: to_canonical(v, c) for c, v in zip(back_cols, r, strict=True)}
                    for r in got
                ]
            elif read_back:
                keys = [{c: u.values[c] for c in read_back} for u in part]
                found = self.find(keys, read_back, lock=False)
                if any(len(f) != 1 for f in found):
                    raise FatalError(
                        f"inserting into {self.info.name} on endpoint {self.endpoint}: the "
                        f"rows written could not be read back by {', '.join(read_back)}"
                    )
                back = [f[0] for f in found]
            for u, b in zip(part, back, strict=True):
                self.out.inserted += 1
                self.report_insert(u.ref, u.values, b)

        def reject(u: _Insert, exc: BaseException) -> None:
            match = self.batch.insert_match
            values = u.values
            if u.full is not None:
                # a loaded row the server refused: where our own check refuses it too,
                # its words (those the statements' path gives) name the reason
                try:
                    values = u.full()
                except ValueError as err:
                    self.out.rejected[u.ref] = str(err)
                    return
            if error_code(exc) == DUPLICATE_KEY and match:
                # its match values may equal an earlier row's of this batch under the
                # column's collation though not under _fold: written alone, it finds that
                # row and updates it, as it would have one row at a time
                self.guarded(u.ref, self.insert_one, values, match)
            else:
                self.reject(u, exc)

        bulk.write_bisected(chunk, execute, done, reject, self.row_error)


def _rows(table: pa.Table) -> list[Row]:
    return table.to_pylist() if table.num_rows else []


def _data_columns(table: pa.Table) -> list[str]:
    return [c for c in table.column_names if c not in BATCH_META]


def _write_rows(w: _Writer, batch: ApplyBatch) -> None:
    for c in batch.key_columns:
        w.column(c)
    for table in (batch.deletes, batch.updates, batch.inserts):
        for c in _data_columns(table):
            w.column(c)
    for c in batch.insert_match:
        w.column(c)
    missing_keys(batch)
    w.deletes()
    w.updates()
    w.inserts()


def _transactional(conn: pymysql.Connection, info: TableInfo) -> bool:
    """Whether the table's engine undoes a failed statement (InnoDB does, MyISAM not)."""
    with conn.cursor() as cur:
        cur.execute(_ENGINE_SQL, info.name.split(".", 1))
        row = cur.fetchone()
    # no row: a view, whose writes go to tables of their own engines
    return row is None or str(row[0]).upper() == "YES"


def apply_batch(
    conn: pymysql.Connection, info: TableInfo, marker_db: str, batch: ApplyBatch, endpoint: str
) -> ApplyResult:
    """One transaction: marker row, deletes, updates, inserts, result, commit."""
    import pymysql

    marker = qtable(marker_db, MARKER_TABLE)
    what = f"applying batch {batch.batch_id} to {info.name} on endpoint {endpoint}"
    try:
        traits = bulk.server_traits(conn)
        transactional = _transactional(conn, info)
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
            writer = _Writer(conn, cur, info, batch, endpoint, traits, transactional)
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
