"""A polled SQLite file ⇄ PostgreSQL (its change stream), through the library's runs:
inserts, updates and deletes in both directions, with each delete-detection method,
and our own writes not coming back."""

from __future__ import annotations

import random
import sqlite3
import time
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from syncswim_lib.connectors.polling.keyset import compare_keys, last_compared
from syncswim_lib.connectors.polling.runner import TickResult, tick
from syncswim_lib.connectors.sqlite import SqliteConnector
from tests.connectors.polling.harness import NOW_MS, PolledPair

pytestmark = pytest.mark.integration


@pytest.fixture
def pair(pg_dsn: str, tmp_path: Path) -> PolledPair:
    p = PolledPair(pg_dsn, tmp_path)
    p.run(full=True)  # setup, the starting cursor, the first reconciliation
    return p


def test_sqlite_inserts_updates_and_soft_deletes_reach_postgres(pair: PolledPair) -> None:
    pair.lite("INSERT INTO customers (name, amount, active) VALUES ('Ada', 12.5, 1)")
    pair.lite("INSERT INTO customers (name, amount, active) VALUES ('Bob', 3, 0)")
    report = pair.run()
    assert report.side("app").inserted == 2
    pg = pair.pg_rows()
    assert [(r["name"], r["amount"], r["active"]) for r in pg] == [
        ("Ada", Decimal("12.50"), True),
        ("Bob", Decimal("3.00"), False),
    ]
    # the SQLite rows got the PostgreSQL keys written back
    assert [r["app_id"] for r in pair.lite_rows()] == [r["id"] for r in pg]

    pair.lite("UPDATE customers SET amount = 99.99 WHERE name = 'Ada'")
    report = pair.run()
    assert report.side("app").updated == 1
    assert pair.pg_rows()[0]["amount"] == Decimal("99.99")

    pair.lite(f"UPDATE customers SET deleted_at = {NOW_MS} WHERE name = 'Bob'")
    report = pair.run()
    assert report.side("app").deleted == 1
    assert [r["name"] for r in pair.pg_rows()] == ["Ada"]


def test_postgres_changes_reach_sqlite_and_do_not_come_back(pair: PolledPair) -> None:
    pair.pg("INSERT INTO customers (name, amount, active) VALUES ('Cy', 1.25, true)")
    report = pair.run()
    assert report.side("legacy").inserted == 1
    (row,) = pair.lite_rows()
    assert (row["name"], Decimal(str(row["amount"])), row["active"]) == ("Cy", Decimal("1.25"), 1)
    # the next poll reads our own insert back: the merge finds it equal to what both
    # sides agreed (the shadow) and writes nothing anywhere
    again = pair.run()
    assert again.writes == 0
    assert pair.pg_rows()[0]["name"] == "Cy"

    pair.pg("UPDATE customers SET name = 'Cyd'")
    assert pair.run().side("legacy").updated == 1
    assert pair.lite_rows()[0]["name"] == "Cyd"
    assert pair.run().writes == 0

    pair.pg("DELETE FROM customers")
    assert pair.run().side("legacy").deleted == 1
    assert pair.live_lite() == []  # marked deleted by its soft-delete column
    assert len(pair.lite_rows()) == 1
    assert pair.run().writes == 0


def _tick(pair: PolledPair, force: bool = True) -> TickResult:
    with pair.runtime() as rt:
        return tick(rt, "app_legacy", {}, time.time, force=force)


