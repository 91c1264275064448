"""The embedded state store: one SQLite file, shared by every Dagster process on a machine.

WAL lets readers go on while one process writes; writes take the file's write lock up
front (`BEGIN IMMEDIATE`) so two writers queue on the busy timeout instead of failing
half-way through a transaction that began as a read.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from syncswim_lib.errors import ConfigError, FatalError, RetriableError
from syncswim_lib.state import schema
from syncswim_lib.state.sqlstore import Cursor, SqlStateStore


class SqliteStateStore(SqlStateStore):
    dialect = schema.SQLITE

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self.path = str(Path(self.path).expanduser())
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as e:
            raise ConfigError(f"cannot open the SQLite state store {self.path!r}: {e}") from e
        self._lock = threading.RLock()
        self._closed = False
        try:
            with self._errors():
                self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
                self._conn.execute("PRAGMA journal_mode = WAL")
                # FULL: the source log is released once the journal commits, so a commit
                # must survive a power cut, not only a process crash
                self._conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.DatabaseError as e:  # e.g. "file is not a database"
            self._conn.close()
            raise FatalError(f"cannot use {self._where()} as the state store: {e}") from e
        self._create_schema()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as e:
            text = str(e).lower()
            if "locked" in text or "busy" in text:
                raise RetriableError(f"SQLite state store {self.path!r} is busy: {e}") from e
            raise

    @contextlib.contextmanager
    def _transaction(self, begin: str) -> Iterator[Cursor]:
        with self._lock, self._errors():
            cur = self._conn.cursor()
            cur.execute(begin)
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.rollback()
                raise
            finally:
                cur.close()

    def _write(self) -> contextlib.AbstractContextManager[Cursor]:
        return self._transaction("BEGIN IMMEDIATE")

    def _read(self) -> contextlib.AbstractContextManager[Cursor]:
        # a deferred transaction: one consistent snapshot, no write lock
        return self._transaction("BEGIN")

    def _integrity_errors(self) -> tuple[type[Exception], ...]:
        return (sqlite3.IntegrityError,)

    def _database_errors(self) -> tuple[type[Exception], ...]:
        return (sqlite3.DatabaseError,)

    def _where(self) -> str:
        return f"SQLite file {self.path!r}"

    def _ts_in(self, value: datetime | None) -> Any:
        if value is None:
            return None
        if value.tzinfo is UTC:  # the common case (every captured change has two)
            return value.isoformat(timespec="microseconds")
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        # fixed width in UTC, so that text order is time order
        return value.astimezone(UTC).isoformat(timespec="microseconds")

    def _ts_out(self, value: Any) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)
