"""`syncswim verify` on a real PostgreSQL (`app`) and MariaDB (`shop`): both sides compared
record by record under the mapping, every difference named with its keys, and nothing
read that is not put back: no capture, no journal, no write, no change of state."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pytest

from tests.e2e.merge_harness import ENTITY, ENV, SYNC, MergeDbs, Side, customers
from tests.e2e.rel_harness import RelDbs, shop_schema

pytestmark = pytest.mark.integration

MODES = ["sor", "ext"]
SEEN = datetime(2026, 3, 4, 5, 6, 7, 891234, tzinfo=UTC)


@pytest.fixture
def m(
    pg_dsn: str, mysql_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MergeDbs]:
    dbs = MergeDbs(pg_dsn, mysql_dsn, tmp_path)
    for k, v in dbs.env().items():
        monkeypatch.setenv(k, v)
    yield dbs
    dbs.close()


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from syncswim_lib.cli import main

    code = main(args)
    got = capsys.readouterr()
    return code, got.out, got.err


def _sync(m: MergeDbs, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(["sync", str(m.yaml_path)], capsys)
    assert code == 0, (out, err)


def _verify(m: MergeDbs, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    return _cli(["verify", str(m.yaml_path), *extra], capsys)


def _in_step(m: MergeDbs, capsys: pytest.CaptureFixture[str], mode: str) -> dict[str, int]:
    """Three records synced, one with values the shop's columns narrow (six decimals to
    two, microseconds to seconds); returns each record's app id by name."""
    m.create(customers(mode, lossy=True))
    _sync(m, capsys)  # sets up capture before the first change
    ids = {
        "Ann": m.insert("app", code="C-1", name="Ann", amount=Decimal("123.456789"), seen_at=SEEN),
        "Bob": m.insert("app", code="C-2", name="Bob", amount=Decimal("1.5")),
    }
    m.insert("shop", code="C-3", name="Cy", amount=Decimal("7.25"))
    _sync(m, capsys)
    _sync(m, capsys)  # our own writes come back as echoes: settled by now
    assert len(m.rows("app")) == len(m.rows("shop")) == 3
    ids["Cy"] = next(r["id"] for r in m.rows("app") if r["name"] == "Cy")
    return ids


def _shop_id(m: MergeDbs, name: str) -> int:
    return int(next(r["id"] for r in m.rows("shop") if r["name"] == name))


def _state_dump(m: MergeDbs) -> list[str]:
    """Every table of the state store, as SQL text (journal, links, positions, leases...)."""
    conn = sqlite3.connect(m.workdir / "state.db")
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def _slot(m: MergeDbs) -> list[tuple[Any, ...]]:
    rows = m.pg.execute(
        "SELECT slot_name, confirmed_flush_lsn, restart_lsn FROM pg_replication_slots"
        " WHERE database = current_database()"
    ).fetchall()
    return [tuple(r.values()) for r in rows]


def _difference_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("  ")]


# in step ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_in_step_after_a_sync_exits_0_and_writes_nothing(
    m: MergeDbs, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    _in_step(m, capsys, mode)
    state, slot = _state_dump(m), _slot(m)
    app, shop = m.rows("app"), m.rows("shop")
    assert slot and state  # something to compare: the slot exists, the state holds links

    code, out, err = _verify(m, capsys)
    assert code == 0, (out, err)
    assert out.splitlines() == [f"{SYNC}.{ENTITY}: in step (3 rows on app, 3 on shop)"], out

    # read only: the journal, links and positions, the tables, the slot's position
    assert _state_dump(m) == state
    assert m.rows("app") == app and m.rows("shop") == shop
    assert _slot(m) == slot
    # ... and the change a capture would have taken is still there for the next run
    m.exec("app", "UPDATE customers SET notes = 'after verify' WHERE name = 'Bob'")
    _sync(m, capsys)
    assert [r["notes"] for r in m.rows("shop") if r["name"] == "Bob"] == ["after verify"]