def test_rows_deleted_from_sqlite_are_found_by_the_key_set_comparison(
    pg_dsn: str, tmp_path: Path
) -> None:
    pair = PolledPair(pg_dsn, tmp_path, deleted="{keyset_every: 10m}")
    pair.run(full=True)
    for name in ("Ann", "Ben", "Cat"):
        pair.lite("INSERT INTO customers (name) VALUES (?)", (name,))
    assert pair.run().side("app").inserted == 3
    # a real DELETE: no column says so, only the key set can tell
    pair.lite("DELETE FROM customers WHERE name IN ('Ann', 'Cat')")
    assert pair.run().side("app").deleted == 0  # the cursor cannot see a missing row

    first = _tick(pair)
    assert first.keyset_deletes == {"customers": 2}
    assert pair.run().side("app").deleted == 2
    assert [r["name"] for r in pair.pg_rows()] == ["Ben"]

    pair.lite("DELETE FROM customers")
    # compared a moment ago; the next comparison is due in ten minutes, not at every poll
    assert _tick(pair).keyset_deletes == {}
    with pair.runtime() as rt:
        assert last_compared(rt.store, "app_legacy", "legacy", "customers") is not None


def test_keyset_comparison_of_many_links_is_batched_keys_only(pg_dsn: str, tmp_path: Path) -> None:
    pair = PolledPair(pg_dsn, tmp_path, deleted="{keyset_every: 10m}")
    pair.run(full=True)
    conn = sqlite3.connect(pair.sqlite_path, isolation_level=None)
    conn.executemany("INSERT INTO customers (name) VALUES (?)", [(f"n{i}",) for i in range(12_000)])
    conn.execute("DELETE FROM customers WHERE id % 1000 = 0")
    conn.close()
    pair.run(full=True)  # links the 11 988 rows left
    pair.lite("DELETE FROM customers WHERE id IN (1, 5001, 11999)")
    with pair.runtime() as rt:
        conn2 = rt.connector("legacy")
        assert isinstance(conn2, SqliteConnector)
        result = compare_keys(
            rt.store, conn2, "app_legacy", "customers", "b", "legacy", "customers", ("id",)
        )
    assert result.compared == 11_988 and result.gone == 3
    assert result.queries == 3  # 5000 keys a query


def test_polled_postgres_without_a_slot_both_ways(pg_dsn: str, tmp_path: Path) -> None:
    pair = PolledPair(
        pg_dsn,
        tmp_path,
        pg_capture=", capture: poll",
        pg_poll="{column: updated_at, deleted: {keyset_every: 10m}}",
    )
    pair.run(full=True)
    with psycopg.connect(pg_dsn) as conn:
        slots = conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()
        assert slots == (0,)  # polled: setup made no slot and no publication
        assert conn.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)
    pair.pg("INSERT INTO customers (name, amount) VALUES ('Pat', 2.5)")
    pair.lite("INSERT INTO customers (name, amount) VALUES ('Lee', 7)")
    report = pair.run()
    assert report.side("legacy").inserted == 1 and report.side("app").inserted == 1
    assert sorted(r["name"] for r in pair.pg_rows()) == ["Lee", "Pat"]
    assert sorted(r["name"] for r in pair.lite_rows()) == ["Lee", "Pat"]

    pair.pg("UPDATE customers SET amount = 3 WHERE name = 'Pat'")
    pair.lite("UPDATE customers SET name = 'Leo' WHERE name = 'Lee'")
    report = pair.run()
    assert report.side("legacy").updated == 1 and report.side("app").updated == 1
    assert {r["name"]: r["amount"] for r in pair.pg_rows()} == {
        "Leo": Decimal("7.00"),
        "Pat": Decimal("3.00"),
    }
    assert pair.run().writes == 0  # both polls read our writes back: nothing to do

    pair.pg("DELETE FROM customers WHERE name = 'Pat'")
    assert _tick(pair).keyset_deletes == {"customers": 1}
    assert pair.run().side("legacy").deleted == 1
    assert [r["name"] for r in pair.live_lite()] == ["Leo"]


