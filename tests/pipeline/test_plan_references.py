"""References in the planner, without servers: translation through the parent's links,
children that wait (and why), a circle held back and set in the next pass."""

from __future__ import annotations

from typing import Any

from syncswim_lib.envelope import Op
from syncswim_lib.pipeline.mapping import EntityMap, RefView, SideView
from syncswim_lib.pipeline.plan import ChunkContext, Plan, Planner
from syncswim_lib.pipeline.run import _cycles
from syncswim_lib.state.base import Link
from syncswim_lib.values import ColumnInfo, TableInfo
from syncswim_lib.values.codec import key_text
from tests.pipeline.test_plan_merge import entry

A_COLS = (
    ColumnInfo("id", "int", "integer", auto_generated=True),
    ColumnInfo("name", "text", "text"),
    ColumnInfo("boss", "int", "integer"),
)
B_COLS = (
    ColumnInfo("id", "int", "int", auto_generated=True),
    ColumnInfo("app_id", "int", "int"),
    ColumnInfo("name", "text", "varchar(50)"),
    ColumnInfo("boss_id", "int", "int"),
)
FIELDS = (("name", "name", None, None), ("boss", "boss_id", None, None))


def emap() -> EntityMap:
    """Employees reporting to employees, app (a) the system of record."""
    ta = TableInfo("public.t", A_COLS, ("id",))
    tb = TableInfo("t", B_COLS, ("id",))
    a = SideView("a", "app", ta, ("id",), None, ("name", "boss"))
    b = SideView("b", "shop", tb, ("id",), "app_id", ("name", "boss_id"))
    ref = RefView(FIELDS[1], "e", "public.t", "t", A_COLS[0], B_COLS[0], forward=True)
    return EntityMap("s", "e", a, b, "system_of_record", "a", FIELDS, references=(ref,))


def link(a: dict[str, Any], b: dict[str, Any]) -> Link:
    shadow = {
        "a": {"name": a["name"], "boss": a["boss"]},
        "b": {"name": b["name"], "boss_id": b["boss_id"], "app_id": b["app_id"]},
    }
    return Link("s", "e", {"id": a["id"]}, {"id": b["id"]}, shadow, None)


def ctx(
    rows_a: list[dict[str, Any]],
    rows_b: list[dict[str, Any]],
    links: list[Link],
    present_a: tuple[int, ...] = (),
) -> ChunkContext:
    by_key: dict[str, dict[str, Link]] = {"a": {}, "b": {}}
    for x in links:
        by_key["a"][key_text(x.key_a or {})] = x
        by_key["b"][key_text(x.key_b or {})] = x
    rows = {
        "a": {key_text({"id": r["id"]}): r for r in rows_a},
        "b": {key_text({"id": r["id"]}): r for r in rows_b},
    }
    by_ext: dict[str, dict[str, list[dict[str, Any]]]] = {"a": {}, "b": {}}
    for r in rows_b:
        if r.get("app_id") is not None:
            by_ext["b"].setdefault(str(r["app_id"]), []).append(r)
    return ChunkContext(
        by_key,
        {},
        rows,
        by_ext,
        parent_links={("e", "a"): by_key["a"], ("e", "b"): by_key["b"]},
        parent_present={("e", "a"): frozenset(key_text({"id": i}) for i in present_a)},
    )


def ra(id: int, boss: int | None = None, name: str = "n") -> dict[str, Any]:
    return {"id": id, "name": name, "boss": boss}


def rb(id: int, app_id: int, boss_id: int | None = None, name: str = "n") -> dict[str, Any]:
    return {"id": id, "app_id": app_id, "name": name, "boss_id": boss_id}


def writes(plan: Plan) -> dict[str, tuple[str, dict[str, Any]]]:
    return {w.target: (w.action, w.values) for w in plan.writes}


def test_a_new_child_is_written_with_the_other_sides_id_of_its_parent() -> None:
    boss_a, boss_b = ra(1), rb(1001, 1)
    new = ra(2, boss=1)
    p = Planner(emap()).plan(
        [entry("app", Op.INSERT, new, {"id": 2})],
        ctx([boss_a, new], [boss_b], [link(boss_a, boss_b)]),
    )
    assert writes(p) == {"b": ("insert", {"name": "n", "boss_id": 1001, "app_id": 2})}


