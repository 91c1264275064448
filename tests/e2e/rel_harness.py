"""The relationships end-to-end tests' own harness (docs/relationships.md): several
entities that refer to each other through enforced foreign keys, on the private
PostgreSQL (endpoint `app`, side a) and MariaDB (endpoint `shop`, side b) of the merge
tests, each side generating its own keys (PostgreSQL from 1, MariaDB from 1001).

A `RelSchema` is a list of `Table`s (data fields, references) turned into both sides' DDL
and the sync's YAML; `RelDbs` (a `MergeDbs` with several tables) creates it, writes rows
in one transaction, runs the sync through the library, the CLI or Dagster, and checks
that both sides hold the same records with every foreign key pointing at the row linked
to the other side's parent.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from syncswim_lib.pipeline.report import EntityReport
from syncswim_lib.state.base import JournalEntry, Status
from tests.e2e.merge_harness import ENV, SYNC, MergeDbs, RunResult, Side

Mode = Literal["sor", "ext"]
SIDES: tuple[Side, Side] = ("app", "shop")
# a FK clause per side: `REFERENCES parent(id)` plus this (`ON DELETE CASCADE`, ...);
# NO_FK: the column is a plain integer there, nothing enforces it
NO_FK = "no constraint"
MY_FIRST_ID = 1001  # MariaDB's AUTO_INCREMENT start: far from PostgreSQL's sequence


@dataclass(frozen=True)
class Ref:
    """A reference: the child's column on each side, its parent entity, its YAML."""

    app: str  # the side-a column (the key under `references:`)
    shop: str
    parent: str
    nullable: bool = False
    on_delete: str | None = None  # None: the short form (propagate)
    fk: Mapping[str, str] = field(default_factory=dict)  # side -> clause, or NO_FK

    def yaml(self) -> str:
        if self.on_delete is None:
            return f"{self.app}: {self.parent}"
        return f"{self.app}: {{entity: {self.parent}, on_delete: {self.on_delete}}}"


@dataclass(frozen=True)
class Table:
    """One entity: a table named like it on both sides, its data columns (the same name
    on both sides; the first is the row's label in pictures) and its references."""

    name: str
    fields: tuple[tuple[str, str, str], ...]  # (column, PostgreSQL type, MariaDB type)
    refs: tuple[Ref, ...] = ()
    checks: Mapping[str, str] = field(default_factory=dict)  # side -> a CHECK expression

    @property
    def label(self) -> str:
        return self.fields[0][0]


CUSTOMERS = Table("customers", (("name", "varchar(100)", "varchar(100)"),))
ORDERS = Table(
    "orders",
    (("total", "numeric(10,2)", "decimal(10,2)"),),
    # a different column name on MariaDB: the mapping, not a coincidence, carries it
    (Ref("customer_id", "cust_id", "customers"),),
)
ORDER_LINES = Table(
    "order_lines",
    (("sku", "varchar(32)", "varchar(32)"), ("qty", "integer", "int")),
    (Ref("order_id", "order_id", "orders"),),
)
EMPLOYEES = Table(
    "employees",
    (("name", "varchar(100)", "varchar(100)"),),
    (Ref("reports_to", "manager_id", "employees", nullable=True),),
)


