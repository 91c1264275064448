"""The Dagster definitions: asset graph, sensor-driven capture, materialisation metadata."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from dagster import (
    AssetKey,
    DagsterInstance,
    RunRequest,
    SkipReason,
    build_sensor_context,
    materialize,
)

from syncswim_defs.factory import build_definitions
from syncswim_defs.naming import sensor_name
from syncswim_defs.resources import SyncSwimResource
from tests.e2e.harness import TwoDbs

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_definitions_load_with_expected_graph(dbs: TwoDbs) -> None:
    defs = build_definitions(dbs.yaml_path)
    graph = defs.resolve_asset_graph()
    keys = set(graph.get_all_asset_keys())
    assert keys == {AssetKey(["app_shop", "customers"]), AssetKey(["app_shop", "products"])}
    node = graph.get(AssetKey(["app_shop", "customers"]))
    assert node.group_name == "app_shop"
    assert {"postgres", "mysql"} <= set(node.kinds)
    assert defs.resolve_sensor_def(sensor_name("app_shop")) is not None
    # one pool per sync: with the shipped dagster.yaml's limit, one step of it at a time
    for key in keys:
        assert defs.resolve_assets_def(key).op.pool == "syncswim_app_shop"
    shipped = Path(__file__).parents[2] / "dagster.yaml"
    for path in (shipped, shipped.parent / "deploy" / "dagster.yaml"):
        config = yaml.safe_load(path.read_text())
        assert config["concurrency"]["pools"]["default_limit"] == 1, path


def test_sensor_requests_runs_and_materialisation_syncs(dbs: TwoDbs) -> None:
    defs = build_definitions(dbs.yaml_path, state_url=dbs.state_url)
    sensor_def = defs.resolve_sensor_def(sensor_name("app_shop"))
    resource = SyncSwimResource(project_path=str(dbs.yaml_path), state_url=dbs.state_url)
    with DagsterInstance.ephemeral() as instance:
        ctx = build_sensor_context(instance=instance, resources={"syncswim": resource})
        first = sensor_def(ctx)
        assert isinstance(first, SkipReason)  # sets up capture; nothing pending yet
        dbs.pg.execute("INSERT INTO customers (name, flag) VALUES ('via dagster', true)")
        ctx = build_sensor_context(instance=instance, resources={"syncswim": resource})
        req = sensor_def(ctx)
        assert isinstance(req, RunRequest)
        assert req.asset_selection == [AssetKey(["app_shop", "customers"])]

        assets = [a for a in defs.assets if AssetKey(["app_shop", "customers"]) in a.keys]
        result = materialize(assets, instance=instance, resources={"syncswim": resource})
        assert result.success
        mats = result.asset_materializations_for_node("app_shop__customers")
        meta = mats[0].metadata
        assert meta["shop/inserted"].value == 1
        assert meta["skipped_echoes"].value == 0
        assert [m["name"] for m in dbs.my_rows("customers")] == ["via dagster"]

        # our own write into MariaDB comes back through the binlog as an echo only
        again = materialize(assets, instance=instance, resources={"syncswim": resource})
        meta2 = again.asset_materializations_for_node("app_shop__customers")[0].metadata
        assert meta2["skipped_echoes"].value >= 1
        assert (
            sum(v.value for k, v in meta2.items() if k.endswith(("inserted", "updated", "deleted")))
            == 0
        )


def test_sensor_prunes_old_apply_markers_once_a_day(dbs: TwoDbs) -> None:
    defs = build_definitions(dbs.yaml_path, state_url=dbs.state_url)
    sensor_def = defs.resolve_sensor_def(sensor_name("app_shop"))
    resource = SyncSwimResource(project_path=str(dbs.yaml_path), state_url=dbs.state_url)
    with DagsterInstance.ephemeral() as instance:
        sensor_def(build_sensor_context(instance=instance, resources={"syncswim": resource}))
        dbs.my_exec("INSERT INTO customers (name) VALUES ('marked')")
        assets = [a for a in defs.assets if AssetKey(["app_shop", "customers"]) in a.keys]
        assert materialize(assets, instance=instance, resources={"syncswim": resource}).success
        markers = dbs.pg.execute("SELECT count(*) AS n FROM syncswim.applied").fetchone()
        assert markers is not None and markers["n"] >= 1
        dbs.pg.execute("UPDATE syncswim.applied SET created_at = now() - interval '30 days'")

        ctx = build_sensor_context(
            instance=instance,
            resources={"syncswim": resource},
            cursor=json.dumps({"pruned_at": time.time()}),
        )
        sensor_def(ctx)  # pruned recently: leaves them
        left = dbs.pg.execute("SELECT count(*) AS n FROM syncswim.applied").fetchone()
        assert left is not None and left["n"] == markers["n"]

        ctx = build_sensor_context(instance=instance, resources={"syncswim": resource})
        sensor_def(ctx)
        gone = dbs.pg.execute("SELECT count(*) AS n FROM syncswim.applied").fetchone()
        assert gone is not None and gone["n"] == 0
        assert "pruned_at" in json.loads(ctx.cursor or "{}")
