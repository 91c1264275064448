from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from syncswim_lib.envelope import Change, PgPosition, ReplayPosition
from syncswim_lib.errors import FatalError
from syncswim_lib.state.base import BatchRecord, EntryUpdate, Link
from syncswim_lib.state.sqlstore import SqlStateStore

MakeChange = Callable[..., Change]


def _journal(store: SqlStateStore, make_change: MakeChange, n: int = 3) -> list[int]:
    store.append_changes("s1", "app_db", [("customers", make_change(i)) for i in range(n)], None)
    return [e.id for e in store.pending("s1", "customers")]


def test_record_sets_statuses_attempts_and_applied_at(
    store: SqlStateStore, make_change: MakeChange
) -> None:
    ids = _journal(store, make_change, 4)
    store.set_batch(ids, "b1")
    before = datetime.now(UTC)
    store.record(
        BatchRecord(
            "s1",
            "customers",
            entries=[
                EntryUpdate(ids[0], "applied", {"written": {"limit": Decimal("1.10")}}),
                EntryUpdate(ids[1], "skipped", {"reason": "echo"}),
                EntryUpdate(ids[2], "failed", {"error": "timeout"}),
                EntryUpdate(ids[3], "waiting", {"waiting_for": "parent"}),
            ],
        )
    )
    after = datetime.now(UTC)
    got = {e.id: e for e in store.entries(sync="s1")}
    applied, skipped, failed, waiting = (got[i] for i in ids)
    assert applied.status == "applied" and applied.detail == {"written": {"limit": Decimal("1.10")}}
    for e in (applied, skipped):
        assert e.applied_at is not None and before <= e.applied_at <= after
        assert e.attempts == 0
    assert failed.status == "failed" and failed.attempts == 1 and failed.applied_at is None
    assert waiting.status == "waiting" and waiting.attempts == 0 and waiting.applied_at is None
    assert all(e.batch_id is None for e in got.values())
    # a retry that fails again counts again; one that succeeds keeps the count
    store.record(BatchRecord("s1", "customers", entries=[EntryUpdate(ids[2], "failed")]))
    assert store.entries(status="failed")[0].attempts == 2
    store.record(BatchRecord("s1", "customers", entries=[EntryUpdate(ids[2], "applied")]))
    (done,) = [e for e in store.entries(status="applied") if e.id == ids[2]]
    assert done.attempts == 2 and done.applied_at is not None and done.detail is None


def test_record_stores_positions(store: SqlStateStore) -> None:
    store.record(
        BatchRecord(
            "s1", "customers", positions=[("crm", ReplayPosition(5)), ("app_db", PgPosition(9))]
        )
    )
    assert store.get_position("s1", "crm") == ReplayPosition(5)
    assert store.get_position("s1", "app_db") == PgPosition(9)


