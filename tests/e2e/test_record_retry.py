"""Poison records against real servers: each is isolated (the others of its run apply),
journaled `failed` with the database's error and tried again by later runs once its
backoff is due, parked after `retry.records.attempts` tries, and applied without `full`
once the cause is fixed: by a newer change of the record, by `syncswim retry`, or by a
person's materialisation of the asset (a sensor's run leaves parked records alone)."""

from __future__ import annotations

import json
import random
import string
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.merge_harness import ENV, MergeDbs

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
    retry: {{records: {{attempts: 3, base_seconds: 600, max_seconds: 3600}}}}
    entities:
      customers:
        app: {{table: customers, key: [id]}}
        shop: {{table: customers, key: [id]}}
        mode: {{system_of_record: app, external_id: {{shop: app_id}}}}
        fields: {{email: email, name: name}}
"""
# PostgreSQL refuses a name too big for its btree index (SQLSTATE 54000) and an email
# its CHECK forbids (23514); MariaDB refuses a name over 40 characters (strict mode, 1406)
PG = [
    "CREATE TABLE customers (id bigserial PRIMARY KEY, email text CHECK (email <> 'bad@x'),"
    " name text)",
    "CREATE INDEX customers_name ON customers (name)",
]
MY = (
    "CREATE TABLE customers (id bigint AUTO_INCREMENT PRIMARY KEY, app_id bigint UNIQUE,"
    " email varchar(100), name mediumtext) AUTO_INCREMENT = 100001"
)
ENTITY = ("app_shop", "customers")


@pytest.fixture
def m(
    pg_dsn: str, mysql_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MergeDbs]:
    dbs = MergeDbs(pg_dsn, mysql_dsn, tmp_path)
    for k, v in dbs.env().items():
        monkeypatch.setenv(k, v)
    for stmt in PG:
        dbs.pg.execute(stmt)
    dbs.my_exec(MY)
    dbs.yaml_path.write_text(YAML.format(pg=ENV["pg"], my=ENV["my"], state=ENV["state"]))
    _cli(dbs, "sync", "--full")
    yield dbs
    dbs.close()


def _cli(m: MergeDbs, *args: str) -> int:
    from syncswim_lib.cli import main

    return main([args[0], str(m.yaml_path), *args[1:]])


def _entries(m: MergeDbs, **query: Any) -> list[Any]:
    with m.store() as store:
        return list(store.entries(sync=ENTITY[0], entity=ENTITY[1], **query))


def _poison(m: MergeDbs) -> dict[str, Any]:
    """The failed and parked entries by the email of their row."""
    out = {}
    for status in ("failed", "parked"):
        for e in _entries(m, status=status):
            out[(e.change.after or e.change.before)["email"]] = e
    return out


def _make_due(m: MergeDbs) -> None:
    """The backoff's clock moved on: every failed entry's next try is due now."""
    with m.store() as store, store._write() as cur:
        past = store._ts_in(datetime.now(UTC) - timedelta(seconds=1))
        cur.execute(
            store._q("UPDATE journal SET next_attempt_at = ? WHERE status = 'failed'"), (past,)
        )


def _materialise(m: MergeDbs, tags: dict[str, str] | None = None) -> dict[str, Any]:
    from dagster import AssetKey, materialize

    from syncswim_defs.factory import build_definitions

    defs = build_definitions(m.yaml_path, state_url=m.state_url)
    asset = defs.resolve_assets_def(AssetKey(list(ENTITY)))
    result = materialize([asset], tags=tags, raise_on_error=False)
    assert result.success
    (mat,) = result.asset_materializations_for_node("__".join(ENTITY))
    return {k: v.value for k, v in mat.metadata.items()}


def _shop_names(m: MergeDbs) -> dict[str, str]:
    with m.my.cursor() as cur:
        cur.execute("SELECT email, name FROM customers")
        return {r["email"]: r["name"] for r in cur.fetchall()}


def test_poison_records_fail_alone_back_off_park_and_apply_once_fixed(m: MergeDbs) -> None:
    huge = "".join(random.Random(7).choices(string.ascii_letters, k=1_300_000))
    rows = [(f"c{i}@x", f"n{i}") for i in range(998)] + [("big@x", huge), ("bad@x", "Bad")]
    with m.my.cursor() as cur:
        cur.executemany("INSERT INTO customers (email, name) VALUES (%s, %s)", rows)
    before = datetime.now(UTC)
    assert _cli(m, "sync") == 1  # some records failed
    pg = {r["email"]: r["name"] for r in m.pg.execute("SELECT email, name FROM customers")}
    assert len(pg) == 998 and "big@x" not in pg and "bad@x" not in pg
    poison = _poison(m)
    assert set(poison) == {"big@x", "bad@x"}
    for e in poison.values():
        assert (e.status, e.attempts, e.detail["attempts"]) == ("failed", 1, 1)
        due = datetime.fromisoformat(e.detail["next_attempt_at"])
        # the first wait is records.base_seconds (600 s)
        assert before + timedelta(seconds=599) <= due <= datetime.now(UTC) + timedelta(seconds=601)
    assert (
        "54000" in poison["big@x"].detail["error"] or "index row" in poison["big@x"].detail["error"]
    )
    assert "customers_email_check" in poison["bad@x"].detail["error"]

    # not due yet: a run leaves them alone
    assert _cli(m, "sync") == 0
    assert {e.attempts for e in _poison(m).values()} == {1}
    with m.store() as store:
        assert store.pending_counts("app_shop") == {}

    # due: tried again, the next wait twice as long; the third try parks them
    _make_due(m)
    assert _cli(m, "sync") == 1
    second = _poison(m)
    assert {(e.status, e.attempts) for e in second.values()} == {("failed", 2)}
    due = datetime.fromisoformat(second["bad@x"].detail["next_attempt_at"])
    assert due >= datetime.now(UTC) + timedelta(seconds=1190)
    _make_due(m)
    assert _cli(m, "sync") == 1
    assert {(e.status, e.attempts) for e in _poison(m).values()} == {("parked", 3)}
    _make_due(m)
    with m.store() as store:
        assert store.pending_counts("app_shop") == {}  # parked asks for no run
        assert store.status_counts(*ENTITY) == {"parked": 2}

    # fixed at the source: the newer change takes the parked one with it
    m.my_exec("UPDATE customers SET name = 'Big' WHERE email = 'big@x'")
    assert _cli(m, "sync") == 0
    pg = {r["email"]: r["name"] for r in m.pg.execute("SELECT email, name FROM customers")}
    assert pg["big@x"] == "Big" and len(pg) == 999
    assert set(_poison(m)) == {"bad@x"}

    # fixed at the target: `syncswim retry` for that one record
    m.pg.execute("ALTER TABLE customers DROP CONSTRAINT customers_email_check")
    bad_key = _poison(m)["bad@x"].change.key
    assert (
        _cli(m, "retry", "--entity", "customers", "--side", "shop", "--key", json.dumps(bad_key))
        == 0
    )
    pg = {r["email"]: r["name"] for r in m.pg.execute("SELECT email, name FROM customers")}
    assert pg["bad@x"] == "Bad" and len(pg) == 1000
    assert _poison(m) == {}
    (applied,) = _entries(m, key=bad_key, status="applied")
    assert applied.attempts == 3  # its tries stay on record


def test_a_persons_materialisation_retries_parked_records_a_sensor_run_does_not(
    m: MergeDbs,
) -> None:
    m.pg.execute("ALTER TABLE customers ADD CONSTRAINT short_name CHECK (length(name) < 8)")
    m.my_exec("INSERT INTO customers (email, name) VALUES ('ann@x', 'Annabelle'), ('bo@x', 'Bo')")
    assert _cli(m, "sync") == 1
    _make_due(m)
    assert _cli(m, "sync") == 1
    _make_due(m)
    assert _cli(m, "sync") == 1
    assert {e.status for e in _poison(m).values()} == {"parked"}
    m.pg.execute("ALTER TABLE customers DROP CONSTRAINT short_name")
    meta = _materialise(m, tags={"dagster/sensor_name": "app_shop__capture"})
    assert meta["requeued"] == 0 and set(_poison(m)) == {"ann@x"}
    meta = _materialise(m)
    assert meta["requeued"] == 1 and meta["failed"] == 0
    assert _poison(m) == {}
    assert _shop_names(m)["ann@x"] == "Annabelle"
    pg = {r["email"]: r["name"] for r in m.pg.execute("SELECT email, name FROM customers")}
    assert pg == {"ann@x": "Annabelle", "bo@x": "Bo"}


def test_retry_refuses_bad_input(m: MergeDbs, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(m, "retry", "--entity", "orders") == 2
    assert "unknown entity 'orders'" in capsys.readouterr().err
    assert _cli(m, "retry", "--key", "id=1") == 2
    assert "--key names a row of one side: give --side too" in capsys.readouterr().err
    assert _cli(m, "retry", "--entity", "customers", "--side", "crm", "--key", "id=1") == 2
    assert "unknown side 'crm'" in capsys.readouterr().err
    assert _cli(m, "retry", "--entity", "customers", "--side", "shop", "--key", "email=x") == 2
    assert "the key of app_shop.customers on shop is id" in capsys.readouterr().err
    assert _cli(m, "retry") == 0
    assert "no failed or parked changes to retry" in capsys.readouterr().out
