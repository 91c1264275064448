"""Schema drift is never silent, on the private PostgreSQL (app) and MariaDB (shop), run
through the Dagster definitions: a new unmapped column is one warning in the run's log and
is ignored; a mapped column dropped or retyped stops its entity with an error naming the
table and the column, while the other entity goes on; a full run takes the table as it is
once the mapping fits it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, DagsterInstance, materialize

from tests.e2e.merge_harness import ENV, MergeDbs

pytestmark = pytest.mark.integration

SYNC = "app_shop"

YAML = """\
endpoints:
  app: {{kind: postgres, dsn: {{env: {pg}}}}}
  shop: {{kind: mysql, dsn: {{env: {my}}}}}
state: {{env: {state}}}
syncs:
  app_shop:
    between: [app, shop]
    run: micro_batch
    entities:
      customers:
        app: {{table: customers, key: [id]}}
        shop: {{table: customers, key: [id]}}
        mode: {{system_of_record: app, external_id: {{shop: app_id}}}}
        fields: {{email: email, name: name}}
      products:
        app: {{table: products, key: [id]}}
        shop: {{table: products, key: [id]}}
        mode: {{system_of_record: app, external_id: {{shop: app_id}}}}
        fields: {{title: title}}
"""
PG = (
    "CREATE TABLE customers (id bigserial PRIMARY KEY, email text, name text)",
    "CREATE TABLE products (id bigserial PRIMARY KEY, title text)",
)
MY = (
    "CREATE TABLE customers (id bigint AUTO_INCREMENT PRIMARY KEY, app_id bigint UNIQUE,"
    " email varchar(100), name varchar(100)) AUTO_INCREMENT = 1001",
    "CREATE TABLE products (id bigint AUTO_INCREMENT PRIMARY KEY, app_id bigint UNIQUE,"
    " title varchar(100)) AUTO_INCREMENT = 5001",
)


@pytest.fixture
def m(
    pg_dsn: str, mysql_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MergeDbs]:
    dbs = MergeDbs(pg_dsn, mysql_dsn, tmp_path)
    for k, v in dbs.env().items():
        monkeypatch.setenv(k, v)
    for stmt in PG:
        dbs.pg.execute(stmt)
    for stmt in MY:
        dbs.my_exec(stmt)
    dbs.yaml_path.write_text(YAML.format(pg=ENV["pg"], my=ENV["my"], state=ENV["state"]))
    run(dbs)  # sets capture up and takes the tables' baseline
    dbs.pg.execute("INSERT INTO customers (email, name) VALUES ('ann@x', 'Ann')")
    dbs.pg.execute("INSERT INTO products (title) VALUES ('Pen')")
    got = run(dbs)
    assert got.ok, got.errors
    yield dbs
    dbs.close()


class Run:
    def __init__(self, result: Any, instance: DagsterInstance) -> None:
        self.ok = {
            s.step_key.split("__", 1)[1]
            for s in result.get_step_success_events()
            if s.step_key and "__" in s.step_key
        }
        self.errors = {
            e.step_key.split("__", 1)[1]: _messages(e.event_specific_data.error)
            for e in result.get_step_failure_events()
            if e.step_key
        }
        self.warnings = [
            e.user_message
            for e in instance.all_logs(result.run_id)
            if e.level == logging.WARNING and e.dagster_event is None
        ]


def _messages(error: Any) -> str:
    """The step's error and its causes (Dagster wraps the library's error)."""
    out = []
    while error is not None:
        out.append(str(error.message))
        error = error.cause
    return " ".join(out)


def run(m: MergeDbs, full: bool = False) -> Run:
    """Both entities materialised in one Dagster run (customers and products are not
    related, so one failing does not skip the other)."""
    from syncswim_defs.factory import build_definitions

    defs = build_definitions(m.yaml_path, state_url=m.state_url)
    assets = [defs.resolve_assets_def(AssetKey([SYNC, e])) for e in ("customers", "products")]
    instance = DagsterInstance.ephemeral()
    config = {
        "ops": {f"{SYNC}__{e}": {"config": {"full": full}} for e in ("customers", "products")}
    }
    result = materialize(assets, instance=instance, run_config=config, raise_on_error=False)
    return Run(result, instance)


def names(m: MergeDbs, side: str) -> list[str]:
    if side == "app":
        return [r["name"] for r in m.pg.execute("SELECT name FROM customers ORDER BY id")]
    with m.my.cursor() as cur:
        cur.execute("SELECT name FROM customers ORDER BY id")
        return [r["name"] for r in cur.fetchall()]


def titles(m: MergeDbs, side: str) -> list[str]:
    if side == "app":
        return [r["title"] for r in m.pg.execute("SELECT title FROM products ORDER BY id")]
    with m.my.cursor() as cur:
        cur.execute("SELECT title FROM products ORDER BY id")
        return [r["title"] for r in cur.fetchall()]


@pytest.mark.parametrize("side", ["app", "shop"])
def test_a_new_unmapped_column_is_one_warning_and_ignored(m: MergeDbs, side: str) -> None:
    if side == "app":
        m.pg.execute("ALTER TABLE customers ADD COLUMN nickname text")
        m.pg.execute("UPDATE customers SET nickname = 'A', name = 'Ann B'")
        m.pg.execute("INSERT INTO customers (email, name, nickname) VALUES ('cy@x', 'Cy', 'C')")
    else:
        m.my_exec("ALTER TABLE customers ADD COLUMN nickname varchar(20)")
        m.my_exec("UPDATE customers SET nickname = 'A', name = 'Ann B'")
    got = run(m)
    assert got.errors == {} and got.ok == {"customers", "products"}
    # MariaDB's tables are named with their database
    table = (
        "table public.customers in endpoint app" if side == "app" else ".customers in endpoint shop"
    )
    said = [w for w in got.warnings if "new column nickname" in w]
    assert len(said) == 1, got.warnings  # once per run, however many changes carry it
    assert f"{table} is not mapped and is ignored" in said[0]
    want = ["Ann B", "Cy"] if side == "app" else ["Ann B"]
    assert names(m, "app") == names(m, "shop") == want
    # a full run takes the table as it is: no more warning
    assert run(m, full=True).errors == {}
    m.pg.execute("UPDATE customers SET name = 'Ann C' WHERE email = 'ann@x'")
    again = run(m)
    assert not [w for w in again.warnings if "nickname" in w]
    assert names(m, "shop")[0] == "Ann C"


@pytest.mark.parametrize("side", ["app", "shop"])
def test_a_dropped_mapped_column_stops_its_entity_and_the_other_goes_on(
    m: MergeDbs, side: str
) -> None:
    if side == "app":
        m.pg.execute("ALTER TABLE customers DROP COLUMN name")
        m.pg.execute("UPDATE customers SET email = 'ann@new'")
        m.pg.execute("UPDATE products SET title = 'Pencil'")
    else:
        m.my_exec("ALTER TABLE customers DROP COLUMN name")
        m.my_exec("UPDATE customers SET email = 'ann@new'")
        m.my_exec("UPDATE products SET title = 'Pencil'")
    got = run(m)
    assert set(got.errors) == {"customers"} and "products" in got.ok
    # MariaDB's tables are named with their database
    table = (
        "table public.customers in endpoint app" if side == "app" else ".customers in endpoint shop"
    )
    assert "column name of table " in got.errors["customers"]
    assert f"{table} is gone (dropped or renamed)" in got.errors["customers"]
    assert "syncswim sync --full" in got.errors["customers"]
    assert titles(m, "app") == titles(m, "shop") == ["Pencil"]
    # nothing of the customer was written: the other side keeps its name, no NULL
    other = "shop" if side == "app" else "app"
    assert names(m, other) == ["Ann"]
    # it stays stopped (a full run too) until the column is back or no longer mapped
    assert "customers" in run(m).errors
    assert "customers" in run(m, full=True).errors
    if side == "app":
        m.pg.execute("ALTER TABLE customers ADD COLUMN name text")
        m.pg.execute("UPDATE customers SET name = 'Ann again'")
    else:
        m.my_exec("ALTER TABLE customers ADD COLUMN name varchar(100)")
        m.my_exec("UPDATE customers SET name = 'Ann again'")
    healed = run(m, full=True)
    assert healed.errors == {}, healed.errors
    assert names(m, "app") == names(m, "shop") == ["Ann again"]


@pytest.mark.parametrize("side", ["app", "shop"])
def test_a_retyped_mapped_column_stops_its_entity_until_a_full_run(m: MergeDbs, side: str) -> None:
    if side == "app":
        m.pg.execute("ALTER TABLE customers ALTER COLUMN name TYPE varchar(20)")
        m.pg.execute("UPDATE customers SET name = 'Ann R'")
        was, now = "text", "character varying(20)"
    else:
        m.my_exec("ALTER TABLE customers MODIFY name varchar(20)")
        m.my_exec("UPDATE customers SET name = 'Ann R'")
        was, now = "varchar(100)", "varchar(20)"
    m.pg.execute("UPDATE products SET title = 'Ink'")
    got = run(m)
    assert set(got.errors) == {"customers"} and "products" in got.ok
    assert "column name of table " in got.errors["customers"]
    assert f"changed type from {was} to {now}" in got.errors["customers"]
    assert titles(m, "shop") == ["Ink"]
    assert "customers" in run(m).errors  # still stopped: no baseline moved by itself
    # a person decided the new type is fine: a full run takes it and syncs
    assert run(m, full=True).errors == {}
    assert names(m, "app") == names(m, "shop") == ["Ann R"]
    assert run(m).errors == {}


@pytest.mark.parametrize("side", ["app", "shop"])
def test_a_widened_mapped_column_is_taken_with_a_warning(
    m: MergeDbs, side: str, caplog: pytest.LogCaptureFixture
) -> None:
    if side == "app":
        # text has nothing wider: narrow it first and let a full run take that
        m.pg.execute("ALTER TABLE customers ALTER COLUMN name TYPE varchar(20)")
        assert run(m, full=True).errors == {}
        m.pg.execute("ALTER TABLE customers ALTER COLUMN name TYPE varchar(200)")
        m.pg.execute("UPDATE customers SET name = 'Ann Wide'")
        was, now = "character varying(20)", "character varying(200)"
    else:
        m.my_exec("ALTER TABLE customers MODIFY name varchar(300)")
        m.my_exec("UPDATE customers SET name = 'Ann Wide'")
        was, now = "varchar(100)", "varchar(300)"
    with caplog.at_level(logging.WARNING):
        got = run(m)
    assert got.errors == {}, got.errors
    assert names(m, "app") == names(m, "shop") == ["Ann Wide"]
    warned = [r.getMessage() for r in caplog.records if "widened" in r.getMessage()]
    assert len(warned) == 1 and "column name of table " in warned[0]
    assert f"widened from {was} to {now}" in warned[0]
    # the new type is the baseline now: no warning, and narrowing it again stops
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert run(m).errors == {}
    assert not [r for r in caplog.records if "widened" in r.getMessage()]
    if side == "app":
        m.pg.execute("ALTER TABLE customers ALTER COLUMN name TYPE varchar(30)")
    else:
        m.my_exec("ALTER TABLE customers MODIFY name varchar(30)")
    assert f"changed type from {now} to" in run(m).errors["customers"]
