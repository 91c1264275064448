"""Conflict records: stored by `record`, listed, resolved; values keep their exact types."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from syncswim_lib.envelope import Change
from syncswim_lib.state.base import BatchRecord, ConflictRecord, EntryUpdate, Link
from syncswim_lib.state.sqlstore import SqlStateStore

MakeChange = Callable[..., Change]
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def conflict(n: int = 1, **changes: Any) -> ConflictRecord:
    """A decided `newest` conflict on the name of customer n (side b won)."""
    c = ConflictRecord(
        sync="s1",
        entity="customers",
        key_a={"id": n},
        key_b={"Id": f"001{n}"},
        ext_id=None,
        field="name",
        base_a=f"old {n}",
        base_b=f"OLD {n}",
        value_a=f"a {n}",
        value_b=f"b {n}",
        ts_a=T0,
        ts_b=T0 + timedelta(seconds=1),
        rule="newest",
        outcome="b",
        value=f"b {n}",
        entry_ids=(n, n + 100),
    )
    return replace(c, **changes)


def store_conflicts(store: SqlStateStore, *records: ConflictRecord) -> list[ConflictRecord]:
    """Store new conflicts through `record`, in the order given; returns them as stored."""
    i = 0
    while i < len(records):  # consecutive ones of one entity in one batch
        j = i
        same = (records[i].sync, records[i].entity)
        while j < len(records) and (records[j].sync, records[j].entity) == same:
            j += 1
        store.record(BatchRecord(records[i].sync, records[i].entity, conflicts=records[i:j]))
        i = j
    return store.conflicts(limit=len(records))[::-1]


def without_store_fields(c: ConflictRecord) -> ConflictRecord:
    return replace(c, id=None, created_at=None)


def test_record_stores_new_conflicts_with_every_field(store: SqlStateStore) -> None:
    before = datetime.now(UTC)
    sent = [
        conflict(1),
        conflict(
            2,
            key_b=None,
            ext_id="CUST-2",
            field="__record__",
            rule="prefer:a",
            outcome="a",
            value={"id": 2, "name": "kept"},
            value_b=None,
            ts_b=None,
            tie=True,
            entry_ids=(),
            note="update vs delete",
        ),
        conflict(3, rule="manual", outcome="manual", value=None, status="open"),
    ]
    got = store_conflicts(store, *sent)
    after = datetime.now(UTC)
    assert [without_store_fields(c) for c in got] == sent
    ids = [c.id for c in got]
    assert all(isinstance(i, int) for i in ids) and ids == sorted(set(ids))  # type: ignore[type-var]
    for c in got:
        assert c.created_at is not None and before <= c.created_at <= after
        assert c.resolved_at is None
        assert store.conflict(c.id or 0) == c
    assert store.conflict(10**9) is None


def test_values_keep_their_types(store: SqlStateStore) -> None:
    tz = timezone(timedelta(hours=-5))
    values: list[Any] = [
        Decimal("1.10"),
        date(2025, 1, 2),
        datetime(2025, 1, 2, 3, 4, 5, 678, tzinfo=UTC),
        b"\x00\xff",
        {"$decimal": "looks like a tag"},
        [1, "1", None, True],
        None,
        0,
        "",
        math.inf,
    ]
    sent = [
        conflict(
            i,
            base_a=v,
            base_b=v,
            value_a=v,
            value_b=v,
            value=v,
            key_a={"id": i, "day": date(2025, 1, i + 1)},
            ts_a=datetime(2025, 1, 1, 7, 0, 0, 123456, tzinfo=tz),
        )
        for i, v in enumerate(values)
    ]
    got = store_conflicts(store, *sent)
    for s, g in zip(sent, got, strict=True):
        for name in ("base_a", "base_b", "value_a", "value_b", "value", "key_a"):
            assert getattr(g, name) == getattr(s, name)
            assert type(getattr(g, name)) is type(getattr(s, name))
        assert g.ts_a == s.ts_a  # the same instant (read back in UTC)
        assert g.ts_a is not None and g.ts_a.utcoffset() == timedelta(0)
    nan = store_conflicts(store, conflict(50, value_a=math.nan))[0]
    assert math.isnan(nan.value_a)


def test_an_unstorable_value_stores_nothing(store: SqlStateStore) -> None:
    with pytest.raises(TypeError, match="cannot encode"):
        store.record(
            BatchRecord("s1", "customers", conflicts=[conflict(1), conflict(2, value_b={1, 2})])
        )
    assert store.conflicts() == []


def test_record_refuses_bad_conflicts(store: SqlStateStore) -> None:
    with pytest.raises(ValueError, match="unknown conflict status"):
        store.record(BatchRecord("s1", "customers", conflicts=[conflict(status="done")]))
    with pytest.raises(ValueError, match="a conflict of s1/customers in a batch of s1/orders"):
        store.record(BatchRecord("s1", "orders", conflicts=[conflict()]))
    assert store.conflicts() == []


def test_record_updates_conflicts_by_id(store: SqlStateStore) -> None:
    first, second = store_conflicts(store, conflict(1), conflict(2))
    assert first.id is not None and second.id is not None
    resolved_at = T0 + timedelta(hours=1)
    applied = replace(
        first,
        status="applied",
        outcome="value",
        value="chosen",
        resolved_at=resolved_at,
        note="done",
        # the fields an update does not touch
        value_a="ignored",
        field="ignored",
        entry_ids=(9,),
    )
    store.record(BatchRecord("s1", "customers", conflicts=[applied, conflict(3)]))
    assert store.conflict(first.id) == replace(
        first,
        status="applied",
        outcome="value",
        value="chosen",
        resolved_at=resolved_at,
        note="done",
    )
    assert store.conflict(second.id) == second
    assert len(store.conflicts()) == 3
    # an id of another entity or none at all: nothing of the batch happens
    store.record(BatchRecord("s1", "orders", conflicts=[conflict(4, entity="orders")]))
    (other,) = store.conflicts(entity="orders")
    for wrong in (replace(other, entity="customers"), replace(first, id=10**9)):
        with pytest.raises(ValueError, match=r"conflicts \[\d+\] are not conflicts of s1/custom"):
            store.record(
                BatchRecord(
                    "s1",
                    "customers",
                    conflicts=[conflict(5), replace(second, status="applied"), wrong],
                )
            )
        assert len(store.conflicts()) == 4
        assert store.conflict(second.id) == second


def test_active_conflicts_are_open_and_resolved_ones_oldest_first(store: SqlStateStore) -> None:
    got = store_conflicts(
        store,
        conflict(1, status="open", outcome="manual", value=None),
        conflict(2),
        conflict(3, status="resolved"),
        conflict(4, status="applied"),
        conflict(5, status="open", entity="orders"),
        conflict(6, status="open", sync="s2"),
        conflict(7, status="open"),
    )
    assert store.active_conflicts("s1", "customers") == [got[0], got[2], got[6]]
    assert store.active_conflicts("s1", "orders") == [got[4]]
    assert store.active_conflicts("s2", "customers") == [got[5]]
    assert store.active_conflicts("s3", "customers") == []


def test_conflicts_filters_newest_first(store: SqlStateStore) -> None:
    got = store_conflicts(
        store,
        conflict(1, status="open"),
        conflict(2),
        conflict(3, entity="orders"),
        conflict(4, sync="s2"),
        conflict(5, sync="s2", status="open"),
    )
    assert store.conflicts() == got[::-1]
    assert store.conflicts(limit=2) == [got[4], got[3]]
    assert store.conflicts(sync="s2") == [got[4], got[3]]
    assert store.conflicts(entity="orders") == [got[2]]
    assert store.conflicts(status="open") == [got[4], got[0]]
    assert store.conflicts(sync="s1", entity="customers", status="decided") == [got[1]]
    assert store.conflicts(sync="s1", status="applied") == []


def test_resolve_conflict(store: SqlStateStore) -> None:
    decided, manual = store_conflicts(
        store,
        conflict(1, value_b=Decimal("2.50")),
        conflict(2, rule="manual", outcome="manual", value=None, status="open"),
    )
    assert decided.id is not None and manual.id is not None
    before = datetime.now(UTC)
    # a decided conflict resolved the other way restores the loser's value
    restored = store.resolve_conflict(decided.id, "a", decided.value_a, "restored")
    after = datetime.now(UTC)
    assert restored == replace(
        decided,
        status="resolved",
        outcome="a",
        value="a 1",
        note="restored",
        resolved_at=restored.resolved_at,
    )
    assert restored.resolved_at is not None and before <= restored.resolved_at <= after
    assert store.conflict(decided.id) == restored
    took_b = store.resolve_conflict(manual.id, "b", manual.value_b, "take b")
    assert (took_b.status, took_b.outcome, took_b.value) == ("resolved", "b", "b 2")
    chosen = store.resolve_conflict(manual.id, "value", Decimal("7.00"), "typed")
    assert (chosen.outcome, chosen.value, chosen.note) == ("value", Decimal("7.00"), "typed")
    assert store.active_conflicts("s1", "customers") == [restored, chosen]
    # an applied one can be resolved again: a new resolution
    store.record(BatchRecord("s1", "customers", conflicts=[replace(chosen, status="applied")]))
    again = store.resolve_conflict(manual.id, "a", "a 2", "changed my mind")
    assert (again.status, again.outcome, again.value) == ("resolved", "a", "a 2")


def test_resolve_conflict_refuses_what_it_cannot_do(store: SqlStateStore) -> None:
    (c,) = store_conflicts(store, conflict(1))
    assert c.id is not None
    with pytest.raises(KeyError):
        store.resolve_conflict(c.id + 1000, "a", "x", "")
    with pytest.raises(ValueError, match="'a', 'b' or 'value'"):
        store.resolve_conflict(c.id, "manual", None, "")
    with pytest.raises(TypeError, match="cannot encode"):
        store.resolve_conflict(c.id, "value", object(), "")
    assert store.conflict(c.id) == c


def _journal(store: SqlStateStore, make_change: MakeChange, n: int) -> list[int]:
    store.append_changes("s1", "app_db", [("customers", make_change(i)) for i in range(n)], None)
    return [e.id for e in store.pending("s1", "customers")]


def test_release_hands_entries_back(store: SqlStateStore, make_change: MakeChange) -> None:
    ids = _journal(store, make_change, 4)
    assert store.set_batch(ids, "b1") == ids
    store.record(
        BatchRecord(
            "s1",
            "customers",
            entries=[
                EntryUpdate(ids[0], "applied"),
                # not due for another try yet: it asks for no run
                EntryUpdate(ids[1], "failed", {"e": "x"}, datetime.now(UTC) + timedelta(hours=1)),
            ],
            release=[ids[2], ids[3], ids[3]],  # a repeated id counts once
            finished_batch_ids=["b1"],
        )
    )
    got = {e.id: e for e in store.entries(sync="s1")}
    assert [(got[i].status, got[i].batch_id, got[i].attempts) for i in ids] == [
        ("applied", None, 0),
        ("failed", None, 1),
        ("pending", None, 1),
        ("pending", None, 1),
    ]
    assert store.pending_counts("s1") == {"customers": 2}
    assert store.in_flight_batches("s1", "customers") == []
    # a released entry can be claimed again, and released again
    assert store.set_batch(ids[2:], "b2") == ids[2:]
    store.record(BatchRecord("s1", "customers", release=ids[2:3]))
    assert store.entries(sync="s1", key={"id": 2})[0].attempts == 2
    with pytest.raises(ValueError, match="both updated and released"):
        store.record(
            BatchRecord(
                "s1", "customers", entries=[EntryUpdate(ids[2], "applied")], release=[ids[2]]
            )
        )
    with pytest.raises(ValueError, match=r"journal entries \[\d+\] are not entries of s1/orders"):
        store.record(BatchRecord("s1", "orders", release=[ids[2]]))
    assert store.entries(sync="s1", key={"id": 2})[0].attempts == 2


def test_record_is_one_transaction_with_conflicts_and_release(
    store: SqlStateStore, make_change: MakeChange
) -> None:
    ids = _journal(store, make_change, 3)
    store.set_batch(ids, "b1")
    store.save_plan("s1", "customers", "b1", '{"writes": []}')
    (known,) = store_conflicts(store, conflict(1, status="resolved", outcome="a", value="a 1"))

    def whole(*extra: ConflictRecord, release: tuple[int, ...] = ()) -> BatchRecord:
        return BatchRecord(
            "s1",
            "customers",
            entries=[EntryUpdate(ids[0], "conflict", {"field": "name"})],
            upsert_links=[Link("s1", "customers", {"id": 0}, {"Id": "0010"}, {"name": "b 0"})],
            conflicts=[conflict(0), replace(known, status="applied"), *extra],
            release=(ids[1], ids[2], *release),
            finished_batch_ids=["b1"],
        )

    for failing in (
        whole(replace(known, id=10**9)),  # an unknown conflict id
        whole(release=(10**9,)),  # an unknown entry to release
        whole(conflict(2, value={"x": object()})),  # an unstorable conflict
    ):
        with pytest.raises((ValueError, TypeError)):
            store.record(failing)
        # nothing happened
        assert [(e.status, e.batch_id, e.attempts) for e in store.pending("s1", "customers")] == [
            ("pending", "b1", 0)
        ] * 3
        assert store.conflicts() == [known]
        assert store.links("s1", "customers") == []
        assert store.load_plan("b1") == '{"writes": []}'
    store.record(whole())
    entries = {e.id: e for e in store.entries(sync="s1")}
    assert [(entries[i].status, entries[i].batch_id, entries[i].attempts) for i in ids] == [
        ("conflict", None, 0),
        ("pending", None, 1),
        ("pending", None, 1),
    ]
    newest, updated = store.conflicts()
    assert without_store_fields(newest) == conflict(0)
    assert updated == replace(known, status="applied")
    assert len(store.links("s1", "customers")) == 1
    assert store.load_plan("b1") is None
