"""The merge-core end-to-end tests' own harness: one small schema per test on a private
PostgreSQL (endpoint `app`, side a) and a private MariaDB (endpoint `shop`, side b), the
YAML beside it, and runs of the `app_shop.customers` asset through Dagster.

Builders return a `Schema` (DDL for both sides and the entity block); `MergeDbs` creates
it, runs the asset, reads rows, the journal and the conflict records back.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psycopg
import pymysql
from psycopg.rows import dict_row

from tests.e2e.harness import wait_for

SYNC = "app_shop"
ENTITY = "customers"
Side = Literal["app", "shop"]

ENV = {"pg": "MERGE_PG_DSN", "my": "MERGE_MY_DSN", "state": "MERGE_STATE_URL"}

PROJECT = """\
endpoints:
  app: {{kind: postgres, dsn: {{env: {pg}}}}}
  shop: {{kind: mysql, dsn: {{env: {my}}}}}
state: {{env: {state}}}
syncs:
  {sync}:
    between: [app, shop]
    run: micro_batch
    entities:
      {entity}:
{block}
"""


def other(side: Side) -> Side:
    return "shop" if side == "app" else "app"


@dataclass(frozen=True)
class Schema:
    """Both sides' DDL and the entity's YAML block (without the indentation)."""

    pg: tuple[str, ...]
    my: tuple[str, ...]
    entity: str
    mode: Literal["sor", "ext"]
    ext: dict[str, str] = field(default_factory=dict)  # side -> its external-id column

    def yaml(self) -> str:
        block = "\n".join("        " + line for line in self.entity.strip().splitlines())
        return PROJECT.format(sync=SYNC, entity=ENTITY, block=block, **ENV)


def _extra(pg_cols: list[str], my_cols: list[str], fields: dict[str, str], opts: Any) -> None:
    if opts.get("lossy"):
        # PostgreSQL keeps more than MariaDB can: six decimals, microseconds
        pg_cols += ["amount numeric(20,6)", "seen_at timestamptz"]
        my_cols += ["amount decimal(12,2)", "seen_at datetime"]
        fields.update(amount="amount", seen_at="seen_at")
    if opts.get("odd"):
        pg_cols += ["born date", "flag boolean"]
        my_cols += ["born date", "flag tinyint(1)"]
        fields.update(born="born", flag="flag")
    if opts.get("clock"):
        my_cols.append("updated_at datetime(6) NULL")


def _entity_block(
    keys: dict[str, str], mode: str, fields: dict[str, str], conflicts: str | None, clock: bool
) -> str:
    lines = [
        f"app: {{table: public.customers, key: [{keys['app']}]}}",
        f"shop: {{table: customers, key: [{keys['shop']}]}}",
        f"mode: {mode}",
        "fields: {" + ", ".join(f"{a}: {b}" for a, b in fields.items()) + "}",
    ]
    if conflicts:
        lines.append(f"conflicts: {conflicts}")
    if clock:
        lines.append("clock: {shop: updated_at}")
    return "\n".join(lines)


def sor_customers(
    sor: Side = "app",
    *,
    lossy: bool = False,
    odd: bool = False,
    conflicts: str | None = None,
    unique_ext: bool = True,
) -> Schema:
    """System-of-record mode: the non-SOR side stores the SOR's key in `sor_id`."""
    base = ["name varchar(100)", "email varchar(100)", "notes text"]
    pg_cols, my_cols = list(base), list(base)
    fields = {"name": "name", "email": "email", "notes": "notes"}
    _extra(pg_cols, my_cols, fields, {"lossy": lossy, "odd": odd})
    uniq = " UNIQUE" if unique_ext else ""
    if sor == "app":
        my_cols.insert(0, f"sor_id int NULL{uniq}")
    else:
        pg_cols.insert(0, f"sor_id integer NULL{uniq}")
    ext_side = other(sor)
    return Schema(
        pg=(f"CREATE TABLE customers (id serial PRIMARY KEY, {', '.join(pg_cols)})",),
        my=(
            f"CREATE TABLE customers (id int AUTO_INCREMENT PRIMARY KEY, {', '.join(my_cols)})",
            # far from PostgreSQL's sequence, so no test passes by keys coinciding
            "ALTER TABLE customers AUTO_INCREMENT = 1000",
        ),
        entity=_entity_block(
            {"app": "id", "shop": "id"},
            f"{{system_of_record: {sor}, external_id: {{{ext_side}: sor_id}}}}",
            fields,
            conflicts,
            False,
        ),
        mode="sor",
        ext={ext_side: "sor_id"},
    )