@dataclass(frozen=True)
class RelSchema:
    mode: Mode
    tables: tuple[Table, ...]  # in creation order (parents first)
    declared: tuple[str, ...]  # the YAML's entity order

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)

    def ext_column(self, side: Side) -> str | None:
        """The column that carries the record's identity on `side` (None: its own key)."""
        if self.mode == "ext":
            return "ext"
        return "app_id" if side == "shop" else None

    def pg_ddl(self, t: Table) -> str:
        cols = ["id serial PRIMARY KEY"]
        if self.mode == "ext":
            cols.append("ext text UNIQUE")
        cols += [f"{c} {pg}" for c, pg, _ in t.fields]
        for r in t.refs:
            col = f"{r.app} integer{'' if r.nullable else ' NOT NULL'}"
            clause = r.fk.get("app", "")
            if clause != NO_FK:
                col += f" REFERENCES {r.parent}(id) {clause}".rstrip()
            cols.append(col)
        cols += [f"CHECK ({expr})" for side, expr in t.checks.items() if side == "app"]
        return f"CREATE TABLE {t.name} ({', '.join(cols)})"

    def my_ddl(self, t: Table) -> str:
        cols = ["id int AUTO_INCREMENT PRIMARY KEY"]
        if self.mode == "ext":
            cols.append("ext varchar(64) NULL UNIQUE")
        else:
            cols.append("app_id int NULL UNIQUE")
        cols += [f"{c} {my}" for c, _, my in t.fields]
        cols += [f"{r.shop} int {'NULL' if r.nullable else 'NOT NULL'}" for r in t.refs]
        for r in t.refs:
            clause = r.fk.get("shop", "")
            if clause != NO_FK:
                fk = f"FOREIGN KEY ({r.shop}) REFERENCES {r.parent}(id) {clause}"
                cols.append(fk.rstrip())
        cols += [f"CHECK ({expr})" for side, expr in t.checks.items() if side == "shop"]
        return (
            f"CREATE TABLE {t.name} ({', '.join(cols)}) ENGINE=InnoDB AUTO_INCREMENT={MY_FIRST_ID}"
        )

    def yaml(self) -> str:
        if self.mode == "sor":
            mode = "{system_of_record: app, external_id: {shop: app_id}}"
        else:
            mode = "{external_id: {app: ext, shop: ext}}"
        lines = [
            "endpoints:",
            f"  app: {{kind: postgres, dsn: {{env: {ENV['pg']}}}}}",
            f"  shop: {{kind: mysql, dsn: {{env: {ENV['my']}}}}}",
            f"state: {{env: {ENV['state']}}}",
            "syncs:",
            f"  {SYNC}:",
            "    between: [app, shop]",
            "    entities:",
        ]
        for name in self.declared:
            t = self.table(name)
            fields = [(c, c) for c, _, _ in t.fields] + [(r.app, r.shop) for r in t.refs]
            lines += [
                f"      {t.name}:",
                f"        app: {{table: public.{t.name}, key: [id]}}",
                f"        shop: {{table: {t.name}, key: [id]}}",
                f"        mode: {mode}",
                "        fields: {" + ", ".join(f"{a}: {b}" for a, b in fields) + "}",
            ]
            if t.refs:
                lines.append("        references: {" + ", ".join(r.yaml() for r in t.refs) + "}")
        return "\n".join(lines) + "\n"


def _with_ref(t: Table, app_column: str, **changes: Any) -> Table:
    refs = tuple(replace(r, **changes) if r.app == app_column else r for r in t.refs)
    return replace(t, refs=refs)


def shop_schema(
    mode: Mode,
    *,
    children_first: bool = False,
    cascade: Side | None = None,
    set_null: Side | None = None,
    refuse: Side | None = None,
    check: Side | None = None,
) -> RelSchema:
    """customers <- orders <- order_lines, foreign keys enforced on both sides.

    `cascade`: that side's foreign keys are ON DELETE CASCADE. `set_null`: orders'
    customer may be NULL, that side's FK sets it NULL when the customer is deleted, and
    the reference says `on_delete: set_null`. `refuse`: the reference says `on_delete:
    refuse` and nothing enforces orders' customer on that side. `check`: that side
    refuses customers whose name starts with 'bad'."""
    customers, orders, lines = CUSTOMERS, ORDERS, ORDER_LINES
    if cascade is not None:
        orders = _with_ref(orders, "customer_id", fk={cascade: "ON DELETE CASCADE"})
        lines = _with_ref(lines, "order_id", fk={cascade: "ON DELETE CASCADE"})
    if set_null is not None:
        orders = _with_ref(
            orders,
            "customer_id",
            nullable=True,
            on_delete="set_null",
            fk={set_null: "ON DELETE SET NULL"},
        )
    if refuse is not None:
        orders = _with_ref(orders, "customer_id", on_delete="refuse", fk={refuse: NO_FK})
    if check is not None:
        customers = replace(customers, checks={check: "name NOT LIKE 'bad%'"})
    tables = (customers, orders, lines)
    names = tuple(t.name for t in tables)
    return RelSchema(mode, tables, names[::-1] if children_first else names)


