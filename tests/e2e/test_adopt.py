"""Adopting records that already exist on both sides (`match_on:`, pipeline/adopt.py), on
PostgreSQL and MariaDB: the first `full` run links the same customer on the two sides by
its e-mail instead of creating it twice, back-fills the identity column, merges the two
rows' differing values by the mode's rules, and creates only the rows that are really on
one side. `sync --full --dry-run` says so beforehand and writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
    entities:
      customers:
        app: {{table: customers, key: [id]}}
        shop: {{table: customers, key: [id]}}
        mode: {mode}
        fields: {{email: email, name: name}}
        match_on: {match_on}
"""
SOR = "{system_of_record: app, external_id: {shop: app_id}}"
EXT = "{external_id: {app: code, shop: code}}"
PG = "CREATE TABLE customers (id bigserial PRIMARY KEY, code text UNIQUE, email text, name text)"
MY = (
    "CREATE TABLE customers (id bigint AUTO_INCREMENT PRIMARY KEY, app_id bigint UNIQUE,"
    " code varchar(20) UNIQUE, email varchar(100), name varchar(100)) AUTO_INCREMENT = 1001"
)


@pytest.fixture
def m(
    pg_dsn: str, mysql_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MergeDbs]:
    dbs = MergeDbs(pg_dsn, mysql_dsn, tmp_path)
    for k, v in dbs.env().items():
        monkeypatch.setenv(k, v)
    dbs.pg.execute(PG)
    dbs.my_exec(MY)
    yield dbs
    dbs.close()


def _declare(m: MergeDbs, mode: str = SOR, match_on: str = "email") -> None:
    m.yaml_path.write_text(
        YAML.format(pg=ENV["pg"], my=ENV["my"], state=ENV["state"], mode=mode, match_on=match_on)
    )


def _app(m: MergeDbs) -> list[tuple[object, ...]]:
    rows = m.pg.execute("SELECT id, code, email, name FROM customers ORDER BY id").fetchall()
    return [(r["id"], r["code"], r["email"], r["name"]) for r in rows]


def _shop(m: MergeDbs) -> list[tuple[object, ...]]:
    with m.my.cursor() as cur:
        cur.execute("SELECT id, app_id, code, email, name FROM customers ORDER BY id")
        return [(r["id"], r["app_id"], r["code"], r["email"], r["name"]) for r in cur.fetchall()]


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from syncswim_lib.cli import main

    code = main(args)
    got = capsys.readouterr()
    return code, got.out, got.err


def _both_sides(m: MergeDbs) -> None:
    """Ann and Bob on both sides (Bob's name differs, the shop spells Ann's e-mail in
    capitals), Cy only in the app, Dee only in the shop."""
    m.pg.execute(
        "INSERT INTO customers (email, name) VALUES"
        " ('ann@example.com', 'Ann'), ('bob@example.com', 'Bob'), ('cy@example.com', 'Cy')"
    )
    m.my_exec(
        "INSERT INTO customers (email, name) VALUES"
        " ('Ann@Example.com ', 'Ann'), ('bob@example.com', 'Robert'), ('dee@example.com', 'Dee')"
    )