def ext_customers(
    *,
    lossy: bool = False,
    odd: bool = False,
    clock: bool = False,
    conflicts: str | None = None,
    unique: tuple[Side, ...] = ("app", "shop"),
    mrn_key: bool = False,
) -> Schema:
    """External-id mode on the shared column `code`; with `mrn_key` the declared key on
    both sides is `mrn`, which is not the primary key (`id`)."""
    base = ["name varchar(100)", "email varchar(100)", "notes text"]
    pg_cols, my_cols = list(base), list(base)
    fields = {"name": "name", "email": "email", "notes": "notes"}
    _extra(pg_cols, my_cols, fields, {"lossy": lossy, "odd": odd, "clock": clock})
    pg_cols.insert(0, "code text" + (" UNIQUE" if "app" in unique else ""))
    my_cols.insert(0, "code varchar(64) NULL" + (" UNIQUE" if "shop" in unique else ""))
    keys = {"app": "id", "shop": "id"}
    if mrn_key:
        pg_cols.insert(0, "mrn text NOT NULL UNIQUE")
        my_cols.insert(0, "mrn varchar(32) NOT NULL UNIQUE")
        keys = {"app": "mrn", "shop": "mrn"}
    return Schema(
        pg=(f"CREATE TABLE customers (id serial PRIMARY KEY, {', '.join(pg_cols)})",),
        my=(
            f"CREATE TABLE customers (id int AUTO_INCREMENT PRIMARY KEY, {', '.join(my_cols)})",
            "ALTER TABLE customers AUTO_INCREMENT = 1000",
        ),
        entity=_entity_block(
            keys, "{external_id: {app: code, shop: code}}", fields, conflicts, clock
        ),
        mode="ext",
        ext={"app": "code", "shop": "code"},
    )


def customers(mode: str, **opts: Any) -> Schema:
    """`mode`: "sor" (app is the system of record) or "ext" (external id `code`)."""
    return sor_customers(**opts) if mode == "sor" else ext_customers(**opts)


@dataclass
class RunResult:
    """The materialisation metadata of one run of the entity."""

    meta: dict[str, Any]

    def count(self, endpoint: str, what: str) -> int:
        return int(self.meta.get(f"{endpoint}/{what}", 0))

    def side_writes(self, endpoint: str) -> dict[str, int]:
        return {w: self.count(endpoint, w) for w in ("inserted", "updated", "deleted")}

    @property
    def writes(self) -> int:
        return sum(sum(self.side_writes(e).values()) for e in ("app", "shop"))

    @property
    def conflicts(self) -> int:
        return int(self.meta.get("conflicts", 0))

    @property
    def failed(self) -> int:
        return int(self.meta.get("failed", 0))


