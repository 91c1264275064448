"""`full` runs on PostgreSQL and MariaDB. Of two tables that already hold the same rows it
writes nothing: every type family the mapping carries compares equal across the two
systems, before any link exists and again once the records are linked. Into an empty side
it creates every row through the bulk path (pipeline/seed.py), value for value, parks a row
the target rejects while the others go in, and mixes with the planner's path where rows
are linked, changed, matched or born on the non-SOR side."""

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
    again = _full(m, capsys)  # now with links and shadows: found in step without the journal
    assert "app_shop.wide: no writes; skipped 0," in again, again
    assert "already in step 300" in again, again
    assert _tables(m) == before


# a row of NULLs, the edges of each family's range, characters outside the BMP
EDGES = (
    "INSERT INTO wide (code, v, t, i, n, b, d, ts, j, f) VALUES"
    " ('W-null', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),"
    " ('W-edge', '', E'\U0001f600 \\ \" quote', -2147483648, -9999999999.99, false,"
    " date '0001-01-01', timestamptz '1970-01-01 00:00:00.000001+00',"
    ' \'{"deep": {"list": [1, 2.5, null, true], "s": "\u00e9"}}\', -1.5e-300),'
    " ('W-max', repeat('x', 50), repeat('long ', 2000), 2147483647, 9999999999.99, true,"
    " date '9999-12-31', timestamptz '2999-12-31 23:59:59.999999+00', '[]', 1.7976931348623157e308)"
)
COLUMNS = ("v", "t", "i", "n", "b", "d", "ts", "j", "f")


def _canonical(row: dict[str, object], side: str) -> tuple[object, ...]:
    out: list[object] = []
    for c in COLUMNS:
        v = row[c]
        if side == "my" and c == "b" and v is not None:
            v = bool(v)
        if side == "my" and c == "j" and isinstance(v, str):
            v = json.loads(v)
        if side == "app" and c == "ts" and v is not None:
            v = v.replace(tzinfo=None)  # type: ignore[attr-defined]  # MariaDB keeps UTC
        out.append(v)
    return tuple(out)


def _copied(
    m: MergeDbs, mode: str
) -> tuple[dict[object, tuple[object, ...]], dict[object, tuple[object, ...]]]:
    """Both sides' rows by their shared identity: the SOR's id, or the code."""
    app, shop = _tables(m)
    ka, kb = ("id", "app_id") if mode == "sor" else ("code", "code")
    return (
        {r[ka]: _canonical(r, "app") for r in app},
        {r[kb]: _canonical(r, "my") for r in shop},
    )


def _fill(m: MergeDbs, source: str, mode: str) -> int:
    """The test rows on `source` only (generated on PostgreSQL, copied for MariaDB)."""
    m.pg.execute(SEED)
    m.pg.execute(EDGES)
    rows = m.pg.execute("SELECT * FROM wide ORDER BY id").fetchall()
    if source == "shop":
        for r in rows:
            m.my_exec(
                "INSERT INTO wide (code, v, t, i, n, b, d, ts, j, f)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    r["code"],
                    r["v"],
                    r["t"],
                    r["i"],
                    r["n"],
                    r["b"],
                    r["d"],
                    None if r["ts"] is None else r["ts"].replace(tzinfo=None),
                    None if r["j"] is None else json.dumps(r["j"]),
                    r["f"],
                ),
            )
        m.pg.execute("TRUNCATE wide")
    return len(rows)


@pytest.mark.parametrize(
    ("mode", "source"), [("sor", "app"), ("ext", "app"), ("ext", "shop"), ("sor", "shop")]
)
def test_full_sync_into_an_empty_side_copies_every_value(
    m: MergeDbs, mode: str, source: str, capsys: pytest.CaptureFixture[str]
) -> None:
    m.pg.execute(PG)
    m.my_exec(MY)
    n = _fill(m, source, mode)
    m.yaml_path.write_text(
        YAML.format(pg=ENV["pg"], my=ENV["my"], state=ENV["state"], mode=MODES[mode], fields=FIELDS)
    )
    first = _full(m, capsys)
    target = "shop" if source == "app" else "app"
    assert f"{target} +{n} ~0 -0" in first, first
    if mode == "sor" and source == "shop":
        # born on the non-SOR side: the SOR generates keys, which are written back; that
        # takes the planner's path, with its saved plan
        assert "created in bulk" not in first, first
    else:
        assert f"created in bulk {n}" in first, first
    app, shop = _copied(m, mode)
    assert len(app) == len(shop) == n
    assert app == shop
    again = _full(m, capsys)  # (what it skips are the echoes of the first run's writes)
    assert "app_shop.wide: no writes;" in again, again
    assert f"already in step {n}" in again, again
    from syncswim_lib.pipeline.admin import run_once

    assert run_once(m.yaml_path) == 0
    assert "app_shop.wide: no writes; skipped 0," in capsys.readouterr().out
    assert _copied(m, mode) == (app, shop)