def test_first_full_sync_adopts_matching_rows_instead_of_duplicating_them(
    m: MergeDbs, capsys: pytest.CaptureFixture[str]
) -> None:
    _both_sides(m)
    _declare(m, match_on="{fields: [email], normalise: [strip, lower]}")
    path = str(m.yaml_path)

    code, out, err = _cli(["sync", path, "--full", "--dry-run"], capsys)
    assert code == 0, err
    assert "dry run, nothing written" in out
    assert "adopt 2 existing pairs by match_on" in out, out
    # Cy goes to the shop; Dee (born in the shop) goes through the merge, as Ann and Bob
    assert "create 1 on shop and 0 on app" in out, out
    assert _shop(m)[0][1] is None and len(_app(m)) == 3  # nothing written

    code, out, err = _cli(["sync", path, "--full"], capsys)
    assert code == 0, (out, err)
    assert "adopted by match_on 2" in out, out
    app, shop = _app(m), _shop(m)
    assert len(app) == 4 and len(shop) == 4, (app, shop)  # Dee in the app, Cy in the shop
    by_email = {str(r[3]).strip().lower(): r for r in shop}
    ids = {str(r[2]): r[0] for r in app}
    assert by_email["ann@example.com"][1] == ids["ann@example.com"]
    assert by_email["bob@example.com"][1] == ids["bob@example.com"]
    assert by_email["cy@example.com"][1] == ids["cy@example.com"]
    assert by_email["dee@example.com"][1] == ids["dee@example.com"]
    # the system of record's values won where the two differed, on both sides
    assert by_email["bob@example.com"][4] == "Bob"
    assert by_email["ann@example.com"][3] == "ann@example.com"
    # ... and the shop's losing value is on record as a decided conflict
    code, out, _ = _cli(["conflicts", "list", path], capsys)
    (line,) = [x for x in out.splitlines() if " name " in x and "prefer:app" in x]
    code, out, _ = _cli(["conflicts", "show", path, line.split()[0]], capsys)
    assert code == 0 and "Robert" in out, out

    # a second full run adopts nothing more and finds everything in step
    code, out, err = _cli(["sync", path, "--full"], capsys)
    assert code == 0, err
    assert "adopted by match_on" not in out and "already in step 4" in out, out
    assert _app(m) == app and _shop(m) == shop


def test_external_id_mode_adopts_by_copying_the_id_that_exists(
    m: MergeDbs, capsys: pytest.CaptureFixture[str]
) -> None:
    m.pg.execute(
        "INSERT INTO customers (code, email, name) VALUES ('C-1', 'ann@example.com', 'Ann'),"
        " (NULL, 'bob@example.com', 'Bob'), ('C-7', 'eve@example.com', 'Eve')"
    )
    m.my_exec(
        "INSERT INTO customers (code, email, name) VALUES (NULL, 'ann@example.com', 'Ann'),"
        " (NULL, 'bob@example.com', 'Bob'), ('C-8', 'eve@example.com', 'Eve')"
    )
    _declare(m, mode=EXT)
    path = str(m.yaml_path)
    code, out, err = _cli(["sync", path, "--full", "--dry-run"], capsys)
    assert code == 0, err
    assert "adopt 1 existing pairs" in out, out
    assert "1 pairs have no external id on either side" in out, out
    assert "1 pairs hold different external ids" in out, out

    code, out, err = _cli(["sync", path, "--full"], capsys)
    assert code == 0, (out, err)
    shop = {str(r[3]): r for r in _shop(m)}
    assert shop["ann@example.com"][2] == "C-1"  # copied from the app and linked
    assert shop["bob@example.com"][2] is None  # no id to share: waits, as documented
    # two different ids are two records: each created on the other side, none changed
    assert sorted(str(r[2]) for r in _shop(m) if r[3] == "eve@example.com") == ["C-7", "C-8"]
    assert sorted(str(r[1]) for r in _app(m) if r[2] == "eve@example.com") == ["C-7", "C-8"]


def test_an_ambiguous_natural_key_stops_the_run_before_anything_is_written(
    m: MergeDbs, capsys: pytest.CaptureFixture[str]
) -> None:
    m.pg.execute("INSERT INTO customers (email, name) VALUES ('ann@example.com', 'Ann')")
    m.my_exec(
        "INSERT INTO customers (email, name) VALUES ('ann@example.com', 'Ann'),"
        " ('ann@example.com', 'Ann twin'), ('zed@example.com', 'Zed')"
    )
    _declare(m)
    path = str(m.yaml_path)
    before = (_app(m), _shop(m))
    for args in (["sync", path, "--full", "--dry-run"], ["sync", path, "--full"]):
        code, out, err = _cli(args, capsys)
        assert code == 1, (out, err)
        assert "match_on email finds more than one unlinked row" in err, err
        assert "['ann@example.com'] (2 rows on shop)" in err, err
        assert "nothing was written" in err
        assert (_app(m), _shop(m)) == before


def test_dry_run_needs_full(m: MergeDbs, capsys: pytest.CaptureFixture[str]) -> None:
    _declare(m)
    code, _, err = _cli(["sync", str(m.yaml_path), "--dry-run"], capsys)
    assert code == 2 and "--dry-run goes with --full" in err
