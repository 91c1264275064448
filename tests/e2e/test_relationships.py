"""References between entities end to end (docs/relationships.md): PostgreSQL (`app`,
side a) ⇄ MariaDB (`shop`, side b), foreign keys enforced on both sides, each side
generating its own keys (PostgreSQL from 1, MariaDB from 1001), in both identity modes.

Each test ends with both sides holding the same records, every foreign key on each side
pointing at the row linked to the other side's parent (`RelDbs.assert_in_step`), and a
further run writing nothing (`RelDbs.settled`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from syncswim_lib.envelope import Op
from tests.e2e.merge_harness import SYNC, Side, other
from tests.e2e.rel_harness import (
    SIDES,
    Mode,
    RelDbs,
    shop_schema,
    staff_schema,
)

pytestmark = pytest.mark.integration

MODES: tuple[Mode, Mode] = ("sor", "ext")
D = Decimal
ORDER_OF_APPLY = ("customers", "orders", "order_lines")


@pytest.fixture
def m(
    pg_dsn: str, mysql_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RelDbs]:
    dbs = RelDbs(pg_dsn, mysql_dsn, tmp_path)
    for k, v in dbs.env().items():
        monkeypatch.setenv(k, v)
    yield dbs
    dbs.close()


def _synced_tree(m: RelDbs, side: Side, customers: dict[str, dict[str, list[str]]]) -> None:
    """Customers with their orders and lines created on `side` in one transaction, and
    synced."""
    with m.txn(side):
        for name, orders in customers.items():
            m.add_customer(side, name, orders)
    m.sync()
    m.assert_in_step()


def _deletes_settled(m: RelDbs, entities: tuple[str, ...], side: Side) -> None:
    """Every delete captured on `side` was applied, or found both sides gone (a child
    removed with its parent): skipped, never failed or left waiting."""
    statuses = {
        (e, entry.status)
        for e in entities
        for entry in m.journal(e)
        if entry.side == side and entry.change.op == Op.DELETE
    }
    assert {e for e, _ in statuses} == set(entities), statuses
    assert {s for _, s in statuses} <= {"applied", "skipped"}, statuses


def _no_failed_entries(m: RelDbs) -> None:
    failed = {t.name: [e.detail for e in m.journal(t.name, "failed")] for t in m.rel.tables}
    assert not any(failed.values()), failed


# 1. a new customer with orders and lines, in one transaction ------------------------------


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("mode", MODES)
def test_customer_with_orders_and_lines_in_one_transaction_arrives_linked(
    m: RelDbs, mode: Mode, side: Side
) -> None:
    m.build(shop_schema(mode))
    m.sync()  # capture set up before the first change
    with m.txn(side):
        m.add_customer(side, "alice", {"10.00": ["sku-1", "sku-2"], "20.00": ["sku-3"]})
    runs = m.sync()
    far = other(side)
    inserted = {e: runs.writes(e, far)["inserted"] for e in ORDER_OF_APPLY}
    assert inserted == {"customers": 1, "orders": 2, "order_lines": 3}
    assert m.assert_in_step() == {
        "customers": {("alice",)},
        "orders": {(D("10.00"), "alice"), (D("20.00"), "alice")},
        "order_lines": {
            ("sku-1", 1, D("10.00")),
            ("sku-2", 2, D("10.00")),
            ("sku-3", 1, D("20.00")),
        },
    }
    m.settled()


# 2. reparenting ----------------------------------------------------------------------------


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("mode", MODES)
def test_reparented_order_and_line_move_on_the_other_side(
    m: RelDbs, mode: Mode, side: Side
) -> None:
    m.build(shop_schema(mode))
    m.sync()
    far = other(side)
    _synced_tree(m, far, {"alice": {"10.00": ["sku-1"], "20.00": ["sku-2"]}, "bob": {"30.00": []}})
    with m.txn(side):
        bob = m.id_of(side, "customers", "bob")
        carol = m.add(side, "customers", name="carol")  # a parent new in the same run
        m.update_row(side, "orders", m.id_of(side, "orders", D("10.00")), customer_id=bob)
        m.update_row(side, "orders", m.id_of(side, "orders", D("20.00")), customer_id=carol)
        to = m.id_of(side, "orders", D("30.00"))
        m.update_row(side, "order_lines", m.id_of(side, "order_lines", "sku-1"), order_id=to)
    runs = m.sync()
    assert runs.writes("customers", far)["inserted"] == 1
    assert runs.writes("orders", far)["updated"] == 2
    assert runs.writes("order_lines", far)["updated"] == 1
    assert m.assert_in_step() == {
        "customers": {("alice",), ("bob",), ("carol",)},
        "orders": {(D("10.00"), "bob"), (D("20.00"), "carol"), (D("30.00"), "bob")},
        "order_lines": {("sku-1", 1, D("30.00")), ("sku-2", 1, D("20.00"))},
    }
    m.settled()


# 3. the declaration order does not matter; every runner applies parents first ------------

DECLARED = [
    pytest.param(True, "library", "sor", id="children_first-library-sor"),
    pytest.param(True, "library", "ext", id="children_first-library-ext"),
    pytest.param(True, "cli", "sor", id="children_first-cli-sor"),
    pytest.param(True, "cli", "ext", id="children_first-cli-ext"),
    pytest.param(False, "cli", "sor", id="parents_first-cli-sor"),
]


@pytest.mark.parametrize(("children_first", "runner", "mode"), DECLARED)
def test_entities_declared_children_first_sync_like_parents_first(
    m: RelDbs, children_first: bool, runner: str, mode: Mode
) -> None:
    from syncswim_lib.config import load_project

    m.build(shop_schema(mode, children_first=children_first))
    code, printed = m.validate()  # live: the reference columns can hold the parents' keys
    assert code == 0, printed
    assert load_project(m.yaml_path).syncs[SYNC].apply_order() == ORDER_OF_APPLY
    run: Callable[[], Any] = m.sync if runner == "library" else m.cli_sync
    run()
    with m.txn("app"):
        m.add_customer("app", "alice", {"10.00": ["sku-1", "sku-2"]})
    with m.txn("shop"):
        m.add_customer("shop", "bob", {"20.00": ["sku-3"]})
    run()
    assert m.assert_in_step() == {
        "customers": {("alice",), ("bob",)},
        "orders": {(D("10.00"), "alice"), (D("20.00"), "bob")},
        "order_lines": {
            ("sku-1", 1, D("10.00")),
            ("sku-2", 2, D("10.00")),
            ("sku-3", 1, D("20.00")),
        },
    }
    # the shop moves bob's order to alice and drops a line; the app gives bob a new order
    with m.txn("shop"):
        alice = m.id_of("shop", "customers", "alice")
        m.update_row("shop", "orders", m.id_of("shop", "orders", D("20.00")), customer_id=alice)
        m.delete_row("shop", "order_lines", m.id_of("shop", "order_lines", "sku-2"))
    with m.txn("app"):
        bob = m.id_of("app", "customers", "bob")
        order = m.add("app", "orders", total="30.00", customer_id=bob)
        m.add("app", "order_lines", sku="sku-4", qty=1, order_id=order)
    run()
    assert m.assert_in_step() == {
        "customers": {("alice",), ("bob",)},
        "orders": {(D("10.00"), "alice"), (D("20.00"), "alice"), (D("30.00"), "bob")},
        "order_lines": {
            ("sku-1", 1, D("10.00")),
            ("sku-3", 1, D("20.00")),
            ("sku-4", 1, D("30.00")),
        },
    }
    m.settled()


@pytest.mark.parametrize("mode", MODES)
def test_cli_sync_of_the_lines_alone_runs_their_ancestors_first(m: RelDbs, mode: Mode) -> None:
    m.build(shop_schema(mode))
    m.cli_sync()
    with m.txn("shop"):
        m.add_customer("shop", "alice", {"10.00": ["sku-1"]})
    m.cli_sync("--entity", "order_lines")
    assert m.assert_in_step() == {
        "customers": {("alice",)},
        "orders": {(D("10.00"), "alice")},
        "order_lines": {("sku-1", 1, D("10.00"))},
    }
    m.settled()


# 4. a child waits for a parent the target refused ------------------------------------------


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("mode", MODES)
def test_children_of_a_refused_parent_wait_and_arrive_once_it_is_fixed(
    m: RelDbs, mode: Mode, side: Side
) -> None:
    far = other(side)
    m.build(shop_schema(mode, check=far))  # `far` refuses names starting with 'bad'
    m.sync()
    with m.txn(side):
        customer = m.add_customer(side, "bad alice", {"10.00": ["sku-1"]})
    first = m.sync(allow_failed=True)
    assert first.reports["customers"].failed == 1, first.errors()  # the CHECK said no
    assert first.reports["orders"].failed == first.reports["order_lines"].failed == 0
    for table in ORDER_OF_APPLY:
        assert m.table_rows(far, table) == [], table
    [order] = m.journal("orders")
    waits = order.detail or {}
    assert order.status == "waiting", (order.status, waits)
    assert waits["reason"].startswith("waiting for parent customers"), waits
    parent = waits["parent"]
    assert (parent["entity"], parent["endpoint"], parent["key"]) == (
        "customers",
        side,
        {"id": customer},
    )
    [line] = m.journal("order_lines")
    assert line.status == "waiting", (line.status, line.detail)
    assert (line.detail or {})["reason"].startswith("waiting for parent orders"), line.detail

    m.update_row(side, "customers", customer, name="alice")
    m.sync()  # a plain run, not --full
    assert m.assert_in_step() == {
        "customers": {("alice",)},
        "orders": {(D("10.00"), "alice")},
        "order_lines": {("sku-1", 1, D("10.00"))},
    }
    assert m.stuck() == []
    m.settled()


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("mode", MODES)
def test_a_child_committed_before_its_parent_waits_then_arrives(
    m: RelDbs, mode: Mode, side: Side
) -> None:
    # `refuse=side`: nothing enforces orders -> customers on `side`, so an order can name
    # a customer that is only committed later
    m.build(shop_schema(mode, refuse=side))
    m.sync()
    future = 1500 if side == "shop" else 500  # an id that side has not used yet
    with m.txn(side):
        order = m.add(side, "orders", total="10.00", customer_id=future)
        m.add(side, "order_lines", sku="sku-1", qty=1, order_id=order)
    m.sync()
    far = other(side)
    assert m.table_rows(far, "orders") == m.table_rows(far, "order_lines") == []
    [waiting] = m.journal("orders")
    assert waiting.status == "waiting", (waiting.status, waiting.detail)
    reason = (waiting.detail or {})["reason"]
    assert reason == f"parent customers id={future} does not exist on {side}", reason
    m.add(side, "customers", id=future, name="alice")  # the parent, in a later transaction
    m.sync()  # a plain run
    assert m.assert_in_step() == {
        "customers": {("alice",)},
        "orders": {(D("10.00"), "alice")},
        "order_lines": {("sku-1", 1, D("10.00"))},
    }
    assert m.stuck() == []
    m.settled()


# 5. deletes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("mode", MODES)
def test_deleting_an_order_with_its_lines_propagates(m: RelDbs, mode: Mode, side: Side) -> None:
    m.build(shop_schema(mode))
    m.sync()
    far = other(side)
    _synced_tree(m, far, {"alice": {"10.00": ["sku-1", "sku-2"], "20.00": ["sku-3"]}})
    with m.txn(side):  # children first, as the source's own FK wants
        order = m.id_of(side, "orders", D("10.00"))
        m.exec(side, "DELETE FROM order_lines WHERE order_id = %s", (order,))
        m.delete_row(side, "orders", order)
    m.sync()
    _deletes_settled(m, ("orders", "order_lines"), side)
    assert m.assert_in_step() == {
        "customers": {("alice",)},
        "orders": {(D("20.00"), "alice")},
        "order_lines": {("sku-3", 1, D("20.00"))},
    }
    m.settled()


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("mode", MODES)
def test_customer_delete_cascaded_on_the_source_propagates(
    m: RelDbs, mode: Mode, side: Side
) -> None:
    """PostgreSQL's logical decoding carries the rows a cascade removed; MariaDB's binlog
    does not: only the customer's delete is captured there."""
    m.build(shop_schema(mode, cascade=side))
    m.sync()
    far = other(side)
    _synced_tree(
        m,
        far,
        {"alice": {"10.00": ["sku-1", "sku-2"], "20.00": ["sku-3"]}, "bob": {"30.00": ["sku-4"]}},
    )
    m.delete_row(side, "customers", m.id_of(side, "customers", "alice"))
    assert len(m.table_rows(side, "order_lines")) == 1  # the cascade happened there
    m.sync()  # no failures
    _no_failed_entries(m)
    # PostgreSQL's stream has the cascaded rows' deletes too; each finds its row gone
    _deletes_settled(m, ORDER_OF_APPLY if side == "app" else ("customers",), side)
    assert m.assert_in_step() == {
        "customers": {("bob",)},
        "orders": {(D("30.00"), "bob")},
        "order_lines": {("sku-4", 1, D("30.00"))},
    }
    m.settled()


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("mode", MODES)
def test_set_null_keeps_the_orders_of_a_deleted_customer_without_one(
    m: RelDbs, mode: Mode, side: Side
) -> None:
    m.build(shop_schema(mode, set_null=side))  # ON DELETE SET NULL on `side` only
    m.sync()
    far = other(side)
    _synced_tree(m, far, {"alice": {"10.00": ["sku-1"]}, "bob": {"20.00": ["sku-2"]}})
    m.delete_row(side, "customers", m.id_of(side, "customers", "alice"))
    assert m.picture(side)["orders"] == {(D("10.00"), None), (D("20.00"), "bob")}
    m.sync()
    _no_failed_entries(m)
    assert m.assert_in_step() == {
        "customers": {("bob",)},
        "orders": {(D("10.00"), None), (D("20.00"), "bob")},
        "order_lines": {("sku-1", 1, D("10.00")), ("sku-2", 1, D("20.00"))},
    }
    m.settled()


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("mode", MODES)
def test_refuse_keeps_a_customer_whose_order_still_refers_to_it(
    m: RelDbs, mode: Mode, side: Side
) -> None:
    m.build(shop_schema(mode, refuse=side))  # nothing enforces orders' customer on `side`
    m.sync()
    far = other(side)
    _synced_tree(m, far, {"alice": {"10.00": ["sku-1"]}, "bob": {"20.00": []}})
    m.delete_row(side, "customers", m.id_of(side, "customers", "alice"))
    m.sync()  # no failures
    assert m.picture(far) == {
        "customers": {("alice",), ("bob",)},
        "orders": {(D("10.00"), "alice"), (D("20.00"), "bob")},
        "order_lines": {("sku-1", 1, D("10.00"))},
    }
    [delete] = [e for e in m.journal("customers") if e.side == side and e.change.op == Op.DELETE]
    assert delete.status == "waiting", (delete.status, delete.detail)
    assert (delete.detail or {})["reason"].startswith("refused"), delete.detail

    # the order that still referred to alice goes too: now her delete goes through
    with m.txn(side):
        order = m.id_of(side, "orders", D("10.00"))
        m.exec(side, "DELETE FROM order_lines WHERE order_id = %s", (order,))
        m.delete_row(side, "orders", order)
    m.sync()
    _no_failed_entries(m)
    assert m.assert_in_step() == {
        "customers": {("bob",)},
        "orders": {(D("20.00"), "bob")},
        "order_lines": set(),
    }
    [done] = [e for e in m.journal("customers") if e.id == delete.id]
    assert done.status == "applied", (done.status, done.detail)
    m.settled()


