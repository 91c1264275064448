"""The merge core end to end: PostgreSQL (`app`, side a) ⇄ MariaDB (`shop`, side b) through
the Dagster materialisation of `app_shop/customers`, on private real servers.

Each test states the behaviour DESIGN.md ("How a merge decides") promises: three-way,
field by field, conflicts decided by the declared rule and recorded, lossy mappings never
rewriting what nobody changed, identity following key and external-id changes, writes
that never overwrite a row changed underneath, bad values parked instead of mangled.
"""

from __future__ import annotations

import contextlib
import io
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.merge_harness import (
    MergeDbs,
    Schema,
    Side,
    customers,
    ext_customers,
    other,
    same_second_edits,
    sor_customers,
)

pytestmark = pytest.mark.integration

MODES = ["sor", "ext"]
SIDES: tuple[Side, Side] = ("app", "shop")
NO_WRITES = {"inserted": 0, "updated": 0, "deleted": 0}


@pytest.fixture
def m(
    pg_dsn: str, mysql_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MergeDbs]:
    dbs = MergeDbs(pg_dsn, mysql_dsn, tmp_path)
    for k, v in dbs.env().items():
        monkeypatch.setenv(k, v)
    yield dbs
    dbs.close()


def _one_record(m: MergeDbs, schema: Schema, side: Side = "app", **values: Any) -> None:
    """The schema, capture set up, one record created on `side` and synced."""
    m.create(schema)
    m.run()  # sets up capture before the first change
    m.insert(side, **values)
    m.run()
    assert len(m.rows("app")) == len(m.rows("shop")) == 1


def _field(m: MergeDbs, side: Side, column: str) -> list[Any]:
    return [r[column] for r in m.rows(side)]


def _conflicts_on(m: MergeDbs, field: str) -> list[Any]:
    return [c for c in m.conflicts() if c.field == field]


def _settled(m: MergeDbs) -> None:
    again = m.run()
    assert again.side_writes("app") == NO_WRITES, again.meta
    assert again.side_writes("shop") == NO_WRITES, again.meta


# 1. different fields changed on the two sides -------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_different_fields_edited_on_both_sides_both_survive(m: MergeDbs, mode: str) -> None:
    _one_record(m, customers(mode))
    m.exec("app", "UPDATE customers SET name = 'name from app'")
    m.exec("shop", "UPDATE customers SET email = 'email@shop'")
    m.run()
    expected = [("name from app", "email@shop", "t0")]
    assert m.values("app") == expected
    assert m.values("shop") == expected
    _settled(m)
    assert m.conflicts() == []  # different fields are no conflict


# 2. declared rules for a field both sides changed ---------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_prefer_rule_decides_a_field_both_sides_changed(m: MergeDbs, mode: str) -> None:
    # SOR mode would prefer the app by default, `newest` the app's later edit: the field's
    # own rule says the shop
    _one_record(m, customers(mode, conflicts="{fields: {notes: {prefer: shop}}}"))
    m.exec("shop", "UPDATE customers SET notes = 'notes from shop'")
    m.exec("app", "UPDATE customers SET notes = 'notes from app', name = 'app name'")
    m.run()
    assert _field(m, "app", "notes") == _field(m, "shop", "notes") == ["notes from shop"]
    assert _field(m, "shop", "name") == ["app name"]  # the rest of the record still flows
    _settled(m)
    [rec] = _conflicts_on(m, "notes")
    assert (rec.outcome, rec.value) == ("b", "notes from shop")
    assert (rec.value_a, rec.value_b) == ("notes from app", "notes from shop")  # loser kept
    assert (rec.base_a, rec.base_b) == ("t0", "t0")


RULE_MODULE = '''
def concat(a, b, *rest):
    """Both sides' notes, side a's first."""
    return f"{a} | {b}"
'''


@pytest.mark.parametrize("mode", MODES)
def test_custom_rule_decides_a_field_both_sides_changed(m: MergeDbs, mode: str) -> None:
    module = f"merge_rules_{uuid.uuid4().hex[:8]}"  # a fresh name: modules stay imported
    (m.workdir / f"{module}.py").write_text(RULE_MODULE)  # next to the YAML
    schema = customers(mode, conflicts=f'{{fields: {{notes: {{rule: "{module}:concat"}}}}}}')
    _one_record(m, schema)
    m.exec("app", "UPDATE customers SET notes = 'app says'")
    m.exec("shop", "UPDATE customers SET notes = 'shop says'")
    m.run()
    assert _field(m, "app", "notes") == _field(m, "shop", "notes") == ["app says | shop says"]
    _settled(m)
    [rec] = _conflicts_on(m, "notes")
    assert (rec.outcome, rec.value) == ("value", "app says | shop says")
    assert (rec.value_a, rec.value_b) == ("app says", "shop says")
    assert rec.rule == f"rule:{module}:concat"


