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
from syncswim_lib.envelope import Op
from syncswim_lib.pipeline.plan import ChunkContext, Planner
from syncswim_lib.pipeline.report import EntityReport
from syncswim_lib.state.base import JournalEntry
from syncswim_lib.values.codec import key_text
from tests.connectors.polling.harness import PolledMariaDB, PolledPair
from tests.pipeline import test_plan_merge as pm

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


# the key alone in one case a mode
@pytest.fixture(params=[PARAMS[0], PARAMS[3]])
def lite(request: pytest.FixtureRequest, pg_dsn: str, tmp_path: Path) -> Iterator[Polled]:
    yield from _polled(
        request, lambda mode, deleted: PolledPair(pg_dsn, tmp_path, mode=mode, deleted=deleted)
    )


KEYSET_PARAMS = [p for p in PARAMS if "keyset" in str(p.id)]


# the two combinations `lite` leaves out: with it, each test of a key change covers all four
@pytest.fixture(params=[PARAMS[1], PARAMS[2]])
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


def _swapped_keys_keep_their_records(p: Polled) -> None:
    """Ann's and Ben's rows swap keys between two polls (through a free key, as a
    swap must), Ann's amount edited with it: each record keeps its identity, the links
    move to the new keys, Ann's edit flows to Ann's record, nothing is inserted, deleted
    or taken for the other record."""
    before = p.records()
    pg_ids = {name: p.pg_id(name) for name in ("Ann", "Ben")}
    ann, ben = p.polled_id("Ann"), p.polled_id("Ben")
    p.polled("UPDATE customers SET id = 99999, amount = 5 WHERE id = %s", (ann,))
    p.polled("UPDATE customers SET id = %s WHERE id = %s", (ann, ben))
    p.polled("UPDATE customers SET id = %s WHERE id = 99999", (ben,))
    p.tick()
    report = p.run()
    for endpoint in ("app", p.polled_endpoint):
        assert report.side(endpoint).inserted == 0 and report.side(endpoint).deleted == 0
    assert report.side("app").updated == 1 and report.side(p.polled_endpoint).updated == 0
    assert report.failed == 0
    want = {k: (("Ann", Decimal("5")) if v[0] == "Ann" else v) for k, v in before.items()}
    assert p.records() == want
    assert {name: p.pg_id(name) for name in ("Ann", "Ben")} == pg_ids
    assert (p.polled_id("Ann"), p.polled_id("Ben")) == (ben, ann)
    # the links are at the new keys: an edit of each row flows to its own record
    p.polled("UPDATE customers SET name = 'Anna' WHERE id = %s", (ben,))
    p.polled("UPDATE customers SET amount = 9 WHERE id = %s", (ann,))
    assert p.run().side("app").updated == 2
    assert {r["id"]: (r["name"], r["amount"]) for r in p.pg_rows()} == {
        pg_ids["Ann"]: ("Anna", Decimal("5.00")),
        pg_ids["Ben"]: ("Ben", Decimal("9.00")),
    }
    p.tick()
    assert p.run().writes == 0
    p.records()


def test_sqlite_swapped_keys_keep_their_records(lite: Polled) -> None:
    _swapped_keys_keep_their_records(lite)


def test_mariadb_swapped_keys_keep_their_records(maria: Polled) -> None:
    _swapped_keys_keep_their_records(maria)


@pytest.fixture(params=[PARAMS[0], PARAMS[3]])
def lite_not_unique(
    request: pytest.FixtureRequest, pg_dsn: str, tmp_path: Path
) -> Iterator[Polled]:
    yield from _polled(
        request,
        lambda mode, deleted: PolledPair(
            pg_dsn, tmp_path, unique=False, mode=mode, deleted=deleted
        ),
    )


def test_a_row_taking_another_linked_records_identity_is_a_duplicate(
    lite_not_unique: Polled,
) -> None:
    """Ann's row takes Ben's identity while Ben's row keeps it: two rows claim one
    record. Refused as a duplicate (the entry failed with the reason), never merged:
    neither Ann's record nor Ben's changes on PostgreSQL."""
    p = lite_not_unique
    before = p.pg_rows()
    ben_ident = next(r[p.ident] for r in p.polled_rows() if r["name"] == "Ben")
    ann = p.polled_id("Ann")
    p.polled(f"UPDATE customers SET {p.ident} = %s, amount = 3 WHERE id = %s", (ben_ident, ann))
    p.tick()
    report = p.run()
    assert report.failed == 1 and report.writes == 0
    assert p.pg_rows() == before
    with p.pair.runtime() as rt:
        (failed,) = rt.store.entries(p.sync, "customers", status="failed")
    assert failed.change.key == {"id": ann}
    assert failed.detail is not None and "duplicate external id" in failed.detail["error"]
    assert p.run().writes == 0
    assert p.pg_rows() == before


def _rotation(n: int, polled: tuple[int, ...]) -> tuple[list[JournalEntry], ChunkContext]:
    """`n` linked records (codes C1.., polled rows on side b at keys 100, 200, ..): each
    row moved to the next record's key, the last to the first's (n=2: a swap); a poll
    entry (no before image) for each key of `polled`."""
    rows_a = [pm.row_a(i, f"C{i}", f"N{i}") for i in range(1, n + 1)]
    rows_b = [pm.row_b(100 * i, f"C{i}", f"N{i}") for i in range(1, n + 1)]
    links = [pm.linked(a, b) for a, b in zip(rows_a, rows_b, strict=True)]
    now = {100 * (i % n + 1): {**b, "id": 100 * (i % n + 1)} for i, b in enumerate(rows_b, 1)}
    entries = [pm.entry("shop", Op.UPDATE, now[k], {"id": k}) for k in polled]
    return entries, pm.ctx(rows_a, list(now.values()), links)


@pytest.mark.parametrize("n", [2, 3])
def test_planner_moves_the_links_of_a_swap_or_rotation_in_one_batch(n: int) -> None:
    """The links leave their polled keys first, then each moves to its record's row: the
    store upserts links naming one key one by one, in order, so no key is held twice."""
    entries, c = _rotation(n, tuple(100 * i for i in range(1, n + 1)))
    plan = Planner(pm.emap()).plan(entries, c)
    assert plan.failed == 0 and plan.writes == [] and plan.release == []
    detached, moved = plan.records[:n], plan.records[n:]
    assert sorted((r.ext_id, r.key_b) for r in detached) == [
        (f"C{i}", None) for i in range(1, n + 1)
    ]
    assert sorted((r.ext_id, key_text(r.key_b or {})) for r in moved) == [
        (f"C{i}", key_text({"id": 100 * (i % n + 1)})) for i in range(1, n + 1)
    ]


def test_planner_refuses_half_a_swap() -> None:
    """Only one of the swapped rows has an entry in the batch: merging it would leave the
    other record linked to a key its row left, so the row is refused (failed, retried),
    with a reason naming the swap, and nothing is written."""
    entries, c = _rotation(2, (100,))
    plan = Planner(pm.emap()).plan(entries, c)
    assert plan.failed == 1 and plan.writes == [] and plan.records == []
    (update,) = plan.updates
    assert update.status == "failed" and "keys swapped" in str(update.detail)