def test_a_failing_part_rolls_back_the_whole_record(
    store: SqlStateStore, make_change: MakeChange
) -> None:
    ids = _journal(store, make_change)
    store.set_batch(ids, "b1")
    store.set_position("s1", "app_db", PgPosition(1))
    existing = Link("s1", "customers", {"id": 0}, {"Id": "001A"}, {"name": "c0"})
    store.record(BatchRecord("s1", "customers", upsert_links=[existing]))

    def whole(last: BatchRecord) -> BatchRecord:
        return BatchRecord(
            "s1",
            "customers",
            entries=[EntryUpdate(ids[0], "applied"), EntryUpdate(ids[1], "failed"), *last.entries],
            upsert_links=[
                Link("s1", "customers", {"id": 1}, {"Id": "001B"}, {"name": "c1"}),
                Link("s1", "customers", {"id": 0}, {"Id": "001A"}, {"name": "new"}),
                *last.upsert_links,
            ],
            delete_links=[existing],
            positions=[("app_db", PgPosition(2))],
            finished_batch_ids=["b1"],
        )

    clash = Link("s1", "customers", {"id": 0}, {"Id": "001B"}, None)
    unstorable = Link("s1", "customers", {"id": 8}, None, {"x": {1}})
    failing_parts = {
        # an entry that is not in this sync/entity
        ValueError: BatchRecord("s1", "customers", entries=[EntryUpdate(10**9, "applied")]),
        # a link matched by key_a that would take key_b of another link
        FatalError: BatchRecord("s1", "customers", upsert_links=[clash]),
        # a shadow that cannot be stored
        TypeError: BatchRecord("s1", "customers", upsert_links=[unstorable]),
    }
    for error, last in failing_parts.items():
        with pytest.raises(error):
            store.record(whole(last))
        # nothing of the batch happened
        assert [(e.status, e.batch_id, e.attempts) for e in store.pending("s1", "customers")] == [
            ("pending", "b1", 0)
        ] * 3
        assert store.links("s1", "customers") == [existing]
        assert store.get_position("s1", "app_db") == PgPosition(1)
        assert store.in_flight_batches("s1", "customers") == ["b1"]
    # the same batch without the failing part goes through
    store.record(whole(BatchRecord("s1", "customers")))
    assert store.get_position("s1", "app_db") == PgPosition(2)
    assert store.in_flight_batches("s1", "customers") == []