def test_a_child_whose_parent_is_not_linked_waits_and_says_for_whom() -> None:
    new = ra(3, boss=2)
    p = Planner(emap()).plan(
        [entry("app", Op.INSERT, new, {"id": 3})], ctx([new, ra(2)], [], [], present_a=(2,))
    )
    assert p.writes == [] and p.waiting_parent == 1
    (u,) = p.updates
    assert u.status == "waiting"
    assert u.detail is not None
    assert u.detail["reason"] == "waiting for parent e id=2 on app"
    assert u.detail["parent"] == {"entity": "e", "endpoint": "app", "key": {"id": 2}}
    assert p.waits == [(("e", "a", key_text({"id": 3})), ("e", "a", key_text({"id": 2})))]


def test_a_child_whose_parent_does_not_exist_says_so() -> None:
    new = ra(3, boss=9)
    p = Planner(emap()).plan([entry("app", Op.INSERT, new, {"id": 3})], ctx([new], [], []))
    (u,) = p.updates
    assert u.status == "waiting"
    assert u.detail is not None and u.detail["reason"] == "parent e id=9 does not exist on app"


def test_an_unchanged_reference_is_agreed_in_each_sides_ids_and_not_written() -> None:
    boss_a, boss_b = ra(1), rb(1001, 1)
    a0, b0 = ra(2, boss=1), rb(1002, 2, boss_id=1001)
    a1 = ra(2, boss=1, name="renamed")
    links = [link(boss_a, boss_b), link(a0, b0)]
    p = Planner(emap()).plan(
        [entry("app", Op.UPDATE, a1, {"id": 2})], ctx([boss_a, a1], [boss_b, b0], links)
    )
    assert writes(p) == {"b": ("update", {"name": "renamed"})}


def test_a_reparenting_on_the_other_side_is_translated_back() -> None:
    x_a, x_b = ra(1), rb(1001, 1)
    y_a, y_b = ra(5), rb(1005, 5)
    a0, b0 = ra(2, boss=1), rb(1002, 2, boss_id=1001)
    b1 = rb(1002, 2, boss_id=1005)
    links = [link(x_a, x_b), link(y_a, y_b), link(a0, b0)]
    p = Planner(emap()).plan(
        [entry("shop", Op.UPDATE, b1, {"id": 1002})], ctx([x_a, y_a, a0], [x_b, y_b, b1], links)
    )
    assert writes(p) == {"a": ("update", {"boss": 5})}


def test_a_circle_is_inserted_without_the_reference_then_set_from_the_held_shadow() -> None:
    x, y = ra(4, boss=5), ra(5, boss=4)
    entries = [entry("app", Op.INSERT, x, {"id": 4}), entry("app", Op.INSERT, y, {"id": 5})]
    first = Planner(emap()).plan(entries, ctx([x, y], [], [], present_a=(4, 5)))
    assert first.writes == [] and first.waiting_parent == 2
    assert _cycles(first.waits) == {
        ("e", "a", key_text({"id": 4})),
        ("e", "a", key_text({"id": 5})),
    }
    held = Planner(emap()).plan(
        entries, ctx([x, y], [], [], present_a=(4, 5)), _cycles(first.waits)
    )
    assert sorted(w.values["boss_id"] is None for w in held.writes) == [True, True]
    assert all(r.hold for r in held.records)
    for r in held.records:
        assert r.shadow is not None
        assert "boss" not in r.shadow["a"] and r.shadow["b"]["boss_id"] is None
    # the next pass: both linked, the shadow knows no agreed reference on app
    x_b, y_b = rb(1004, 4), rb(1005, 5)
    shadow_x = dict(held.records[0].shadow or {})
    links = [
        Link("s", "e", {"id": 4}, {"id": 1004}, shadow_x, None),
        Link("s", "e", {"id": 5}, {"id": 1005}, dict(held.records[1].shadow or {}), None),
    ]
    again = Planner(emap()).plan(entries, ctx([x, y], [x_b, y_b], links))
    assert sorted(w.values["boss_id"] for w in again.writes) == [1004, 1005]
    assert again.conflicts == 0


def test_a_chain_is_not_a_circle() -> None:
    waits = [(("e", "a", "3"), ("e", "a", "2")), (("e", "a", "2"), ("e", "a", "1"))]
    assert _cycles(waits) == frozenset()
