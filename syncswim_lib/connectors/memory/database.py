"""The memory database: tables, transactions, a change log, slots, apply markers, locks.

One `MemoryDatabase` plays the server; `MemoryConnector`s are its client sessions (several
may share one database, from several threads). It keeps what a planner or merge test
needs from a real database, and nothing more:

- tables declared with a `TableInfo`: rows kept as canonical values coerced to their
  columns (`coerce`), NOT NULL, the primary key and every `TableInfo.unique` set enforced
  (NULLs never collide, as in SQL), integer auto-generated columns numbered like MySQL's
  AUTO_INCREMENT (an explicit value moves the counter past it; a rollback does not give a
  number back);
- transactions: `transaction()` (or the one-statement `insert`, `update`, `delete`)
  commit whole or not at all; each commit gets the next commit number and a commit time
  from the injectable `clock`, truncated to `precision` (a whole-second source drops the
  fraction, as the MySQL binlog does);
- a change log read by `capture` per slot (one per sync, created by `setup`): every row
  change of a commit in order, a primary-key change as a delete and an insert;
- the apply markers (batch id, origin, stored ApplyResult, creation time), which commit
  with the batch's writes;
- row locks held by `hold_row` and waited for by `apply` (and counted by `lock_waits`),
  sessions that `kill_sessions` ends from the server side.

Positions. Commit number n has its changes at (2n, seq), seq counting the commit's row
changes from 1, and ends at (2n + 1, 0): every change of the commit sorts before its end,
every later commit after it. The pair is a `PgPosition(lsn, seq)`, or with
`position_kind="binlog"` (the default for whole-second precision) a
`BinlogPosition(file, pos, seq)`: the pipeline reads a source's clock precision from its
position type, so a whole-second memory source must look like the binlog to it.
`rotate_log()` skips a commit number. A commit's changes are released by a slot once it is
confirmed at or past the commit's end; the log keeps what some slot still needs.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from syncswim_lib.connectors.base import ApplyBatch, ApplyResult
from syncswim_lib.connectors.memory.values import (
    IntegrityError,
    check_table,
    copy_row,
    hashable,
    key_tuple,
    sort_key,
    stored,
)
from syncswim_lib.envelope import BinlogPosition, Op, PgPosition, Position
from syncswim_lib.errors import ConfigError, RetriableError
from syncswim_lib.values import ColumnInfo, TableInfo

if TYPE_CHECKING:
    from syncswim_lib.connectors.memory.connector import MemoryConnector

MICROSECOND = timedelta(microseconds=1)
SECOND = timedelta(seconds=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Clock = Callable[[], datetime]
PositionKind = Literal["pg", "binlog"]
Key = tuple[Any, ...]
ApplyHook = Callable[[ApplyBatch], None]


class SystemClock:
    """UTC wall-clock time that never repeats or goes back (one microsecond apart at
    least), so "created before now" holds for everything already written."""

    def __init__(self) -> None:
        self._last = EPOCH
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            now = datetime.now(UTC)
            if now <= self._last:
                now = self._last + MICROSECOND
            self._last = now
            return now


class ManualClock:
    """A clock the test sets: `now` stays until `advance` or `set` (or moves by `step`
    after every reading when a step is given)."""

    def __init__(
        self,
        start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
        step: timedelta = timedelta(0),
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self.now = start.astimezone(UTC)
        self.step = step

    def __call__(self) -> datetime:
        now = self.now
        self.now = now + self.step
        return now

    def advance(self, by: timedelta) -> datetime:
        self.now += by
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when.astimezone(UTC)


@dataclass(frozen=True)
class RowEvent:
    """One row change of a commit; rows are the stored (never mutated) images."""

    op: Op
    table: str
    key: dict[str, Any]
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass(frozen=True)
class Commit:
    number: int
    commit_ts: datetime
    origin: str | None
    events: tuple[RowEvent, ...]


@dataclass(frozen=True)
class Marker:
    batch_id: str
    origin: str
    result: ApplyResult
    created_at: datetime


@dataclass
class Slot:
    tables: frozenset[str]
    confirmed: Position


@dataclass
class _Table:
    info: TableInfo
    columns: dict[str, ColumnInfo]
    rows: dict[Key, dict[str, Any]] = field(default_factory=dict)
    sequences: dict[str, int] = field(default_factory=dict)

    def pk(self, row: Mapping[str, Any]) -> Key:
        return key_tuple(row, self.info.primary_key)

    def column(self, name: str) -> ColumnInfo:
        col = self.columns.get(name)
        if col is None:
            raise ConfigError(f"column {name} does not exist in table {self.info.name}")
        return col


class Transaction:
    """Writes that commit together. Statements see the transaction's own writes; others
    see them once it commits (the database lock is held from begin to commit)."""

    def __init__(self, db: MemoryDatabase, origin: str | None, owner: object) -> None:
        self.db = db
        self.origin = origin
        self.owner = owner
        self.events: list[RowEvent] = []
        self.markers: list[tuple[str, str, ApplyResult]] = []
        self._undo: list[tuple[_Table, Key | None, dict[str, Any] | None, Key | None]] = []

    # -- savepoints ------------------------------------------------------------------------
    def savepoint(self) -> tuple[int, int]:
        return (len(self._undo), len(self.events))

    def rollback_to(self, point: tuple[int, int]) -> None:
        undo_at, events_at = point
        while len(self._undo) > undo_at:
            table, old_pk, old_row, new_pk = self._undo.pop()
            if new_pk is not None:
                table.rows.pop(new_pk, None)
            if old_pk is not None and old_row is not None:
                table.rows[old_pk] = old_row
        del self.events[events_at:]

    def rollback(self) -> None:
        self.rollback_to((0, 0))
        self.markers.clear()

    @property
    def dirty(self) -> bool:
        return bool(self._undo or self.markers)

    # -- reads -----------------------------------------------------------------------------
    def get(self, table: str, key: Mapping[str, Any] | Any) -> dict[str, Any] | None:
        t = self.db._table(table)
        pk = self.db._pk_of(t, key)
        row = None if pk is None else t.rows.get(pk)
        return None if row is None else copy_row(row)

    def select(self, table: str, where: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Rows whose columns equal `where` (canonical values; NULL matches nothing), by key."""
        t = self.db._table(table)
        return [copy_row(r) for _, r in self.db._matching(t, where or {})]

    # -- writes ----------------------------------------------------------------------------
    def insert(self, table: str, row: Mapping[str, Any]) -> dict[str, Any]:
        """Insert `row` (missing columns are NULL, NULL auto-generated ones numbered);
        returns the stored row. IntegrityError when the table refuses it."""
        t = self.db._table(table)
        for name in row:
            t.column(name)
        new: dict[str, Any] = {}
        for col in t.info.columns:
            value = row.get(col.name)
            if value is None and col.auto_generated:
                value = self.db._generate(t, col)
            new[col.name] = stored(value, col)
        self._write(t, None, new)
        self.db._bump_sequences(t, new)
        return copy_row(new)

    def update(
        self, table: str, key: Mapping[str, Any] | Any, values: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Set `values` (primary-key columns included: a key change) on the row with
        primary key `key`; the stored row, or None when there is no such row."""
        t = self.db._table(table)
        pk = self.db._pk_of(t, key)
        self._lock(t, [pk])
        old = None if pk is None else t.rows.get(pk)
        if old is None or pk is None:
            return None
        return self._update_row(t, pk, values)

    def delete(self, table: str, key: Mapping[str, Any] | Any) -> dict[str, Any] | None:
        """Delete the row with primary key `key`; the deleted row, or None."""
        t = self.db._table(table)
        pk = self.db._pk_of(t, key)
        self._lock(t, [pk])
        old = None if pk is None else t.rows.get(pk)
        if old is None or pk is None:
            return None
        self._write(t, pk, None)
        return copy_row(old)

    def _update_row(self, t: _Table, pk: Key, values: Mapping[str, Any]) -> dict[str, Any]:
        old = t.rows[pk]
        new = dict(old)
        for name, value in values.items():
            new[name] = stored(value, t.column(name))
        self._write(t, pk, new)
        self.db._bump_sequences(t, new)
        return copy_row(new)

    def _lock(self, t: _Table, pks: Sequence[Key | None]) -> None:
        wanted = [(t.info.name, pk) for pk in pks if pk is not None]
        if not self.db._free(wanted, self.owner):
            if self.dirty:
                raise RetriableError(
                    f"a row of {t.info.name} is locked by another transaction; this one "
                    "has written already and cannot wait: retry it"
                )
            self.db._wait_until(
                lambda: self.db._free(wanted, self.owner), f"a row of {t.info.name}"
            )

    def _write(self, t: _Table, old_pk: Key | None, new: dict[str, Any] | None) -> None:
        """Replace the row at `old_pk` (None: an insert) by `new` (None: a delete)."""
        new_pk = None if new is None else t.pk(new)
        self._lock(t, [old_pk, new_pk])
        old = None if old_pk is None else t.rows[old_pk]
        if new is not None:
            assert new_pk is not None
            self.db._check_row(t, new, old_pk)
        if old_pk is not None:
            del t.rows[old_pk]
        if new is not None and new_pk is not None:
            t.rows[new_pk] = new
        self._undo.append((t, old_pk, old, new_pk))
        name = t.info.name
        pk_cols = t.info.primary_key

        def key(row: dict[str, Any]) -> dict[str, Any]:
            return {k: row.get(k) for k in pk_cols}

        if old is None:
            assert new is not None
            self.events.append(RowEvent(Op.INSERT, name, key(new), None, new))
        elif new is None:
            self.events.append(RowEvent(Op.DELETE, name, key(old), old, None))
        elif new_pk != old_pk:
            # a new primary key is another record: the old one goes, the new one comes
            self.events.append(RowEvent(Op.DELETE, name, key(old), old, None))
            self.events.append(RowEvent(Op.INSERT, name, key(new), None, new))
        else:
            self.events.append(RowEvent(Op.UPDATE, name, key(new), old, new))


class MemoryDatabase:
    """An in-memory database for tests without servers (see the module's docstring)."""

    def __init__(
        self,
        name: str = "memory",
        *,
        clock: Clock | None = None,
        precision: timedelta = MICROSECOND,
        position_kind: PositionKind | None = None,
        lock_timeout: float = 30.0,
    ) -> None:
        if precision <= timedelta(0):
            raise ValueError(f"precision must be positive, not {precision}")
        self.name = name
        self.clock: Clock = clock or SystemClock()
        self.precision = precision
        self.position_kind: PositionKind = position_kind or (
            "binlog" if precision >= SECOND else "pg"
        )
        self.log_file = f"{name}-bin.000001"
        self.lock_timeout = lock_timeout
        # called by `apply` after the batch's marker is claimed and before its rows are
        # locked and compared: a test edits a row "during a run" from here
        self.apply_hook: ApplyHook | None = None
        self._cond = threading.Condition(threading.RLock())
        self._tables: dict[str, _Table] = {}
        self._next = 1  # the next commit number
        self._log: deque[Commit] = deque()
        self._slots: dict[str, Slot] = {}
        self._markers: dict[str, Marker] | None = None  # None: no marker store (no setup)
        self._claims: dict[str, object] = {}  # batch id -> the apply writing it now
        self._row_locks: dict[tuple[str, Key], object] = {}
        self._waiting = 0
        self._sessions: dict[int, bool] = {}  # session id -> alive
        self._session_ids = iter(range(1, 1 << 62))

    def connector(self, endpoint: str = "memory") -> MemoryConnector:
        from syncswim_lib.connectors.memory.connector import MemoryConnector

        return MemoryConnector(self, endpoint)

    # -- schema ----------------------------------------------------------------------------
    def create_table(self, info: TableInfo) -> None:
        try:
            check_table(info)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        with self._cond:
            if info.name in self._tables:
                raise ConfigError(f"table {info.name} already exists in {self.name}")
            self._tables[info.name] = _Table(info, {c.name: c for c in info.columns})

    def drop_table(self, name: str) -> None:
        with self._cond:
            self._table(name)
            del self._tables[name]

    def describe(self, table: str) -> TableInfo:
        with self._cond:
            return self._table(table).info

    def table_names(self) -> list[str]:
        with self._cond:
            return sorted(self._tables)

    # -- direct edits ("another application") ----------------------------------------------
    @contextmanager
    def transaction(
        self, origin: str | None = None, owner: object | None = None
    ) -> Iterator[Transaction]:
        """Statements that commit together when the block ends (rolled back if it raises).
        `origin` tags the changes as another sync's writes would be; None: a user's edit.
        `owner`: the session whose `hold_row` locks the statements may pass."""
        with self._cond:
            txn = Transaction(self, origin, object() if owner is None else owner)
            try:
                yield txn
            except BaseException:
                txn.rollback()
                raise
            if txn.dirty:  # a transaction that only read commits nothing
                self._commit(txn)

    def insert(self, table: str, row: Mapping[str, Any]) -> dict[str, Any]:
        with self.transaction() as txn:
            return txn.insert(table, row)

    def update(
        self, table: str, key: Mapping[str, Any] | Any, values: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        with self.transaction() as txn:
            return txn.update(table, key, values)

    def delete(self, table: str, key: Mapping[str, Any] | Any) -> dict[str, Any] | None:
        with self.transaction() as txn:
            return txn.delete(table, key)

    def get(self, table: str, key: Mapping[str, Any] | Any) -> dict[str, Any] | None:
        with self._cond:
            t = self._table(table)
            pk = self._pk_of(t, key)
            row = None if pk is None else t.rows.get(pk)
            return None if row is None else copy_row(row)

    def rows(self, table: str, where: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Committed rows (whose columns equal `where`), ordered by primary key."""
        with self._cond:
            return [copy_row(r) for _, r in self._matching(self._table(table), where or {})]

    # -- server knobs for tests ------------------------------------------------------------
    @contextmanager
    def hold_row(
        self, table: str, key: Mapping[str, Any] | Any, owner: object | None = None
    ) -> Iterator[None]:
        """Keep a row locked (as another session's SELECT ... FOR UPDATE) until the block
        ends; `apply` waits for it, and so do transactions of any other `owner`."""
        owner = object() if owner is None else owner
        with self._cond:
            t = self._table(table)
            pk = self._pk_of(t, key)
            if pk is None:
                raise ValueError(f"no key value for table {table}: {key!r}")
            wanted = [(table, pk)]
            self._wait_until(lambda: self._free(wanted, owner), f"row {key!r} of {table}")
            self._row_locks[(table, pk)] = owner
        try:
            yield
        finally:
            with self._cond:
                self._row_locks.pop((table, pk), None)
                self._cond.notify_all()

    def lock_waits(self) -> int:
        """How many sessions wait for a row or batch lock now."""
        with self._cond:
            return self._waiting

    def kill_sessions(self) -> int:
        """End every connector session from the server side (their next call fails with
        RetriableError, the one after reconnects); how many are still alive (0)."""
        with self._cond:
            for sid in self._sessions:
                self._sessions[sid] = False
            return sum(self._sessions.values())

    def rotate_log(self) -> None:
        """Skip a commit number (as a WAL switch or binlog rotation moves the position)."""
        with self._cond:
            self._next += 1

    def age_markers(self, batch_ids: Sequence[str], by: timedelta) -> None:
        with self._cond:
            markers = self._markers or {}
            for batch_id in batch_ids:
                m = markers.get(batch_id)
                if m is not None:
                    markers[batch_id] = Marker(m.batch_id, m.origin, m.result, m.created_at - by)

    def marker_ids(self) -> set[str]:
        with self._cond:
            return set(self._markers or {})

    def commits(self) -> list[Commit]:
        """The commits the log still keeps (some slot has not released them)."""
        with self._cond:
            return list(self._log)

    # -- positions -------------------------------------------------------------------------
    def change_position(self, number: int, seq: int) -> Position:
        if self.position_kind == "binlog":
            return BinlogPosition(self.log_file, 2 * number, seq)
        return PgPosition(2 * number, seq)

    def end_position(self, number: int) -> Position:
        if self.position_kind == "binlog":
            return BinlogPosition(self.log_file, 2 * number + 1, 0)
        return PgPosition(2 * number + 1, 0)

    def current_position(self) -> Position:
        with self._cond:
            return self.end_position(self._next - 1)

    def check_position(self, position: Position, what: str) -> None:
        kind = BinlogPosition if self.position_kind == "binlog" else PgPosition
        if not isinstance(position, kind) or (
            isinstance(position, BinlogPosition) and position.file != self.log_file
        ):
            raise ConfigError(f"memory database {self.name} cannot {what} a {position!r}")

    def now(self) -> datetime:
        """The database clock's time (UTC)."""
        now = self.clock()
        if now.tzinfo is None:
            raise ValueError("the memory database's clock must give timezone-aware times")
        return now.astimezone(UTC)

    def truncate(self, when: datetime) -> datetime:
        """`when` at the precision the source keeps commit times."""
        return when - (when - EPOCH) % self.precision

    # -- internals (callers hold self._cond) ----------------------------------------------
    def _table(self, name: str) -> _Table:
        t = self._tables.get(name)
        if t is None:
            raise ConfigError(f"table {name} does not exist in memory database {self.name}")
        return t

    def _pk_of(self, t: _Table, key: Mapping[str, Any] | Any) -> Key | None:
        """The stored form of a primary key given as a mapping or (one column) a value;
        None when the column cannot hold it (it matches no row)."""
        pk = t.info.primary_key
        if not pk:
            raise ConfigError(f"table {t.info.name} has no primary key")
        if not isinstance(key, Mapping):
            if len(pk) != 1:
                raise ValueError(f"table {t.info.name} has a composite key: give a mapping")
            key = {pk[0]: key}
        missing = [k for k in pk if k not in key]
        if missing:
            raise ValueError(f"key of {t.info.name} lacks {', '.join(missing)}")
        try:
            values = {k: stored(key[k], t.column(k)) for k in pk}
        except IntegrityError:
            return None
        if any(v is None for v in values.values()):
            return None
        return key_tuple(values, pk)

    def _matching(self, t: _Table, where: Mapping[str, Any]) -> list[tuple[Key, dict[str, Any]]]:
        wanted: dict[str, Any] = {}
        for name, value in where.items():
            try:
                v = stored(value, t.column(name))
            except IntegrityError:
                return []
            if v is None:
                return []
            wanted[name] = hashable(v)
        found = [
            (pk, row)
            for pk, row in t.rows.items()
            if all(hashable(row.get(n)) == v for n, v in wanted.items())
        ]
        return sorted(found, key=lambda item: _order(t, item[1]))

    def _generate(self, t: _Table, col: ColumnInfo) -> Any:
        if col.family == "int":
            value = t.sequences.get(col.name, 1)
            t.sequences[col.name] = value + 1
            return value
        if col.family in ("uuid", "text"):
            return str(uuid.uuid4())
        raise IntegrityError(
            f"column {col.name} ({col.db_type}) of {t.info.name} is generated, but the "
            "memory database can only number int columns and make uuid text"
        )

    def _bump_sequences(self, t: _Table, row: Mapping[str, Any]) -> None:
        for col in t.info.columns:
            value = row.get(col.name)
            if col.auto_generated and col.family == "int" and isinstance(value, int):
                t.sequences[col.name] = max(t.sequences.get(col.name, 1), value + 1)

    def _check_row(self, t: _Table, row: dict[str, Any], old_pk: Key | None) -> None:
        for col in t.info.columns:
            if row.get(col.name) is None and (not col.nullable or col.name in t.info.primary_key):
                raise IntegrityError(
                    f'null value in column "{col.name}" of relation "{t.info.name}" '
                    "violates not-null constraint"
                )
        new_pk = t.pk(row)
        if new_pk != old_pk and new_pk in t.rows:
            raise IntegrityError(_duplicate(t, t.info.primary_key, row))
        for group in t.info.unique:
            if tuple(group) == tuple(t.info.primary_key):
                continue
            values = key_tuple(row, group)
            if any(row.get(c) is None for c in group):
                continue  # NULL equals nothing: never a duplicate
            for pk, other in t.rows.items():
                if pk != old_pk and key_tuple(other, group) == values:
                    raise IntegrityError(_duplicate(t, group, row))

    def _free(self, wanted: Sequence[tuple[str, Key]], owner: object) -> bool:
        return all(self._row_locks.get(w, owner) is owner for w in wanted)

    def _wait_until(self, ready: Callable[[], bool], what: str) -> None:
        if ready():
            return
        self._waiting += 1
        try:
            deadline = time.monotonic() + self.lock_timeout
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RetriableError(
                        f"lock wait timeout after {self.lock_timeout}s on {what} in {self.name}"
                    )
                self._cond.wait(left)
        finally:
            self._waiting -= 1

    def _commit(self, txn: Transaction) -> None:
        number = self._next
        self._next += 1
        now = self.now()
        commit = Commit(number, self.truncate(now), txn.origin, tuple(txn.events))
        if self._slots:
            self._log.append(commit)
        if txn.markers:
            if self._markers is None:
                raise AssertionError("markers written without a marker store")
            for batch_id, origin, result in txn.markers:
                self._markers[batch_id] = Marker(batch_id, origin, result, now)
        self._cond.notify_all()

    def _trim(self) -> None:
        if not self._slots:
            self._log.clear()
            return
        oldest = min((s.confirmed for s in self._slots.values()), key=position_order)
        while self._log and position_order(
            self.end_position(self._log[0].number)
        ) <= position_order(oldest):
            self._log.popleft()

    def _open_session(self) -> int:
        with self._cond:
            sid = next(self._session_ids)
            self._sessions[sid] = True
            return sid

    def _session_alive(self, sid: int) -> bool:
        with self._cond:
            return self._sessions.get(sid, False)

    def _close_session(self, sid: int) -> None:
        with self._cond:
            self._sessions.pop(sid, None)


def _order(t: _Table, row: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(sort_key(row.get(c), t.columns[c]) for c in t.info.primary_key)


def position_order(position: Position) -> tuple[Any, ...]:
    """A memory position as a sortable tuple."""
    if isinstance(position, PgPosition):
        return (position.lsn, position.seq)
    if isinstance(position, BinlogPosition):
        return (position.file, position.pos, position.seq)
    raise ConfigError(f"not a memory database position: {position!r}")


def _duplicate(t: _Table, group: Sequence[str], row: Mapping[str, Any]) -> str:
    shown = ", ".join(f"{c}={row.get(c)!r}" for c in group)
    return (
        f"duplicate key value violates unique constraint on {t.info.name} "
        f"({', '.join(group)}): {shown} already exists"
    )