# 3. `newest` at the precision each source really has ------------------------------------


@pytest.mark.parametrize("first", SIDES)
def test_newest_within_one_binlog_second_is_a_tie(m: MergeDbs, first: Side) -> None:
    _one_record(m, ext_customers())
    edit = {
        "app": lambda: m.exec("app", "UPDATE customers SET name = 'app edit'"),
        "shop": lambda: m.exec("shop", "UPDATE customers SET name = 'shop edit'"),
    }
    # the binlog stamps the MariaDB commit with its whole second: the two commits, a
    # fraction of a second apart inside one second, cannot be ordered
    same_second_edits(edit[first], edit[other(first)])
    m.run()
    # the declared tie-break decides (default in external-id mode: side a)
    assert _field(m, "app", "name") == _field(m, "shop", "name") == ["app edit"]
    _settled(m)
    [rec] = _conflicts_on(m, "name")
    assert rec.tie is True
    assert rec.outcome == "a"
    assert (rec.value_a, rec.value_b) == ("app edit", "shop edit")


def test_newest_with_a_declared_clock_column_picks_the_truly_newer_edit(m: MergeDbs) -> None:
    _one_record(m, ext_customers(clock=True))

    def app_edit() -> None:
        m.exec("app", "UPDATE customers SET name = 'app edit'")

    def shop_edit() -> None:  # after the app's commit, to the microsecond
        now = datetime.now(UTC).replace(tzinfo=None)
        m.exec("shop", "UPDATE customers SET name = 'shop edit', updated_at = %s", (now,))

    same_second_edits(app_edit, shop_edit)
    m.run()
    assert _field(m, "app", "name") == _field(m, "shop", "name") == ["shop edit"]
    _settled(m)
    [rec] = _conflicts_on(m, "name")
    assert (rec.outcome, rec.tie) == ("b", False)
    assert rec.value_a == "app edit"


# 4. only the fields the merge decided are written ---------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_edit_on_mariadb_writes_only_that_field_to_postgres(m: MergeDbs, mode: str) -> None:
    seen = datetime(2026, 3, 4, 5, 6, 7, 891234, tzinfo=UTC)
    _one_record(m, customers(mode, lossy=True), amount=Decimal("123.456789"), seen_at=seen)
    shop = m.rows("shop")[0]
    assert shop["amount"] == Decimal("123.46")  # the shop holds what its columns can
    m.exec("shop", "UPDATE customers SET name = 'renamed in shop'")
    m.run()
    app = m.rows("app")[0]
    assert app["name"] == "renamed in shop"
    assert app["amount"] == Decimal("123.456789")  # not rounded by the shop's decimal(12,2)
    assert app["seen_at"] == seen  # microseconds kept: the shop's datetime has none
    _settled(m)


# 5. an external-id change moves the link -------------------------------------------------


@pytest.mark.parametrize("changed_on", SIDES)
def test_external_id_change_moves_the_link(m: MergeDbs, changed_on: Side) -> None:
    _one_record(m, ext_customers(), code="C-OLD", name="original")
    m.exec(changed_on, "UPDATE customers SET code = 'C-NEW'")
    m.run()
    for side in SIDES:
        assert [(r["code"], r["name"]) for r in m.rows(side)] == [("C-NEW", "original")]
    far = other(changed_on)
    # C-OLD is free now: a row that takes it is a new record, not the moved one
    m.insert(far, code="C-OLD", name="newcomer")
    m.run()
    for side in SIDES:
        got = sorted((r["code"], r["name"]) for r in m.rows(side))
        assert got == [("C-NEW", "original"), ("C-OLD", "newcomer")], side
    _settled(m)


# 6. a primary-key change is an update of the same record --------------------------------

PK_CASES = [
    pytest.param("sor", "app", "shop", id="sor_app-key_changed_on_shop"),
    pytest.param("sor", "shop", "app", id="sor_shop-key_changed_on_app"),
    pytest.param("ext", None, "app", id="ext-key_changed_on_app"),
    pytest.param("ext", None, "shop", id="ext-key_changed_on_shop"),
]


