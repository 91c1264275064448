"""Links of many keys at once, and the saved plans of apply batches."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from syncswim_lib.state import schema
from syncswim_lib.state.base import BatchRecord, Link
from syncswim_lib.state.sqlstore import Cursor, SqlStateStore
from syncswim_lib.values import codec


class Counting:
    """Counts the statements a store runs (wraps its read and write transactions)."""

    def __init__(self, store: SqlStateStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.statements = 0
        for hook in ("_read", "_write"):
            monkeypatch.setattr(store, hook, self._wrap(getattr(store, hook)))

    def _wrap(self, open_: Any) -> Any:
        counter = self

        class Proxy:
            def __init__(self, cur: Cursor) -> None:
                self._cur = cur

            def execute(self, *args: Any) -> Any:
                counter.statements += 1
                return self._cur.execute(*args)

            def executemany(self, *args: Any) -> Any:
                counter.statements += 1
                return self._cur.executemany(*args)

            def __getattr__(self, name: str) -> Any:
                return getattr(self._cur, name)

        @contextlib.contextmanager
        def wrapped() -> Iterator[Any]:
            with open_() as cur:
                yield Proxy(cur)

        return wrapped


def _links(n: int) -> list[Link]:
    return [
        Link("s1", "customers", {"id": i}, {"Id": f"001{i:05d}"}, {"n": i}, ext_id=f"C-{i}")
        for i in range(n)
    ]


def test_links_for_keys_and_ext_ids(store: SqlStateStore) -> None:
    links = [
        *_links(3),
        Link("s1", "customers", {"id": 10, "day": date(2025, 1, 1)}, None, {"x": Decimal("1")}),
        Link("s1", "customers", None, {"Id": "only-b"}, None),
    ]
    store.record(BatchRecord("s1", "customers", upsert_links=links))
    store.record(
        BatchRecord("s1", "orders", upsert_links=[Link("s1", "orders", {"id": 1}, None, None)])
    )
    keys: list[dict[str, Any]] = [
        {"id": 1},
        {"id": 10, "day": date(2025, 1, 1)},
        {"day": date(2025, 1, 1), "id": 10},  # the same key, columns in another order
        {"id": "1"},  # type-exact: not key 1
        {"id": 99},
        {"id": 1},  # asked twice
    ]
    got = store.links_for_keys("s1", "customers", "a", keys)
    assert got == {codec.key_text({"id": 1}): links[1], codec.key_text(keys[1]): links[3]}
    assert store.links_for_keys("s1", "customers", "b", [{"Id": "only-b"}, {"id": 1}]) == {
        codec.key_text({"Id": "only-b"}): links[4]
    }
    assert store.links_for_keys("s1", "orders", "a", [{"id": 1}, {"id": 2}]) == {
        codec.key_text({"id": 1}): Link("s1", "orders", {"id": 1}, None, None)
    }
    assert store.links_for_keys("s2", "customers", "a", [{"id": 1}]) == {}
    assert store.links_for_keys("s1", "customers", "a", []) == {}
    with pytest.raises(ValueError, match="'a' or 'b'"):
        store.links_for_keys("s1", "customers", "c", [{"id": 1}])  # type: ignore[arg-type]
    assert store.links_for_ext_ids("s1", "customers", ["C-0", "C-2", "C-9", "C-0"]) == {
        "C-0": links[0],
        "C-2": links[2],
    }
    assert store.links_for_ext_ids("s1", "customers", []) == {}
    assert store.links_for_ext_ids("s1", "orders", ["C-0"]) == {}


def test_many_keys_take_a_bounded_number_of_queries(
    store: SqlStateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 2 * schema.IN_CHUNK + 7
    links = _links(n)
    store.record(BatchRecord("s1", "customers", upsert_links=links))
    counting = Counting(store, monkeypatch)
    asked = [link.key_a for link in links if link.key_a is not None] + [{"id": -1}]
    by_a = store.links_for_keys("s1", "customers", "a", asked)
    assert counting.statements == 3  # ceil((n + 1) / IN_CHUNK)
    assert len(by_a) == n
    assert all(by_a[codec.key_text(link.key_a or {})] == link for link in links)
    counting.statements = 0
    by_b = store.links_for_keys("s1", "customers", "b", [link.key_b or {} for link in links])
    assert counting.statements == 3 and len(by_b) == n
    counting.statements = 0
    by_ext = store.links_for_ext_ids("s1", "customers", [f"C-{i}" for i in range(n)])
    assert counting.statements == 3 and by_ext == {f"C-{i}": links[i] for i in range(n)}


def test_plans_are_saved_and_deleted_when_their_batch_is_recorded(store: SqlStateStore) -> None:
    assert store.load_plan("b1") is None
    plan = '{"writes":[{"op":"upsert","key":{"id":1},"value":"ü \\u0000 1e100"}]}'
    store.save_plan("s1", "customers", "b1", plan)
    store.save_plan("s1", "customers", "b2", "{}")
    store.save_plan("s1", "orders", "b3", "[]")
    assert store.load_plan("b1") == plan  # the exact text
    store.save_plan("s1", "customers", "b2", '{"again": true}')  # saved again: replaced
    assert store.load_plan("b2") == '{"again": true}'
    # a batch of another sync with the same id does not close this one
    store.record(BatchRecord("s2", "customers", finished_batch_ids=["b1"]))
    assert store.load_plan("b1") == plan
    store.record(BatchRecord("s1", "customers", finished_batch_ids=["b1", "b2", "unknown"]))
    assert store.load_plan("b1") is None and store.load_plan("b2") is None
    assert store.load_plan("b3") == "[]"


def test_a_failed_record_keeps_the_plan(store: SqlStateStore) -> None:
    store.save_plan("s1", "customers", "b1", "{}")
    with pytest.raises(ValueError):
        store.record(
            BatchRecord(
                "s1",
                "customers",
                upsert_links=[Link("s1", "customers", None, None, None)],
                finished_batch_ids=["b1"],
            )
        )
    assert store.load_plan("b1") == "{}"


def test_a_batch_of_links_is_upserted_in_a_constant_number_of_statements(
    store: SqlStateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.record(BatchRecord("s1", "customers", upsert_links=_links(300)))
    # 100 known (found by key_a, by key_b only, by ext_id only) and 1,200 new
    known = [
        Link("s1", "customers", {"id": i}, {"Id": f"001{i:05d}"}, {"n": -i}, f"C-{i}")
        for i in range(0, 40)
    ]
    known += [
        Link("s1", "customers", None, {"Id": f"001{i:05d}"}, {"n": -i}) for i in range(40, 70)
    ]
    known += [Link("s1", "customers", None, None, {"n": -i}, f"C-{i}") for i in range(70, 100)]
    new = [
        Link("s1", "customers", {"id": i}, {"Id": f"001{i:05d}"}, {"n": i}, f"C-{i}")
        for i in range(1000, 2200)
    ]
    counting = Counting(store, monkeypatch)
    store.record(BatchRecord("s1", "customers", upsert_links=[*known, *new]))
    assert counting.statements <= 12  # 3 lookups of 500 keys or fewer, each kind; 2 writes
    stored = store.links("s1", "customers")
    assert len(stored) == 300 + 1200  # the known ones updated in place, not added
    by_b = store.links_for_keys("s1", "customers", "b", [{"Id": f"001{i:05d}"} for i in range(70)])
    by_ext = store.links_for_ext_ids("s1", "customers", [f"C-{i}" for i in range(70, 100)])
    for i in range(70):
        assert by_b[codec.key_text({"Id": f"001{i:05d}"})].shadow == {"n": -i}
    for i in range(70, 100):
        assert by_ext[f"C-{i}"].shadow == {"n": -i}
    got = {link.ext_id: link for link in stored}
    assert got["C-1500"].shadow == {"n": 1500}


def test_links_of_one_batch_that_designate_each_other_are_upserted_in_order(
    store: SqlStateStore,
) -> None:
    first = Link("s1", "customers", {"id": 1}, None, {"n": 1}, "C-1")
    then = Link("s1", "customers", {"id": 1}, {"Id": "0010"}, {"n": 2}, "C-1")
    store.record(BatchRecord("s1", "customers", upsert_links=[first, then]))
    (link,) = store.links("s1", "customers")
    assert (link.key_b, link.shadow) == ({"Id": "0010"}, {"n": 2})
