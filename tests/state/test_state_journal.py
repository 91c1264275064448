from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from syncswim_lib.envelope import BinlogPosition, Change, Op, PgPosition, ReplayPosition
from syncswim_lib.state.base import BatchRecord, EntryUpdate
from syncswim_lib.state.sqlstore import SqlStateStore

MakeChange = Callable[..., Change]


def test_append_stores_pending_entries_and_the_position(
    store: SqlStateStore, make_change: MakeChange
) -> None:
    changes = [("customers", make_change(n)) for n in range(3)]
    assert store.append_changes("s1", "app_db", changes, PgPosition(1000, 2)) == 3
    assert store.get_position("s1", "app_db") == PgPosition(1000, 2)
    assert store.get_position("s1", "crm") is None
    assert store.get_position("other", "app_db") is None
    pending = store.pending("s1", "customers")
    assert [e.change for e in pending] == [c for _, c in changes]
    assert {(e.sync, e.entity, e.side, e.status, e.attempts) for e in pending} == {
        ("s1", "customers", "app_db", "pending", 0)
    }
    assert all(e.batch_id is None and e.detail is None and e.applied_at is None for e in pending)


def test_reappended_changes_are_ignored(store: SqlStateStore, make_change: MakeChange) -> None:
    first = [("customers", make_change(n)) for n in range(5)]
    assert store.append_changes("s1", "app_db", first, PgPosition(1000, 4)) == 5
    # a restart re-captures from before the stored position: overlap plus new changes
    again = [("customers", make_change(n)) for n in range(3, 8)]
    assert store.append_changes("s1", "app_db", again, PgPosition(1000, 7)) == 3
    assert len(store.pending("s1", "customers")) == 8
    # the same position on another side, table or sync is a different change
    assert store.append_changes("s1", "shop_db", first[:1], None) == 1
    assert store.append_changes("s2", "app_db", first[:1], None) == 1
    other_table = [("orders", make_change(0, table="public.orders"))]
    assert store.append_changes("s1", "app_db", other_table, None) == 1
    # duplicates inside one call count once
    dup = [("customers", make_change(20)), ("customers", make_change(20))]
    assert store.append_changes("s1", "app_db", dup, None) == 1


def test_one_position_may_carry_several_records(
    store: SqlStateStore, make_change: MakeChange
) -> None:
    # one Salesforce change event can name several records under one replay id
    event = ReplayPosition(77)
    changes = [
        ("accounts", _at(make_change(n, table="Account", key={"Id": f"001{n}"}), event))
        for n in range(3)
    ]
    assert store.append_changes("s1", "crm", changes, event) == 3
    assert store.append_changes("s1", "crm", changes, event) == 0


def _at(change: Change, position: ReplayPosition) -> Change:
    return replace(change, position=position)


def test_a_failed_first_append_leaves_the_store_usable(
    store: SqlStateStore, make_change: MakeChange
) -> None:
    bad = make_change(1, after={"id": 1, "when": object()})
    with pytest.raises(TypeError):
        store.append_changes("s1", "app_db", [("customers", bad)], PgPosition(1000, 1))
    assert store.get_position("s1", "app_db") is None
    assert store.append_changes("s1", "app_db", [("customers", make_change(1))], None) == 1


def test_failure_mid_append_stores_neither_changes_nor_position(
    store: SqlStateStore, make_change: MakeChange
) -> None:
    store.append_changes("s1", "app_db", [("customers", make_change(0))], PgPosition(1000, 0))
    bad = make_change(2, after={"id": 2, "blob": object()})  # not a canonical value
    batch = [("customers", make_change(1)), ("customers", bad), ("customers", make_change(3))]
    with pytest.raises(TypeError, match="cannot encode"):
        store.append_changes("s1", "app_db", batch, PgPosition(1000, 3))
    assert store.get_position("s1", "app_db") == PgPosition(1000, 0)
    assert [e.change.key for e in store.pending("s1", "customers")] == [{"id": 0}]
    # and the store is still usable afterwards
    assert store.append_changes("s1", "app_db", batch[:1], PgPosition(1000, 1)) == 1


def test_set_position_overwrites(store: SqlStateStore) -> None:
    store.set_position("s1", "shop_db", BinlogPosition("bin.000001", 4))
    store.set_position("s1", "shop_db", BinlogPosition("bin.000002", 120, 3))
    assert store.get_position("s1", "shop_db") == BinlogPosition("bin.000002", 120, 3)


def test_pending_counts_and_order(store: SqlStateStore, make_change: MakeChange) -> None:
    store.append_changes(
        "s1",
        "app_db",
        [("customers", make_change(n)) for n in range(4)]
        + [("orders", make_change(n, table="public.orders")) for n in range(2)],
        None,
    )
    store.append_changes("s2", "app_db", [("customers", make_change(9))], None)
    assert store.pending_counts("s1") == {"customers": 4, "orders": 2}
    ids = [e.id for e in store.pending("s1", "customers")]
    assert ids == sorted(ids) and len(ids) == 4
    assert [e.id for e in store.pending("s1", "customers", limit=2)] == ids[:2]
    assert [e.id for e in store.pending("s1", "customers", after_id=ids[1])] == ids[2:]
    # waiting entries are still returned by pending() but do not ask for a run; done ones
    # are neither
    store.record(
        BatchRecord(
            "s1",
            "customers",
            entries=[EntryUpdate(ids[0], "applied"), EntryUpdate(ids[1], "waiting")],
        )
    )
    assert store.pending_counts("s1") == {"customers": 2, "orders": 2}
    assert [e.id for e in store.pending("s1", "customers")] == ids[1:]
    store.record(
        BatchRecord(
            "s1",
            "orders",
            entries=[EntryUpdate(e.id, "skipped") for e in store.pending("s1", "orders")],
        )
    )
    assert store.pending_counts("s1") == {"customers": 2}


