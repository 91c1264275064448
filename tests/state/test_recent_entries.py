"""The changes a store journaled are kept decoded until read back (`SqlStateStore._recent`):
what a read gives must be exactly what decoding the rows gives, on both backends."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from syncswim_lib.envelope import BinlogPosition, Change, Op, PgPosition
from syncswim_lib.state import sqlstore
from syncswim_lib.state.base import JournalEntry
from syncswim_lib.state.sqlstore import SqlStateStore
from tests.state.test_state_codec import VALUES

PLUS2 = timezone(timedelta(hours=2))


def _exact(a: Any, b: Any) -> bool:
    """Equal, of the same type all the way down, dict members in the same order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_exact(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_exact(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Decimal):
        return bool(a.as_tuple() == b.as_tuple())
    if isinstance(a, float):
        return math.copysign(1, a) == math.copysign(1, b) and (a == b or (a != a and b != b))
    if isinstance(a, datetime):
        return bool(a == b and a.utcoffset() == b.utcoffset() and a.tzinfo == b.tzinfo)
    return bool(a == b)


def _same_entry(a: JournalEntry, b: JournalEntry) -> bool:
    ca, cb = a.change, b.change
    return (
        (a.id, a.sync, a.entity, a.side, a.status, a.batch_id, a.attempts)
        == (b.id, b.sync, b.entity, b.side, b.status, b.batch_id, b.attempts)
        and ca.op == cb.op
        and type(ca.op) is type(cb.op)
        and ca.table == cb.table
        and ca.position == cb.position
        and ca.origin == cb.origin
        and all(
            _exact(getattr(ca, f), getattr(cb, f))
            for f in ("key", "after", "before", "commit_ts", "detected_at", "changed_fields")
        )
    )


def _changes() -> list[Change]:
    """Every value type in the images; keys of one and of several columns (given out of
    order); naive, UTC and offset timestamps; with and without changed fields."""
    out = []
    for n, value in enumerate(VALUES):
        row = {"id": n, "value": value, "float": float("nan") if n % 5 == 0 else n / 3}
        key: dict[str, Any] = {"id": n} if n % 2 else {"zone": f"z{n}", "id": n, "b": -n}
        out.append(
            Change(
                op=(Op.UPDATE, Op.INSERT, Op.DELETE)[n % 3],
                table="public.things" if n % 4 else "shop.things",
                key=key,
                after=None if n % 3 == 2 else row,
                before=None if n % 3 == 1 else {**row, "value": None},
                position=PgPosition(1000 + n, n % 2) if n % 2 else BinlogPosition("b.1", n, 0),
                commit_ts=(
                    None,
                    datetime(2025, 3, 1, 12, 0, 0, n, tzinfo=UTC),
                    datetime(2025, 3, 1, 14, 0, 0, n, tzinfo=PLUS2),
                    datetime(2025, 3, 1, 12, 0, 0, n),  # naive: taken as UTC
                )[n % 4],
                detected_at=datetime(2025, 3, 1, 12, 0, 1, n, tzinfo=PLUS2 if n % 2 else UTC),
                origin="other" if n % 7 == 0 else None,
                changed_fields=("value", "float") if n % 2 else None,
            )
        )
    return out


def _journal(store: SqlStateStore, changes: list[Change]) -> None:
    # two sides, as a sync's capture journals them
    for side in ("a_db", "b_db"):
        store.append_changes("s", side, [("things", c) for c in changes], None)


def _read(store: SqlStateStore) -> list[JournalEntry]:
    return store.pending("s", "things")


def test_kept_changes_read_as_the_rows_decode(
    store: SqlStateStore, open_another: Callable[[], SqlStateStore]
) -> None:
    changes = _changes()
    _journal(store, changes)
    assert store._recent is not None and len(store._recent) == 2 * len(changes)
    kept = _read(store)
    assert not store._recent  # each kept change is read once, then dropped
    decoded = _read(open_another())  # another store object decodes every row
    assert len(kept) == len(decoded) == 2 * len(changes)
    different = [k.id for k, d in zip(kept, decoded, strict=True) if not _same_entry(k, d)]
    assert different == []
    # and a second read of the same store decodes them too
    again = _read(store)
    assert all(_same_entry(k, d) for k, d in zip(again, decoded, strict=True))


def test_a_change_whose_row_was_there_already_is_not_kept(
    store: SqlStateStore, open_another: Callable[[], SqlStateStore]
) -> None:
    first = _changes()[:3]
    _journal(open_another(), first)  # the rows, journaled by another process
    # the same positions and keys read again, with other images (a source re-read after
    # a restart must not make this store believe its images are the journal's)
    other = [
        Change(c.op, c.table, c.key, {"id": -1}, None, c.position, c.commit_ts, c.detected_at)
        for c in first
    ]
    fresh = _changes()[3:5]
    assert store.append_changes("s", "a_db", [("things", c) for c in other + fresh], None) == 2
    assert not store._recent  # one batch, not every row of it new: none kept
    read = {(e.side, e.change.position): e for e in _read(store)}
    for c in first:
        assert _exact(read[("a_db", c.position)].change.after, c.after)
    for c in fresh:
        assert _exact(read[("a_db", c.position)].change.after, c.after)


def test_at_most_the_cap_is_kept(store: SqlStateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlstore, "RECENT_CAP", 10)
    changes = _changes()
    _journal(store, changes)
    assert store._recent is not None
    assert len(store._recent) == 10
    # the newest are kept: the b side's last ten
    assert {k[1] for k in store._recent} == {"b_db"}
    entries = _read(store)
    assert [e.change.position for e in entries] == [c.position for c in changes] * 2
