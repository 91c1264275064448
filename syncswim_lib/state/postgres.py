"""The state store in PostgreSQL, for deployments where Dagster runs on several machines.

Tables live in their own schema (`syncswim_state` unless told otherwise), so the store can
share a database with anything else. One connection per store object, one transaction
per method; a connection the server dropped is replaced at the next call.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from syncswim_lib.connectors.postgres.connection import open_connection, prepare_dsn
from syncswim_lib.errors import ConfigError, RetriableError
from syncswim_lib.redact import redact
from syncswim_lib.state import schema
from syncswim_lib.state.sqlstore import Cursor, SqlStateStore

if TYPE_CHECKING:
    import psycopg

DEFAULT_SCHEMA = "syncswim_state"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# any constant works: it only keeps two processes from creating the tables at once
_DDL_LOCK = 0x5359_4E43_5354


class PostgresStateStore(SqlStateStore):
    dialect = schema.POSTGRES

    def __init__(self, dsn: str, *, schema_name: str = DEFAULT_SCHEMA) -> None:
        if not _IDENT.match(schema_name):
            raise ConfigError(f"invalid state store schema name {schema_name!r}", path="state")
        # checked before the first connect, so that no driver message quoting it escapes
        self.dsn = prepare_dsn(dsn, "state", path="state")
        self.schema_name = schema_name
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        self._closed = False
        self._queries: dict[str, str] = {}
        self._create_schema()

    def _connect(self) -> psycopg.Connection[Any]:
        from psycopg.types.string import TextLoader

        if self._closed:
            raise RuntimeError("the state store is closed")
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        # with the timeouts of a PostgreSQL endpoint's defaults (config.timeouts)
        conn = open_connection(self.dsn, "cannot reach the PostgreSQL state store")
        # JSON columns come back as the text codec.dumps wrote, for codec.loads to read
        conn.adapters.register_loader("json", TextLoader)
        conn.execute(f'SET search_path TO "{self.schema_name}"')
        self._conn = conn
        return conn

    def _prepare_schema(self, cur: Cursor) -> None:
        # two processes creating the tables at once would collide in the catalog
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
        cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema_name}"')

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Cursor]:
        import psycopg

        with self._lock:
            conn = self._connect()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    yield cur
            except psycopg.OperationalError as e:
                # lost connection, server shutting down, lock or statement timeout
                raise RetriableError(f"PostgreSQL state store: {redact(str(e))}") from e
            except psycopg.errors.SerializationFailure as e:
                raise RetriableError(f"PostgreSQL state store: {e}") from e

    def _insert_changes(self, cur: Cursor, rows: Iterator[tuple[Any, ...]]) -> int:
        # COPY and one INSERT ... SELECT: several times faster than a pipelined
        # executemany for the thousands of rows a capture or a snapshot brings
        pg_cur: psycopg.Cursor[Any] = cur  # type: ignore[assignment]
        # every time: a staging table created in a transaction that rolled back is gone
        pg_cur.execute(schema.CREATE_STAGE)
        with pg_cur.copy(f"COPY journal_stage ({schema.STAGE_COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        pg_cur.execute(schema.FROM_STAGE)
        return max(pg_cur.rowcount, 0)

    def _write(self) -> contextlib.AbstractContextManager[Cursor]:
        return self._transaction()

    def _read(self) -> contextlib.AbstractContextManager[Cursor]:
        return self._transaction()

    def _integrity_errors(self) -> tuple[type[Exception], ...]:
        import psycopg

        return (psycopg.IntegrityError,)

    def _database_errors(self) -> tuple[type[Exception], ...]:
        import psycopg

        return (psycopg.Error,)

    def _where(self) -> str:
        return f"PostgreSQL schema {self.schema_name!r}"

    def _q(self, query: str) -> str:
        converted = self._queries.get(query)
        if converted is None:
            # the shared queries use ? and contain no literal ? or %
            converted = self._queries[query] = query.replace("?", "%s")
        return converted
