"""A SQLite file polled against a PostgreSQL database (streamed, or polled too), for the
polling tests: schema on both sides, the YAML, a runtime, and readers of both tables."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from syncswim_lib.config import Project, load_project
from syncswim_lib.pipeline.report import EntityReport
from syncswim_lib.pipeline.run import run_sync
from syncswim_lib.pipeline.runtime import Runtime

NOW_MS = "strftime('%Y-%m-%d %H:%M:%f', 'now')"

SQLITE_DDL = f"""
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    app_id INTEGER UNIQUE,
    name TEXT,
    amount NUMERIC(12,2),
    active BOOLEAN,
    updated_at TIMESTAMP NOT NULL DEFAULT ({NOW_MS}),
    deleted_at TIMESTAMP,
    last_writer TEXT
);
CREATE INDEX customers_updated ON customers (updated_at);
CREATE TRIGGER customers_touch AFTER UPDATE ON customers
FOR EACH ROW WHEN NEW.updated_at = OLD.updated_at
BEGIN
    UPDATE customers SET updated_at = {NOW_MS} WHERE id = NEW.id;
END;
"""

PG_DDL = """
CREATE TABLE customers (
    id serial PRIMARY KEY,
    name text,
    amount numeric(12,2),
    active boolean,
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);
CREATE INDEX customers_updated ON customers (updated_at);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
CREATE TRIGGER customers_touch BEFORE UPDATE ON customers
FOR EACH ROW EXECUTE FUNCTION touch();
"""


# the two identity modes: the SOR's key in the polled side's app_id, or a shared code
MODES = {
    "sor": "{system_of_record: app, external_id: {legacy: app_id}}",
    "ext": "{external_id: {app: code, legacy: code}}",
    # the polled side is the system of record: PostgreSQL keeps its key in legacy_id
    "sor_polled": "{system_of_record: legacy, external_id: {app: legacy_id}}",
}
EXT_DDL = "ALTER TABLE customers ADD COLUMN code {} UNIQUE"


def yaml_text(
    dsn: str,
    sqlite_path: Path,
    state_url: str,
    *,
    deleted: str = "{column: deleted_at}",
    pg_capture: str = "",
    pg_poll: str = "",
    written_by: bool = False,
    safety_lag: str = "5s",
    mode: str = "sor",
) -> str:
    writer = ", written_by: last_writer" if written_by else ""
    legacy = f"{{column: updated_at, safety_lag: {safety_lag}, deleted: {deleted}{writer}}}"
    poll_pg = f"\n          app: {pg_poll}" if pg_poll else ""
    return f"""
endpoints:
  app: {{kind: postgres, dsn: '{dsn}'{pg_capture}}}
  legacy: {{kind: sqlite, path: '{sqlite_path}'}}
state: '{state_url}'
syncs:
  app_legacy:
    between: [app, legacy]
    poll: {{interval: {{min: 1s, max: 30s}}}}
    entities:
      customers:
        app: {{table: public.customers, key: [id]}}
        legacy: {{table: customers, key: [id]}}
        mode: {MODES[mode]}
        fields: {{name: name, amount: amount, active: active}}
        poll:
          legacy: {legacy}{poll_pg}