# 6. self-references ----------------------------------------------------------------------------


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("mode", MODES)
def test_new_chain_of_employees_in_one_transaction_arrives_in_one_run(
    m: RelDbs, mode: Mode, side: Side
) -> None:
    m.build(staff_schema(mode))
    m.sync()
    with m.txn(side):
        root = m.add(side, "employees", name="root", reports_to=None)
        mid = m.add(side, "employees", name="mid", reports_to=root)
        m.add(side, "employees", name="leaf", reports_to=mid)
    runs = m.sync()
    assert runs.writes("employees", other(side))["inserted"] == 3
    assert m.assert_in_step() == {"employees": {("root", None), ("mid", "root"), ("leaf", "mid")}}
    m.settled()


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("mode", MODES)
def test_employees_managing_each_other_arrive_with_both_references_in_one_run(
    m: RelDbs, mode: Mode, side: Side
) -> None:
    m.build(staff_schema(mode))
    m.sync()
    with m.txn(side):
        ann = m.add(side, "employees", name="ann", reports_to=None)
        bob = m.add(side, "employees", name="bob", reports_to=None)
        m.update_row(side, "employees", ann, reports_to=bob)
        m.update_row(side, "employees", bob, reports_to=ann)
    m.sync()  # one run: inserted with the forward reference empty, then set
    assert m.assert_in_step() == {"employees": {("ann", "bob"), ("bob", "ann")}}
    m.settled()