def test_a_row_the_target_rejects_is_parked_and_the_others_are_created(
    m: MergeDbs, capsys: pytest.CaptureFixture[str]
) -> None:
    from syncswim_lib.pipeline.admin import run_once

    m.pg.execute(PG)
    m.my_exec(MY.replace("f double)", "f double, CONSTRAINT no13 CHECK (i <> 13))"))
    m.pg.execute(SEED)
    m.yaml_path.write_text(
        YAML.format(
            pg=ENV["pg"], my=ENV["my"], state=ENV["state"], mode=MODES["sor"], fields=FIELDS
        )
    )
    assert run_once(m.yaml_path, full=True) == 1  # a failed record fails the command
    out = capsys.readouterr().out
    assert "shop +299 ~0 -0" in out and "failed 1" in out, out
    app, shop = _copied(m, "sor")
    assert set(app) - set(shop) == {13}
    assert all(shop[c] == app[c] for c in shop)
    from syncswim_lib.config import load_project
    from syncswim_lib.pipeline.runtime import Runtime

    with Runtime(load_project(m.yaml_path)) as rt:
        failed = [e for e in rt.store.entries(entity="wide") if e.status == "failed"]
    assert len(failed) == 1 and failed[0].change.key["id"] == 13
    assert "no13" in json.dumps(failed[0].detail, default=str), failed[0].detail
    # the source row fixed, a plain run brings it over
    m.pg.execute("UPDATE wide SET i = 1013 WHERE i = 13")
    assert run_once(m.yaml_path) == 0
    assert "shop +1 ~0 -0" in capsys.readouterr().out
    app, shop = _copied(m, "sor")
    assert app == shop


def test_full_run_mixes_bulk_creates_with_merges(
    m: MergeDbs, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows already on both sides (matched by the external id, one with a different
    value), rows born on the non-SOR side and rows to create in bulk in one `full` run;
    then edits on either side, deletes and new rows in another: both sides end equal,
    nothing created twice."""
    from syncswim_lib.pipeline.admin import run_once

    m.pg.execute(PG)
    m.my_exec(MY)
    m.pg.execute(SEED.replace("generate_series(1, 300)", "generate_series(1, 100)"))
    for r in m.pg.execute("SELECT * FROM wide WHERE id <= 10 ORDER BY id").fetchall():
        m.my_exec(
            "INSERT INTO wide (app_id, v, t, i) VALUES (%s, %s, %s, %s)",
            (r["id"], "shop's own" if r["id"] == 3 else r["v"], r["t"], r["i"]),
        )
    m.my_exec("INSERT INTO wide (code, v) VALUES ('S-1', 'born on shop'), ('S-2', 'also')")
    m.yaml_path.write_text(
        YAML.format(
            pg=ENV["pg"], my=ENV["my"], state=ENV["state"], mode=MODES["sor"], fields=FIELDS
        )
    )
    first = _full(m, capsys)
    assert "created in bulk 90" in first and "app +2 " in first, first
    app, shop = _copied(m, "sor")
    assert app == shop and len(app) == 102
    assert app[3][0] == "v3"  # the system of record's value won the first merge
    m.pg.execute("UPDATE wide SET v = 'app edit' WHERE id <= 5")
    m.my_exec("UPDATE wide SET t = 'shop edit' WHERE app_id BETWEEN 6 AND 10")
    m.my_exec("DELETE FROM wide WHERE app_id IN (11, 12)")
    m.my_exec("INSERT INTO wide (code, v) VALUES ('S-3', 'born later')")
    m.pg.execute(
        SEED.replace("generate_series(1, 300)", "generate_series(101, 150)").replace(
            "'W-' || g", "'N-' || g"
        )
    )
    out = _full(m, capsys)
    assert "shop +50 ~5 -0, app +1 ~5 -2" in out, out
    app, shop = _copied(m, "sor")
    assert app == shop
    assert len(app) == 102 - 2 + 1 + 50
    assert app[1][0] == "app edit" and app[7][1] == "shop edit"
    assert run_once(m.yaml_path) == 0
    assert "no writes" in capsys.readouterr().out
