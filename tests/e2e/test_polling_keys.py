"""Primary keys on a polled side: a key change keeps the record, and a key that comes back
(another record's row moved onto it) is not taken for the record that held it.

A poll reads no before image, so the planner recognises the row by the identity it
carries: the shared external id (external-id mode) or the system of record's key in the
polled side's external-id column (SOR mode, the polled side not the SOR). SQLite ⇄
PostgreSQL and MariaDB (polled) ⇄ PostgreSQL, each in both identity modes; docs/polling.md
("Keys") says what holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from syncswim_lib.connectors.polling.keyset import KeySource, compare_keys
from syncswim_lib.connectors.polling.runner import TickResult, tick
from syncswim_lib.pipeline.report import EntityReport
from tests.connectors.polling.harness import PolledMariaDB, PolledPair

pytestmark = pytest.mark.integration

KEYSET = "{keyset_every: 10m}"
SOFT = "{column: deleted_at}"


class Polled:
    """One polled table ⇄ PostgreSQL, whichever the polled database: its SQL with `%s`
    parameters, both sides' rows, a run and a polling tick."""

    def __init__(self, pair: PolledPair | PolledMariaDB, mode: str, deleted: str) -> None:
        self.pair = pair
        self.mode = mode
        self.deleted = deleted
        self.sync = "app_legacy" if isinstance(pair, PolledPair) else "app_shop"
        self.ident = "code" if mode == "ext" else "app_id"

    def polled(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        if isinstance(self.pair, PolledPair):
            self.pair.lite(sql.replace("%s", "?"), args)
        else:
            self.pair.my(sql, args)

    def polled_rows(self) -> list[dict[str, Any]]:
        p = self.pair
        rows = p.lite_rows() if isinstance(p, PolledPair) else p.my_rows()
        return [r for r in rows if r["deleted_at"] is None]

    def pg_rows(self) -> list[dict[str, Any]]:
        return self.pair.pg_rows()

    def pg(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        self.pair.pg(sql, args)

    def run(self) -> EntityReport:
        return self.pair.run()

    def tick(self) -> TickResult:
        """A polling tick (the poll, then the comparisons that are due), and a key-set
        comparison now even if the last one was less than its interval ago."""
        with self.pair.runtime() as rt:
            result = tick(rt, self.sync, {}, time.time, force=True)
            if self.deleted == KEYSET and "customers" not in result.keyset_deletes:
                conn = rt.connector(self.polled_endpoint)
                assert isinstance(conn, KeySource)
                compare_keys(
                    rt.store,
                    conn,
                    self.sync,
                    "customers",
                    "b",
                    self.polled_endpoint,
                    "customers",
                    ("id",),
                )
            return result

    @property
    def polled_endpoint(self) -> str:
        return "legacy" if isinstance(self.pair, PolledPair) else "shop"

    def insert_pg(self, name: str, code: str) -> None:
        if self.mode == "ext":
            self.pg("INSERT INTO customers (name, amount, code) VALUES (%s, 1, %s)", (name, code))
        else:
            self.pg("INSERT INTO customers (name, amount) VALUES (%s, 1)", (name,))

    def polled_id(self, name: str) -> int:
        (row,) = [r for r in self.polled_rows() if r["name"] == name]
        return int(row["id"])

    def pg_id(self, name: str) -> int:
        (row,) = [r for r in self.pg_rows() if r["name"] == name]
        return int(row["id"])

    def records(self) -> dict[Any, tuple[str, Decimal]]:
        """Both sides' records by identity, asserted equal: identity -> (name, amount)."""
        pg_ident = "code" if self.mode == "ext" else "id"
        pg = {r[pg_ident]: (r["name"], Decimal(str(r["amount"]))) for r in self.pg_rows()}
        polled = {r[self.ident]: (r["name"], Decimal(str(r["amount"]))) for r in self.polled_rows()}
        assert polled == pg
        return pg

    def settle(self) -> None:
        """Runs until one writes nothing (at most three: a replaced record takes two)."""
        for _ in range(3):
            if self.run().writes == 0:
                return
        raise AssertionError("still writing after three runs")


def _polled(
    request: pytest.FixtureRequest, make: Callable[[str, str], PolledPair | PolledMariaDB]
) -> Iterator[Polled]:
    mode, deleted = request.param
    pair = make(mode, deleted)
    pair.run(full=True)
    p = Polled(pair, mode, deleted)
    for name, code in (("Ann", "C-1"), ("Ben", "C-2")):
        p.insert_pg(name, code)
    assert p.run().side(p.polled_endpoint).inserted == 2
    assert p.run().writes == 0
    yield p
    if isinstance(pair, PolledMariaDB):
        pair.close()


PARAMS = [
    pytest.param(("sor", SOFT), id="sor-soft"),
    pytest.param(("sor", KEYSET), id="sor-keyset"),
    pytest.param(("ext", SOFT), id="ext-soft"),
    pytest.param(("ext", KEYSET), id="ext-keyset"),
]


# the key alone in one case a mode (the value edit is the harder one, in all four)
@pytest.fixture(params=[PARAMS[0], PARAMS[3]])
def lite(request: pytest.FixtureRequest, pg_dsn: str, tmp_path: Path) -> Iterator[Polled]:
    yield from _polled(
        request, lambda mode, deleted: PolledPair(pg_dsn, tmp_path, mode=mode, deleted=deleted)
    )


KEYSET_PARAMS = [p for p in PARAMS if "keyset" in str(p.id)]


@pytest.fixture(params=PARAMS)
def lite_any(request: pytest.FixtureRequest, pg_dsn: str, tmp_path: Path) -> Iterator[Polled]:
    yield from _polled(
        request, lambda mode, deleted: PolledPair(pg_dsn, tmp_path, mode=mode, deleted=deleted)
    )


@pytest.fixture(params=KEYSET_PARAMS)
def lite_keyset(request: pytest.FixtureRequest, pg_dsn: str, tmp_path: Path) -> Iterator[Polled]:
    yield from _polled(
        request, lambda mode, deleted: PolledPair(pg_dsn, tmp_path, mode=mode, deleted=deleted)
    )


@pytest.fixture(params=KEYSET_PARAMS)
def maria(
    request: pytest.FixtureRequest, pg_dsn: str, mysql_dsn: str, tmp_path: Path
) -> Iterator[Polled]:
    yield from _polled(
        request, lambda mode, deleted: PolledMariaDB(pg_dsn, mysql_dsn, tmp_path, deleted, mode)
    )


def _key_change_keeps_the_record(p: Polled, edit: bool, compare_in_same_run: bool) -> None:
    before = p.records()
    pg_ids = {r["id"] for r in p.pg_rows()}
    old = p.polled_id("Ann")
    values = ", amount = 7" if edit else ""
    p.polled(f"UPDATE customers SET id = 4242{values} WHERE id = %s", (old,))
    if compare_in_same_run:
        # the poll reads the row at its new key and the comparison misses the old key,
        # both journaled before the run that merges them
        p.tick()
    report = p.run()
    assert report.side("app").inserted == 0 and report.side("app").deleted == 0
    assert report.side(p.polled_endpoint).inserted == 0
    assert report.side(p.polled_endpoint).deleted == 0
    assert report.side("app").updated == (1 if edit else 0)
    after = p.records()
    want = dict(before)
    if edit:
        ident = next(k for k, v in before.items() if v[0] == "Ann")
        want[ident] = ("Ann", Decimal("7"))
    assert after == want
    assert {r["id"] for r in p.pg_rows()} == pg_ids  # no record deleted or created
    assert p.polled_id("Ann") == 4242
    # the old key's absence, found by a later comparison, deletes nothing
    p.tick()
    assert p.run().writes == 0
    assert p.records() == want
    # the link is at the new key: an edit there flows
    p.polled("UPDATE customers SET name = 'Anna' WHERE id = 4242")
    assert p.run().side("app").updated == 1
    assert "Anna" in {r["name"] for r in p.pg_rows()}
    assert p.run().writes == 0


def test_sqlite_key_change_keeps_the_record(lite: Polled) -> None:
    _key_change_keeps_the_record(lite, edit=False, compare_in_same_run=False)


def test_sqlite_key_change_with_a_value_edit_keeps_the_record(lite_any: Polled) -> None:
    _key_change_keeps_the_record(lite_any, edit=True, compare_in_same_run=False)


def test_sqlite_key_change_with_the_comparison_in_the_same_run(lite_keyset: Polled) -> None:
    _key_change_keeps_the_record(lite_keyset, edit=True, compare_in_same_run=True)


def test_mariadb_key_change_with_the_comparison_in_the_same_run(maria: Polled) -> None:
    _key_change_keeps_the_record(maria, edit=True, compare_in_same_run=True)


def _reused_key_is_another_record(p: Polled) -> None:
    """Ann's row is deleted and Ben's row moves onto Ann's key between two polls: the row
    at that key is Ben's record (by the identity it carries), Ann's record is deleted."""
    ann, ben = p.polled_id("Ann"), p.polled_id("Ben")
    pg_ben = p.pg_id("Ben")
    p.polled("DELETE FROM customers WHERE id = %s", (ann,))
    p.polled("UPDATE customers SET id = %s, amount = 5 WHERE id = %s", (ann, ben))
    p.tick()  # the poll and the comparison (Ben's old key gone) due together
    p.settle()
    assert [(r["name"], r["amount"]) for r in p.pg_rows()] == [("Ben", Decimal("5.00"))]
    assert p.pg_id("Ben") == pg_ben  # Ben's record, not Ann's renamed
    assert [r["name"] for r in p.polled_rows()] == ["Ben"]
    assert p.polled_id("Ben") == ann
    p.records()
    p.tick()
    assert p.run().writes == 0


def test_sqlite_reused_key_is_another_record(lite_keyset: Polled) -> None:
    # (with a soft-delete column a deleted row keeps its key: no key comes back)
    _reused_key_is_another_record(lite_keyset)


def test_mariadb_reused_key_is_another_record(maria: Polled) -> None:
    _reused_key_is_another_record(maria)


def test_a_key_change_on_a_polled_system_of_record_is_a_new_record(
    pg_dsn: str, tmp_path: Path
) -> None:
    """What docs/polling.md says of a polled SOR: its rows carry no identity but their
    key, so a key change creates a new record, and the old one goes only when the
    key-set comparison finds its key gone."""
    pair = PolledPair(pg_dsn, tmp_path, mode="sor_polled", deleted=KEYSET)
    pair.run(full=True)
    p = Polled(pair, "sor_polled", KEYSET)
    p.polled("INSERT INTO customers (id, name, amount) VALUES (1, 'Ann', 1)")
    assert p.run().side("app").inserted == 1
    p.polled("UPDATE customers SET id = 4242 WHERE id = 1")
    assert p.run().side("app").inserted == 1
    assert sorted(r["legacy_id"] for r in p.pg_rows()) == [1, 4242]  # both, for now
    p.tick()
    assert p.run().side("app").deleted == 1
    assert [(r["legacy_id"], r["name"]) for r in p.pg_rows()] == [(4242, "Ann")]
    assert p.run().writes == 0