"""


class PolledPair:
    """PostgreSQL (side a) and a SQLite file (side b) kept in step by sync app_legacy."""

    def __init__(self, dsn: str, folder: Path, unique: bool = True, **yaml: Any) -> None:
        """`mode="ext"`: both tables get a unique `code` column, the shared external id;
        `mode="sor_polled"`: SQLite is the system of record, its key in `legacy_id`.
        `unique=False`: SQLite's identity column (`app_id`, `code`) is not unique, so a
        test can give two rows one identity."""
        self.dsn = dsn
        self.folder = folder
        self.sqlite_path = folder / "legacy.db"
        self.state_url = f"sqlite:///{folder / 'state.db'}"
        ext = yaml.get("mode") == "ext"
        ddl = SQLITE_DDL
        if not unique:
            ddl = ddl.replace("app_id INTEGER UNIQUE", "app_id INTEGER")
        with sqlite3.connect(self.sqlite_path) as conn:
            conn.executescript(ddl)
            if ext:  # SQLite adds no UNIQUE column: the index says it
                conn.execute("ALTER TABLE customers ADD COLUMN code TEXT")
                if unique:
                    conn.execute("CREATE UNIQUE INDEX customers_code ON customers (code)")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(PG_DDL)
            if ext:
                conn.execute(EXT_DDL.format("text"))
            if yaml.get("mode") == "sor_polled":
                conn.execute("ALTER TABLE customers ADD COLUMN legacy_id integer UNIQUE")
        self.yaml_path = folder / "sync.yaml"
        self.yaml_path.write_text(yaml_text(dsn, self.sqlite_path, self.state_url, **yaml))
        self.project: Project = load_project(self.yaml_path)

    @contextmanager
    def runtime(self) -> Iterator[Runtime]:
        with Runtime(self.project, self.state_url) as rt:
            yield rt

    def run(self, full: bool = False) -> EntityReport:
        with self.runtime() as rt:
            (report,) = run_sync(rt, "app_legacy", full=full)
        return report

    def lite(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        conn = sqlite3.connect(self.sqlite_path, isolation_level=None)
        try:
            conn.execute(sql, args)
        finally:
            conn.close()

    def pg(self, sql: str, args: tuple[Any, ...] | dict[str, Any] = ()) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql, args)

    def lite_rows(self) -> list[dict[str, Any]]:
        conn = sqlite3.connect(self.sqlite_path)
        conn.row_factory = sqlite3.Row
        try:
            rows = conn.execute("SELECT * FROM customers ORDER BY id").fetchall()
            return [dict(r) for r in rows]
        finally:
            conn.close()

    def pg_rows(self) -> list[dict[str, Any]]:
        with psycopg.connect(self.dsn, row_factory=dict_row) as conn:
            return list(conn.execute("SELECT * FROM customers ORDER BY id").fetchall())

    def live_lite(self) -> list[dict[str, Any]]:
        """The SQLite rows that are not soft-deleted."""
        return [r for r in self.lite_rows() if r["deleted_at"] is None]


MY_DDL = [
    """CREATE TABLE customers (
    id int AUTO_INCREMENT PRIMARY KEY, app_id int NULL UNIQUE, name varchar(100),
    amount decimal(12,2), active tinyint(1),
    updated_at datetime(6) NOT NULL DEFAULT current_timestamp(6)
        ON UPDATE current_timestamp(6),
    deleted_at datetime(6) NULL,
    INDEX customers_updated (updated_at))""",
    # far from PostgreSQL's sequence, so no test passes by keys coinciding
    "ALTER TABLE customers AUTO_INCREMENT = 1000",
]


class PolledMariaDB:
    """PostgreSQL (side a, streamed) and a MariaDB table polled by `updated_at` (side b,
    `capture: poll`) kept in step by sync app_shop."""

    def __init__(
        self, pg_dsn: str, my_dsn: str, folder: Path, deleted: str, mode: str = "sor"
    ) -> None:
        """`mode="ext"`: both tables get a unique `code` column, the shared external id."""
        import pymysql

        self.pg_dsn = pg_dsn
        self.my_dsn = my_dsn
        self.state_url = f"sqlite:///{folder / 'state.db'}"
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(PG_DDL)
            if mode == "ext":
                conn.execute(EXT_DDL.format("text"))
        self._my = pymysql.connect(**_my_kwargs(my_dsn), autocommit=True)
        with self._my.cursor() as cur:
            for ddl in MY_DDL:
                cur.execute(ddl)
            if mode == "ext":
                cur.execute(EXT_DDL.format("varchar(20)"))
        ident = MODES[mode].replace("legacy", "shop")
        self.yaml_path = folder / "sync.yaml"
        self.yaml_path.write_text(f"""
endpoints:
  app: {{kind: postgres, dsn: '{pg_dsn}'}}
  shop: {{kind: mysql, dsn: '{my_dsn}', capture: poll}}
state: '{self.state_url}'
syncs:
  app_shop:
    between: [app, shop]
    entities:
      customers:
        app: {{table: public.customers, key: [id]}}
        shop: {{table: customers, key: [id]}}
        mode: {ident}
        fields: {{name: name, amount: amount, active: active}}
        poll:
          shop: {{column: updated_at, deleted: {deleted}}}
""")
        self.project: Project = load_project(self.yaml_path)

    def close(self) -> None:
        self._my.close()

    @contextmanager
    def runtime(self) -> Iterator[Runtime]:
        with Runtime(self.project, self.state_url) as rt:
            yield rt

    def run(self, full: bool = False) -> EntityReport:
        with self.runtime() as rt:
            (report,) = run_sync(rt, "app_shop", full=full)
        return report

    def my(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        with self._my.cursor() as cur:
            cur.execute(sql, args)

    def my_rows(self) -> list[dict[str, Any]]:
        import pymysql

        with self._my.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute("SELECT * FROM customers ORDER BY id")
            return list(cur.fetchall())

    def pg(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        with psycopg.connect(self.pg_dsn, autocommit=True) as conn:
            conn.execute(sql, args)

    def pg_rows(self) -> list[dict[str, Any]]:
        with psycopg.connect(self.pg_dsn, row_factory=dict_row) as conn:
            return list(conn.execute("SELECT * FROM customers ORDER BY id").fetchall())


def _my_kwargs(dsn: str) -> dict[str, Any]:
    from urllib.parse import urlparse

    url = urlparse(dsn)
    return {
        "host": url.hostname,
        "port": url.port,
        "user": url.username,
        "password": url.password or "",
        "database": url.path.lstrip("/"),
    }
