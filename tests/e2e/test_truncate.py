"""TRUNCATE on the private PostgreSQL (app) and MariaDB (shop), through the Dagster
definitions: `on_truncate: refuse` (customers, the default) stops the entity naming the
table and what to do, while the other entity goes on, until a full run; `propagate`
(products) deletes the other side's rows through the normal apply, journaled, and rows
written after the TRUNCATE still arrive."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.merge_harness import ENV, MergeDbs
from tests.e2e.test_schema_drift import MY, PG, names, run, titles

pytestmark = pytest.mark.integration

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
        on_truncate: propagate
"""


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
    assert run(dbs).errors == {}  # sets capture up
    dbs.pg.execute("INSERT INTO customers (email, name) VALUES ('ann@x', 'Ann'), ('bo@x', 'Bo')")
    dbs.pg.execute("INSERT INTO products (title) VALUES ('Pen'), ('Ink')")
    got = run(dbs)
    assert got.errors == {}, got.errors
    assert names(dbs, "shop") == ["Ann", "Bo"] and titles(dbs, "shop") == ["Pen", "Ink"]
    yield dbs
    dbs.close()


def exec_on(m: MergeDbs, side: str, sql: str) -> None:
    if side == "app":
        m.pg.execute(sql)
    else:
        m.my_exec(sql)


@pytest.mark.parametrize("side", ["app", "shop"])
def test_refuse_stops_the_entity_naming_the_table_until_a_full_run(m: MergeDbs, side: str) -> None:
    exec_on(m, side, "TRUNCATE TABLE customers")
    exec_on(m, side, "UPDATE products SET title = 'Pencil' WHERE title = 'Pen'")
    got = run(m)
    assert set(got.errors) == {"customers"} and "products" in got.ok
    error = got.errors["customers"]
    table = "public.customers in endpoint app" if side == "app" else ".customers in endpoint shop"
    assert "a TRUNCATE of table " in error and f"{table} was captured" in error
    assert "on_truncate: refuse" in error and "syncswim sync --full" in error
    other = "shop" if side == "app" else "app"
    assert names(m, other) == ["Ann", "Bo"]  # not emptied
    assert titles(m, "app") == titles(m, "shop") == ["Pencil", "Ink"]
    assert "customers" in run(m).errors  # still refused: the mark is kept
    # a person decided: a full run clears it and reconciles (missing rows are deleted)
    healed = run(m, full=True)
    assert healed.errors == {}, healed.errors
    assert names(m, "app") == names(m, "shop")
    exec_on(m, "app", "INSERT INTO customers (email, name) VALUES ('cy@x', 'Cy')")
    assert run(m).errors == {}
    assert "Cy" in names(m, "shop")


@pytest.mark.parametrize("side", ["app", "shop"])
def test_propagate_deletes_the_other_sides_rows_and_keeps_later_writes(
    m: MergeDbs, side: str
) -> None:
    if side == "app":
        # the new row may take a key a removed one had: it must survive the deletes
        m.pg.execute("TRUNCATE TABLE products RESTART IDENTITY")
        m.pg.execute("INSERT INTO products (title) VALUES ('Paper')")
    else:
        m.my_exec("TRUNCATE TABLE products")
        m.my_exec("INSERT INTO products (title) VALUES ('Paper')")
    got = run(m)
    assert got.errors == {}, got.errors
    assert titles(m, "app") == titles(m, "shop") == ["Paper"]
    assert names(m, "shop") == ["Ann", "Bo"]  # another entity's table is untouched
    with m.store() as store:
        deletes = [
            e
            for e in store.entries(sync="app_shop", entity="products")
            if e.change.op.value == "delete"
        ]
    assert len(deletes) == 2 and {e.status for e in deletes} == {"applied"}
    assert run(m).errors == {}
    assert titles(m, "app") == titles(m, "shop") == ["Paper"]


@pytest.mark.parametrize("side", ["app", "shop"])
def test_a_streaming_run_answers_truncates_as_declared(m: MergeDbs, side: str) -> None:
    """The streaming readers (replication protocol, binlog stream) hand TRUNCATEs on like
    the polled capture: `propagate` empties the other side and keeps later writes,
    `refuse` stops that entity only, and the run keeps going."""
    from tests.e2e.harness import wait_for
    from tests.e2e.test_streaming import Streamer

    m.yaml_path.write_text(m.yaml_path.read_text().replace("run: micro_batch", "run: streaming"))
    s = Streamer(m).start()  # type: ignore[arg-type]  # the same yaml_path and state_url
    other = "shop" if side == "app" else "app"
    try:
        exec_on(m, side, "TRUNCATE TABLE products")
        exec_on(m, side, "INSERT INTO products (title) VALUES ('Paper')")
        wait_for(
            lambda: titles(m, "app") == titles(m, "shop") == ["Paper"],
            30,
            f"the TRUNCATE on {side} propagated by the streaming run",
        )
        exec_on(m, side, "TRUNCATE TABLE customers")
        exec_on(m, side, "UPDATE products SET title = 'Card' WHERE title = 'Paper'")
        wait_for(
            lambda: titles(m, "app") == titles(m, "shop") == ["Card"],
            30,
            "a later product change after the refused TRUNCATE",
        )
        assert names(m, other) == ["Ann", "Bo"]  # refused: not emptied
        assert s.thread.is_alive() and s.error is None
    finally:
        s.close()
    with m.store() as store:
        marks = store.get_position("app_shop", "truncated:customers")
    assert marks is not None  # the refusal is kept until a full run
