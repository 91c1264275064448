"""A `full` sync of two tables that already hold the same rows writes nothing: every
type family the mapping carries compares equal across the two systems (PostgreSQL and
MariaDB), before any link exists and again once the records are linked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.merge_harness import ENV, MergeDbs

pytestmark = pytest.mark.integration

FIELDS = "{v: v, t: t, i: i, n: n, b: b, d: d, ts: ts, j: j, f: f}"
MODES = {
    "sor": "{system_of_record: app, external_id: {shop: app_id}}",
    "ext": "{external_id: {app: code, shop: code}}",
}
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
      wide:
        app: {{table: wide, key: [id]}}
        shop: {{table: wide, key: [id]}}
        mode: {mode}
        fields: {fields}
"""
PG = (
    "CREATE TABLE wide (id bigserial PRIMARY KEY, code text UNIQUE, v varchar(50), t text,"
    " i int, n numeric(12,2), b boolean, d date, ts timestamptz, j jsonb, f double precision)"
)
MY = (
    "CREATE TABLE wide (id bigint AUTO_INCREMENT PRIMARY KEY, app_id bigint UNIQUE,"
    " code varchar(20) UNIQUE, v varchar(50), t text, i int, n decimal(12,2), b boolean,"
    " d date, ts datetime(6), j json, f double) AUTO_INCREMENT = 1001"
)
SEED = (
    "INSERT INTO wide (code, v, t, i, n, b, d, ts, j, f) SELECT 'W-' || g, 'v' || g,"
    " E'line\\n\\ttab ü ' || g, g, g * 1.25, g % 2 = 0, date '2020-01-01' + g,"
    " timestamptz '2020-01-01 00:00:00.123456+00' + g * interval '1 minute 1.000001 second',"
    " jsonb_build_object('k', g, 'a', 'x', 'nested', jsonb_build_array(g, 'y')),"
    " g / 3.0 FROM generate_series(1, 300) g"
)


@pytest.fixture
def m(
    pg_dsn: str, mysql_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MergeDbs]:
    dbs = MergeDbs(pg_dsn, mysql_dsn, tmp_path)
    for k, v in dbs.env().items():
        monkeypatch.setenv(k, v)
    yield dbs
    dbs.close()


def _tables(m: MergeDbs) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    app = list(m.pg.execute("SELECT * FROM wide ORDER BY id").fetchall())
    with m.my.cursor() as cur:
        cur.execute("SELECT * FROM wide ORDER BY id")
        return app, list(cur.fetchall())


def _full(m: MergeDbs, capsys: pytest.CaptureFixture[str]) -> str:
    from syncswim_lib.pipeline.admin import run_once

    assert run_once(m.yaml_path, full=True) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("mode", sorted(MODES))
def test_full_sync_of_equal_tables_writes_nothing(
    m: MergeDbs, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    m.pg.execute(PG)
    m.my_exec(MY)
    m.pg.execute(SEED)
    rows = m.pg.execute("SELECT * FROM wide ORDER BY id").fetchall()
    for r in rows:
        m.my_exec(
            "INSERT INTO wide (app_id, code, v, t, i, n, b, d, ts, j, f)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                r["id"] if mode == "sor" else None,
                r["code"],
                r["v"],
                r["t"],
                r["i"],
                r["n"],
                r["b"],
                r["d"],
                r["ts"].replace(tzinfo=None),  # the server's time zone is UTC
                json.dumps(r["j"]),
                r["f"],
            ),
        )
    m.yaml_path.write_text(
        YAML.format(pg=ENV["pg"], my=ENV["my"], state=ENV["state"], mode=MODES[mode], fields=FIELDS)
    )
    before = _tables(m)
    first = _full(m, capsys)
    assert "app_shop.wide: no writes; skipped 300," in first, first
    again = _full(m, capsys)  # now with links and shadows
    assert "app_shop.wide: no writes; skipped 300," in again, again
    assert _tables(m) == before
