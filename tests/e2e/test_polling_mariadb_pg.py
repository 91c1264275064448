"""A MariaDB table polled by `updated_at` (no binlog used) ⇄ PostgreSQL (its change
stream): inserts, updates and deletes both ways, with each delete-detection method."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from syncswim_lib.connectors.polling.runner import tick
from tests.connectors.polling.harness import PolledMariaDB

pytestmark = pytest.mark.integration


@pytest.fixture(params=["{column: deleted_at}", "{keyset_every: 10m}"], ids=["soft", "keyset"])
def pair(
    request: pytest.FixtureRequest, pg_dsn: str, mysql_dsn: str, tmp_path: Path
) -> Iterator[PolledMariaDB]:
    p = PolledMariaDB(pg_dsn, mysql_dsn, tmp_path, request.param)
    p.run(full=True)
    yield p
    p.close()


def test_both_ways_with_each_delete_method(pair: PolledMariaDB) -> None:
    pair.my("INSERT INTO customers (name, amount, active) VALUES ('Mia', 4.5, 1)")
    pair.pg("INSERT INTO customers (name, amount, active) VALUES ('Pia', 1, false)")
    report = pair.run()
    assert report.side("app").inserted == 1 and report.side("shop").inserted == 1
    assert sorted(r["name"] for r in pair.pg_rows()) == ["Mia", "Pia"]
    assert sorted(r["name"] for r in pair.my_rows()) == ["Mia", "Pia"]
    assert pair.run().writes == 0  # the poll reads our writes back: agreed, nothing written

    pair.my("UPDATE customers SET amount = 8 WHERE name = 'Mia'")  # ON UPDATE keeps updated_at
    pair.pg("UPDATE customers SET name = 'Pio' WHERE name = 'Pia'")
    report = pair.run()
    assert report.side("app").updated == 1 and report.side("shop").updated == 1
    assert {r["name"]: r["amount"] for r in pair.pg_rows()}["Mia"] == Decimal("8.00")
    assert sorted(r["name"] for r in pair.my_rows()) == ["Mia", "Pio"]

    soft = "deleted_at" in pair.yaml_path.read_text().split("poll:")[-1]
    if soft:
        pair.my("UPDATE customers SET deleted_at = utc_timestamp(6) WHERE name = 'Mia'")
    else:
        pair.my("DELETE FROM customers WHERE name = 'Mia'")
        with pair.runtime() as rt:
            assert tick(rt, "app_shop", {}, time.time, force=True).keyset_deletes == {
                "customers": 1
            }
    assert pair.run().side("app").deleted == 1
    assert [r["name"] for r in pair.pg_rows()] == ["Pio"]

    pair.pg("DELETE FROM customers WHERE name = 'Pio'")
    assert pair.run().side("shop").deleted == 1
    live = [r["name"] for r in pair.my_rows() if r["deleted_at"] is None]
    assert live == []
    # with a soft-delete column our delete sets it and the row stays; without, it goes
    assert [r["name"] for r in pair.my_rows()] == (["Mia", "Pio"] if soft else [])
    assert pair.run().writes == 0
