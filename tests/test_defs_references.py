"""The Dagster definitions of a sync with references: parents are asset dependencies of
their children, cycles are cut where the apply order cuts them, and the capture sensor
runs the children of the entities with pending changes too."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, DagsterInstance, RunRequest, build_sensor_context

import syncswim_defs.factory as factory
from syncswim_defs.factory import build_definitions, run_selection
from syncswim_defs.naming import sensor_name
from syncswim_defs.resources import SyncSwimResource
from syncswim_lib.config import load_project
from syncswim_lib.envelope import Change, Op, PgPosition
from syncswim_lib.pipeline.runtime import Runtime

HEAD = """\
endpoints:
  app_db:  {kind: postgres, dsn: {env: APP_DB_DSN}}
  shop_db: {kind: mysql, dsn: {env: SHOP_DB_DSN}}
syncs:
  app_shop:
    between: [app_db, shop_db]
    run: micro_batch  # the capture sensor is the micro-batch mode's
    entities:
"""


def entity(name: str, references: dict[str, str]) -> str:
    columns = ", ".join(f"{c}: {c}" for c in (*references, "label"))
    refs = ", ".join(f"{c}: {p}" for c, p in references.items())
    return (
        f"      {name}:\n"
        f"        app_db:  {{table: public.{name}, key: [id]}}\n"
        f"        shop_db: {{table: {name}, key: [id]}}\n"
        f"        mode: {{external_id: {{app_db: code, shop_db: code}}}}\n"
        f"        fields: {{{columns}}}\n" + (f"        references: {{{refs}}}\n" if refs else "")
    )


# children before their parents, a self-reference, and a cycle of two with a parent outside
YAML = HEAD + "".join(
    [
        entity("order_lines", {"order_id": "orders", "product_id": "products"}),
        entity("orders", {"customer_id": "customers", "sold_by": "employees"}),
        entity("customers", {}),
        entity("products", {}),
        entity("employees", {"reports_to": "employees"}),
        entity("teams", {"lead_id": "leads", "region_id": "regions"}),
        entity("leads", {"team_id": "teams"}),
        entity("regions", {}),
    ]
)


def key(entity: str) -> AssetKey:
    return AssetKey(["app_shop", entity])


@pytest.fixture
def declaration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("APP_DB_DSN", raising=False)
    monkeypatch.delenv("SHOP_DB_DSN", raising=False)
    path = tmp_path / "sync.yaml"
    path.write_text(YAML)
    return path


def test_parents_before_them_are_the_asset_dependencies(declaration: Path) -> None:
    graph = build_definitions(declaration).resolve_asset_graph()
    parents = {
        k.path[-1]: {p.path[-1] for p in graph.get(k).parent_keys}
        for k in graph.get_all_asset_keys()
    }
    assert parents == {
        "order_lines": {"orders", "products"},
        "orders": {"customers", "employees"},
        "customers": set(),
        "products": set(),
        # the self-reference is left out
        "employees": set(),
        # apply order regions, teams, leads: teams.lead_id points forward and is left out
        "teams": {"regions"},
        "leads": {"teams"},
        "regions": set(),
    }
    # acyclic, and Dagster's order agrees with the sync's apply order on every edge
    order = load_project(declaration).syncs["app_shop"].apply_order()
    for child, names in parents.items():
        assert all(order.index(p) < order.index(child) for p in names)
    assert len(graph.toposorted_asset_keys) == len(order)


def test_the_left_out_references_are_named_in_the_description(declaration: Path) -> None:
    graph = build_definitions(declaration).resolve_asset_graph()
    left_out = "References left out of the asset dependencies, as they close a cycle"
    assert graph.get(key("employees")).description == (
        f"app_db: public.employees ⇄ shop_db: employees (external id mode). {left_out} "
        "(the run sets them in a second pass): reports_to → employees"
    )
    teams = graph.get(key("teams")).description
    assert teams is not None and teams.endswith("second pass): lead_id → leads")
    for name in ("orders", "leads", "customers"):
        assert left_out not in (graph.get(key(name)).description or "")


def test_run_selection_adds_the_descendants_in_apply_order(declaration: Path) -> None:
    sync = load_project(declaration).syncs["app_shop"]
    assert sync.apply_order() == (
        "customers",
        "products",
        "employees",
        "orders",
        "order_lines",
        "regions",
        "teams",
        "leads",
    )
    assert run_selection(sync, {"customers": 1}) == [
        key("customers"),
        key("orders"),
        key("order_lines"),
    ]
    assert run_selection(sync, ["order_lines", "employees"]) == [
        key("employees"),
        key("orders"),
        key("order_lines"),
    ]
    # in a cycle each member is the other's descendant
    assert run_selection(sync, ["leads"]) == [key("teams"), key("leads")]
    assert run_selection(sync, ["regions"]) == [key("regions"), key("teams"), key("leads")]
    assert run_selection(sync, ["products", "no_longer_declared"]) == [
        key("products"),
        key("order_lines"),
    ]


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Capture and pruning replaced: capture journals one change of `customers`, as if the
    change stream had delivered it; nothing connects to a database."""
    captured: list[str] = []

    def capture(rt: Runtime, sync: str, max_rounds: int = 100) -> dict[str, int]:
        now = datetime(2024, 1, 1, tzinfo=UTC)
        change = Change(
            Op.INSERT, "public.customers", {"id": 1}, {"id": 1}, None, PgPosition(1000, 1), now, now
        )
        captured.append(sync)
        return {"app_db": rt.store.append_changes(sync, "app_db", [("customers", change)], None)}

    def prune(rt: Runtime, sync: str, *_: Any) -> int:
        return 0

    monkeypatch.setattr(factory, "capture_sync", capture)
    monkeypatch.setattr(factory, "prune_markers", prune)
    yield captured


def test_the_sensor_runs_a_pending_parent_with_its_children(
    declaration: Path, tmp_path: Path, no_connections: list[str]
) -> None:
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    defs = build_definitions(declaration, state_url=state_url)
    sensor_def = defs.resolve_sensor_def(sensor_name("app_shop"))
    resource = SyncSwimResource(project_path=str(declaration), state_url=state_url)
    with DagsterInstance.ephemeral() as instance:
        request = sensor_def(
            build_sensor_context(instance=instance, resources={"syncswim": resource})
        )
    assert no_connections == ["app_shop"]
    assert isinstance(request, RunRequest)
    assert request.asset_selection == [key("customers"), key("orders"), key("order_lines")]