@pytest.mark.parametrize(("mode", "sor", "changed_on"), PK_CASES)
def test_primary_key_change_keeps_the_record(
    m: MergeDbs, mode: str, sor: Side | None, changed_on: Side
) -> None:
    schema = sor_customers(sor) if sor is not None else ext_customers()
    _one_record(m, schema, sor or "app", name="moving")
    far = other(changed_on)
    far_before = m.rows(far)
    old_id = m.rows(changed_on)[0]["id"]
    m.exec(changed_on, "UPDATE customers SET id = 7777 WHERE id = %s", (old_id,))
    m.run()
    assert m.rows(far) == far_before  # not deleted, not recreated, not touched
    assert _field(m, changed_on, "id") == [7777]
    # the link followed the new key: a later edit of that row flows
    m.exec(changed_on, "UPDATE customers SET name = 'after the move' WHERE id = 7777")
    m.run()
    assert _field(m, far, "name") == ["after the move"]
    assert _field(m, far, "id") == [far_before[0]["id"]]
    _settled(m)


# 7. update against delete (SOR mode) -----------------------------------------------------


@pytest.mark.parametrize("first", ["update", "delete"])
@pytest.mark.parametrize("updater", SIDES)
def test_update_against_delete_keeps_the_update(m: MergeDbs, updater: Side, first: str) -> None:
    _one_record(m, sor_customers("app"), name="n0")
    deleter = other(updater)

    def update() -> None:
        m.exec(updater, "UPDATE customers SET name = 'updated', notes = 'kept'")

    def delete() -> None:
        m.exec(deleter, "DELETE FROM customers")

    for step in (update, delete) if first == "update" else (delete, update):
        step()
    m.run()
    for side in SIDES:  # recreated where it was deleted, with the updated values
        assert [(r["name"], r["notes"]) for r in m.rows(side)] == [("updated", "kept")], side
    assert _field(m, "shop", "sor_id") == _field(m, "app", "id")
    _settled(m)
    assert _conflicts_on(m, "__record__"), "update against delete is a recorded conflict"


# 8. a row changed under a run's write; a divergence made behind the sync's back ----------


@pytest.mark.parametrize("target", SIDES)
@pytest.mark.parametrize("mode", MODES)
def test_row_changed_between_capture_and_apply_is_not_lost(
    m: MergeDbs, mode: str, target: Side
) -> None:
    _one_record(m, customers(mode))
    m.exec(other(target), "UPDATE customers SET name = 'source edit'")

    def late_edit() -> None:  # on the row the run is about to write, its own connection
        m.exec(target, "UPDATE customers SET name = 'late edit'")

    m.run_with_edit_after_capture(late_edit)
    m.run()
    names = {side: _field(m, side, "name") for side in SIDES}
    assert names["app"] == names["shop"], names  # the two sides agree again
    if names["app"] != ["late edit"]:
        # the earlier edit won: the later one must be on record, not silently gone
        recs = _conflicts_on(m, "name")
        assert any("late edit" in (c.value_a, c.value_b) for c in recs), recs
    _settled(m)