@pytest.mark.parametrize("mode", MODES)
def test_a_lossy_mapping_in_step_is_not_drift_but_a_real_change_of_it_is(
    m: MergeDbs, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    _in_step(m, capsys, mode)
    app = m.by("app", "name")["Ann"]
    shop = m.by("shop", "name")["Ann"]
    # the two sides' values differ as stored: the sync calls them equal, and so must verify
    assert app["amount"] == Decimal("123.456789") and shop["amount"] == Decimal("123.46")
    assert app["seen_at"] == SEEN and shop["seen_at"] == SEEN.replace(microsecond=0, tzinfo=None)
    code, out, err = _verify(m, capsys)
    assert code == 0, (out, err)

    m.exec("shop", "UPDATE customers SET amount = 200.00 WHERE name = 'Ann'")
    code, out, err = _verify(m, capsys)
    assert code == 1, (out, err)
    assert "app.amount = 123.456789, shop.amount = 200.00" in out, out
    assert "seen_at" not in out, out  # only the field that really differs


# drift -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_field_changed_on_one_side_is_drift_naming_key_field_and_both_values(
    m: MergeDbs, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    ids = _in_step(m, capsys, mode)
    m.exec("shop", "UPDATE customers SET name = 'Robert' WHERE name = 'Bob'")
    code, out, err = _verify(m, capsys)
    assert code == 1, (out, err)
    lines = out.splitlines()
    assert lines[0].startswith(f"{SYNC}.{ENTITY}: drift, 1 difference"), out
    assert _difference_lines(out) == [
        f"  app id={ids['Bob']} / shop id={_shop_id(m, 'Robert')}: fields differ",
        '    app.name = "Bob", shop.name = "Robert"',
    ], out
    assert err == ""


@pytest.mark.parametrize("side", ["app", "shop"])
def test_a_row_deleted_on_one_side_is_a_link_whose_row_is_gone(
    m: MergeDbs, capsys: pytest.CaptureFixture[str], side: Side
) -> None:
    ids = _in_step(m, capsys, "sor")
    shop_cy = _shop_id(m, "Cy")
    m.exec(side, "DELETE FROM customers WHERE name = 'Cy'")
    code, out, err = _verify(m, capsys)
    assert code == 1, (out, err)
    assert _difference_lines(out) == [
        f"  app id={ids['Cy']} / shop id={shop_cy}: linked, but its row on {side} is gone"
    ], out


@pytest.mark.parametrize("mode", MODES)
def test_a_row_inserted_on_one_side_has_no_counterpart(
    m: MergeDbs, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    _in_step(m, capsys, mode)
    new_app = m.insert("app", code="C-9", name="Dee")
    new_shop = m.insert("shop", code="C-8", name="Eve")
    code, out, err = _verify(m, capsys)
    assert code == 1, (out, err)
    assert sorted(_difference_lines(out)) == [
        f"  app id={new_app}: only on app (not linked, no row on shop matches it)",
        f"  shop id={new_shop}: only on shop (not linked, no row on app matches it)",
    ], out


def test_a_captured_change_not_applied_yet_is_named_in_flight(
    m: MergeDbs, capsys: pytest.CaptureFixture[str]
) -> None:
    from syncswim_lib.config import load_project
    from syncswim_lib.pipeline.capture import capture_sync
    from syncswim_lib.pipeline.runtime import Runtime

    ids = _in_step(m, capsys, "sor")
    m.exec("shop", "UPDATE customers SET name = 'Robert' WHERE name = 'Bob'")
    with Runtime(load_project(m.yaml_path), m.state_url) as rt:
        assert capture_sync(rt, SYNC)["shop"] == 1  # journaled, not applied
    code, out, err = _verify(m, capsys)
    assert code == 0, (out, err)  # in flight: the next run applies it
    assert out.splitlines()[0].startswith(
        f"{SYNC}.{ENTITY}: in flight, 1 difference, 1 in flight ("
    ), out
    assert "journal: 1 pending" in out.splitlines()[0]
    assert _difference_lines(out)[0] == (
        f"  app id={ids['Bob']} / shop id={_shop_id(m, 'Robert')}: fields differ"
        " [in flight, journal: 1 pending]"
    ), out

    # a change nobody captured beside it is drift, and the exit code says so
    m.exec("app", "UPDATE customers SET notes = 'unseen' WHERE name = 'Ann'")
    code, out, err = _verify(m, capsys)
    assert code == 1, (out, err)
    assert out.splitlines()[0].startswith(f"{SYNC}.{ENTITY}: drift, 2 differences, 1 in flight")


def test_the_sor_key_in_the_other_rows_identity_column_is_checked(
    m: MergeDbs, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _in_step(m, capsys, "sor")
    m.exec("shop", "UPDATE customers SET sor_id = NULL WHERE name = 'Bob'")
    code, out, err = _verify(m, capsys)
    assert code == 1, (out, err)
    assert f"    app.id = {ids['Bob']}, shop.sor_id = NULL" in _difference_lines(out), out


def test_rows_the_sync_would_match_are_compared_not_reported_as_one_sided(
    m: MergeDbs, capsys: pytest.CaptureFixture[str]
) -> None:
    _in_step(m, capsys, "ext")
    # the same external ids written on both sides by hand, not synced yet
    app_yan = m.insert("app", code="C-6", name="Yan")
    shop_yan = m.insert("shop", code="C-6", name="Yann")
    m.insert("app", code="C-7", name="Zed")
    m.insert("shop", code="C-7", name="Zed")
    code, out, err = _verify(m, capsys)
    assert code == 1, (out, err)
    assert _difference_lines(out) == [
        f"  app id={app_yan} / shop id={shop_yan}: fields differ (matched, not linked yet)",
        '    app.name = "Yan", shop.name = "Yann"',
        "  (1 matched pair agrees but is not linked yet; sync --full links it)",
    ], out


def test_rows_match_on_would_adopt_are_compared_as_pairs(
    m: MergeDbs, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = customers("sor")
    m.create(replace(schema, entity=schema.entity + "\nmatch_on: email"))
    _sync(m, capsys)
    # the same customers entered on both sides by hand: nothing links them but the e-mail
    m.insert("app", name="Dee", email="dee@example.com")
    m.insert("shop", name="Dee", email="dee@example.com")
    app_fay = m.insert("app", name="Fay", email="fay@example.com")
    shop_fay = m.insert("shop", name="Faye", email="fay@example.com")
    code, out, err = _verify(m, capsys)
    assert code == 1, (out, err)
    assert _difference_lines(out) == [
        f"  app id={app_fay} / shop id={shop_fay}: fields differ (matched, not linked yet)",
        '    app.name = "Fay", shop.name = "Faye"',
        "  (1 matched pair agrees but is not linked yet; sync --full links it)",
    ], out


def test_an_ambiguous_match_on_value_is_a_note_and_its_rows_have_no_counterpart(
    m: MergeDbs, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = customers("sor")
    m.create(replace(schema, entity=schema.entity + "\nmatch_on: email"))
    _sync(m, capsys)
    m.insert("app", name="Dee", email="dee@example.com")
    m.insert("app", name="Dee again", email="dee@example.com")
    m.insert("shop", name="Dee", email="dee@example.com")
    code, out, err = _verify(m, capsys)
    assert code == 1, (out, err)
    lines = _difference_lines(out)
    assert len([x for x in lines if ": only on " in x]) == 3, out
    (note,) = [x for x in lines if x.startswith("  note: match_on cannot pair rows: ")]
    assert "dee@example.com" in note, out


@pytest.fixture
def rel(
    pg_dsn: str, mysql_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RelDbs]:
    dbs = RelDbs(pg_dsn, mysql_dsn, tmp_path)
    for k, v in dbs.env().items():
        monkeypatch.setenv(k, v)
    yield dbs
    dbs.close()


@pytest.mark.parametrize("mode", MODES)
def test_references_are_compared_through_the_parents_link(
    rel: RelDbs, capsys: pytest.CaptureFixture[str], mode: Literal["sor", "ext"]
) -> None:
    rel.build(shop_schema(mode))
    rel.sync()  # capture set up before the first change
    with rel.txn("app"):
        rel.add_customer("app", "alice", {"10.00": ["sku-1"]})
        rel.add_customer("app", "bob", {"20.00": []})
    rel.sync()
    rel.sync()
    order = rel.id_of("shop", "orders", Decimal("10.00"))
    alice_app = rel.id_of("app", "customers", "alice")
    # the two sides' ids of one customer differ (1 and 1001): the reference is in step
    assert rel.table_rows("shop", "orders")[0]["cust_id"] != alice_app
    code, out, err = _cli(["verify", str(rel.yaml_path)], capsys)
    assert code == 0, (out, err)
    assert len(out.splitlines()) == 4 and out.splitlines()[-1] == "3 of 3 entities in step", out

    bob_shop = rel.id_of("shop", "customers", "bob")
    rel.update_row("shop", "orders", order, customer_id=bob_shop)  # moved on the shop only
    code, out, err = _cli(["verify", str(rel.yaml_path), "--entity", "orders"], capsys)
    assert code == 1, (out, err)
    assert _difference_lines(out) == [
        f"  app id={rel.id_of('app', 'orders', Decimal('10.00'))} / shop id={order}: fields differ",
        f"    app.customer_id = {alice_app}, shop.cust_id = {bob_shop}",
    ], out


# the command's surface -------------------------------------------------------------------


def test_json_lines_parse_and_carry_keys_fields_and_values(
    m: MergeDbs, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _in_step(m, capsys, "sor")
    m.exec("shop", "UPDATE customers SET amount = 8.5 WHERE name = 'Cy'")
    m.exec("app", "DELETE FROM customers WHERE name = 'Bob'")
    code, out, err = _verify(m, capsys, "--json")
    assert code == 1, (out, err)
    objs = [json.loads(line) for line in out.splitlines()]
    by_kind = {o.get("kind", o["type"]): o for o in objs}
    assert set(by_kind) == {"fields", "gone", "entity"}, objs
    fields = by_kind["fields"]
    assert fields["keys"] == {"app": {"id": ids["Cy"]}, "shop": {"id": _shop_id(m, "Cy")}}
    assert fields["fields"] == [
        {
            "columns": {"app": "amount", "shop": "amount"},
            "values": {"app": "7.250000", "shop": "8.50"},
        }
    ]
    assert by_kind["gone"]["side"] == "app" and by_kind["gone"]["keys"]["app"] == {"id": ids["Bob"]}
    entity = by_kind["entity"]
    assert entity["status"] == "drift" and entity["differences"] == 2
    assert entity["rows"] == {"app": 2, "shop": 3} and entity["not_shown"] == 0


def test_limit_bounds_the_output_and_says_how_many_more(
    m: MergeDbs, capsys: pytest.CaptureFixture[str]
) -> None:
    _in_step(m, capsys, "ext")
    m.exec("shop", "UPDATE customers SET notes = 'changed'")
    code, out, err = _verify(m, capsys, "--limit", "1")
    assert code == 1, (out, err)
    lines = _difference_lines(out)
    assert len([x for x in lines if x.endswith(": fields differ")]) == 1, out
    assert lines[-1] == "  (2 more differences not shown; --limit N shows more)", out
    assert out.splitlines()[0].startswith(f"{SYNC}.{ENTITY}: drift, 3 differences")

    code, out, err = _verify(m, capsys, "--limit", "0")
    assert code == 2 and "--limit must be a positive whole number" in err, err


def test_unknown_entity_exits_2_naming_the_known_ones(
    m: MergeDbs, capsys: pytest.CaptureFixture[str]
) -> None:
    m.create(customers("sor"))
    code, out, err = _verify(m, capsys, "--entity", "orders")
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"syncswim: error: unknown entity 'orders' (declared: {SYNC}.{ENTITY})"
    ], err
    code, out, err = _verify(m, capsys, "--entity", f"{SYNC}.{ENTITY}")
    assert code == 0, (out, err)  # nothing synced and both tables empty: in step


def test_an_error_is_one_redacted_line_and_exit_1(
    m: MergeDbs, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    m.create(customers("sor"))
    secret = "Verify-s3cret-pw"
    # MariaDB's root has no password here: one given is refused, and echoed by no message
    monkeypatch.setenv(ENV["my"], m.my_dsn.replace("root@", f"root:{secret}@"))
    code, out, err = _verify(m, capsys)
    assert code == 1, (out, err)
    assert secret not in out + err, err
    assert err.startswith(f"syncswim: error: {SYNC}.{ENTITY}: "), err
    assert len(err.splitlines()) == 1 and "Access denied" in err, err
