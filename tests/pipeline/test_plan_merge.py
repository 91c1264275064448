"""The planner and the merge rules, table-driven, without servers (pure planning)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from syncswim_lib.config.models import ConflictRule, Conflicts, FrozenDict
from syncswim_lib.envelope import (
    BinlogPosition,
    Change,
    Op,
    PgPosition,
    ReplayPosition,
    WatermarkPosition,
)
from syncswim_lib.pipeline.mapping import EntityMap, SideView
from syncswim_lib.pipeline.plan import ChunkContext, Plan, Planner
from syncswim_lib.pipeline.resolve import SECOND, Clock, FieldConflict, decide, newer
from syncswim_lib.state.base import ConflictRecord, JournalEntry, Link
from syncswim_lib.values import ColumnInfo, TableInfo
from syncswim_lib.values.codec import key_text

T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)

A_COLS = (
    ColumnInfo("id", "int", "integer", auto_generated=True),
    ColumnInfo("code", "text", "text"),
    ColumnInfo("name", "text", "text"),
    ColumnInfo("amount", "decimal", "numeric(20,6)", precision=20, scale=6),
    ColumnInfo("score", "int", "integer"),
)
B_COLS = (
    ColumnInfo("id", "int", "int", auto_generated=True),
    ColumnInfo("app_id", "int", "int"),
    ColumnInfo("code", "text", "varchar(20)"),
    ColumnInfo("name", "text", "varchar(50)"),
    ColumnInfo("amount", "decimal", "decimal(12,2)", precision=12, scale=2),
    ColumnInfo("score", "int", "int"),
)
FIELDS = (
    ("name", "name", None, None),
    ("amount", "amount", None, None),
    ("score", "score", None, None),
)


def emap(
    mode: str = "external_id",
    conflicts: Conflicts | None = None,
) -> EntityMap:
    ta = TableInfo("public.t", A_COLS, ("id",))
    tb = TableInfo("t", B_COLS, ("id",))
    cols = ("name", "amount", "score")
    if mode == "external_id":
        a = SideView("a", "app", ta, ("id",), "code", cols)
        b = SideView("b", "shop", tb, ("id",), "code", cols)
        return EntityMap("s", "e", a, b, "external_id", None, FIELDS, conflicts)
    a = SideView("a", "app", ta, ("id",), None, cols)
    b = SideView("b", "shop", tb, ("id",), "app_id", cols)
    return EntityMap("s", "e", a, b, "system_of_record", "a", FIELDS, conflicts)


_ids = iter(range(1, 1_000_000))


def entry(
    side: str,
    op: Op,
    row: dict[str, Any] | None,
    key: dict[str, Any],
    at: datetime | None = T0,
    before: dict[str, Any] | None = None,
    origin: str | None = None,
    attempts: int = 0,
) -> JournalEntry:
    n = next(_ids)
    pos = PgPosition(n) if side == "app" else BinlogPosition("binlog.000001", n)
    table = "public.t" if side == "app" else "t"
    after = row if op != Op.DELETE else None
    if op == Op.DELETE:
        before = row
    ch = Change(op, table, key, after, before, pos, at, T0, origin)
    return JournalEntry(n, "s", "e", side, ch, "pending", None, None, None, attempts)


def ctx(
    rows_a: list[dict[str, Any]],
    rows_b: list[dict[str, Any]],
    links: list[Link] = (),  # type: ignore[assignment]
    ext: tuple[str, str] | None = ("code", "code"),
    conflicts: list[ConflictRecord] = (),  # type: ignore[assignment]
    full: bool = False,
) -> ChunkContext:
    by_key: dict[str, dict[str, Link]] = {"a": {}, "b": {}}
    by_ext: dict[str, Link] = {}
    for link in links:
        if link.key_a:
            by_key["a"][key_text(link.key_a)] = link
        if link.key_b:
            by_key["b"][key_text(link.key_b)] = link
        if link.ext_id:
            by_ext[link.ext_id] = link
    rows = {
        "a": {key_text({"id": r["id"]}): r for r in rows_a},
        "b": {key_text({"id": r["id"]}): r for r in rows_b},
    }
    rows_by_ext: dict[str, dict[str, list[dict[str, Any]]]] = {"a": {}, "b": {}}
    if ext is not None:
        for letter, col, rs in (("a", ext[0], rows_a), ("b", ext[1], rows_b)):
            for r in rs:
                if r.get(col) is not None:
                    rows_by_ext[letter].setdefault(str(r[col]), []).append(r)
    return ChunkContext(by_key, by_ext, rows, rows_by_ext, conflicts, full)


def row_a(
    id: int = 1,
    code: str | None = "C1",
    name: str = "Ada",
    amount: str = "1.234567",
    score: int = 1,
) -> dict[str, Any]:
    return {"id": id, "code": code, "name": name, "amount": Decimal(amount), "score": score}


def row_b(
    id: int = 100,
    code: str | None = "C1",
    name: str = "Ada",
    amount: str = "1.23",
    score: int = 1,
    app_id: int | None = None,
) -> dict[str, Any]:
    return {
        "id": id,
        "app_id": app_id,
        "code": code,
        "name": name,
        "amount": Decimal(amount),
        "score": score,
    }


def shadow_of(a: dict[str, Any], b: dict[str, Any], sor: bool = False) -> dict[str, Any]:
    ta = ("name", "amount", "score") + (() if sor else ("code",))
    tb = ("name", "amount", "score") + (("app_id",) if sor else ("code",))
    return {"a": {c: a[c] for c in ta}, "b": {c: b[c] for c in tb}}


def linked(a: dict[str, Any], b: dict[str, Any], sor: bool = False) -> Link:
    return Link(
        "s", "e", {"id": a["id"]}, {"id": b["id"]}, shadow_of(a, b, sor), None if sor else a["code"]
    )


def writes(plan: Plan) -> dict[str, tuple[str, dict[str, Any]]]:
    return {w.target: (w.action, w.values) for w in plan.writes}


# -- the merge table ---------------------------------------------------------------------


def test_different_fields_changed_on_each_side_both_flow() -> None:
    a0, b0 = row_a(), row_b()
    link = linked(a0, b0)
    a1, b1 = row_a(name="Ada L."), row_b(score=7)
    p = Planner(emap()).plan(
        [entry("app", Op.UPDATE, a1, {"id": 1}), entry("shop", Op.UPDATE, b1, {"id": 100})],
        ctx([a1], [b1], [link]),
    )
    assert writes(p) == {"b": ("update", {"name": "Ada L."}), "a": ("update", {"score": 7})}
    assert p.conflicts == 0
    (rec,) = p.records
    assert rec.shadow is not None
    assert rec.shadow["a"]["score"] == 7 and rec.shadow["b"]["name"] == "Ada L."


def test_only_decided_fields_are_written_so_a_lossy_mapping_keeps_precision() -> None:
    a0, b0 = row_a(amount="123.456789"), row_b(amount="123.46")
    link = linked(a0, b0)
    b1 = row_b(amount="123.46", name="New")
    p = Planner(emap()).plan([entry("shop", Op.UPDATE, b1, {"id": 100})], ctx([a0], [b1], [link]))
    assert writes(p) == {"a": ("update", {"name": "New"})}
    (rec,) = p.records
    assert rec.shadow is not None and rec.shadow["a"]["amount"] == Decimal("123.456789")


def test_changed_on_both_to_equal_values_is_agreed_not_a_conflict() -> None:
    a0, b0 = row_a(), row_b()
    a1, b1 = row_a(name="Same"), row_b(name="Same")
    p = Planner(emap()).plan(
        [entry("app", Op.UPDATE, a1, {"id": 1}), entry("shop", Op.UPDATE, b1, {"id": 100})],
        ctx([a1], [b1], [linked(a0, b0)]),
    )
    assert p.writes == [] and p.conflicts == 0
    assert p.records[0].shadow["a"]["name"] == "Same"  # type: ignore[index]


def test_lossy_value_written_back_counts_as_agreed() -> None:
    # a's precise amount flowed to b rounded; the next look must not see a conflict
    a0, b0 = row_a(amount="1.000000"), row_b(amount="1.00")
    a1, b1 = row_a(amount="5.555555"), row_b(amount="5.56")
    p = Planner(emap()).plan(
        [entry("app", Op.UPDATE, a1, {"id": 1}), entry("shop", Op.UPDATE, b1, {"id": 100})],
        ctx([a1], [b1], [linked(a0, b0)]),
    )
    assert p.writes == [] and p.conflicts == 0


def _both_changed(
    rule: ConflictRule, t_a: datetime, t_b: datetime, tie_break: str = "a", **kw: Any
) -> Plan:
    conflicts = Conflicts(rule, FrozenDict(), tie_break=tie_break)  # type: ignore[arg-type]
    a0, b0 = row_a(score=5), row_b(score=5)
    a1, b1 = row_a(score=kw.get("sa", 8)), row_b(score=kw.get("sb", 3))
    return Planner(emap(conflicts=conflicts)).plan(
        [
            entry("app", Op.UPDATE, a1, {"id": 1}, at=t_a),
            entry("shop", Op.UPDATE, b1, {"id": 100}, at=t_b),
        ],
        ctx([a1], [b1], [linked(a0, b0)]),
    )


@pytest.mark.parametrize(
    ("rule", "t_a", "t_b", "winner", "tie"),
    [
        (ConflictRule("prefer", prefer="a"), T0, T0 + timedelta(hours=1), "a", False),
        (ConflictRule("prefer", prefer="b"), T0 + timedelta(hours=1), T0, "b", False),
        (ConflictRule("newest"), T0 + timedelta(seconds=5), T0, "a", False),
        (ConflictRule("newest"), T0 - timedelta(seconds=5), T0, "b", False),
        # b is a binlog time (whole seconds): a at T0+0.3s cannot be ordered against it
        (ConflictRule("newest"), T0 + timedelta(milliseconds=300), T0, "a", True),
        (ConflictRule("newest"), T0 - timedelta(milliseconds=300), T0, "b", False),
        (ConflictRule("max"), T0, T0, "a", False),
        (ConflictRule("min"), T0, T0, "b", False),
    ],
)
def test_field_rules_decide_and_record(
    rule: ConflictRule, t_a: datetime, t_b: datetime, winner: str, tie: bool
) -> None:
    p = _both_changed(rule, t_a, t_b)
    assert p.conflicts == 1
    (rec,) = p.records
    (c,) = rec.conflicts
    assert (c.field, c.outcome, c.tie, c.status) == ("score", winner, tie, "decided")
    assert (c.value_a, c.value_b, c.base_a) == (8, 3, 5)
    loser = "b" if winner == "a" else "a"
    assert writes(p) == {loser: ("update", {"score": 8 if winner == "a" else 3})}


def test_tie_break_names_the_side_that_wins_a_tie() -> None:
    p = _both_changed(ConflictRule("newest"), T0 + timedelta(milliseconds=300), T0, tie_break="b")
    (c,) = p.records[0].conflicts
    assert c.tie and c.outcome == "b"


def test_non_null_keeps_the_value_that_is_set() -> None:
    conflicts = Conflicts(ConflictRule("non_null"), FrozenDict())
    a0, b0 = row_a(name="x"), row_b(name="x")
    a1, b1 = {**row_a(), "name": None}, row_b(name="kept")
    p = Planner(emap(conflicts=conflicts)).plan(
        [entry("app", Op.UPDATE, a1, {"id": 1}), entry("shop", Op.UPDATE, b1, {"id": 100})],
        ctx([a1], [b1], [linked(a0, b0)]),
    )
    assert writes(p) == {"a": ("update", {"name": "kept"})}


def test_custom_rule_gets_both_values_base_and_times() -> None:
    seen: list[tuple[Any, ...]] = []

    def total(a: Any, b: Any, base: Any, ts_a: Any, ts_b: Any) -> Any:
        seen.append((a, b, base, ts_a, ts_b))
        return a + b - base

    rule = ConflictRule("rule", rule="m:total", func=total)
    p = _both_changed(rule, T0, T0 + SECOND)
    assert seen == [(8, 3, 5, T0, T0 + SECOND)]
    assert writes(p) == {"a": ("update", {"score": 6}), "b": ("update", {"score": 6})}


def test_custom_rule_that_raises_parks_the_record() -> None:
    def boom(*_: Any) -> Any:
        raise ZeroDivisionError("no")

    p = _both_changed(ConflictRule("rule", rule="m:boom", func=boom), T0, T0)
    assert p.writes == [] and p.failed == 1
    assert {u.status for u in p.updates} == {"failed"}
    assert "m:boom raised ZeroDivisionError" in p.updates[0].detail["error"]  # type: ignore[index]


def test_custom_rule_returning_a_wrong_type_parks_the_record() -> None:
    p = _both_changed(ConflictRule("rule", rule="m:bad", func=lambda *_: "many"), T0, T0)
    assert p.failed == 1 and "does not fit" in p.updates[0].detail["error"]  # type: ignore[index]


def test_manual_parks_the_field_and_the_rest_syncs() -> None:
    conflicts = Conflicts(ConflictRule("newest"), FrozenDict({"score": ConflictRule("manual")}))
    a0, b0 = row_a(score=5), row_b(score=5)
    a1, b1 = row_a(score=8, name="N"), row_b(score=3)
    p = Planner(emap(conflicts=conflicts)).plan(
        [entry("app", Op.UPDATE, a1, {"id": 1}), entry("shop", Op.UPDATE, b1, {"id": 100})],
        ctx([a1], [b1], [linked(a0, b0)]),
    )
    assert writes(p) == {"b": ("update", {"name": "N"})}
    (c,) = p.records[0].conflicts
    assert c.status == "open" and c.outcome == "manual"
    assert p.records[0].shadow["a"]["score"] == 5  # type: ignore[index]  # base kept


def test_a_resolved_conflict_is_written_to_both_sides() -> None:
    a0, b0 = row_a(score=5), row_b(score=5)
    a1, b1 = row_a(score=8), row_b(score=3)
    open_ = ConflictRecord(
        "s",
        "e",
        {"id": 1},
        {"id": 100},
        "C1",
        "score",
        5,
        5,
        8,
        3,
        T0,
        T0,
        "manual",
        "value",
        42,
        status="resolved",
        id=9,
    )
    p = Planner(emap()).plan(
        [entry("app", Op.UPDATE, a1, {"id": 1})],
        ctx([a1], [b1], [linked(a0, b0)], conflicts=[open_]),
    )
    assert writes(p) == {"a": ("update", {"score": 42}), "b": ("update", {"score": 42})}
    (c,) = p.records[0].conflicts
    assert c.id == 9 and c.status == "applied"


def test_owns_all_overwrites_the_other_sides_edit() -> None:
    conflicts = Conflicts(ConflictRule("prefer", prefer="a"), FrozenDict(), owns_all=True)
    a0, b0 = row_a(), row_b(app_id=1)
    b1 = row_b(app_id=1, name="edited on b")
    p = Planner(emap("system_of_record", conflicts)).plan(
        [entry("shop", Op.UPDATE, b1, {"id": 100})],
        ctx([a0], [b1], [linked(a0, b0, sor=True)], ext=None),
    )
    assert writes(p) == {"b": ("update", {"name": "Ada"})}


# -- creates, deletes, update vs delete ---------------------------------------------------


def test_new_row_is_created_with_its_external_id() -> None:
    a1 = row_a(code="NEW")
    p = Planner(emap()).plan([entry("app", Op.INSERT, a1, {"id": 1})], ctx([a1], []))
    assert writes(p) == {
        "b": ("insert", {"name": "Ada", "amount": Decimal("1.23"), "score": 1, "code": "NEW"})
    }


def test_sor_row_created_on_the_other_side_gets_its_key_and_write_back() -> None:
    b1 = row_b(app_id=None)
    p = Planner(emap("system_of_record")).plan(
        [entry("shop", Op.INSERT, b1, {"id": 100})], ctx([], [b1], ext=None)
    )
    (rec,) = p.records
    assert rec.write_back and writes(p)["a"][0] == "insert"


def test_delete_flows_when_the_other_side_did_not_change() -> None:
    a0, b0 = row_a(), row_b()
    p = Planner(emap()).plan(
        [entry("shop", Op.DELETE, b0, {"id": 100})], ctx([a0], [], [linked(a0, b0)])
    )
    assert writes(p) == {"a": ("delete", {})}
    assert p.records[0].drop_link


@pytest.mark.parametrize("deleted_on", ["app", "shop"])
def test_update_vs_delete_keeps_the_update_and_recreates(deleted_on: str) -> None:
    a0, b0 = row_a(), row_b()
    if deleted_on == "shop":
        a1 = row_a(name="updated")
        es = [entry("app", Op.UPDATE, a1, {"id": 1}), entry("shop", Op.DELETE, b0, {"id": 100})]
        c = ctx([a1], [], [linked(a0, b0)])
        target = "b"
    else:
        b1 = row_b(name="updated")
        es = [entry("shop", Op.UPDATE, b1, {"id": 100}), entry("app", Op.DELETE, a0, {"id": 1})]
        c = ctx([], [b1], [linked(a0, b0)])
        target = "a"
    p = Planner(emap()).plan(es, c)
    action, values = writes(p)[target]
    assert action == "insert" and values["name"] == "updated"
    (conf,) = p.records[0].conflicts
    assert conf.field == "__record__" and conf.rule == "on_delete:keep"


def test_update_vs_delete_with_on_delete_delete() -> None:
    conflicts = Conflicts(ConflictRule("newest"), FrozenDict(), on_delete="delete")
    a0, b0 = row_a(), row_b()
    a1 = row_a(name="updated")
    p = Planner(emap(conflicts=conflicts)).plan(
        [entry("app", Op.UPDATE, a1, {"id": 1}), entry("shop", Op.DELETE, b0, {"id": 100})],
        ctx([a1], [], [linked(a0, b0)]),
    )
    assert writes(p) == {"a": ("delete", {})}
    assert p.records[0].conflicts[0].value_a["name"] == "updated"


def _record_conflict(kept: dict[str, Any], status: str, outcome: str) -> ConflictRecord:
    """An update-vs-delete conflict: updated on app (its row as `kept`), deleted on shop."""
    return ConflictRecord(
        "s",
        "e",
        {"id": 1},
        {"id": 100},
        "C1",
        "__record__",
        None,
        None,
        {c: kept[c] for c in ("code", "name", "amount", "score")},
        None,
        T0,
        T0,
        "on_delete:keep",
        outcome,
        None,
        status=status,  # type: ignore[arg-type]
        id=7,
    )


def test_an_update_vs_delete_resolved_for_the_delete_deletes_both_sides() -> None:
    # kept on app, recreated on shop (id 200); then a person chose the delete
    a1, b1 = row_a(name="updated"), row_b(id=200, name="updated", amount="1.23")
    chosen = _record_conflict(a1, "resolved", "b")
    p = Planner(emap()).plan(
        [entry("app", Op.UPDATE, None, {"id": 1})],
        ctx(
            [a1],
            [b1],
            [Link("s", "e", {"id": 1}, {"id": 200}, shadow_of(a1, b1), "C1")],
            conflicts=[chosen],
        ),
    )
    assert {w.target: (w.action, w.key) for w in p.writes} == {
        "a": ("delete", {"id": 1}),
        "b": ("delete", {"id": 200}),
    }
    # compare-and-set on what each row holds now
    assert {w.target: w.expected["name"] for w in p.writes} == {"a": "updated", "b": "updated"}  # type: ignore[index]
    (rec,) = p.records
    assert rec.drop_link
    (c,) = rec.conflicts
    assert (c.id, c.status) == (7, "applied")


def test_an_update_vs_delete_resolved_for_the_delete_keeps_a_row_changed_since() -> None:
    a1, b1 = row_a(name="updated"), row_b(id=200, name="updated", amount="1.23")
    a2 = row_a(name="edited again")
    chosen = _record_conflict(a1, "resolved", "b")
    p = Planner(emap()).plan(
        [entry("app", Op.UPDATE, a2, {"id": 1})],
        ctx(
            [a2],
            [b1],
            [Link("s", "e", {"id": 1}, {"id": 200}, shadow_of(a1, b1), "C1")],
            conflicts=[chosen],
        ),
    )
    # not deleted: the edit made since flows as any edit does
    assert writes(p) == {"b": ("update", {"name": "edited again"})}
    (rec,) = p.records
    assert not rec.drop_link
    (c,) = rec.conflicts
    assert (c.id, c.status, c.outcome) == (7, "decided", "a")
    assert "not applied" in (c.note or "") and "name" in (c.note or "")


def test_a_row_missing_without_a_captured_delete_waits_for_the_next_run() -> None:
    a0, b0 = row_a(), row_b()
    a1 = row_a(name="x")
    e = entry("app", Op.UPDATE, a1, {"id": 1})
    p = Planner(emap()).plan([e], ctx([a1], [], [linked(a0, b0)]))
    assert p.writes == [] and p.release == [e.id] and p.deferred == 1
    # in a full run the snapshot is the evidence
    p = Planner(emap()).plan([e], ctx([a1], [], [linked(a0, b0)], full=True))
    assert writes(p)["b"][0] == "insert"


# -- identity --------------------------------------------------------------------------


@pytest.mark.parametrize("seen", [True, False])
def test_a_full_run_believes_an_absence_only_its_snapshot_did_not_see(seen: bool) -> None:
    """A row this run's snapshot read and that is gone when planning vanished during the
    run (a key change, a late delete): the record waits for the next run's capture. A row
    the snapshot did not find is missing: the delete flows."""
    a0, b0 = row_a(), row_b()
    es = [entry("app", Op.SNAPSHOT, a0, {"id": 1})]
    if seen:
        es.append(entry("shop", Op.SNAPSHOT, b0, {"id": 100}))
    p = Planner(emap()).plan(es, ctx([a0], [], [linked(a0, b0)], full=True))
    if seen:
        assert p.writes == [] and p.deferred == 1
        assert sorted(p.release) == sorted(e.id for e in es)
    else:
        assert writes(p) == {"a": ("delete", {})}


def test_external_id_change_moves_the_link() -> None:
    a0, b0 = row_a(code="OLD"), row_b(code="OLD")
    a1 = row_a(code="NEW")
    p = Planner(emap()).plan(
        [entry("app", Op.UPDATE, a1, {"id": 1})], ctx([a1], [b0], [linked(a0, b0)])
    )
    assert writes(p) == {"b": ("update", {"code": "NEW"})}
    assert p.records[0].ext_id == "NEW"


def test_key_change_on_the_non_sor_side_is_an_update_of_the_same_record() -> None:
    a0, b0 = row_a(), row_b(id=100, app_id=1)
    b1 = row_b(id=555, app_id=1, name="moved")
    e = entry("shop", Op.UPDATE, b1, {"id": 555}, before=b0)
    p = Planner(emap("system_of_record")).plan(
        [e], ctx([a0], [b1], [linked(a0, b0, sor=True)], ext=None)
    )
    assert writes(p) == {"a": ("update", {"name": "moved"})}
    (rec,) = p.records
    assert rec.key_b == {"id": 555} and rec.key_a == {"id": 1}


def test_duplicate_external_ids_are_parked_not_merged() -> None:
    b1, b2 = row_b(id=100, code="DUP"), row_b(id=101, code="DUP", name="other")
    p = Planner(emap()).plan(
        [entry("shop", Op.INSERT, b1, {"id": 100}), entry("shop", Op.INSERT, b2, {"id": 101})],
        ctx([], [b1, b2]),
    )
    assert p.writes == [] and p.failed == 2
    assert all("duplicate external id 'DUP'" in u.detail["error"] for u in p.updates)  # type: ignore[index]


def test_echo_of_our_own_write_is_skipped() -> None:
    a1 = row_a()
    p = Planner(emap()).plan([entry("app", Op.UPDATE, a1, {"id": 1}, origin="s")], ctx([a1], []))
    assert p.writes == [] and p.skipped == 1


def test_row_without_external_id_waits() -> None:
    a1 = row_a(code=None)
    p = Planner(emap()).plan([entry("app", Op.INSERT, a1, {"id": 1})], ctx([a1], []))
    assert p.waiting == 1 and p.updates[0].status == "waiting"


# -- clocks ------------------------------------------------------------------------------


def test_clock_intervals() -> None:
    pg = Clock(T0 + timedelta(milliseconds=400))
    binlog = Clock(T0, SECOND)
    assert newer(pg, binlog) is None and newer(binlog, pg) is None
    assert newer(Clock(T0 + timedelta(seconds=1)), binlog) == "a"
    assert newer(Clock(T0 - timedelta(microseconds=1)), binlog) == "b"
    assert newer(Clock(None), pg) is None


def test_the_precision_of_each_source_from_its_position() -> None:
    at = T0 + timedelta(milliseconds=400)
    pg = Clock.of_position(at, PgPosition(100, 0))
    assert pg.precision == timedelta(microseconds=1)
    assert Clock.of_position(T0, BinlogPosition("binlog.000001", 4)).precision == SECOND
    assert Clock.of_position(T0, ReplayPosition(7)).precision == timedelta(milliseconds=1)
    # a polled row's modification time: a second wide, so an edit 400 ms after it on
    # PostgreSQL is a tie, not "PostgreSQL is newer" (the column may hold whole seconds)
    polled = Clock.of_position(T0, WatermarkPosition("cursor", ("k",)))
    assert polled.precision == SECOND
    assert newer(pg, polled) is None and newer(polled, pg) is None
    assert newer(Clock(T0 + SECOND), polled) == "a"


def test_decide_max_refuses_values_it_cannot_compare() -> None:
    from syncswim_lib.errors import RecordError

    fc = FieldConflict("x", 1, "a", None, Clock(T0), Clock(T0))
    with pytest.raises(RecordError, match="cannot compare"):
        decide(ConflictRule("max"), fc, "a")


@pytest.mark.parametrize(("digits", "tie"), [(6, False), (0, True)])
def test_a_clock_column_orders_by_its_own_precision(digits: int, tie: bool) -> None:
    from dataclasses import replace

    seen = ColumnInfo("changed_at", "timestamptz", f"datetime({digits})", precision=digits)
    base = emap()
    b_side = replace(base.b, info=TableInfo("t", (*B_COLS, seen), ("id",)))
    m = replace(base, b=b_side, clock={"b": "changed_at"})
    a0, b0 = row_a(score=5), row_b(score=5)
    a1 = row_a(score=8)
    # b changed at T0 + 0.5 s (a whole-second column stores T0); a's commit is at T0 + 0.3 s
    stamp = T0 + timedelta(milliseconds=500) if digits == 6 else T0
    b1 = {**row_b(score=3), "changed_at": stamp}
    p = Planner(m).plan(
        [
            entry("app", Op.UPDATE, a1, {"id": 1}, at=T0 + timedelta(milliseconds=300)),
            entry("shop", Op.UPDATE, b1, {"id": 100}, at=T0),
        ],
        ctx([a1], [b1], [linked(a0, b0)]),
    )
    (c,) = p.records[0].conflicts
    assert c.tie is tie
    # with whole seconds the clock says "somewhere in T0 .. T0+1s": a tie, side a by default
    assert c.outcome == ("a" if tie else "b")
