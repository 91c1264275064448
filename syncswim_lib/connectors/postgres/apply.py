"""Apply: write one ApplyBatch in one transaction, marked so capture knows it is ours.

The transaction starts with the batch's row in `syncswim.applied` (see `marker.py`), then
deletes, updates and inserts, then stores the ApplyResult on the marker row.

Each part of the batch is written set-based (see `stage.py`): its rows are copied (COPY)
into a temporary table typed like the target (a part of at most FEW_ROWS rows is given as
arrays instead), then one statement per GROUP_ROWS rows moves them into the target:
`DELETE ... USING`, `UPDATE ... FROM` (one statement per `__set` list), `INSERT ... SELECT
... ORDER BY` the rows' ordinals. Deletes and updates return the `__ref` of every staged
row that found its target row, so the others are missing; inserts return the generated
keys one row per staged row, in the order of the SELECT, which is the order ModifyTable
inserts and returns them in (a count that does not match, as when a trigger skips a row,
makes the rows be bisected like an error).

Inserts matched by one unique integer or text column (`insert_match`: the initial sync's
creates) skip the staging table when none of their values is in the target yet: one COPY
straight into the target, then the keys read back by that column (`_Writer._direct`).
Whatever else happens (a value that exists, a row that fails, a trigger that skips or
rewrites a row) rolls that back to its savepoint and the part takes the staged path.

A statement that fails on a row's values (a constraint, a value out of range, a trigger's
RAISE) is run again on each half of its rows inside savepoints, down to the single rows
that fail, which are rejected with the server's message; the others are written, in their
order. Values the column cannot hold are rejected before they are sent. A batch is first
applied without savepoints (for a batch of a row or two they are a good part of the
cost); when a row fails that transaction is rolled back and the batch applied again with
them.

Rows of one part that share a key (or, for inserts matched by `insert_match`, the same
match values) go into successive statements, so each statement meets a target row once
and the rows take effect one after the other as they would row by row.

Compare-and-set: the target rows of the updates and deletes that have an `expected` row
are first locked (`SELECT ... FOR UPDATE`, one query per LOCK_ROWS keys, joined to the
keys so the server's own equality decides which row is whose) and read as `fetch` reads
them; a row that no longer holds the expected values is left alone and reported stale.
The values are compared in Python (`holds`), not in the statement: json has no equality
operator and the plan's values are canonical values, not the server's text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from syncswim_lib.connectors.base import ApplyBatch, ApplyResult
from syncswim_lib.connectors.postgres.connection import (
    error_text,
    is_record_error,
    raise_translated,
    split_table,
)
from syncswim_lib.connectors.postgres.marker import begin_batch, finish_batch
from syncswim_lib.connectors.postgres.stage import (
    ORD,
    REF,
    Arrays,
    Encoded,
    Item,
    NeedsCare,
    RowRefused,
    Stage,
    bisected,
    cast_type,
    copy_lines,
    encode,
    escape,
)
from syncswim_lib.connectors.postgres.types import TEXT_CAST_FAMILIES, from_db
from syncswim_lib.connectors.results import (
    BATCH_META,
    SET,
    Expected,
    check_columns,
    expected_rows,
    missing_keys,
    set_columns,
    value_columns,
)
from syncswim_lib.connectors.results import REF as BATCH_REF
from syncswim_lib.errors import ConfigError
from syncswim_lib.values import ColumnInfo, TableInfo
from syncswim_lib.values.coerce import holds

if TYPE_CHECKING:
    import psycopg
    import pyarrow as pa
    from psycopg import sql

GROUP_ROWS = 5000  # rows per statement (and per COPY): bounds what a bisection redoes
LOCK_ROWS = 1000  # keys per locking query of compare-and-set
# Parts of at most this many rows are not staged but given as arrays (`stage.Arrays`):
# a temporary table costs a few milliseconds per batch (CREATE, COPY, DROP, and more as
# the session's catalog churn grows), which the COPY path wins back only from about a
# thousand rows on (bench/pg_apply.py --batch shows it).
FEW_ROWS = 1000
# statement texts by what they are made of (see _Writer._text), a few per table and shape
_TEXTS: dict[tuple[Any, ...], str] = {}
_MAX_TEXTS = 1000
# families whose values psycopg reads as their canonical values (see `from_db`)
_PLAIN = frozenset(
    {"int", "float", "decimal", "text", "bool", "date", "json", "uuid", "time", "other"}
)


@dataclass
class _Values:
    """The columns of one part of the batch encoded for COPY, and the values of those
    Python looks at (keys, match columns, generated columns)."""

    refs: list[str]
    ref_text: pa.Array | pa.ChunkedArray | None  # None: a few rows, given as arrays
    encoded: dict[str, Encoded] = field(default_factory=dict)
    bad: list[str] = field(default_factory=list)  # the columns holding a value they cannot

    def value(self, name: str, i: int) -> Any:
        values = self.encoded[name].values
        assert values is not None, f"{name} was encoded without its values"
        return values[i]


@dataclass(slots=True)
class _Row:
    """One row of a part of the batch: where its values are, and what it is found by."""

    i: int  # its index in the part's table (and in the converted columns)
    ref: str
    key: tuple[Any, ...] = ()  # the key columns' values (updates and deletes)
    only: frozenset[str] | None = None  # the columns staged for it, when not all


def _rounds(rows: Sequence[_Row], key: Callable[[_Row], tuple[Any, ...]]) -> list[list[_Row]]:
    """`rows` in lists none of which holds two rows with the same `key`, a row in the list
    after the one holding the previous row with its key; rows keep their order within a
    list. A key with a NULL matches nothing, so such a row never waits."""
    keys = []
    for row in rows:
        k = key(row)
        try:
            hash(k)
        except TypeError:
            k = tuple(repr(v) for v in k)
        keys.append(k)
    if len(set(keys)) == len(keys):
        return [list(rows)] if rows else []
    seen: dict[tuple[Any, ...], int] = {}
    rounds: list[list[_Row]] = []
    for row, k in zip(rows, keys, strict=True):
        turn = 0
        if all(v is not None for v in k):
            turn = seen.get(k, -1) + 1
            seen[k] = turn
        if turn == len(rounds):
            rounds.append([])
        rounds[turn].append(row)
    return rounds


def _key(row: _Row) -> tuple[Any, ...]:
    return row.key


def _runs(items: Sequence[Item], staged: Sequence[Item]) -> list[list[Item]]:
    """`items` cut where a staged row not among them lies between two of them: a statement
    takes the rows of an ordinal range, which must hold its rows only."""
    wanted = {i.ord for i in items}
    runs: list[list[Item]] = []
    current: list[Item] = []
    for item in staged:
        if item.ord in wanted:
            current.append(item)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


class _Writer:
    def __init__(
        self, conn: psycopg.Connection, batch: ApplyBatch, info: TableInfo, careful: bool
    ) -> None:
        from psycopg import sql
        from psycopg.adapt import Transformer

        self.conn = conn
        self.careful = careful  # savepoints around every statement (see `bisected`)
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
        self._key_names = tuple(c.name for c in self.returning)
        # psycopg's own values are the canonical ones for these (from_db changes nothing)
        self._plain_keys = all(c.family in _PLAIN for c in self.returning)
        self.what = f"apply to {info.name}"
        self.tx = Transformer(conn)

    def column(self, name: str) -> ColumnInfo:
        col = self.info.column(name)
        if col is None:
            raise ConfigError(f"column {name} does not exist in table {self.info.name}")
        return col

    # --- values ------------------------------------------------------------------------

    def _convert(self, table: pa.Table, names: Sequence[str], read: Sequence[str] = ()) -> _Values:
        """The columns `names` of `table` encoded; `read`: those whose values are kept."""
        import pyarrow as pa
        import pyarrow.compute as pc

        column = table.column(BATCH_REF)
        refs = [str(r) for r in column.to_pylist()]
        few = len(refs) <= FEW_ROWS
        ref_text = None
        if not few:
            text = column if pa.types.is_string(column.type) else pc.cast(column, pa.string())
            ref_text = escape(pc.cast(text, pa.binary()))
        values = _Values(refs, ref_text)
        for name in names:
            encoded = encode(self.column(name), table.column(name), self.tx, name in read, few)
            values.encoded[name] = encoded
            if encoded.bad:
                values.bad.append(name)
        return values

    def _rows(
        self,
        values: _Values,
        keys: Sequence[str] = (),
        names_of: Sequence[tuple[str, ...] | None] | None = None,
    ) -> list[_Row]:
        """The rows of the part not rejected: keys never NULL, and no value its column
        cannot hold among the columns the row writes (`names_of[i]`; None: every column)."""
        n = len(values.refs)
        key_lists = [values.encoded[k].values or [] for k in keys]
        key_of: list[tuple[Any, ...]] = list(zip(*key_lists, strict=True)) if keys else [()] * n
        writes = names_of or [None] * n
        refused: set[int] = set()
        for name, column in zip(keys, key_lists, strict=True):
            if None in column:
                for i, value in enumerate(column):
                    if value is None and i not in refused:
                        # NULL equals nothing: `key = NULL` would silently find no row
                        self.rejected[values.refs[i]] = f"key column {name} is NULL"
                        refused.add(i)
        suspects = sorted({i for name in values.bad for i in values.encoded[name].bad} - refused)
        for i in suspects:
            names = writes[i]
            for name in values.bad:  # the first in column order, as a row's check would
                if names is None or name in names or name in keys:
                    why = values.encoded[name].bad.get(i)
                    if why is not None:
                        self.rejected[values.refs[i]] = why
                        refused.add(i)
                        break
        only: dict[tuple[str, ...], frozenset[str]] = {}
        rows = []
        for i, (ref, key, names) in enumerate(zip(values.refs, key_of, writes, strict=True)):
            if i in refused:
                continue
            if names is None:
                rows.append(_Row(i, ref, key))
            else:
                if names not in only:
                    only[names] = frozenset((*names, *keys))
                rows.append(_Row(i, ref, key, only[names]))
        return rows

    # --- staging and statements ----------------------------------------------------------

    def _stage(
        self,
        label: str,
        columns: Sequence[str],
        values: _Values,
        segments: Sequence[Sequence[_Row]],
    ) -> tuple[Stage | Arrays, list[list[Item]]]:
        """The source `_s` of the statements writing the rows of `segments` (ordinals in
        their order), with `columns`; the items of each segment it holds."""
        rows = [row for segment in segments for row in segment]
        items: list[list[Item]] = []
        first = 0
        for segment in segments:
            ords = range(first, first + len(segment))
            items.append(list(map(Item, ords, (r.ref for r in segment))))
            first += len(segment)
        infos = [self.column(c) for c in columns]
        if values.ref_text is None:
            texts = [values.encoded[c].text for c in columns]

            def fields(item: Item) -> list[Any]:
                row = rows[item.ord]
                only = row.only
                return [
                    t[row.i] if only is None or c in only else None
                    for c, t in zip(columns, texts, strict=True)
                ]

            return Arrays(infos, fields), items
        stage = Stage(self.conn, f"_syncswim_{label}", self.target, self.info.name, infos)
        masks: list[list[bool] | None] = [None] * len(columns)
        if any(r.only is not None for r in rows):
            # a column the row does not write may hold anything: not staged
            masks = [[r.only is None or c in r.only for r in rows] for c in columns]
        lines = copy_lines(
            values.ref_text,
            [values.encoded[c].text for c in columns],
            [r.i for r in rows],
            masks,
        )
        refused: set[int] = set()

        def reject(item: Item, message: str) -> None:
            refused.add(item.ord)
            self.rejected[item.ref] = message

        stage.load(lines, [i for part in items for i in part], reject, GROUP_ROWS, self.careful)
        return stage, [[i for i in part if i.ord not in refused] for part in items]

    def _execute(
        self,
        query: str,
        source: Stage | Arrays,
        items: Sequence[Item],
        counted: bool = False,
    ) -> list[tuple[Sequence[Item], list[Any]]]:
        """`query` (whose parameters are the source's, then the first and last ordinal of
        its rows) over `items`, GROUP_ROWS at a time, bisected on row errors; every
        (items, rows returned) that was written. `counted`: one row must come back per
        item."""

        def attempt(part: Sequence[Item]) -> list[Any]:
            params = [*source.params(part), part[0].ord, part[-1].ord]
            rows = self.conn.execute(query, params).fetchall()
            if counted and len(rows) != len(part):
                raise RowRefused("the database wrote no row for it (a trigger skipped it)")
            return rows

        def reject(item: Item, message: str) -> None:
            self.rejected[item.ref] = message

        def explain(item: Item, exc: psycopg.Error) -> str:
            if isinstance(source, Arrays):
                return source.explain(self.conn, self.info.name, item, exc)
            return error_text(exc)

        done: list[tuple[Sequence[Item], list[Any]]] = []
        for start in range(0, len(items), GROUP_ROWS):
            part = items[start : start + GROUP_ROWS]
            done += bisected(self.conn, part, attempt, reject, self.what, explain, self.careful)
        return done

    def _found(self, done: list[tuple[Sequence[Item], list[Any]]]) -> tuple[list[Item], list[Item]]:
        """For statements returning (ref, key...) per target row written: the items that
        found a row (their keys recorded), and those that found none."""
        returned: dict[str, list[Any]] = {}
        for _, rows in done:
            for ref, *key in rows:
                returned.setdefault(ref, key)
        found: list[Item] = []
        none: list[Item] = []
        for part, _ in done:
            for item in part:
                if item.ref in returned:
                    found.append(item)
                    self.record_key(item.ref, returned[item.ref])
                else:
                    none.append(item)
        return found, none

    def record_key(self, ref: str, values: Sequence[Any]) -> None:
        if self._plain_keys:
            self.keys[ref] = dict(zip(self._key_names, values, strict=True))
        else:
            self.keys[ref] = {
                c.name: from_db(v, c.family) for c, v in zip(self.returning, values, strict=True)
            }

    def _returning(self, *first: sql.Composable) -> sql.Composed:
        from psycopg import sql

        # uuid, time and other types come back as the server's text, as fetch reads them
        items = [
            *first,
            *(
                sql.SQL("{}::text").format(sql.Identifier("_t", c.name))
                if c.family in TEXT_CAST_FAMILIES
                else sql.Identifier("_t", c.name)
                for c in self.returning
            ),
        ]
        if not items:
            return sql.Composed([sql.SQL(" RETURNING 1")])
        return sql.SQL(" RETURNING {}").format(sql.SQL(", ").join(items))

    @staticmethod
    def _join(names: Sequence[str]) -> sql.Composable:
        """The target row of a staged row: equal values of `names`, ordinal in range."""
        from psycopg import sql

        return sql.SQL(" AND ").join(
            [
                *(
                    sql.SQL("{} = {}").format(sql.Identifier("_t", n), sql.Identifier("_s", n))
                    for n in names
                ),
                sql.SQL("{} BETWEEN %s AND %s").format(sql.Identifier("_s", ORD)),
            ]
        )

    @staticmethod
    def _set(names: Sequence[str], fallback: str) -> sql.Composable:
        from psycopg import sql

        if not names:  # nothing to set: touch the row so RETURNING tells it exists
            return sql.SQL("{} = {}").format(
                sql.Identifier(fallback), sql.Identifier("_t", fallback)
            )
        return sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(n), sql.Identifier("_s", n)) for n in names
        )

    def _text(self, *parts: Any, build: Callable[[], sql.Composed]) -> str:
        """The text of the statement `build` composes, kept by what it is made of (`parts`,
        the table, the returned columns): composing costs more than a small batch's rows."""
        returned = tuple((c.name, c.family) for c in self.returning)
        key = (self.conn.info.encoding, self.info.name, returned, *parts)
        text = _TEXTS.get(key)
        if text is None:
            if len(_TEXTS) >= _MAX_TEXTS:
                _TEXTS.clear()
            text = _TEXTS[key] = build().as_string(self.conn)
        return text

    def _update_query(self, source: Stage | Arrays, names: Sequence[str], by: Sequence[str]) -> str:
        from psycopg import sql

        return self._text(
            "update",
            source.key,
            tuple(names),
            tuple(by),
            build=lambda: (
                sql.SQL("UPDATE {} AS _t SET {} FROM {} WHERE {}").format(
                    self.target, self._set(names, by[0]), source.clause, self._join(by)
                )
                + self._returning(sql.Identifier("_s", REF))
            ),
        )

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

    def _lock(self, rows: list[_Row]) -> dict[str, list[dict[str, Any]]]:
        """The current values of the rows `rows` find, locked, by ref (absent: none)."""
        import psycopg

        found: dict[str, list[dict[str, Any]]] = {}
        width = len(self.batch.key_columns)

        def lock(chunk: list[_Row]) -> None:
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
                    if not is_record_error(exc):
                        raise_translated(exc, f"locking rows of {self.info.name}")
                    self.rejected[one.ref] = error_text(exc)
        return found

    def _holds(self, row: dict[str, Any], want: Expected) -> bool:
        return all(holds(row[c], want.values[c], self.column(c)) for c in want.check)

    def verify(self, rows: list[_Row]) -> list[_Row]:
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

        table = self.batch.deletes
        if not table.num_rows:
            return 0
        keys = list(self.batch.key_columns)
        values = self._convert(table, keys, keys)
        rounds = _rounds(self.verify(self._rows(values, keys)), _key)
        stage, items = self._stage("deletes", keys, values, rounds)
        query = self._text(
            "delete",
            stage.key,
            tuple(keys),
            build=lambda: (
                sql.SQL("DELETE FROM {} AS _t USING {} WHERE {}").format(
                    self.target, stage.clause, self._join(keys)
                )
                + self._returning(sql.Identifier("_s", REF))
            ),
        )
        count = 0
        for part in items:
            found, none = self._found(self._execute(query, stage, part))
            count += len(found)
            self.missing.extend(i.ref for i in none)
        return count

    def updates(self) -> int:
        table = self.batch.updates
        if not table.num_rows:
            return 0
        keys = list(self.batch.key_columns)
        settable = value_columns(table, keys)
        refs = [str(r) for r in table.column(BATCH_REF).to_pylist()]
        sets = table.column(SET).to_pylist() if SET in table.column_names else [None] * len(refs)
        names_of = [
            set_columns({SET: s, BATCH_REF: ref}, settable, self.batch.batch_id)
            for s, ref in zip(sets, refs, strict=True)
        ]
        used = {n for names in names_of for n in names}
        columns = [*keys, *(v for v in settable if v in used)]
        values = self._convert(table, columns, keys)
        every = tuple(v for v in settable if v in used)
        groups: dict[tuple[str, ...], list[_Row]] = {}
        for row in self._rows(values, keys, [None if n == every else n for n in names_of]):
            groups.setdefault(names_of[row.i], []).append(row)
        kept = {r.ref for r in self.verify([r for group in groups.values() for r in group])}
        segments: list[tuple[tuple[str, ...], list[_Row]]] = [
            (names, part)
            for names, group in groups.items()
            for part in _rounds([r for r in group if r.ref in kept], _key)
        ]
        stage, items = self._stage("updates", columns, values, [part for _, part in segments])
        count = 0
        for (names, _), part in zip(segments, items, strict=True):
            query = self._update_query(stage, names, keys)
            found, none = self._found(self._execute(query, stage, part))
            count += len(found)
            self.missing.extend(i.ref for i in none)
        return count

    def inserts(self) -> tuple[int, int]:
        """(inserted, updated): an insert whose `insert_match` values exist updates that row."""
        table = self.batch.inserts
        if not table.num_rows:
            return 0, 0
        names = [n for n in table.column_names if n != BATCH_REF]
        match = list(self.batch.insert_match)
        # a generated column left NULL is left to the database (serial, identity, default)
        generated = [n for n in names if self.column(n).auto_generated]
        values = self._convert(table, names, [*match, *generated])
        groups: dict[tuple[str, ...], list[_Row]] = {}
        for row in self._rows(values):
            cols = tuple(names)
            if any(values.value(n, row.i) is None for n in generated):
                cols = tuple(
                    n for n in names if n not in generated or values.value(n, row.i) is not None
                )
            groups.setdefault(cols, []).append(row)
        if len(groups) == 1 and values.ref_text is not None and not self.careful:
            ((cols, rows),) = groups.items()
            direct = self._direct(cols, match, values, rows)
            if direct is not None:
                return direct, 0
        stage, items = self._stage("inserts", names, values, list(groups.values()))
        updated = 0
        if match:
            rows = [row for group in groups.values() for row in group]
            updated, items = self._matched(stage, names, match, values, rows, items)
        inserted = 0
        for cols, part in zip(groups, items, strict=True):
            inserted += self._insert(stage, cols, part)
        return inserted, updated

    def _matched(
        self,
        stage: Stage | Arrays,
        names: Sequence[str],
        match: Sequence[str],
        values: _Values,
        rows: Sequence[_Row],
        items: list[list[Item]],
    ) -> tuple[int, list[list[Item]]]:
        """Update the rows whose `match` values exist (`rows` by ordinal); how many, and the
        items left to insert, which are the only ones left in the staging table."""
        staged = [i for part in items for i in part]
        query = self._update_query(stage, [n for n in names if n not in match], match)

        def key(row: _Row) -> tuple[Any, ...]:
            return tuple(values.value(m, row.i) for m in match)

        updated = 0
        left: set[int] = set()
        for turn in _rounds([rows[i.ord] for i in staged], key):
            refs = {r.ref for r in turn}
            for run in _runs([i for i in staged if i.ref in refs], staged):
                found, none = self._found(self._execute(query, stage, run))
                updated += len(found)
                left.update(i.ord for i in none)
        stage.delete([i.ord for i in staged if i.ord not in left])
        return updated, [[i for i in part if i.ord in left] for part in items]

    def _direct(
        self, cols: Sequence[str], match: Sequence[str], values: _Values, rows: Sequence[_Row]
    ) -> int | None:
        """Insert `rows` by one COPY straight into the target, when that is what the
        statements over a staging table would do: the part matches its rows by one unique
        integer or text column (`insert_match`), each row's value is set and its own, and
        no target row has any of them yet. The keys are then read back by that column.
        How many were inserted; None (nothing written) when the rows are to take the
        staged path: the conditions do not hold, a row fails (the staged path finds
        which), or the target did not store one row per row as given (a trigger)."""
        import psycopg
        from psycopg import sql

        if len(match) != 1 or not rows or (match[0],) not in self.info.unique:
            return None
        column = self.column(match[0])
        if column.family not in ("int", "text") or cast_type(column) in _PADDED:
            return None  # a value the server gives back as another Python value
        wanted = [values.value(column.name, r.i) for r in rows]
        if None in wanted or len(set(wanted)) != len(wanted):
            return None
        wanted_type = sql.SQL(cast_type(column))
        ident = sql.Identifier(column.name)
        taken = sql.SQL("SELECT 1 FROM {} WHERE {} = ANY(%s::{}[]) LIMIT 1").format(
            self.target, ident, wanted_type
        )
        copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
            self.target, sql.SQL(", ").join(map(sql.Identifier, cols))
        )
        read = sql.SQL("SELECT {}{} FROM {} AS _t WHERE {} = ANY(%s::{}[])").format(
            sql.Identifier("_t", column.name),
            sql.SQL("").join(
                sql.SQL(", {}::text").format(sql.Identifier("_t", c.name))
                if c.family in TEXT_CAST_FAMILIES
                else sql.SQL(", {}").format(sql.Identifier("_t", c.name))
                for c in self.returning
            ),
            self.target,
            sql.Identifier("_t", column.name),
            wanted_type,
        )
        try:
            with self.conn.transaction():
                if self.conn.execute(taken, [wanted]).fetchone() is not None:
                    raise _Staged  # a row to update: the staged path's
                texts = [values.encoded[c].text for c in cols]
                lines = copy_lines(None, texts, [r.i for r in rows], [None] * len(cols))
                with self.conn.cursor() as cur:
                    with cur.copy(copy) as out:
                        out.write(b"\n".join(lines) + b"\n")
                    if cur.rowcount != len(rows):
                        raise _Staged  # a trigger skipped a row
                by_value = {
                    found[0]: found[1:] for found in self.conn.execute(read, [wanted]).fetchall()
                }
                if len(by_value) != len(rows) or any(w not in by_value for w in wanted):
                    raise _Staged  # a trigger changed the column: keys not known
        except _Staged:
            return None
        except psycopg.Error as exc:
            if not is_record_error(exc):
                raise_translated(exc, self.what)
            return None  # a row the target refuses: the staged path finds which
        for row, value in zip(rows, wanted, strict=True):
            self.record_key(row.ref, by_value[value])
        return len(rows)

    def _insert(self, stage: Stage | Arrays, cols: Sequence[str], items: Sequence[Item]) -> int:
        from psycopg import sql

        if not items:
            return 0
        query = self._text(
            "insert",
            stage.key,
            tuple(cols),
            build=lambda: (
                sql.SQL(
                    "INSERT INTO {} AS _t {}SELECT {} FROM {}"
                    " WHERE {} BETWEEN %s AND %s ORDER BY {}"
                ).format(
                    self.target,
                    sql.SQL("({}) ").format(sql.SQL(", ").join(map(sql.Identifier, cols)))
                    if cols
                    else sql.SQL(""),
                    sql.SQL(", ").join(sql.Identifier("_s", c) for c in cols),
                    stage.clause,
                    sql.Identifier("_s", ORD),
                    sql.Identifier("_s", ORD),
                )
                + self._returning()
            ),
        )
        inserted = 0
        for part, rows in self._execute(query, stage, items, counted=True):
            for item, row in zip(part, rows, strict=True):
                inserted += 1
                if self.returning:
                    self.record_key(item.ref, row)
                else:
                    self.keys[item.ref] = {}
        return inserted


class _Staged(Exception):
    """The direct COPY of inserts is not for these rows (`_Writer._direct`)."""


# character(n) gives its values back padded to n
_PADDED = frozenset({"bpchar"})


def _check_columns(batch: ApplyBatch, info: TableInfo) -> None:
    for part, table in (
        ("inserts", batch.inserts),
        ("updates", batch.updates),
        ("deletes", batch.deletes),
    ):
        if table.num_rows and BATCH_REF not in table.column_names:
            raise ConfigError(f"apply batch {batch.batch_id}: {part} has no {BATCH_REF} column")
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
    _check_columns(batch, info)
    try:
        return _apply(conn, batch, info, careful=False)
    except NeedsCare:
        # a row failed: the transaction is rolled back; again, each statement in a
        # savepoint, so the failing rows are found and the others written
        return _apply(conn, batch, info, careful=True)


def _apply(
    conn: psycopg.Connection, batch: ApplyBatch, info: TableInfo, careful: bool
) -> ApplyResult:
    import psycopg

    try:
        with conn.transaction():
            replayed = begin_batch(conn, batch.batch_id, batch.origin)
            if replayed is not None:  # a committed batch again: write nothing
                return replayed
            writer = _Writer(conn, batch, info, careful)
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