def staff_schema(mode: Mode) -> RelSchema:
    """employees.reports_to -> employees.id (NULL for the top), enforced on both sides."""
    return RelSchema(mode, (EMPLOYEES,), ("employees",))


Picture = dict[str, set[tuple[Any, ...]]]


class Runs:
    """The reports of one run of the whole sync, by entity."""

    def __init__(self, reports: Mapping[str, EntityReport]) -> None:
        self.reports = dict(reports)

    def writes(self, entity: str, endpoint: str) -> dict[str, int]:
        c = self.reports[entity].sides.get(endpoint)
        if c is None:
            return {"inserted": 0, "updated": 0, "deleted": 0}
        return {"inserted": c.inserted, "updated": c.updated, "deleted": c.deleted}

    @property
    def total_writes(self) -> int:
        return sum(r.writes for r in self.reports.values())

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.reports.values())

    def errors(self) -> list[str]:
        return [f"{e}: {err}" for e, r in self.reports.items() for err in r.errors]


class RelDbs(MergeDbs):
    """Both databases of one test, with a schema of several entities."""

    rel: RelSchema

    def build(self, schema: RelSchema) -> None:
        self.rel = schema
        for t in schema.tables:
            self.pg.execute(schema.pg_ddl(t))
        for t in schema.tables:
            self.my_exec(schema.my_ddl(t))
        self.yaml_path.write_text(schema.yaml())

    # writing rows ------------------------------------------------------------------
    def col(self, side: Side, table: str, app_column: str) -> str:
        """A column's name on `side`: reference columns may differ, data columns do not."""
        t = self.rel.table(table)
        ref = next((r for r in t.refs if r.app == app_column), None)
        return app_column if ref is None or side == "app" else ref.shop

    def add(self, side: Side, table: str, **values: Any) -> int:
        """Insert one row on `side` (values by side-a column name; in external-id mode the
        shared id is made from the label: `C-alice`, `OL-sku-1`); returns its id there."""
        t = self.rel.table(table)
        row = {self.col(side, table, c): v for c, v in values.items()}
        if self.rel.mode == "ext":
            prefix = "".join(word[0] for word in table.split("_")).upper()
            row["ext"] = f"{prefix}-{values[t.label]}"
        cols = ", ".join(row)
        marks = ", ".join(["%s"] * len(row))
        return self.exec(
            side, f"INSERT INTO {table} ({cols}) VALUES ({marks})", tuple(row.values())
        )

    def update_row(self, side: Side, table: str, row_id: int, **values: Any) -> None:
        """UPDATE one row on `side` by id (values by side-a column name)."""
        sets = ", ".join(f"{self.col(side, table, c)} = %s" for c in values)
        self.exec(side, f"UPDATE {table} SET {sets} WHERE id = %s", (*values.values(), row_id))

    def delete_row(self, side: Side, table: str, row_id: int) -> None:
        self.exec(side, f"DELETE FROM {table} WHERE id = %s", (row_id,))

    def id_of(self, side: Side, table: str, label: Any) -> int:
        """The id on `side` of the row whose label column holds `label`."""
        col = self.rel.table(table).label
        rows = [r for r in self.table_rows(side, table) if r[col] == label]
        assert len(rows) == 1, f"{table} {col}={label!r} on {side}: {rows}"
        return int(rows[0]["id"])

    @contextlib.contextmanager
    def txn(self, side: Side) -> Iterator[None]:
        """Everything written to `side` inside is one transaction."""
        if side == "app":
            with self.pg.transaction():
                yield
            return
        self.my.begin()
        try:
            yield
        except BaseException:
            self.my.rollback()
            raise
        self.my.commit()

    def add_customer(self, side: Side, name: str, orders: Mapping[str, list[str]]) -> int:
        """A customer with orders (by total) and their lines (by sku, qty 1, 2, ...),
        parents first; the caller decides the transaction."""
        cid = self.add(side, "customers", name=name)
        for total, skus in orders.items():
            oid = self.add(side, "orders", total=total, customer_id=cid)
            for qty, sku in enumerate(skus, 1):
                self.add(side, "order_lines", sku=sku, qty=qty, order_id=oid)
        return cid

    # reading rows ------------------------------------------------------------------
    def table_rows(self, side: Side, table: str) -> list[dict[str, Any]]:
        if side == "app":
            return list(self.pg.execute(f"SELECT * FROM {table} ORDER BY id").fetchall())
        with self.my.cursor() as cur:
            cur.execute(f"SELECT * FROM {table} ORDER BY id")
            return list(cur.fetchall())

    def dump(self) -> dict[tuple[Side, str], list[dict[str, Any]]]:
        """Every row of every table on both sides, as stored."""
        return {(s, t.name): self.table_rows(s, t.name) for s in SIDES for t in self.rel.tables}

    def identity(self, side: Side, row: Mapping[str, Any]) -> Any:
        """What pairs a row with its twin: the SOR key (a PostgreSQL id, and MariaDB's
        `app_id`) or the shared `ext`."""
        col = self.rel.ext_column(side)
        return row["id"] if col is None else row[col]

    def picture(self, side: Side) -> Picture:
        """Each table's rows on `side` as (data values..., the parent's label per
        reference): comparable between the sides, whatever their keys."""
        out: Picture = {}
        labels = {
            t.name: {r["id"]: r[t.label] for r in self.table_rows(side, t.name)}
            for t in self.rel.tables
        }
        for t in self.rel.tables:
            rows = set()
            for r in self.table_rows(side, t.name):
                data = tuple(r[c] for c, _, _ in t.fields)
                parents = []
                for ref in t.refs:
                    fk = r[self.col(side, t.name, ref.app)]
                    parents.append(None if fk is None else labels[ref.parent].get(fk, f"?{fk}"))
                rows.add(data + tuple(parents))
            out[t.name] = rows
        return out

    def linked(self) -> list[str]:
        """What is out of step between the sides, one line each (empty: in step): every
        row paired with one row on the other side (by the SOR key in MariaDB's `app_id`,
        or the shared `ext`), the same data, and every reference on each side pointing at
        the row paired with the other side's parent."""
        problems: list[str] = []
        ident: dict[tuple[Side, str], dict[Any, Any]] = {}
        twins: dict[tuple[Side, str], dict[Any, dict[str, Any]]] = {}
        for t in self.rel.tables:
            for side in SIDES:
                rows = self.table_rows(side, t.name)
                ids = {r["id"]: self.identity(side, r) for r in rows}
                ident[side, t.name] = ids
                twins[side, t.name] = {self.identity(side, r): r for r in rows}
                if None in ids.values():
                    bare = [i for i, v in ids.items() if v is None]
                    problems.append(f"{t.name} on {side}: rows {bare} carry no identity")
                if len(set(ids.values())) != len(ids):
                    problems.append(f"{t.name} on {side}: one identity on several rows {ids}")
        for t in self.rel.tables:
            app, shop = twins["app", t.name], twins["shop", t.name]
            for missing_on, have in (("shop", set(app) - set(shop)), ("app", set(shop) - set(app))):
                if have - {None}:
                    problems.append(
                        f"{t.name}: {sorted(have - {None}, key=str)} not on {missing_on}"
                    )
            for i in set(app) & set(shop) - {None}:
                ra, rb = app[i], shop[i]
                for c, _, _ in t.fields:
                    if ra[c] != rb[c]:
                        problems.append(f"{t.name} {i!r}: {c} {ra[c]!r} on app, {rb[c]!r} on shop")
                for ref in t.refs:
                    fa, fb = ra[ref.app], rb[ref.shop]
                    pa = None if fa is None else ident["app", ref.parent].get(fa, f"no row {fa}")
                    pb = None if fb is None else ident["shop", ref.parent].get(fb, f"no row {fb}")
                    if pa != pb:
                        problems.append(
                            f"{t.name} {i!r}: app {ref.app}={fa} is {ref.parent} {pa!r}, "
                            f"shop {ref.shop}={fb} is {ref.parent} {pb!r}"
                        )
        return problems

    def assert_in_step(self) -> Picture:
        """Both sides hold the same records, linked, with every foreign key translated;
        returns the picture (the same on both sides)."""
        problems = self.linked()
        if problems:
            waits = [
                f"{e} on {side}: {status} {detail}" for e, side, status, detail in self.stuck()
            ]
            raise AssertionError(
                "the sides are out of step:\n"
                + "\n".join(problems)
                + ("\nstill pending or waiting:\n" + "\n".join(waits) if waits else "")
            )
        pic = self.picture("app")
        assert pic == self.picture("shop")
        return pic

    # running -----------------------------------------------------------------------
    def sync(self, allow_failed: bool = False, full: bool = False) -> Runs:
        """One run of the whole sync through the library (`run_sync`, the apply order)."""
        from syncswim_lib.config import load_project
        from syncswim_lib.pipeline.run import run_sync
        from syncswim_lib.pipeline.runtime import Runtime

        with Runtime(load_project(self.yaml_path), self.state_url) as rt:
            runs = Runs({r.entity: r for r in run_sync(rt, SYNC, full=full)})
        if not allow_failed:
            assert runs.failed == 0, runs.errors()
        return runs

    def cli_sync(self, *args: str) -> str:
        """`syncswim sync PATH [args]` in-process; asserts exit 0, returns what it printed."""
        from syncswim_lib.cli import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["sync", str(self.yaml_path), *args])
        printed = out.getvalue() + err.getvalue()
        assert code == 0, printed
        return printed

    def materialize_all(self) -> dict[str, RunResult]:
        """Every asset of the sync materialised in one Dagster run; metadata by entity."""
        from dagster import AssetKey, materialize

        from syncswim_defs.factory import build_definitions

        defs = build_definitions(self.yaml_path, state_url=self.state_url)
        assets = [defs.resolve_assets_def(AssetKey([SYNC, t.name])) for t in self.rel.tables]
        result = materialize(assets)
        assert result.success
        out = {}
        for t in self.rel.tables:
            mats = result.asset_materializations_for_node(f"{SYNC}__{t.name}")
            out[t.name] = RunResult({k: v.value for k, v in mats[0].metadata.items()})
        return out

    def settled(self) -> None:
        """The sides are in step and a further run writes nothing, fails nothing and
        leaves nothing waiting."""
        self.assert_in_step()
        before = self.dump()
        again = self.sync()
        assert again.total_writes == 0, {
            e: {ep: again.writes(e, ep) for ep in SIDES} for e in again.reports
        }
        assert sum(r.write_backs for r in again.reports.values()) == 0
        assert self.dump() == before  # not a row touched, whatever the counts say
        assert self.stuck() == []

    # the state -----------------------------------------------------------------------
    def journal(self, entity: str, status: Status | None = None) -> list[JournalEntry]:
        """Journal entries of `entity` (`JournalEntry`), newest first."""
        with self.store() as store:
            return list(store.entries(sync=SYNC, entity=entity, status=status))

    def stuck(self) -> list[tuple[str, str, str, Any]]:
        """Entries still pending or waiting: (entity, side, status, detail)."""
        return [
            (t.name, e.side, e.status, e.detail)
            for t in self.rel.tables
            for status in ("pending", "waiting")
            for e in self.journal(t.name, status)
        ]
