"""The backlog the health checks read: pending entries per entity and the detection time
of the oldest, on both stores."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from syncswim_lib.envelope import Change
from syncswim_lib.state.base import Backlog, BatchRecord, EntryUpdate
from syncswim_lib.state.sqlstore import SqlStateStore
from tests.state.conftest import T0

MakeChange = Callable[..., Change]


def test_backlog_counts_pending_and_dates_the_oldest(
    store: SqlStateStore, make_change: MakeChange
) -> None:
    assert store.backlog("s1") == {}
    # customers 1..5 (detected T0 + n s); orders 10, 11; another sync's change
    store.append_changes("s1", "app_db", [("customers", make_change(n)) for n in range(1, 6)], None)
    store.append_changes(
        "s1",
        "shop_db",
        [("orders", make_change(n, table="orders")) for n in (11, 10)],
        None,
    )
    store.append_changes("s2", "app_db", [("customers", make_change(99))], None)
    got = store.backlog("s1")
    assert got == {
        "customers": Backlog(5, T0 + timedelta(seconds=1, milliseconds=5)),
        "orders": Backlog(2, T0 + timedelta(seconds=10, milliseconds=5)),
    }
    # applied, failed, parked and waiting entries are not backlog; the oldest moves on
    ids = [e.id for e in store.pending("s1", "customers")]
    store.set_batch(ids[:4], "b1")
    store.record(
        BatchRecord(
            "s1",
            "customers",
            entries=[
                EntryUpdate(ids[0], "applied"),
                EntryUpdate(ids[1], "failed", {"error": "x"}, T0),
                EntryUpdate(ids[2], "parked", {"error": "x"}),
                EntryUpdate(ids[3], "waiting"),
            ],
            finished_batch_ids=["b1"],
        )
    )
    assert store.backlog("s1")["customers"] == Backlog(1, T0 + timedelta(seconds=5, milliseconds=5))


def test_our_own_writes_coming_back_are_not_backlog(
    store: SqlStateStore, make_change: MakeChange
) -> None:
    # an echo the next run settles anyway: alone it must not age into a warning
    store.append_changes(
        "s1", "app_db", [("customers", replace(make_change(1), origin="s1"))], None
    )
    assert store.backlog("s1") == {}
    store.append_changes(
        "s1", "app_db", [("customers", replace(make_change(2), origin="other_sync"))], None
    )
    assert store.backlog("s1") == {
        "customers": Backlog(1, T0 + timedelta(seconds=2, milliseconds=5))
    }
