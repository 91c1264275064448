"""The per-connector part of the conformance suite: DDL, plain SQL as another application
would write it, and a few server knobs. Everything else in the suite is written once,
against the Connector Protocol.

Both dialects take `%s` placeholders and the same unquoted names, so DML is shared; only
table definitions, transactions and value forms differ.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pymysql

from syncswim_lib.connectors.base import Connector
from syncswim_lib.connectors.memory import MemoryConnector, MemoryDatabase
from syncswim_lib.connectors.mysql import MySQLConnector
from syncswim_lib.connectors.postgres import PostgresConnector
from tests.connectors.memory.minisql import execute

Statement = tuple[str, Sequence[Any]]


class Backend(ABC):
    """One database under test, reached both through its connector and as a bystander."""

    kind: str
    marker_table: str

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    @abstractmethod
    def connector(self) -> Connector: ...

    @abstractmethod
    def table(self, name: str) -> str:
        """`name` as the connector spells it in `Change.table`."""

    @abstractmethod
    def items_ddl(self) -> str:
        """items(id generated PK, ext varchar(20) UNIQUE, name varchar(20), n int)."""

    @abstractmethod
    def typed_ddl(self) -> str:
        """typed(id, big, amount(12,2), name, flag, born, seen_at (zoned), local_at (zone-less),
        doc json, note text)."""

    @abstractmethod
    def param(self, value: Any) -> Any:
        """A canonical value as this driver must send it in plain SQL."""

    @abstractmethod
    def transaction(self, statements: Sequence[Statement]) -> None:
        """Run `statements` in one transaction on this backend's own connection."""

    @abstractmethod
    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    @abstractmethod
    def rotate_log(self) -> None:
        """Start a new WAL segment / binlog file."""

    @abstractmethod
    def age_markers(self, batch_ids: Sequence[str], by: timedelta) -> None:
        """Make the apply markers of `batch_ids` look `by` older."""

    @abstractmethod
    def hold_row(self, row_id: int) -> AbstractContextManager[None]:
        """Keep `items` row `row_id` locked (SELECT ... FOR UPDATE) until the block ends."""

    @abstractmethod
    def lock_waits(self) -> int:
        """How many sessions of this database wait for a row lock now."""

    @abstractmethod
    def kill_other_sessions(self) -> int:
        """Close every other session on this database from the server side; how many are
        still alive afterwards (0 once the server has ended them)."""

    @abstractmethod
    def marker_module(self) -> ModuleType:
        """The connector's module of the apply markers (its PRUNE_CHUNK is patched)."""

    @abstractmethod
    def clone(self) -> Backend:
        """Another connection to the same database (for another thread)."""

    @abstractmethod
    def close(self) -> None: ...

    def run(self, sql: str, *params: Any) -> None:
        self.transaction([(sql, [self.param(p) for p in params])])

    def marker_ids(self) -> set[str]:
        return {r[0] for r in self.rows(f"SELECT batch_id FROM {self.marker_table}")}


