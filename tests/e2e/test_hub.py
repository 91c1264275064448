"""One table in two syncs (a hub): a write made by one sync is a real change for the other,
which carries it on, and neither loops."""

from __future__ import annotations

import pytest

from syncswim_lib.config import load_project
from syncswim_lib.pipeline.run import run_entity
from syncswim_lib.pipeline.runtime import Runtime
from tests.e2e.harness import TwoDbs

pytestmark = pytest.mark.integration

HUB_YAML = """
endpoints:
  app: {kind: postgres, dsn: {env: E2E_PG_DSN}}
  shop: {kind: mysql, dsn: {env: E2E_MY_DSN}}
state: {env: E2E_STATE_URL}
syncs:
  app_shop:
    between: [app, shop]
    entities:
      customers:
        app: {table: public.customers, key: [id]}
        shop: {table: customers, key: [id]}
        mode: {system_of_record: app, external_id: {shop: app_id}}
        fields: {name: name, notes: notes}
  app_archive:
    between: [app, shop]
    entities:
      customers:
        app: {table: public.customers, key: [id]}
        shop: {table: archive, key: [id]}
        mode: {system_of_record: app, external_id: {shop: app_id}}
        fields: {name: name, notes: notes}
"""


def _run_all(dbs: TwoDbs) -> int:
    writes = 0
    with Runtime(load_project(dbs.yaml_path)) as rt:
        for sync in ("app_shop", "app_archive"):
            r = run_entity(rt, sync, "customers")
            writes += r.writes + r.write_backs
    return writes


def test_hub_carries_changes_on_without_loops(dbs: TwoDbs) -> None:
    dbs.my_exec(
        "CREATE TABLE archive (id int AUTO_INCREMENT PRIMARY KEY, app_id int UNIQUE,"
        " name varchar(100), notes text)"
    )
    dbs.yaml_path.write_text(HUB_YAML)
    _run_all(dbs)
    dbs.my_exec("INSERT INTO customers (name, notes) VALUES ('from shop', 'hop')")
    # first round: shop -> app (and the key write-back); second: app -> archive
    rounds = [_run_all(dbs) for _ in range(4)]
    assert rounds[-1] == 0 and rounds[-2] == 0, rounds  # settled: no loop
    app = dbs.pg_rows("customers")
    archive = dbs.my_rows("archive")
    assert [(r["name"], r["notes"]) for r in app] == [("from shop", "hop")]
    assert [(r["app_id"], r["name"]) for r in archive] == [(app[0]["id"], "from shop")]

    dbs.my_exec("UPDATE customers SET notes = 'second hop'")
    for _ in range(3):
        _run_all(dbs)
    assert dbs.my_rows("archive")[0]["notes"] == "second hop"
    assert dbs.pg_rows("customers")[0]["notes"] == "second hop"
