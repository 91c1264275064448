"""The fast path (pipeline/fastpath.py) end to end: one-sided updates of linked records
decided in bulk, PostgreSQL (`app`) ⇄ MariaDB (`shop`) through the Dagster materialisation
of `app_shop/customers`, on private real servers.

Shown: the common case takes it (the run's `fast_path_records`), what is not that case
does not, and its write is compare-and-set like the planner's: a target row changed after
the change was captured is not overwritten, and the next run merges it from both rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.merge_harness import MergeDbs, Side, customers, other

pytestmark = pytest.mark.integration

SIDES: tuple[Side, Side] = ("app", "shop")
NO_WRITES = {"inserted": 0, "updated": 0, "deleted": 0}


@pytest.fixture
def m(
    pg_dsn: str, mysql_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MergeDbs]:
    from syncswim_lib.pipeline import fastpath

    monkeypatch.setattr(fastpath, "ENABLED", True)  # on by default; a test may switch it off
    dbs = MergeDbs(pg_dsn, mysql_dsn, tmp_path)
    for k, v in dbs.env().items():
        monkeypatch.setenv(k, v)
    yield dbs
    dbs.close()


def _records(m: MergeDbs, mode: str, n: int = 3) -> None:
    m.create(customers(mode))
    m.run()  # sets up capture before the first change
    for i in range(n):
        m.insert("app", code=f"C-{i}", name=f"n{i}", email=f"e{i}")
    first = m.run()
    assert first.meta["fast_path_records"] == 0  # inserts are the planner's
    assert len(m.rows("shop")) == n


def _names(m: MergeDbs, side: Side) -> list[Any]:
    return [r["name"] for r in m.rows(side)]


@pytest.mark.parametrize(("mode", "source"), [("sor", "shop"), ("ext", "app")])
def test_one_sided_updates_take_the_fast_path(m: MergeDbs, mode: str, source: Side) -> None:
    _records(m, mode)
    m.exec(source, "UPDATE customers SET name = CONCAT(name, ' edited')")
    m.exec(source, "UPDATE customers SET notes = 'again' WHERE email = 'e1'")
    run = m.run()
    assert run.meta["fast_path_records"] == 3, run.meta
    assert run.side_writes(other(source)) == {"inserted": 0, "updated": 3, "deleted": 0}
    assert _names(m, other(source)) == ["n0 edited", "n1 edited", "n2 edited"]
    assert m.values("app") == m.values("shop")
    # the shadow moved: nothing comes back, and the echoes are not written again
    again = m.run()
    assert again.side_writes("app") == NO_WRITES == again.side_writes("shop"), again.meta
    applied = m.entries(status="applied")
    assert applied and all("record" in (e.detail or {}) for e in applied)


def test_a_record_changed_on_both_sides_goes_to_the_planner(m: MergeDbs) -> None:
    _records(m, "ext")
    m.exec("app", "UPDATE customers SET name = 'from app' WHERE email = 'e0'")
    m.exec("shop", "UPDATE customers SET notes = 'from shop' WHERE email = 'e0'")
    m.exec("app", "UPDATE customers SET name = 'only app' WHERE email = 'e1'")
    run = m.run()
    assert run.meta["fast_path_records"] == 1, run.meta  # e1; e0 is a three-way merge
    by_app, by_shop = m.by("app", "email"), m.by("shop", "email")
    assert by_shop["e0"]["name"] == "from app" and by_app["e0"]["notes"] == "from shop"
    assert by_shop["e1"]["name"] == "only app"
    assert m.values("app") == m.values("shop")


@pytest.mark.parametrize(("mode", "target"), [("sor", "shop"), ("ext", "app")])
def test_a_row_changed_before_the_fast_write_is_not_overwritten(
    m: MergeDbs, mode: str, target: Side, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The late edit lands on the target row after the source's change was captured and
    decided (the fast path's write is about to go out): the compare-and-set refuses the
    write, and the next run merges both edits through the planner, recording the conflict."""
    from syncswim_lib.pipeline.engine import EntityEngine

    _records(m, mode, n=1)
    m.exec(other(target), "UPDATE customers SET name = 'source edit'")
    real = EntityEngine._apply_sides
    done: list[str] = []

    def apply_after_an_edit(self: EntityEngine, plan: Any, batch_id: str) -> Any:
        if plan.writes and not done:
            m.exec(target, "UPDATE customers SET name = 'late edit'")
            done.append(batch_id)
        return real(self, plan, batch_id)

    monkeypatch.setattr(EntityEngine, "_apply_sides", apply_after_an_edit)
    first = m.run()
    monkeypatch.setattr(EntityEngine, "_apply_sides", real)
    assert done and done[0].endswith(".f"), done  # it was the fast path's write
    assert first.meta["fast_path_records"] == 1, first.meta
    assert first.meta["stale_writes"] == 1, first.meta
    assert _names(m, target) == ["late edit"]  # not overwritten
    second = m.run()
    assert second.meta["fast_path_records"] == 0, second.meta  # released: the planner's
    names = {side: _names(m, side) for side in SIDES}
    assert names["app"] == names["shop"], names
    recs = [c for c in m.conflicts() if c.field == "name"]
    assert any({"late edit", "source edit"} == {c.value_a, c.value_b} for c in recs), recs
    third = m.run()
    assert third.side_writes("app") == NO_WRITES == third.side_writes("shop"), third.meta
