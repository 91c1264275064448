"""A polled SQLite file ⇄ PostgreSQL (its change stream), through the library's runs:
inserts, updates and deletes in both directions, with each delete-detection method,
and our own writes not coming back."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

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
    assert pair.lite_rows() == []
    assert pair.run().writes == 0