class PostgresBackend(Backend):
    kind = "postgres"
    marker_table = "syncswim.applied"

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self.conn = psycopg.connect(dsn, autocommit=True)
        # commits flushed before they return, whatever the server's default
        self.conn.execute("SET synchronous_commit = on")
        self.conn.execute("SET TimeZone = 'UTC'")

    def connector(self) -> Connector:
        return PostgresConnector(self.dsn, "app_db")

    def table(self, name: str) -> str:
        return f"public.{name}"

    def items_ddl(self) -> str:
        return (
            "CREATE TABLE items (id serial PRIMARY KEY, ext varchar(20) UNIQUE,"
            " name varchar(20), n int)"
        )

    def typed_ddl(self) -> str:
        return (
            "CREATE TABLE typed (id int PRIMARY KEY, big bigint, amount numeric(12,2),"
            " name varchar(100), flag boolean, born date, seen_at timestamptz,"
            " local_at timestamp, doc jsonb, note text)"
        )

    def param(self, value: Any) -> Any:
        from psycopg.types.json import Jsonb

        if isinstance(value, dict | list):
            return Jsonb(value)
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.astimezone(UTC).replace(tzinfo=None)  # the session is in UTC
        return value

    def transaction(self, statements: Sequence[Statement]) -> None:
        with self.conn.transaction():
            for sql, params in statements:
                self.conn.execute(sql, params or None)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def rotate_log(self) -> None:
        self.conn.execute("SELECT pg_switch_wal()")

    def age_markers(self, batch_ids: Sequence[str], by: timedelta) -> None:
        self.conn.execute(
            "UPDATE syncswim.applied SET created_at = created_at - %s WHERE batch_id = ANY(%s)",
            (by, list(batch_ids)),
        )

    @contextmanager
    def hold_row(self, row_id: int) -> Iterator[None]:
        with self.conn.transaction():
            self.conn.execute("SELECT id FROM items WHERE id = %s FOR UPDATE", (row_id,))
            yield

    def lock_waits(self) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
        assert row is not None
        return int(row[0])

    def kill_other_sessions(self) -> int:
        others = "datname = current_database() AND pid <> pg_backend_pid()"
        self.rows(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {others}")
        ((alive,),) = self.rows(f"SELECT count(*) FROM pg_stat_activity WHERE {others}")
        return int(alive)

    def marker_module(self) -> ModuleType:
        from syncswim_lib.connectors.postgres import marker

        return marker

    def clone(self) -> Backend:
        return PostgresBackend(self.dsn)

    def close(self) -> None:
        self.conn.close()


class MySQLBackend(Backend):
    kind = "mysql"
    marker_table = "_syncswim_applied"

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        parts = urlsplit(dsn)
        self.db = parts.path.lstrip("/")
        self.conn = pymysql.connect(
            host=parts.hostname,
            port=parts.port or 3306,
            user=parts.username or "root",
            database=self.db,
            autocommit=True,
            charset="utf8mb4",
            init_command="SET time_zone = '+00:00'",
        )

    def connector(self) -> Connector:
        return MySQLConnector(self.dsn, "shop_db")

    def table(self, name: str) -> str:
        return f"{self.db}.{name}"

    def items_ddl(self) -> str:
        return (
            "CREATE TABLE items (id int AUTO_INCREMENT PRIMARY KEY, ext varchar(20) UNIQUE,"
            " name varchar(20), n int) ENGINE=InnoDB"
        )

    def typed_ddl(self) -> str:
        return (
            "CREATE TABLE typed (id int PRIMARY KEY, big bigint, amount decimal(12,2),"
            " name varchar(100), flag boolean, born date, seen_at timestamp(6) NULL,"
            " local_at datetime(6), doc json, note text) ENGINE=InnoDB"
        )

    def param(self, value: Any) -> Any:
        if isinstance(value, dict | list):
            return json.dumps(value)
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.astimezone(UTC).replace(tzinfo=None)  # the session is in UTC
        return value

    def transaction(self, statements: Sequence[Statement]) -> None:
        self.conn.begin()
        try:
            with self.conn.cursor() as cur:
                for sql, params in statements:
                    cur.execute(sql, params or None)
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())

    def rotate_log(self) -> None:
        self.rows("FLUSH BINARY LOGS")

    def age_markers(self, batch_ids: Sequence[str], by: timedelta) -> None:
        marks = ", ".join(["%s"] * len(batch_ids))
        self.rows(
            f"UPDATE _syncswim_applied SET created_at = created_at - INTERVAL %s MICROSECOND"
            f" WHERE batch_id IN ({marks})",
            [by // timedelta(microseconds=1), *batch_ids],
        )

    @contextmanager
    def hold_row(self, row_id: int) -> Iterator[None]:
        self.conn.begin()
        try:
            self.rows("SELECT id FROM items WHERE id = %s FOR UPDATE", [row_id])
            yield
        finally:
            self.conn.commit()

    def lock_waits(self) -> int:
        # InnoDB refreshes this table only when it was last read over 0.1 s ago: a
        # tighter poll would see the same stale rows for ever
        time.sleep(0.15)
        ((count,),) = self.rows(
            "SELECT count(*) FROM information_schema.innodb_trx t"
            " JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id"
            " WHERE t.trx_state = 'LOCK WAIT' AND p.db = DATABASE()"
        )
        return int(count)

    def kill_other_sessions(self) -> int:
        others = "SELECT id FROM information_schema.processlist"
        others += " WHERE db = DATABASE() AND id <> CONNECTION_ID()"
        for (session,) in self.rows(others):
            self.rows(f"KILL {int(session)}")
        return len(self.rows(others))

    def marker_module(self) -> ModuleType:
        from syncswim_lib.connectors.mysql import markers

        return markers

    def clone(self) -> Backend:
        return MySQLBackend(self.dsn)

    def close(self) -> None:
        self.conn.close()


class MemoryBackend(Backend):
    """The memory database (no server): the suite's SQL run by `minisql`, the server's
    knobs by the database object itself. Clones share the database, as connections do."""

    kind = "memory"
    marker_table = "(memory markers)"

    def __init__(self, db: MemoryDatabase) -> None:
        super().__init__(f"memory://{db.name}")
        self.db = db
        self.session = object()  # this connection, as the owner of the rows it holds

    def connector(self) -> Connector:
        return MemoryConnector(self.db, "mem_db")

    def table(self, name: str) -> str:
        return name

    def items_ddl(self) -> str:
        return (
            "CREATE TABLE items (id serial PRIMARY KEY, ext varchar(20) UNIQUE,"
            " name varchar(20), n int)"
        )

    def typed_ddl(self) -> str:
        return (
            "CREATE TABLE typed (id int PRIMARY KEY, big bigint, amount numeric(12,2),"
            " name varchar(100), flag boolean, born date, seen_at timestamptz,"
            " local_at timestamp, doc jsonb, note text)"
        )

    def param(self, value: Any) -> Any:
        return value

    def transaction(self, statements: Sequence[Statement]) -> None:
        with self.db.transaction(owner=self.session) as txn:
            for sql, params in statements:
                execute(self.db, txn, sql, params)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.db.transaction(owner=self.session) as txn:
            return execute(self.db, txn, sql, params)

    def rotate_log(self) -> None:
        self.db.rotate_log()

    def age_markers(self, batch_ids: Sequence[str], by: timedelta) -> None:
        self.db.age_markers(batch_ids, by)

    def marker_ids(self) -> set[str]:
        return self.db.marker_ids()

    def hold_row(self, row_id: int) -> AbstractContextManager[None]:
        return self.db.hold_row("items", row_id, owner=self.session)

    def lock_waits(self) -> int:
        return self.db.lock_waits()

    def kill_other_sessions(self) -> int:
        return self.db.kill_sessions()

    def marker_module(self) -> ModuleType:
        from syncswim_lib.connectors.memory import markers

        return markers

    def clone(self) -> Backend:
        return MemoryBackend(self.db)

    def close(self) -> None:
        pass


BACKENDS: dict[str, tuple[str, Callable[[Any], Backend]]] = {
    "postgres": ("pg_dsn", PostgresBackend),
    "mysql": ("mysql_dsn", MySQLBackend),
    "memory": ("memory_db", MemoryBackend),
}