class MergeDbs:
    def __init__(self, pg_dsn: str, my_dsn: str, workdir: Path) -> None:
        self.pg_dsn = pg_dsn
        self.my_dsn = my_dsn
        self.workdir = workdir
        self.yaml_path = workdir / "sync.yaml"
        self.state_url = f"sqlite:///{workdir / 'state.db'}"
        self.schema: Schema | None = None
        rest, db = my_dsn.rsplit("/", 1)
        host, port = rest.split("@", 1)[1].split(":")
        self.my_args: dict[str, Any] = {
            "host": host,
            "port": int(port),
            "user": "root",
            "database": db,
            "autocommit": True,
        }
        self.pg = psycopg.connect(pg_dsn, autocommit=True, row_factory=dict_row)
        self.my = self.my_connect()

    def my_connect(self) -> pymysql.connections.Connection[Any]:
        return pymysql.connect(**self.my_args, cursorclass=pymysql.cursors.DictCursor)

    def env(self) -> dict[str, str]:
        return {ENV["pg"]: self.pg_dsn, ENV["my"]: self.my_dsn, ENV["state"]: self.state_url}

    def create(self, schema: Schema) -> None:
        self.schema = schema
        for stmt in schema.pg:
            self.pg.execute(stmt)
        for stmt in schema.my:
            self.my_exec(stmt)
        self.yaml_path.write_text(schema.yaml())

    # the databases ---------------------------------------------------------------
    def exec(self, side: Side, sql: str, args: Any = None) -> int:
        """Run `sql` (placeholders %s) on a side; returns the new row's id for an insert."""
        if side == "shop":
            return self.my_exec(sql, args)
        sql = sql.strip()
        if sql.upper().startswith("INSERT") and "RETURNING" not in sql.upper():
            row = self.pg.execute(sql + " RETURNING id", args).fetchone()
            return int(row["id"]) if row else 0
        self.pg.execute(sql, args)
        return 0

    def insert(self, side: Side, code: str = "C-1", **values: Any) -> int:
        """One new row on `side` (name/email/notes default to n0/e0/t0; in external-id
        mode with the shared `code`); returns its id."""
        assert self.schema is not None
        row = {"name": "n0", "email": "e0", "notes": "t0", **values}
        if self.schema.mode == "ext":
            row = {"code": code, **row}
        cols = ", ".join(row)
        marks = ", ".join(["%s"] * len(row))
        return self.exec(
            side, f"INSERT INTO customers ({cols}) VALUES ({marks})", tuple(row.values())
        )

    def my_exec(self, sql: str, args: Any = None) -> int:
        with self.my.cursor() as cur:
            cur.execute(sql, args)
            return int(cur.lastrowid or 0)

    def rows(self, side: Side) -> list[dict[str, Any]]:
        if side == "app":
            return list(self.pg.execute("SELECT * FROM customers ORDER BY id").fetchall())
        with self.my.cursor() as cur:
            cur.execute("SELECT * FROM customers ORDER BY id")
            return list(cur.fetchall())

    def by(self, side: Side, column: str) -> dict[Any, dict[str, Any]]:
        return {r[column]: r for r in self.rows(side)}

    def values(self, side: Side, columns: tuple[str, ...] = ("name", "email", "notes")) -> list:
        """The rows' mapped values, sorted, for comparing the two sides."""
        return sorted(tuple(r[c] for c in columns) for r in self.rows(side))

    # running -----------------------------------------------------------------------
    def run(self, full: bool = False) -> RunResult:
        """Materialise `app_shop/customers` through the Dagster definitions."""
        from dagster import AssetKey, materialize

        from syncswim_defs.factory import build_definitions

        defs = build_definitions(self.yaml_path, state_url=self.state_url)
        asset = defs.resolve_assets_def(AssetKey([SYNC, ENTITY]))
        node = f"{SYNC}__{ENTITY}"
        result = materialize([asset], run_config={"ops": {node: {"config": {"full": full}}}})
        assert result.success
        mats = result.asset_materializations_for_node(node)
        return RunResult({k: v.value for k, v in mats[0].metadata.items()})

    def run_with_edit_after_capture(
        self, edit: Callable[[], None], full: bool = False
    ) -> RunResult:
        """A run in which `edit` happens after capture has read the change streams and
        before anything is planned or written (at the run's after-capture point)."""
        from syncswim_lib import failpoints

        done: list[bool] = []
        real_hit = failpoints.hit

        def hit(name: str) -> None:
            if name == failpoints.AFTER_CAPTURE and not done:
                edit()
                done.append(True)
            real_hit(name)

        failpoints.hit = hit  # type: ignore[assignment]
        try:
            result = self.run(full)
        finally:
            failpoints.hit = real_hit  # type: ignore[assignment]
        assert done, "the run never reached its after-capture point"
        return result

    def validate(self) -> tuple[int, str]:
        """`syncswim validate` in-process: exit code and everything it printed."""
        from syncswim_lib.cli import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["validate", str(self.yaml_path)])
        return code, out.getvalue() + err.getvalue()

    # the state -----------------------------------------------------------------------
    @contextlib.contextmanager
    def store(self) -> Iterator[Any]:
        from syncswim_lib.state import open_store

        store = open_store(self.state_url)
        try:
            yield store
        finally:
            store.close()

    def conflicts(self) -> list[Any]:
        """The entity's conflict records (`ConflictRecord`), newest first."""
        with self.store() as store:
            return list(store.conflicts(sync=SYNC, entity=ENTITY))

    def entries(self, **query: Any) -> list[Any]:
        """Journal entries of the entity (`status=`, `key=`), newest first."""
        with self.store() as store:
            return list(store.entries(sync=SYNC, entity=ENTITY, **query))

    def close(self) -> None:
        self.pg.close()
        self.my.close()


def same_second_edits(edit_first: Callable[[], None], edit_second: Callable[[], None]) -> None:
    """Commit `edit_first` then `edit_second` within one wall-clock second (a fraction of
    a second apart): waits for the start of a second, and redoes both when a boundary fell
    between them."""
    for _ in range(10):
        wait_for(lambda: time.time() % 1.0 < 0.3, timeout=3.0, what="the start of a second")
        start = time.time()
        edit_first()
        edit_second()
        end = time.time()
        if int(start) == int(end) and end > start:
            return
    raise AssertionError("could not commit two edits within one second")
