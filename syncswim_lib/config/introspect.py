"""What `syncswim init` reads from a database: its tables, their columns and keys (through
the connectors' own `describe`, so init and `validate` see the same types) and its
one-column foreign keys.

PostgreSQL: every ordinary table outside the system schemas and the ones Sync or Swim
creates (`syncswim`, `syncswim_state`). MySQL/MariaDB: the base tables of the DSN's
database, without the `_syncswim_*` marker tables.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from syncswim_lib.errors import ConfigError, SyncSwimError
from syncswim_lib.redact import redact
from syncswim_lib.values import TableInfo

Kind = Literal["postgres", "mysql"]

_PG_SCHEMES = ("postgres", "postgresql")
_MY_SCHEMES = ("mysql", "mariadb", "mysql+pymysql")
# schemas whose tables are never proposed: the catalog's, and what setup and the
# PostgreSQL state store create
_PG_SKIP_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast", "syncswim", "syncswim_state")
_MY_SKIP_PREFIX = "_syncswim_"

_PG_TABLES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg\\_%%'
ORDER BY n.nspname = 'public' DESC, n.nspname, c.relname
"""
# one-column foreign keys: child schema, table, column -> parent schema, table, column
_PG_FKS = """
SELECT cn.nspname, cc.relname, ca.attname, pn.nspname, pc.relname, pa.attname
FROM pg_constraint k
JOIN pg_class cc ON cc.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace
JOIN pg_class pc ON pc.oid = k.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
JOIN pg_attribute ca ON ca.attrelid = k.conrelid AND ca.attnum = k.conkey[1]
JOIN pg_attribute pa ON pa.attrelid = k.confrelid AND pa.attnum = k.confkey[1]
WHERE k.contype = 'f' AND cardinality(k.conkey) = 1
ORDER BY cn.nspname, cc.relname, k.conname
"""
_MY_TABLES = """
SELECT TABLE_NAME FROM information_schema.TABLES
WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME
"""
_MY_FKS = """
SELECT k.TABLE_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME
FROM information_schema.KEY_COLUMN_USAGE k
WHERE k.TABLE_SCHEMA = %s AND k.REFERENCED_TABLE_SCHEMA = %s
  AND k.REFERENCED_TABLE_NAME IS NOT NULL
  AND (SELECT COUNT(*) FROM information_schema.KEY_COLUMN_USAGE o
       WHERE o.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND o.TABLE_NAME = k.TABLE_NAME
         AND o.CONSTRAINT_NAME = k.CONSTRAINT_NAME) = 1
ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME
"""


@dataclass(frozen=True)
class ForeignKey:
    column: str
    parent: str  # the parent table, as `Database.tables` names it
    parent_column: str


@dataclass(frozen=True)
class Database:
    """One side's catalog, as init needs it."""

    kind: Kind
    label: str  # the DSN without its password, for messages and comments
    database: str  # the database name (the default endpoint name)
    # the name a declaration gives the table (`public.customers`, `customers`) -> its info
    tables: dict[str, TableInfo] = field(default_factory=dict)
    foreign_keys: dict[str, tuple[ForeignKey, ...]] = field(default_factory=dict)

    @staticmethod
    def bare(name: str) -> str:
        """The table's own name, without its schema: what tables are matched by."""
        return name.rsplit(".", 1)[-1]


def kind_of(dsn: str) -> Kind:
    """The endpoint kind a DSN's scheme names; a ConfigError for any other."""
    try:
        scheme = urlsplit(dsn).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme in _PG_SCHEMES:
        return "postgres"
    if scheme in _MY_SCHEMES:
        return "mysql"
    shown = f"{scheme!r}" if scheme else "none"
    raise ConfigError(
        f"a DSN must start with postgresql:// or mysql:// (also postgres://, mariadb://), "
        f"got scheme {shown}"
    )


def safe_dsn(dsn: str) -> str:
    """The DSN with its password replaced by `***`."""
    return redact(dsn, dsn)


def read_database(dsn: str, endpoint: str, tables: Sequence[str] = ()) -> Database:
    """The catalog behind `dsn`; `tables` (bare names) limits what is described.
    Failures are one-line errors without the password."""
    kind = kind_of(dsn)
    try:
        if kind == "postgres":
            return _read_postgres(dsn, endpoint, tables)
        return _read_mysql(dsn, endpoint, tables)
    except SyncSwimError as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, ConfigError) and exc.path:  # the DSN's key: init has no file yet
            text = text.removeprefix(f"{exc.path}: ")
        raise ConfigError(
            f"cannot read {kind} database {safe_dsn(dsn)}: {redact(text, dsn)}"
        ) from None
    except Exception as exc:  # a driver error not mapped by the connector: still one line
        text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
        raise ConfigError(
            f"cannot read {kind} database {safe_dsn(dsn)}: {redact(text, dsn)}"
        ) from None


def _wanted(name: str, tables: Sequence[str]) -> bool:
    return not tables or Database.bare(name) in tables


def _read_postgres(dsn: str, endpoint: str, tables: Sequence[str]) -> Database:
    from syncswim_lib.connectors.postgres.connection import connect, prepare_dsn
    from syncswim_lib.connectors.postgres.describe import describe_table

    conn = connect(prepare_dsn(dsn, endpoint))
    try:
        database = str(conn.info.dbname)
        names: list[str] = []
        seen: set[str] = set()
        for schema, table in conn.execute(_PG_TABLES, (list(_PG_SKIP_SCHEMAS),)).fetchall():
            # the same name in two schemas: the first (public first) is the one matched
            if table in seen or not _wanted(table, tables):
                continue
            seen.add(table)
            names.append(f"{schema}.{table}")
        infos = {n: describe_table(conn, n, endpoint) for n in names}
        fks: dict[str, list[ForeignKey]] = {}
        for cs, ct, cc, ps, pt, pc in conn.execute(_PG_FKS).fetchall():
            child, parent = f"{cs}.{ct}", f"{ps}.{pt}"
            if child in infos and parent in infos:
                fks.setdefault(child, []).append(ForeignKey(cc, parent, pc))
    finally:
        with contextlib.suppress(Exception):
            conn.close()
    return Database(
        "postgres",
        safe_dsn(dsn),
        database,
        infos,
        {k: tuple(v) for k, v in fks.items()},
    )


def _read_mysql(dsn: str, endpoint: str, tables: Sequence[str]) -> Database:
    from syncswim_lib.connectors.mysql.connection import connect, map_error, parse_dsn
    from syncswim_lib.connectors.mysql.describe import describe_table

    parsed = parse_dsn(dsn, endpoint)
    conn = connect(parsed, endpoint)
    db = parsed.database

    def query(sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    try:
        import pymysql

        try:
            names = [
                str(t)
                for (t,) in query(_MY_TABLES, (db,))
                if not str(t).startswith(_MY_SKIP_PREFIX) and _wanted(str(t), tables)
            ]
            infos = {n: describe_table(conn, db, n, name=n, endpoint=endpoint) for n in names}
            fks: dict[str, list[ForeignKey]] = {}
            for child, column, parent, parent_column in query(_MY_FKS, (db, db)):
                if child in infos and parent in infos:
                    fks.setdefault(child, []).append(ForeignKey(column, parent, parent_column))
        except pymysql.err.MySQLError as exc:
            raise map_error(exc, f"reading the tables of database {db}") from exc
    finally:
        with contextlib.suppress(Exception):
            conn.close()
    return Database("mysql", safe_dsn(dsn), db, infos, {k: tuple(v) for k, v in fks.items()})
