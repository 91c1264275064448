"""A two-database sync under test: schema on both sides, the YAML, and helpers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pymysql
from psycopg.rows import dict_row

PG_DDL = """
CREATE TABLE customers (
    id serial PRIMARY KEY, n_int integer, n_big bigint, amount numeric(12,2),
    name varchar(100), notes text, flag boolean, born date, seen_at timestamptz, doc jsonb);
CREATE TABLE products (
    id serial PRIMARY KEY, code text UNIQUE, title text, price numeric(10,2));
"""

MY_DDL = [
    """CREATE TABLE customers (
    id int AUTO_INCREMENT PRIMARY KEY, app_id int NULL UNIQUE, n_int int, n_big bigint,
    amount decimal(12,2), name varchar(100), notes text, flag tinyint(1), born date,
    seen_at datetime(6), doc json)""",
    # start far from PostgreSQL's sequence so a test cannot pass by keys coinciding
    "ALTER TABLE customers AUTO_INCREMENT = 1000",
    """CREATE TABLE products (
    id int AUTO_INCREMENT PRIMARY KEY, code varchar(64) NULL UNIQUE, title varchar(200),
    price decimal(10,2))""",
    "ALTER TABLE products AUTO_INCREMENT = 500",
]

YAML = """
endpoints:
  app: {kind: postgres, dsn: {env: E2E_PG_DSN}}
  shop: {kind: mysql, dsn: {env: E2E_MY_DSN}}
state: {env: E2E_STATE_URL}
syncs:
  app_shop:
    between: [app, shop]
    run: micro_batch
    entities:
      customers:
        app: {table: public.customers, key: [id]}
        shop: {table: customers, key: [id]}
        mode: {system_of_record: app, external_id: {shop: app_id}}
        fields: {n_int: n_int, n_big: n_big, amount: amount, name: name, notes: notes,
                 flag: flag, born: born, seen_at: seen_at, doc: doc}
      products:
        app: {table: public.products, key: [id]}
        shop: {table: products, key: [id]}
        mode: {external_id: {app: code, shop: code}}
        fields: {title: title, price: price}
"""

FIELDS = ["n_int", "n_big", "amount", "name", "notes", "flag", "born", "seen_at", "doc"]


def wait_for(cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class TwoDbs:
    def __init__(self, pg_dsn: str, my_dsn: str, workdir: Path) -> None:
        self.pg_dsn = pg_dsn
        self.my_dsn = my_dsn
        self.workdir = workdir
        self.yaml_path = workdir / "sync.yaml"
        self.state_url = f"sqlite:///{workdir / 'state.db'}"
        rest, db = my_dsn.rsplit("/", 1)
        hostport = rest.split("@", 1)[1]
        host, port = hostport.split(":")
        self.my_args: dict[str, Any] = {
            "host": host,
            "port": int(port),
            "user": "root",
            "database": db,
            "autocommit": True,
        }
        self.pg = psycopg.connect(pg_dsn, autocommit=True, row_factory=dict_row)
        self.my = pymysql.connect(**self.my_args, cursorclass=pymysql.cursors.DictCursor)

    def create(self) -> None:
        self.pg.execute(PG_DDL)
        with self.my.cursor() as cur:
            for stmt in MY_DDL:
                cur.execute(stmt)
        self.yaml_path.write_text(YAML)

    def env(self) -> dict[str, str]:
        return {
            "E2E_PG_DSN": self.pg_dsn,
            "E2E_MY_DSN": self.my_dsn,
            "E2E_STATE_URL": self.state_url,
        }

    def pg_rows(self, table: str) -> list[dict[str, Any]]:
        return list(self.pg.execute(f"SELECT * FROM {table} ORDER BY id").fetchall())

    def my_rows(self, table: str) -> list[dict[str, Any]]:
        with self.my.cursor() as cur:
            cur.execute(f"SELECT * FROM {table} ORDER BY id")
            return list(cur.fetchall())

    def my_exec(self, sql: str, args: Any = None) -> int:
        with self.my.cursor() as cur:
            cur.execute(sql, args)
            return int(cur.lastrowid or 0)

    def close(self) -> None:
        self.pg.close()
        self.my.close()


def materialize_entity(dbs: TwoDbs, entity: str, full: bool = False) -> Any:
    """Materialise the entity's asset through the Dagster definitions; the run's metadata
    read back into a report."""
    from dagster import AssetKey, materialize

    from syncswim_defs.factory import build_definitions
    from syncswim_lib.pipeline.report import EntityReport

    defs = build_definitions(dbs.yaml_path, state_url=dbs.state_url)
    asset = defs.resolve_assets_def(AssetKey(["app_shop", entity]))
    node = f"app_shop__{entity}"
    # the definitions already bind the resource (with the test's state store)
    result = materialize(
        [asset],
        run_config={"ops": {node: {"config": {"full": full}}}},
    )
    assert result.success
    meta = {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}
    report = EntityReport("app_shop", entity)
    for k, v in meta.items():
        if "/" in k:
            endpoint, what = k.split("/", 1)
            setattr(report.side(endpoint), what, v)
    report.captured = meta["captured_by_run"]
    report.snapshot_rows = meta["snapshot_rows"]
    report.skipped_echoes = meta["skipped_echoes"]
    report.conflicts = meta["conflicts"]
    report.waiting = meta["waiting_for_external_id"]
    report.failed = meta["failed"]
    report.write_backs = meta["key_write_backs"]
    return report
