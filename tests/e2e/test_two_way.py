"""PostgreSQL ⇄ MariaDB through the Dagster asset materialisations (real servers)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from syncswim_lib.config import load_project
from syncswim_lib.pipeline.report import EntityReport
from syncswim_lib.pipeline.runtime import Runtime
from tests.e2e.harness import FIELDS, TwoDbs, materialize_entity

pytestmark = pytest.mark.integration


def run(dbs: TwoDbs, entity: str = "customers", full: bool = False) -> EntityReport:
    report: EntityReport = materialize_entity(dbs, entity, full)
    return report


def _norm_my(row: dict) -> dict:
    out = {f: row[f] for f in FIELDS}
    out["flag"] = None if row["flag"] is None else bool(row["flag"])
    out["doc"] = None if row["doc"] is None else json.loads(row["doc"])
    if out["seen_at"] is not None:
        out["seen_at"] = out["seen_at"].replace(tzinfo=UTC)
    return out


def _norm_pg(row: dict) -> dict:
    return {f: row[f] for f in FIELDS}


SAMPLE = {
    "n_int": -42,
    "n_big": 9_007_199_254_740_993,
    "amount": Decimal("12345.67"),
    "name": "Zoë Ångström 東京",
    "notes": "line1\nline2 — ✓",
    "flag": True,
    "born": date(1990, 2, 28),
    "seen_at": datetime(2026, 11, 26, 8, 30, 15, 123456, tzinfo=UTC),
    "doc": {"tags": ["a", "b"], "n": 1, "nested": {"ok": True}},
}


def test_postgres_insert_update_delete_reach_mysql(dbs: TwoDbs) -> None:
    run(dbs)  # sets up capture before the first change
    dbs.pg.execute(
        "INSERT INTO customers (n_int, n_big, amount, name, notes, flag, born, seen_at, doc)"
        " VALUES (%(n_int)s, %(n_big)s, %(amount)s, %(name)s, %(notes)s, %(flag)s, %(born)s,"
        " %(seen_at)s, %(doc)s::jsonb)",
        {**SAMPLE, "doc": json.dumps(SAMPLE["doc"])},
    )
    dbs.pg.execute("INSERT INTO customers (name) VALUES (NULL)")  # all-NULL row
    r = run(dbs)
    assert r.side("shop").inserted == 2
    pg, my = dbs.pg_rows("customers"), dbs.my_rows("customers")
    assert [_norm_my(m) for m in my] == [_norm_pg(p) for p in pg]
    assert [m["app_id"] for m in my] == [p["id"] for p in pg]
    assert my[0]["id"] >= 1000  # the shop keeps its own generated keys

    dbs.pg.execute(
        "UPDATE customers SET amount = 0.10, flag = false, doc = NULL,"
        " name = 'Ünïcode' WHERE id = %s",
        (pg[0]["id"],),
    )
    r = run(dbs)
    assert r.side("shop").updated == 1
    my = dbs.my_rows("customers")
    assert my[0]["amount"] == Decimal("0.10") and my[0]["flag"] == 0
    assert my[0]["doc"] is None and my[0]["name"] == "Ünïcode"

    dbs.pg.execute("DELETE FROM customers WHERE id = %s", (pg[1]["id"],))
    r = run(dbs)
    assert r.side("shop").deleted == 1
    assert [m["app_id"] for m in dbs.my_rows("customers")] == [pg[0]["id"]]


def test_mysql_changes_reach_postgres_and_key_is_written_back(dbs: TwoDbs) -> None:
    run(dbs)
    shop_id = dbs.my_exec(
        "INSERT INTO customers (n_int, n_big, amount, name, notes, flag, born, seen_at, doc)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            SAMPLE["n_int"],
            SAMPLE["n_big"],
            SAMPLE["amount"],
            SAMPLE["name"],
            SAMPLE["notes"],
            1,
            SAMPLE["born"],
            SAMPLE["seen_at"].replace(tzinfo=None),
            json.dumps(SAMPLE["doc"]),
        ),
    )
    r = run(dbs)
    assert r.side("app").inserted == 1
    assert r.write_backs == 1
    pg = dbs.pg_rows("customers")
    assert len(pg) == 1
    assert _norm_pg(pg[0]) == {**SAMPLE}
    my = dbs.my_rows("customers")
    assert my[0]["id"] == shop_id and my[0]["app_id"] == pg[0]["id"]

    dbs.my_exec(
        "UPDATE customers SET notes = 'from the shop', amount = NULL WHERE id = %s", (shop_id,)
    )
    r = run(dbs)
    assert r.side("app").updated == 1
    assert dbs.pg_rows("customers")[0]["notes"] == "from the shop"
    assert dbs.pg_rows("customers")[0]["amount"] is None

    dbs.my_exec("DELETE FROM customers WHERE id = %s", (shop_id,))
    r = run(dbs)
    assert r.side("app").deleted == 1
    assert dbs.pg_rows("customers") == []


def test_no_echo_after_sync(dbs: TwoDbs) -> None:
    run(dbs)
    dbs.pg.execute("INSERT INTO customers (name, amount) VALUES ('from app', 1.5)")
    dbs.my_exec("INSERT INTO customers (name, amount) VALUES ('from shop', 2.5)")
    first = run(dbs)
    assert first.writes == 2  # one insert each way
    assert first.write_backs == 1  # and the app's new key stored in the shop row
    for _ in range(2):
        again = run(dbs)
        assert again.writes == 0 and again.write_backs == 0, again
    pg = {r["name"]: r for r in dbs.pg_rows("customers")}
    my = {r["name"]: r for r in dbs.my_rows("customers")}
    assert set(pg) == set(my) == {"from app", "from shop"}
    assert all(my[n]["app_id"] == pg[n]["id"] for n in pg)


def test_external_id_mode_waits_for_an_id(dbs: TwoDbs) -> None:
    run(dbs, "products")
    dbs.pg.execute("INSERT INTO products (code, title, price) VALUES ('P-1', 'Paddle', 9.99)")
    dbs.my_exec("INSERT INTO products (code, title, price) VALUES (NULL, 'No code yet', 1.00)")
    r = run(dbs, "products")
    assert r.side("shop").inserted == 1
    assert r.waiting == 1
    assert [p["code"] for p in dbs.pg_rows("products")] == ["P-1"]
    with Runtime(load_project(dbs.yaml_path)) as rt:
        # reported, but it does not make the sensor start a run on every tick
        assert rt.store.pending_counts("app_shop") == {}
        waiting = rt.store.entries(sync="app_shop", entity="products", status="waiting")
        assert len(waiting) == 1 and "no external id" in str(waiting[0].detail)
    dbs.my_exec("UPDATE products SET code = 'P-2' WHERE title = 'No code yet'")
    r = run(dbs, "products")
    assert r.side("app").inserted == 1 and r.waiting == 0
    pg = {p["code"]: p for p in dbs.pg_rows("products")}
    my = {m["code"]: m for m in dbs.my_rows("products")}
    assert set(pg) == set(my) == {"P-1", "P-2"}
    assert pg["P-2"]["price"] == Decimal("1.00") and my["P-1"]["title"] == "Paddle"
    assert run(dbs, "products").writes == 0


def test_conflict_resolves_to_system_of_record(dbs: TwoDbs) -> None:
    run(dbs)
    dbs.pg.execute("INSERT INTO customers (name) VALUES ('both')")
    run(dbs)
    dbs.pg.execute("UPDATE customers SET notes = 'app wins'")
    dbs.my_exec("UPDATE customers SET notes = 'shop loses'")
    r = run(dbs)
    assert r.conflicts == 1
    assert dbs.pg_rows("customers")[0]["notes"] == "app wins"
    assert dbs.my_rows("customers")[0]["notes"] == "app wins"
    with Runtime(load_project(dbs.yaml_path)) as rt:
        lost = rt.store.entries(sync="app_shop", entity="customers", status="conflict")
        (conflict,) = rt.store.conflicts(sync="app_shop", entity="customers")
    assert lost and lost[0].detail is not None
    assert lost[0].detail["conflicts"][0]["field"] == "notes"
    # the losing value is kept in the conflict record, restorable by command
    assert (conflict.field, conflict.outcome, conflict.status) == ("notes", "a", "decided")
    assert (conflict.value_a, conflict.value_b) == ("app wins", "shop loses")


def test_initial_sync_matches_and_fills_both_sides(dbs: TwoDbs) -> None:
    dbs.pg.execute(
        "INSERT INTO customers (id, name) VALUES (1, 'only app'), (2, 'both app'), (3, 'same')"
    )
    dbs.pg.execute("SELECT setval('customers_id_seq', 10)")
    dbs.my_exec(
        "INSERT INTO customers (app_id, name) VALUES (2, 'both shop'), (NULL, 'only shop'),"
        " (3, 'same')"
    )
    r = run(dbs, full=True)
    assert r.snapshot_rows == 6
    assert r.conflicts == 1  # the pair that differs; the pair that agrees is no conflict
    pg = {p["name"]: p for p in dbs.pg_rows("customers")}
    my = dbs.my_rows("customers")
    assert len(pg) == 4 and len(my) == 4
    # the overlapping record was matched, and the system of record's values won
    assert sorted(m["name"] for m in my) == sorted(pg)
    assert {m["app_id"] for m in my} == {p["id"] for p in pg.values()}
    assert run(dbs).writes == 0
    dbs.pg.execute("UPDATE customers SET notes = 'live' WHERE id = 1")
    run(dbs)
    assert [m["notes"] for m in dbs.my_rows("customers") if m["app_id"] == 1] == ["live"]


def test_same_flow_on_postgres_state_store(dbs: TwoDbs, monkeypatch: pytest.MonkeyPatch) -> None:
    dbs.state_url = dbs.pg_dsn  # journal, links and positions in PostgreSQL this time
    monkeypatch.setenv("E2E_STATE_URL", dbs.state_url)
    run(dbs)
    dbs.pg.execute("INSERT INTO customers (name) VALUES ('pg state')")
    dbs.my_exec("INSERT INTO customers (name) VALUES ('pg state too')")
    r = run(dbs)
    assert r.writes == 2 and r.write_backs == 1
    assert run(dbs).writes == 0
    count = dbs.pg.execute("SELECT count(*) AS n FROM syncswim_state.links").fetchone()
    assert count is not None and count["n"] == 2