@pytest.mark.parametrize("both_written", [False, True])
@pytest.mark.parametrize("target", SIDES)
@pytest.mark.parametrize("mode", MODES)
def test_row_changed_between_planning_and_write_is_not_overwritten(
    m: MergeDbs, mode: str, target: Side, both_written: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write is compare-and-set: an edit that lands after the plan read the target row
    makes that write stale; nothing is overwritten and the next run merges again. With
    `both_written` the record's write to the other side goes through in the same run."""
    from syncswim_lib.pipeline.engine import EntityEngine

    _one_record(m, customers(mode))
    m.exec(other(target), "UPDATE customers SET name = 'source edit'")
    if both_written:
        m.exec(target, "UPDATE customers SET notes = 'target notes'")
    real = EntityEngine._apply_sides
    done: list[bool] = []

    def apply_after_an_edit(self: EntityEngine, plan: Any, batch_id: str) -> Any:
        if plan.writes and not done:
            m.exec(target, "UPDATE customers SET name = 'late edit'")
            done.append(True)
        return real(self, plan, batch_id)

    monkeypatch.setattr(EntityEngine, "_apply_sides", apply_after_an_edit)
    first = m.run()
    monkeypatch.setattr(EntityEngine, "_apply_sides", real)
    assert done and first.meta["stale_writes"] == 1, first.meta
    assert _field(m, target, "name") == ["late edit"]  # not overwritten
    m.run()
    names = {side: _field(m, side, "name") for side in SIDES}
    assert names["app"] == names["shop"], names
    recs = _conflicts_on(m, "name")
    assert any({"late edit", "source edit"} == {c.value_a, c.value_b} for c in recs), recs
    if both_written:
        assert {side: _field(m, side, "notes") for side in SIDES} == {
            "app": ["target notes"],
            "shop": ["target notes"],
        }
    _settled(m)


@pytest.mark.parametrize("reverted", SIDES)
@pytest.mark.parametrize("mode", MODES)
def test_a_revert_during_the_run_is_not_undone_by_the_other_sides_write(
    m: MergeDbs, mode: str, reverted: Side, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reverted` renames the record, the other side edits its notes; as the run writes
    both, `reverted` sets the name back. Its write goes stale, the other side's goes
    through: the revert is the newest edit and must win, not the rename it undid."""
    from syncswim_lib.pipeline.engine import EntityEngine

    _one_record(m, customers(mode), name="original")
    m.exec(reverted, "UPDATE customers SET name = 'renamed'")
    m.exec(other(reverted), "UPDATE customers SET notes = 'noted'")
    real = EntityEngine._apply_sides
    done: list[bool] = []

    def apply_after_a_revert(self: EntityEngine, plan: Any, batch_id: str) -> Any:
        if plan.writes and not done:
            m.exec(reverted, "UPDATE customers SET name = 'original'")
            done.append(True)
        return real(self, plan, batch_id)

    monkeypatch.setattr(EntityEngine, "_apply_sides", apply_after_a_revert)
    first = m.run()
    monkeypatch.setattr(EntityEngine, "_apply_sides", real)
    assert done and first.meta["stale_writes"] == 1, first.meta
    m.run()
    for side in SIDES:
        assert (_field(m, side, "name"), _field(m, side, "notes")) == (["original"], ["noted"])
    _settled(m)


@pytest.mark.parametrize("drift_on", SIDES)
def test_full_run_repairs_a_divergence_the_shadow_does_not_know(
    m: MergeDbs, drift_on: Side
) -> None:
    _one_record(m, sor_customers("app"), name="agreed")
    if drift_on == "shop":
        m.my_exec("SET SESSION sql_log_bin = 0")  # not in the binlog: capture never sees it
        m.my_exec("UPDATE customers SET name = 'drifted'")
        m.my_exec("SET SESSION sql_log_bin = 1")
    else:
        m.exec("app", "UPDATE customers SET name = 'drifted'")
        # move the sync's slot past the change: capture never sees it
        m.pg.execute(
            "SELECT pg_replication_slot_advance('syncswim_app_shop', pg_current_wal_lsn())"
        )
    assert m.values("app") != m.values("shop")
    m.run(full=True)
    assert m.values("app") == m.values("shop")
    _settled(m)


# 9. an external-id column that is not unique ---------------------------------------------

DUP_CASES = [
    pytest.param("sor", "shop", id="sor-shop_sor_id"),
    pytest.param("ext", "app", id="ext-app_code"),
    pytest.param("ext", "shop", id="ext-shop_code"),
]


def _non_unique(mode: str, side: Side) -> Schema:
    if mode == "sor":
        return sor_customers("app", unique_ext=False)
    return ext_customers(unique=(other(side),))


@pytest.mark.parametrize(("mode", "side"), DUP_CASES)
def test_validate_refuses_an_external_id_without_a_unique_index(
    m: MergeDbs, mode: str, side: Side
) -> None:
    schema = _non_unique(mode, side)
    m.create(schema)
    code, out = m.validate()
    assert code == 2, out
    assert "unique" in out.lower(), out
    assert schema.ext[side] in out, out


@pytest.mark.parametrize(("mode", "side"), DUP_CASES)
def test_duplicate_external_ids_are_parked_not_merged(m: MergeDbs, mode: str, side: Side) -> None:
    m.create(_non_unique(mode, side))
    m.run()
    far = other(side)
    if mode == "sor":
        m.exec("app", "INSERT INTO customers (id, name) VALUES (4242, 'original')")
        m.run()
        m.exec("shop", "INSERT INTO customers (sor_id, name) VALUES (4242, 'impostor')")
        dup = "4242"
    else:
        m.insert(side, code="C-DUP", name="first")
        m.insert(side, code="C-DUP", name="second")
        dup = "C-DUP"
    m.insert(side, code="C-OK", name="bystander")
    r = m.run()
    # the bystander synced; nothing of the duplicates became (or overwrote) a record
    far_names = sorted(_field(m, far, "name"))
    assert far_names == (["bystander", "original"] if mode == "sor" else ["bystander"])
    if mode == "sor":
        assert m.by("app", "id")[4242]["name"] == "original"
    failed = [e for e in m.entries(status="failed") if e.side == side]
    named = {e.change.after["name"] for e in failed if dup in str(e.detail)}
    # refused, with the duplicate named (in SOR mode at least the row that appeared)
    assert named >= ({"impostor"} if mode == "sor" else {"first", "second"}), [
        e.detail for e in failed
    ]
    assert r.failed >= len(named)


# 10. a declared key that is not the primary key ------------------------------------------


@pytest.mark.parametrize("changed_on", SIDES)
def test_declared_key_that_is_not_the_primary_key(m: MergeDbs, changed_on: Side) -> None:
    m.create(ext_customers(mrn_key=True))
    # the primary keys cross: the app's id 1 is M1, the shop's id 1 is M2
    m.exec(
        "app",
        "INSERT INTO customers (id, mrn, code, name) VALUES (1, 'M1', 'C1', 'one'),"
        " (2, 'M2', 'C2', 'two')",
    )
    m.exec(
        "shop",
        "INSERT INTO customers (id, mrn, code, name) VALUES (2, 'M1', 'C1', 'one'),"
        " (1, 'M2', 'C2', 'two')",
    )
    m.run(full=True)
    far = other(changed_on)
    m.exec(changed_on, "UPDATE customers SET name = 'one!' WHERE mrn = 'M1'")
    m.run()
    assert m.by(far, "mrn")["M1"]["name"] == "one!"
    m.exec(changed_on, "DELETE FROM customers WHERE mrn = 'M1'")
    m.run()
    assert [(r["id"], r["mrn"], r["name"]) for r in m.rows("app")] == [(2, "M2", "two")]
    assert [(r["id"], r["mrn"], r["name"]) for r in m.rows("shop")] == [(1, "M2", "two")]
    # the live changes are journaled under the declared key
    ops = {e.change.op.value for e in m.entries(key={"mrn": "M1"}) if e.side == changed_on}
    assert {"update", "delete"} <= ops, ops
    _settled(m)


# 11. values MariaDB can hold that are no value of the mapped type -----------------------


@pytest.mark.parametrize("mode", MODES)
def test_zero_date_and_tinyint_2_are_parked_not_mangled(m: MergeDbs, mode: str) -> None:
    m.create(customers(mode, odd=True))
    m.run()
    m.my_exec("SET SESSION sql_mode = ''")  # lets this session store a zero date
    m.insert("shop", code="C-Z", name="zero date", born="0000-00-00", flag=1)
    m.insert("shop", code="C-2", name="flag two", born="2001-02-03", flag=2)
    m.insert("shop", code="C-OK", name="fine", born="2001-02-03", flag=1)
    m.run()
    assert _field(m, "app", "name") == ["fine"]  # the others keep syncing
    failed = {e.change.after["name"]: str(e.detail) for e in m.entries(status="failed")}
    assert set(failed) == {"zero date", "flag two"}, failed
    assert "0000-00-00" in failed["zero date"] and "born" in failed["zero date"]
    assert re.search(r"\b2\b", failed["flag two"]) and "flag" in failed["flag two"]


# 12. a settled sync writes nothing -------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_run_after_everything_settled_writes_nothing(m: MergeDbs, mode: str) -> None:
    m.create(customers(mode, lossy=True))
    m.run()
    seen = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    m.insert("app", code="C-A", name="from app", amount=Decimal("1.234567"), seen_at=seen)
    m.insert("shop", code="C-B", name="from shop", amount=Decimal("2.50"))
    m.insert("shop", code="C-C", name="short lived")
    m.run()
    # different fields, one field on both sides, a delete
    m.exec("shop", "UPDATE customers SET notes = 'shop notes' WHERE name = 'from app'")
    m.exec("app", "UPDATE customers SET amount = 9.876543, notes = 'app' WHERE name = 'from shop'")
    m.exec("shop", "UPDATE customers SET notes = 'shop' WHERE name = 'from shop'")
    m.exec("app", "DELETE FROM customers WHERE name = 'short lived'")
    m.run()
    assert m.values("app") == m.values("shop")
    assert len(m.rows("app")) == 2
    _settled(m)


# a full run with more pending changes than the journal hands out at once ---------------


@pytest.mark.parametrize("mode", MODES)
def test_a_full_run_merges_every_pending_record_beyond_the_first_page(
    m: MergeDbs, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bulk part of a `full` run leaves records with pending changes to the planner,
    which merges field by field. It must know all of them, not the first page of the
    journal (10,000 entries; two here, so three records of two edits each span pages)."""
    from syncswim_lib.state.sqlstore import SqlStateStore

    m.create(customers(mode))
    m.run()
    for i in range(3):
        m.insert("app", code=f"C-{i}", name=f"n{i}", notes=f"t{i}")
    m.run()
    assert len(m.rows("shop")) == 3
    for row in m.rows("app"):
        m.exec(
            "app", "UPDATE customers SET name = %s WHERE id = %s", (f"app {row['id']}", row["id"])
        )
    for row in m.rows("shop"):
        m.my_exec("UPDATE customers SET notes = %s WHERE id = %s", (f"shop {row['id']}", row["id"]))
    for i in range(3, 6):  # new records on each side, not linked yet: their inserts pend
        m.insert("app", code=f"C-{i}", name=f"n{i}", notes=f"t{i}")
        m.insert("shop", code=f"S-{i}", name=f"s{i}", notes=f"u{i}")
    page = SqlStateStore.pending

    def small_pages(
        self: Any, sync: str, entity: str, limit: int = 10_000, after_id: int = 0
    ) -> Any:
        return page(self, sync, entity, min(limit, 2), after_id)

    monkeypatch.setattr(SqlStateStore, "pending", small_pages)
    m.run(full=True)
    # every record once on each side, and the edited ones keep both edits
    assert len(m.rows("app")) == len(m.rows("shop")) == 9
    assert m.values("app") == m.values("shop")
    edited = [r for r in m.rows("app") if r["name"].startswith("app ")]
    assert len(edited) == 3 and all(r["notes"].startswith("shop ") for r in edited), edited
    _settled(m)


# 13. a MariaDB column whose character set cannot hold what PostgreSQL text can ----------


def _charset_customers(charset: str) -> Schema:
    """External-id mode; the shop's `name` is stored in `charset`, its `notes` in utf8mb4."""
    return Schema(
        pg=(
            "CREATE TABLE customers (id serial PRIMARY KEY, code text UNIQUE, name text,"
            " notes text)",
        ),
        my=(
            "CREATE TABLE customers (id int AUTO_INCREMENT PRIMARY KEY,"
            " code varchar(64) NULL UNIQUE,"
            f" name varchar(100) CHARACTER SET {charset} NULL,"
            " notes text CHARACTER SET utf8mb4 NULL)",
        ),
        entity="\n".join(
            [
                "app: {table: public.customers, key: [id]}",
                "shop: {table: customers, key: [id]}",
                "mode: {external_id: {app: code, shop: code}}",
                "fields: {name: name, notes: notes}",
            ]
        ),
        mode="ext",
        ext={"app": "code", "shop": "code"},
    )


@pytest.mark.parametrize(
    ("charset", "refused"),
    [("latin1", "characters outside Latin-1"), ("utf8mb3", "4-byte characters")],
)
def test_validate_warns_of_a_narrow_character_set(m: MergeDbs, charset: str, refused: str) -> None:
    m.create(_charset_customers(charset))
    code, out = m.validate()
    assert code == 0, out
    lines = [line for line in out.splitlines() if "character set" in line]
    # one warning, naming the field, the column's charset and what happens
    assert len(lines) == 1, out
    [line] = lines
    assert "app.name (text) -> shop.name (varchar(100))" in line, line
    assert f"uses the {charset} character set" in line and refused in line, line
    assert "parked" in line, line


def test_validate_is_quiet_about_utf8mb4(m: MergeDbs) -> None:
    m.create(_charset_customers("utf8mb4"))
    code, out = m.validate()
    assert code == 0, out
    assert "character set" not in out, out


def test_a_character_the_column_cannot_hold_is_parked_not_mangled(m: MergeDbs) -> None:
    m.create(_charset_customers("utf8mb3"))
    m.run()
    m.exec("app", "INSERT INTO customers (code, name) VALUES ('C-E', %s)", ("smile \U0001f600",))
    m.exec("app", "INSERT INTO customers (code, name) VALUES ('C-OK', 'plain')")
    r = m.run()
    # the other record syncs; the emoji's is not written as "?" but parked with the
    # server's own error
    assert [row["name"] for row in m.rows("shop")] == ["plain"]
    assert r.failed == 1, r.meta
    [failed] = m.entries(status="failed")
    assert failed.change.after["code"] == "C-E"
    assert "Incorrect string value" in str(failed.detail), failed.detail
    # fixed on the source, the record goes through
    m.exec("app", "UPDATE customers SET name = 'smile' WHERE code = 'C-E'")
    m.run()
    assert sorted(row["name"] for row in m.rows("shop")) == ["plain", "smile"]
    # and utf8mb4 beside it takes the emoji
    m.exec("app", "UPDATE customers SET notes = %s WHERE code = 'C-E'", ("\U0001f600",))
    m.run()
    assert m.by("shop", "code")["C-E"]["notes"] == "\U0001f600"
    _settled(m)


# 14. an update-vs-delete conflict chosen again with `syncswim conflicts resolve` ---------


def _cli(m: MergeDbs, *args: str) -> tuple[int, str]:
    """`syncswim conflicts ...` in-process: exit code and everything it printed."""
    from syncswim_lib.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["conflicts", args[0], str(m.yaml_path), *args[1:]])
    return code, out.getvalue() + err.getvalue()


def _kept_against_a_delete(m: MergeDbs, mode: str, updater: Side) -> Any:
    """A record updated on `updater` and deleted on the other side, kept by the default
    outcome (recreated where it was deleted): its conflict record."""
    schema = sor_customers("app") if mode == "sor" else ext_customers()
    _one_record(m, schema, name="n0")
    m.exec(updater, "UPDATE customers SET name = 'updated'")
    m.exec(other(updater), "DELETE FROM customers")
    m.run()
    for side in SIDES:
        assert _field(m, side, "name") == ["updated"], side
    [rec] = _conflicts_on(m, "__record__")
    assert (rec.outcome, rec.status) == ({"app": "a", "shop": "b"}[updater], "decided")
    return rec


UPDATE_DELETE_CASES = [
    # the system of record recreated with a new key, written back into the shop's row
    pytest.param("sor", "shop", id="sor-updated_on_shop"),
    pytest.param("ext", "app", id="ext-updated_on_app"),
]


@pytest.mark.parametrize(("mode", "updater"), UPDATE_DELETE_CASES)
def test_resolve_an_update_vs_delete_for_the_delete(m: MergeDbs, mode: str, updater: Side) -> None:
    rec = _kept_against_a_delete(m, mode, updater)
    deleter = other(updater)
    code, out = _cli(m, "resolve", str(rec.id), "--take", deleter)
    assert code == 0, out
    assert "deletes it on both sides" in out, out
    r = m.run()
    assert m.rows("app") == [] and m.rows("shop") == [], r.meta
    [done] = _conflicts_on(m, "__record__")
    assert (done.status, done.outcome) == ("applied", {"app": "a", "shop": "b"}[deleter])
    _settled(m)
    # the record is gone for the sync too: a new row with its values is a new record
    if mode == "ext":
        m.insert(updater, code="C-1", name="again")
        m.run()
        assert _field(m, deleter, "name") == ["again"]


def test_resolve_for_the_delete_refuses_a_row_changed_since(m: MergeDbs) -> None:
    rec = _kept_against_a_delete(m, "sor", "app")
    m.exec("app", "UPDATE customers SET notes = 'edited after the conflict'")
    code, out = _cli(m, "resolve", str(rec.id), "--take", "shop")
    assert code == 2, out
    assert "changed on app since the conflict" in out and "notes" in out, out
    [same] = _conflicts_on(m, "__record__")
    assert same.status == "decided"
    m.run()  # the edit flows as any edit does; nothing is deleted
    for side in SIDES:
        assert _field(m, side, "notes") == ["edited after the conflict"], side
    # the surviving row deleted behind the conflict's back: nothing is left to choose
    m.exec("app", "DELETE FROM customers")
    code, out = _cli(m, "resolve", str(rec.id), "--take", "shop")
    assert code == 2 and "is gone since the conflict" in out, out


def test_resolve_for_the_delete_then_an_edit_before_the_run_keeps_the_record(
    m: MergeDbs,
) -> None:
    """Compare-and-set at the run: an edit made between the choice and the run wins."""
    rec = _kept_against_a_delete(m, "ext", "shop")
    code, out = _cli(m, "resolve", str(rec.id), "--take", "app")
    assert code == 0, out
    m.exec("shop", "UPDATE customers SET name = 'edited before the run'")
    m.run()
    for side in SIDES:
        assert _field(m, side, "name") == ["edited before the run"], side
    [declined] = _conflicts_on(m, "__record__")
    assert (declined.status, declined.outcome) == ("decided", "b")
    assert "not applied" in (declined.note or "") and "name" in (declined.note or "")
    _settled(m)


def test_resolve_an_update_vs_delete_for_the_update_confirms_it(m: MergeDbs) -> None:
    rec = _kept_against_a_delete(m, "sor", "shop")
    before = {side: m.rows(side) for side in SIDES}
    code, out = _cli(m, "resolve", str(rec.id), "--take", "shop")
    assert code == 0, out
    assert "confirmed" in out, out
    [done] = _conflicts_on(m, "__record__")
    assert (done.status, done.outcome) == ("applied", "b")
    _settled(m)
    assert {side: m.rows(side) for side in SIDES} == before


def test_restore_an_update_vs_delete_gives_back_the_delete(m: MergeDbs) -> None:
    """`restore` takes the side that lost: for a record kept against a delete, the delete."""
    rec = _kept_against_a_delete(m, "ext", "app")
    code, out = _cli(m, "restore", str(rec.id))
    assert code == 0, out
    m.run()
    assert m.rows("app") == [] and m.rows("shop") == []
    [done] = _conflicts_on(m, "__record__")
    assert (done.status, done.outcome) == ("applied", "b")
    assert "restore" in (done.note or "")


# 15. a primary key changed during a `full` run -------------------------------------------


FULL_PK_CASES = [
    pytest.param("sor", "app", "shop", id="sor_app-key_changed_on_shop"),
    pytest.param("ext", None, "app", id="ext-key_changed_on_app"),
]


@pytest.mark.parametrize(("mode", "sor", "changed_on"), FULL_PK_CASES)
def test_primary_key_changed_during_a_full_run_is_whole_after_the_next_run(
    m: MergeDbs, mode: str, sor: Side | None, changed_on: Side
) -> None:
    """Before the fix, with the system of record's row unchanged the full run deleted it
    (the other side's row was missing at its linked key) and the moved row then failed
    for ever, pointing to no row: the SOR's record was lost."""
    schema = sor_customers(sor) if sor is not None else ext_customers()
    _one_record(m, schema, sor or "app", name="moving", notes="t0")
    far = other(changed_on)
    # a pending edit: the full run merges the record through the planner
    m.exec(changed_on, "UPDATE customers SET notes = 'edited'")
    old_id = m.rows(changed_on)[0]["id"]

    def move() -> None:  # after the full run's compare, before it plans
        m.exec(changed_on, "UPDATE customers SET id = 7777 WHERE id = %s", (old_id,))

    m.run_with_edit_after_capture(move, full=True)
    # the full run saw the row in its snapshot: gone now, it is not taken for a delete
    assert len(m.rows(far)) == 1
    m.run()  # captures the key change: an update of the same record
    for side in SIDES:
        assert [(r["name"], r["notes"]) for r in m.rows(side)] == [("moving", "edited")], side
    assert _field(m, changed_on, "id") == [7777]
    _settled(m)


# 16. `manual` and `syncswim conflicts` on a field, through real servers ----------------


def test_manual_conflict_parks_the_field_until_resolved(m: MergeDbs) -> None:
    # external-id mode: no side wins by default (the unit tests cover both modes)
    _one_record(m, customers("ext", conflicts="{fields: {notes: manual}}"))
    m.exec("app", "UPDATE customers SET notes = 'app notes', name = 'app name'")
    m.exec("shop", "UPDATE customers SET notes = 'shop notes'")
    m.run()
    # the rest of the record syncs; each side keeps its own notes
    assert _field(m, "shop", "name") == ["app name"]
    assert (_field(m, "app", "notes"), _field(m, "shop", "notes")) == (
        ["app notes"],
        ["shop notes"],
    )
    [c] = _conflicts_on(m, "notes")
    assert (c.status, c.rule, c.base_a, c.value_a, c.value_b) == (
        "open",
        "manual",
        "t0",
        "app notes",
        "shop notes",
    )
    assert c.ts_a is not None and c.ts_b is not None
    _settled(m)  # parked: nothing is written while it waits
    code, out = _cli(m, "list", "--status", "open")
    assert code == 0 and str(c.id) in out and "notes" in out, out
    code, out = _cli(m, "resolve", str(c.id), "--value", '"agreed notes"')
    assert code == 0, out
    m.run()
    for side in SIDES:
        assert _field(m, side, "notes") == ["agreed notes"], side
    [done] = _conflicts_on(m, "notes")
    assert done.status == "applied"
    _settled(m)


def test_restore_gives_back_a_field_value_a_rule_decided_against(m: MergeDbs) -> None:
    _one_record(m, customers("sor"))  # prefer the system of record (app)
    m.exec("shop", "UPDATE customers SET notes = 'shop notes'")
    m.exec("app", "UPDATE customers SET notes = 'app notes'")
    m.run()
    assert _field(m, "shop", "notes") == ["app notes"]
    [c] = _conflicts_on(m, "notes")
    assert (c.outcome, c.value_b) == ("a", "shop notes")
    code, out = _cli(m, "restore", str(c.id))
    assert code == 0, out
    m.run()
    for side in SIDES:
        assert _field(m, side, "notes") == ["shop notes"], side
    _settled(m)