def test_record_refuses_an_unknown_status(store: SqlStateStore, make_change: MakeChange) -> None:
    ids = _journal(store, make_change, 1)
    with pytest.raises(ValueError, match="unknown journal status"):
        store.record(BatchRecord("s1", "customers", entries=[EntryUpdate(ids[0], "done")]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not entries of s1/orders"):
        store.record(BatchRecord("s1", "orders", entries=[EntryUpdate(ids[0], "applied")]))
    assert store.pending("s1", "customers")[0].status == "pending"


def _upsert(store: SqlStateStore, *links: Link) -> None:
    store.record(BatchRecord("s1", "customers", upsert_links=links))


def test_link_matching_by_key_a_key_b_and_ext_id(store: SqlStateStore) -> None:
    # created in A; B's record not created yet
    _upsert(store, Link("s1", "customers", {"id": 1}, None, {"name": "a"}))
    # B's key arrives: matched by key_a, updated in place
    _upsert(store, Link("s1", "customers", {"id": 1}, {"Id": "001X"}, {"name": "b"}))
    assert store.links("s1", "customers") == [
        Link("s1", "customers", {"id": 1}, {"Id": "001X"}, {"name": "b"})
    ]
    # created in B first (SOR mode: A's key not known yet), then A's key arrives: by key_b
    _upsert(store, Link("s1", "customers", None, {"Id": "001Y"}, None))
    _upsert(store, Link("s1", "customers", {"id": 2}, {"Id": "001Y"}, {"name": "y"}))
    # external-id mode: matched by ext_id alone, keys filled in later
    _upsert(store, Link("s1", "customers", None, None, None, ext_id="CUST-001"))
    _upsert(store, Link("s1", "customers", {"id": 3}, None, {"n": 1}, ext_id="CUST-001"))
    _upsert(store, Link("s1", "customers", None, {"Id": "001Z"}, {"n": 2}, ext_id="CUST-001"))
    links = store.links("s1", "customers")
    assert links == [
        Link("s1", "customers", {"id": 1}, {"Id": "001X"}, {"name": "b"}),
        Link("s1", "customers", {"id": 2}, {"Id": "001Y"}, {"name": "y"}),
        # the upsert gives the link's whole new state
        Link("s1", "customers", None, {"Id": "001Z"}, {"n": 2}, ext_id="CUST-001"),
    ]
    assert store.link_by_key("s1", "customers", "a", {"id": 2}) == links[1]
    assert store.link_by_key("s1", "customers", "b", {"Id": "001X"}) == links[0]
    assert store.link_by_key("s1", "customers", "a", {"id": "2"}) is None  # type-exact
    assert store.link_by_key("s1", "customers", "b", {"id": 2}) is None  # the other side
    assert store.link_by_ext_id("s1", "customers", "CUST-001") == links[2]
    assert store.link_by_ext_id("s1", "customers", "CUST-002") is None
    assert store.link_by_key("s2", "customers", "a", {"id": 2}) is None
    assert store.links("s1", "orders") == []


def test_key_a_wins_over_key_b_when_both_match(store: SqlStateStore) -> None:
    _upsert(store, Link("s1", "customers", {"id": 1}, None, None))
    _upsert(store, Link("s1", "customers", None, {"Id": "B"}, None))
    # matched by key_a: taking key_b from the other link would break its uniqueness
    with pytest.raises(FatalError, match="conflicts with a stored one"):
        _upsert(store, Link("s1", "customers", {"id": 1}, {"Id": "B"}, None))
    assert len(store.links("s1", "customers")) == 2


def test_links_are_unique_per_key_and_ext_id(store: SqlStateStore) -> None:
    _upsert(store, Link("s1", "customers", {"id": 1}, {"Id": "A"}, None, ext_id="E1"))
    _upsert(store, Link("s1", "customers", {"id": 2}, {"Id": "B"}, None, ext_id="E2"))
    # two links in one batch that claim the same key_a: the second updates the first
    _upsert(
        store,
        Link("s1", "customers", {"id": 3}, None, None),
        Link("s1", "customers", {"id": 3}, {"Id": "C"}, None),
    )
    assert len(store.links("s1", "customers")) == 3
    for clash in (
        # matched by the first key given, the other values belong to another link
        Link("s1", "customers", {"id": 1}, {"Id": "B"}, None),
        Link("s1", "customers", {"id": 1}, None, None, ext_id="E2"),
        Link("s1", "customers", None, {"Id": "A"}, None, ext_id="E2"),
    ):
        with pytest.raises(FatalError):
            _upsert(store, clash)
    assert len(store.links("s1", "customers")) == 3
    # a link matched by a later probe takes the earlier values: key_b match, new key_a
    _upsert(store, Link("s1", "customers", {"id": 4}, {"Id": "A"}, None, ext_id="E1"))
    assert store.link_by_key("s1", "customers", "a", {"id": 1}) is None
    assert store.link_by_ext_id("s1", "customers", "E1") == Link(
        "s1", "customers", {"id": 4}, {"Id": "A"}, None, ext_id="E1"
    )
    # the same keys in another entity or sync are other links
    store.record(
        BatchRecord(
            "s1", "orders", upsert_links=[Link("s1", "orders", {"id": 1}, {"Id": "A"}, None, "E1")]
        )
    )
    store.record(
        BatchRecord(
            "s2",
            "customers",
            upsert_links=[Link("s2", "customers", {"id": 1}, {"Id": "A"}, None, "E1")],
        )
    )
    assert len(store.links("s1", "customers")) == 3
    with pytest.raises(ValueError, match="needs a key or an ext_id"):
        _upsert(store, Link("s1", "customers", None, None, {"x": 1}))


def test_delete_links_by_the_same_matching(store: SqlStateStore) -> None:
    _upsert(
        store,
        Link("s1", "customers", {"id": 1}, {"Id": "A"}, None),
        Link("s1", "customers", {"id": 2}, {"Id": "B"}, None),
        Link("s1", "customers", {"id": 3}, {"Id": "C"}, None, ext_id="E3"),
        Link("s1", "customers", {"id": 4}, {"Id": "D"}, None),
    )
    store.record(
        BatchRecord(
            "s1",
            "customers",
            delete_links=[
                Link("s1", "customers", {"id": 1}, None, None),  # by key_a
                Link("s1", "customers", None, {"Id": "B"}, None),  # by key_b
                Link("s1", "customers", None, None, None, ext_id="E3"),  # by ext_id
                Link("s1", "customers", {"id": 99}, None, None),  # gone already: no error
            ],
        )
    )
    assert store.links("s1", "customers") == [Link("s1", "customers", {"id": 4}, {"Id": "D"}, None)]