def test_written_by_marks_our_writes_and_a_change_between_two_polls_still_flows(
    pg_dsn: str, tmp_path: Path
) -> None:
    pair = PolledPair(pg_dsn, tmp_path, written_by=True)
    pair.run(full=True)
    pair.pg("INSERT INTO customers (name) VALUES ('Dee'), ('Eve')")
    assert pair.run().side("legacy").inserted == 2
    assert {r["last_writer"] for r in pair.lite_rows()} == {"app_legacy"}  # stamped

    # our own rows read back by the next poll are left out before the journal
    echo = pair.run()
    assert echo.skipped_echoes == 2 and echo.writes == 0
    with pair.runtime() as rt:
        assert rt.store.entries("app_legacy", "customers", status="pending") == []

    # our write (this run polls SQLite before it applies), then the application's own
    # write to the same row, both between two polls: the poll sees the application's
    # version, whose writer is not us, and syncs it
    pair.pg("UPDATE customers SET name = 'Dora' WHERE name = 'Dee'")
    assert pair.run().side("legacy").updated == 1
    pair.lite("UPDATE customers SET amount = 5, last_writer = 'shop' WHERE name = 'Dora'")
    report = pair.run()
    assert report.side("app").updated == 1
    assert {r["name"]: r["amount"] for r in pair.pg_rows()}["Dora"] == Decimal("5.00")


def test_shadow_comparison_recognises_echoes_without_a_written_by_column(
    pair: PolledPair,
) -> None:
    pair.pg("INSERT INTO customers (name, amount) VALUES ('Fay', 1)")
    pair.run()
    with pair.runtime() as rt:
        before = len(rt.store.entries("app_legacy", "customers", limit=10_000))
    echo = pair.run()  # the poll journals our insert; the merge finds it agreed
    assert echo.writes == 0
    with pair.runtime() as rt:
        latest = rt.store.entries("app_legacy", "customers", limit=10_000)
    assert len(latest) == before + 1 and latest[0].status == "skipped"
    # our update and the application's, between two polls: the application's wins
    pair.pg("UPDATE customers SET amount = 2 WHERE name = 'Fay'")
    pair.run()
    pair.lite("UPDATE customers SET name = 'Faye' WHERE name = 'Fay'")
    assert pair.run().side("app").updated == 1
    assert [(r["name"], r["amount"]) for r in pair.pg_rows()] == [("Faye", Decimal("2.00"))]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_edits_on_both_sides_converge(pg_dsn: str, tmp_path: Path, seed: int) -> None:
    """Random inserts, updates and deletes on either side (several records each round,
    never the same record on both sides), a run after each round: both sides then hold
    the same records, and one more run writes nothing."""
    rng = random.Random(seed)
    pair = PolledPair(pg_dsn, tmp_path)
    pair.run(full=True)
    for _ in range(12):
        pg_by_id = {r["id"]: r for r in pair.pg_rows()}
        linked = {r["app_id"]: r for r in pair.live_lite() if r["app_id"] is not None}
        records = sorted(set(pg_by_id) & set(linked))
        rng.shuffle(records)
        for _ in range(rng.randint(1, 4)):
            side = rng.choice(["pg", "lite"])
            op = rng.choice(["insert", "update", "update", "delete"]) if records else "insert"
            name = f"n{rng.randint(0, 99)}"
            amount = rng.choice([None, 1, 2.5, 99.99])
            if op == "insert" and side == "pg":
                pair.pg("INSERT INTO customers (name, amount) VALUES (%s, %s)", (name, amount))
            elif op == "insert":
                pair.lite("INSERT INTO customers (name, amount) VALUES (?, ?)", (name, amount))
            else:
                record = records.pop()  # each record edited on one side only per round
                lite_id = linked[record]["id"]
                if op == "update" and side == "pg":
                    pair.pg("UPDATE customers SET name = %s WHERE id = %s", (name, record))
                elif op == "update":
                    pair.lite("UPDATE customers SET amount = ? WHERE id = ?", (amount, lite_id))
                elif side == "pg":
                    pair.pg("DELETE FROM customers WHERE id = %s", (record,))
                else:
                    pair.lite(
                        f"UPDATE customers SET deleted_at = {NOW_MS} WHERE id = ?", (lite_id,)
                    )
                if not records:
                    break
        pair.run()
        pg_side = {
            r["id"]: (r["name"], None if r["amount"] is None else Decimal(r["amount"]))
            for r in pair.pg_rows()
        }
        lite_side = {
            r["app_id"]: (r["name"], None if r["amount"] is None else Decimal(str(r["amount"])))
            for r in pair.live_lite()
        }
        assert lite_side == pg_side
        assert pair.run().writes == 0


