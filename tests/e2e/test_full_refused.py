"""A `full` run's bulk create refuses the rows whose values do not fit the target (checked a
column at a time) and creates the others: the refused rows go to the planner, which parks
them with why, and every created row is linked with its own key and shared id."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.merge_harness import ENV, MergeDbs
from tests.e2e.test_full_equal import FIELDS, MODES, MY, PG, SEED, YAML

pytestmark = pytest.mark.integration


@pytest.fixture
def m(
    pg_dsn: str, mysql_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MergeDbs]:
    dbs = MergeDbs(pg_dsn, mysql_dsn, tmp_path)
    for k, v in dbs.env().items():
        monkeypatch.setenv(k, v)
    yield dbs
    dbs.close()


@pytest.mark.parametrize("mode", sorted(MODES))
def test_rows_that_do_not_fit_are_parked_and_the_others_linked_right(
    m: MergeDbs, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from syncswim_lib.config import load_project
    from syncswim_lib.pipeline.admin import run_once
    from syncswim_lib.pipeline.runtime import Runtime

    m.pg.execute(PG)
    m.my_exec(MY.replace("v varchar(50)", "v varchar(5)"))  # narrower: a warning, not an error
    # made so by the insert (an update would move the rows to the end of the table, and
    # the refused rows should come first in a batch, not last)
    long = "CASE WHEN g IN (7, 150) THEN 'much too long' ELSE 'v' || g END"
    assert "'v' || g," in SEED
    m.pg.execute(SEED.replace("'v' || g,", long + ",", 1))
    m.yaml_path.write_text(
        YAML.format(pg=ENV["pg"], my=ENV["my"], state=ENV["state"], mode=MODES[mode], fields=FIELDS)
    )
    assert run_once(m.yaml_path, full=True) == 1  # the failed records fail the command
    out = capsys.readouterr().out
    assert "created in bulk 298" in out, out
    assert "shop +298 ~0 -0" in out and "failed 2" in out, out
    # the shop row of an app row: by the shared code, or by the SOR key in app_id
    match = "code" if mode == "ext" else "app_id"
    with m.my.cursor() as cur:
        cur.execute("SELECT id, app_id, code, v FROM wide")
        shop = {r[match]: r for r in cur.fetchall()}
    app = {r["id"]: r for r in m.pg.execute("SELECT id, code, v FROM wide").fetchall()}
    of = {i: r[match] if mode == "ext" else i for i, r in app.items()}
    assert {of[i] for i in app} - set(shop) == {of[7], of[150]}
    with Runtime(load_project(m.yaml_path)) as rt:
        links = rt.store.links("app_shop", "wide")
        failed = [e for e in rt.store.entries(entity="wide") if e.status == "failed"]
    assert sorted(e.change.key["id"] for e in failed) == [7, 150]
    assert all("longer than 5" in str(e.detail) for e in failed), [e.detail for e in failed]
    assert len(links) == 298
    for link in links:
        assert link.key_a is not None and link.key_b is not None and link.shadow is not None
        row = app[link.key_a["id"]]
        assert shop[of[row["id"]]]["id"] == link.key_b["id"]
        assert link.shadow["a"]["v"] == row["v"] == link.shadow["b"]["v"]
        if mode == "ext":
            assert link.ext_id == row["code"]
            assert link.shadow["a"]["code"] == row["code"] == link.shadow["b"]["code"]
        else:
            assert link.ext_id is None and link.shadow["b"]["app_id"] == row["id"]