# 7. Dagster --------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("mode", MODES)
def test_one_dagster_run_applies_parents_before_children(m: RelDbs, mode: Mode) -> None:
    from dagster import AssetKey

    from syncswim_defs.factory import build_definitions

    m.build(shop_schema(mode))
    graph = build_definitions(m.yaml_path, state_url=m.state_url).resolve_asset_graph()

    def deps(entity: str) -> set[AssetKey]:
        return set(graph.get(AssetKey([SYNC, entity])).parent_keys)

    assert deps("customers") == set()
    assert deps("orders") == {AssetKey([SYNC, "customers"])}
    assert deps("order_lines") == {AssetKey([SYNC, "orders"])}

    m.materialize_all()  # sets up capture
    with m.txn("app"):
        m.add_customer("app", "alice", {"10.00": ["sku-1", "sku-2"]})
    with m.txn("shop"):
        m.add_customer("shop", "bob", {"20.00": ["sku-3"]})
    result = m.materialize_all()
    assert {e: r.failed for e, r in result.items()} == dict.fromkeys(ORDER_OF_APPLY, 0)
    shop = {e: result[e].side_writes("shop")["inserted"] for e in ORDER_OF_APPLY}
    app = {e: result[e].side_writes("app")["inserted"] for e in ORDER_OF_APPLY}
    assert shop == {"customers": 1, "orders": 1, "order_lines": 2}
    assert app == {"customers": 1, "orders": 1, "order_lines": 1}
    assert m.assert_in_step() == {
        "customers": {("alice",), ("bob",)},
        "orders": {(D("10.00"), "alice"), (D("20.00"), "bob")},
        "order_lines": {
            ("sku-1", 1, D("10.00")),
            ("sku-2", 2, D("10.00")),
            ("sku-3", 1, D("20.00")),
        },
    }
    again = m.materialize_all()
    assert {e: r.writes for e, r in again.items()} == dict.fromkeys(ORDER_OF_APPLY, 0)
    assert m.stuck() == []