def test_a_delete_reaches_a_soft_delete_side_as_its_column_set(pair: PolledPair) -> None:
    """A record deleted in PostgreSQL: the SQLite row that declares a soft-delete column
    is marked deleted (UPDATE), not removed, and the poll that reads the mark back
    writes nothing."""
    pair.pg("INSERT INTO customers (name, amount) VALUES ('Gus', 1), ('Ida', 2)")
    assert pair.run().side("legacy").inserted == 2
    pair.pg("DELETE FROM customers WHERE name = 'Gus'")
    report = pair.run()
    assert report.side("legacy").deleted == 1
    rows = {r["name"]: r for r in pair.lite_rows()}
    assert set(rows) == {"Gus", "Ida"}  # the row stays, for the application's own history
    assert rows["Gus"]["deleted_at"] is not None and rows["Ida"]["deleted_at"] is None
    assert [r["name"] for r in pair.live_lite()] == ["Ida"]
    assert pair.run().writes == 0  # our mark read back: the record is gone on both sides
    assert [r["name"] for r in pair.pg_rows()] == ["Ida"]


def test_a_record_kept_against_a_soft_delete_is_live_again(pair: PolledPair) -> None:
    """Update (PostgreSQL, the SOR) against a soft delete (SQLite) in one round: the
    update survives and the record is created again on SQLite, where the row that holds
    its key is the soft-deleted one: it is live again, with the update."""
    pair.pg("INSERT INTO customers (name, amount) VALUES ('Hal', 1)")
    pair.run()
    pair.lite(f"UPDATE customers SET deleted_at = {NOW_MS} WHERE name = 'Hal'")
    pair.pg("UPDATE customers SET amount = 4 WHERE name = 'Hal'")
    pair.run()
    live = pair.live_lite()
    assert [(r["name"], Decimal(str(r["amount"]))) for r in live] == [("Hal", Decimal("4"))]
    assert len(pair.lite_rows()) == 1  # the same row, not a second one
    assert pair.run().writes == 0
    assert [(r["name"], r["amount"]) for r in pair.pg_rows()] == [("Hal", Decimal("4.00"))]


def test_a_polled_postgres_soft_delete_side_both_ways(pg_dsn: str, tmp_path: Path) -> None:
    """Both sides polled with a soft-delete column: each side's soft delete reaches the
    other as its column set, and neither row is removed."""
    pair = PolledPair(
        pg_dsn,
        tmp_path,
        pg_capture=", capture: poll",
        pg_poll="{column: updated_at, deleted: {column: deleted_at}}",
    )
    pair.run(full=True)
    pair.pg("INSERT INTO customers (name) VALUES ('Jo'), ('Kim')")
    assert pair.run().side("legacy").inserted == 2
    pair.lite(f"UPDATE customers SET deleted_at = {NOW_MS} WHERE name = 'Jo'")
    pair.pg("UPDATE customers SET deleted_at = now() WHERE name = 'Kim'")
    report = pair.run()
    assert report.side("app").deleted == 1 and report.side("legacy").deleted == 1
    assert {r["name"]: r["deleted_at"] is not None for r in pair.pg_rows()} == {
        "Jo": True,
        "Kim": True,
    }
    assert {r["name"]: r["deleted_at"] is not None for r in pair.lite_rows()} == {
        "Jo": True,
        "Kim": True,
    }
    assert pair.run().writes == 0
    # an insert into the polled PostgreSQL table sets the soft-delete column to NULL
    pair.lite("INSERT INTO customers (name) VALUES ('Lu')")
    assert pair.run().side("app").inserted == 1
    assert [r["name"] for r in pair.pg_rows() if r["deleted_at"] is None] == ["Lu"]
    assert pair.run().writes == 0