def test_echoes_of_our_own_writes_do_not_ask_for_a_run(
    store: SqlStateStore, make_change: MakeChange
) -> None:
    ours = dataclasses.replace(make_change(1), origin="s1")
    other_sync = dataclasses.replace(make_change(2), origin="s2")  # a hub's real change
    store.append_changes("s1", "app_db", [("customers", ours), ("customers", other_sync)], None)
    assert store.pending_counts("s1") == {"customers": 1}
    assert len(store.pending("s1", "customers")) == 2  # the next run still settles both


def test_in_flight_batches(store: SqlStateStore, make_change: MakeChange) -> None:
    store.append_changes("s1", "app_db", [("customers", make_change(n)) for n in range(4)], None)
    ids = [e.id for e in store.pending("s1", "customers")]
    assert store.in_flight_batches("s1", "customers") == []
    assert store.set_batch(ids[:2], "batch-1") == ids[:2]
    # a second run trying to take entries already claimed gets only the free one
    assert store.set_batch(ids[1:3], "batch-2") == ids[2:3]
    assert store.in_flight_batches("s1", "customers") == ["batch-1", "batch-2"]
    assert store.in_flight_batches("s1", "orders") == []
    assert [e.batch_id for e in store.pending("s1", "customers")] == [
        "batch-1",
        "batch-1",
        "batch-2",
        None,
    ]
    # batch-1 committed: its entries are done, the batch closes
    store.record(
        BatchRecord(
            "s1",
            "customers",
            entries=[EntryUpdate(i, "applied") for i in ids[:2]],
            finished_batch_ids=["batch-1"],
        )
    )
    assert store.in_flight_batches("s1", "customers") == ["batch-2"]
    # batch-2 found not committed after a crash: closed without touching its entry
    store.record(BatchRecord("s1", "customers", finished_batch_ids=["batch-2"]))
    assert store.in_flight_batches("s1", "customers") == []
    assert [(e.id, e.batch_id) for e in store.pending("s1", "customers")] == [
        (ids[2], None),
        (ids[3], None),
    ]


def test_audit_entries_filters_newest_first(store: SqlStateStore, make_change: MakeChange) -> None:
    store.append_changes("s1", "app_db", [("customers", make_change(n)) for n in range(3)], None)
    store.append_changes("s1", "app_db", [("orders", make_change(1, table="public.orders"))], None)
    store.append_changes("s2", "app_db", [("customers", make_change(1))], None)
    c = store.pending("s1", "customers")
    store.record(
        BatchRecord(
            "s1",
            "customers",
            entries=[
                EntryUpdate(c[1].id, "failed", {"error": "rejected: bad email"}),
                EntryUpdate(c[2].id, "conflict", {"winner": "app_db"}),
            ],
        )
    )
    everything = store.entries()
    assert len(everything) == 5
    assert [e.id for e in everything] == sorted((e.id for e in everything), reverse=True)
    assert len(store.entries(limit=2)) == 2
    assert {e.sync for e in store.entries(sync="s2")} == {"s2"}
    assert [e.entity for e in store.entries(sync="s1", entity="orders")] == ["orders"]
    (failed,) = store.entries(status="failed")
    assert failed.id == c[1].id and failed.detail == {"error": "rejected: bad email"}
    by_key = store.entries(key={"id": 1})
    assert {(e.sync, e.entity) for e in by_key} == {
        ("s1", "customers"),
        ("s1", "orders"),
        ("s2", "customers"),
    }
    assert [e.id for e in store.entries(sync="s1", entity="customers", key={"id": 1})] == [c[1].id]
    assert store.entries(key={"id": "1"}) == []  # type-exact keys
    assert store.entries(sync="s1", status="applied") == []


def test_threads_share_one_store(store: SqlStateStore, make_change: MakeChange) -> None:
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for n in range(20):
                ch = make_change(t * 100 + n)
                store.append_changes("s1", f"side{t}", [("customers", ch)], ch.position)
                store.pending_counts("s1")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert store.pending_counts("s1") == {"customers": 80}


@pytest.mark.slow
def test_append_ten_thousand_changes_quickly(
    store: SqlStateStore, make_change: MakeChange, record_property: Any
) -> None:
    n = 10_000
    changes = [
        (
            "customers",
            make_change(
                i,
                after={
                    "id": i,
                    "name": f"customer {i}",
                    "email": f"c{i}@example.com",
                    "active": True,
                },
            ),
        )
        for i in range(n)
    ]
    started = time.perf_counter()
    assert store.append_changes("s1", "app_db", changes, PgPosition(1000, n - 1)) == n
    first = time.perf_counter() - started
    started = time.perf_counter()
    assert store.append_changes("s1", "app_db", changes, PgPosition(1000, n - 1)) == 0
    again = time.perf_counter() - started
    rate = n / first
    record_property("append_rows_per_s", round(rate))
    print(
        f"\n{type(store).__name__}: append {n} in {first:.2f}s ({rate:,.0f}/s), "
        f"re-append {again:.2f}s"
    )
    assert store.pending_counts("s1") == {"customers": n}
    assert store.pending("s1", "customers", limit=1)[0].change.op == Op.INSERT
