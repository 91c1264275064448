from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncswim_lib.envelope import (
    BinlogPosition,
    Change,
    Op,
    PgPosition,
    ReplayPosition,
    WatermarkPosition,
    position_from_json,
)
from syncswim_lib.state import rowcodec
from syncswim_lib.state.sqlstore import SqlStateStore
from syncswim_lib.values import codec

PLUS2 = timezone(timedelta(hours=2))

# every canonical value type, and the shapes that could be confused with our tags
VALUES: list[Any] = [
    0,
    -(2**70),
    1.5,
    -0.0,
    1e100,
    Decimal("1.10"),
    Decimal("-0.000"),
    Decimal("1E+3"),
    "",
    "1",
    'naïve ☃ \x00 \\ "',
    True,
    False,
    None,
    date(2024, 2, 29),
    datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2024, 1, 1, 8, 0, tzinfo=PLUS2),
    b"",
    b"\x00\xff binary",
    {},
    [],
    {"a": [1, {"b": None}], "c": "d"},
    {"$decimal": "1.10"},  # a JSON document that looks like a tag
    {"$dict": {"$bytes": "x"}},
    {"$decimal": 1, "other": 2},
    [{"$date": "2024-01-01"}],
    {"nested": {"when": datetime(2024, 5, 1, tzinfo=UTC), "amount": Decimal("3.000")}},
]


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type all the way down (1 == 1.0 == True is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Decimal):
        return bool(a.as_tuple() == b.as_tuple())  # keeps the scale: 1.10 is not 1.1
    if isinstance(a, float) and a == 0:
        return bool(math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, datetime):
        return bool(a == b and a.utcoffset() == b.utcoffset())
    return bool(a == b)


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_codec_round_trips_each_value_exactly(value: Any) -> None:
    text = codec.dumps(value)
    json.loads(text)  # plain JSON, readable by anything
    assert _same(codec.loads(text), value)


def test_codec_round_trips_a_row_of_everything() -> None:
    row = {f"c{i}": v for i, v in enumerate(VALUES)}
    assert _same(codec.loads(codec.dumps(row)), row)


def test_non_finite_floats_round_trip() -> None:
    back = codec.loads(codec.dumps([math.inf, -math.inf, math.nan]))
    assert back[0] == math.inf and back[1] == -math.inf and math.isnan(back[2])


def test_decimal_keeps_its_scale() -> None:
    back = codec.loads(codec.dumps({"x": Decimal("1.10")}))["x"]
    assert isinstance(back, Decimal) and str(back) == "1.10"


# named ids: an object()'s repr holds its address, which would differ between the
# processes of a parallel run (pytest-xdist refuses to run then)
@pytest.mark.parametrize(
    "bad",
    [object(), {1: "int key"}, {"a": {2, 3}}, complex(1, 2)],
    ids=["object", "int-key", "set-value", "complex"],
)
def test_codec_refuses_what_it_cannot_round_trip(bad: Any) -> None:
    with pytest.raises(TypeError):
        codec.dumps(bad)


def test_stored_json_with_an_unknown_tag_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown tag"):
        codec.loads('{"$nope": 1}')


def test_key_text_is_canonical_and_type_exact() -> None:
    assert codec.key_text({"a": 1, "b": "x"}) == codec.key_text({"b": "x", "a": 1})
    texts = {
        codec.key_text(k)
        for k in (
            {"id": 1},
            {"id": "1"},
            {"id": 1.0},
            {"id": True},
            {"id": Decimal("1")},
            {"id": Decimal("1.0")},
            {"id": b"1"},
            {"ID": 1},
        )
    }
    assert len(texts) == 8


@pytest.mark.parametrize(
    "position",
    [
        PgPosition(PgPosition.parse_lsn("16/B374D848"), 3),
        BinlogPosition("mysql-bin.000007", 4711, 2),
        ReplayPosition(123456),
        WatermarkPosition("2024-05-01T00:00:00Z", ("k1", "k2")),
    ],
    ids=lambda p: p.kind,
)
def test_change_round_trips_through_its_row(position: Any) -> None:
    ch = Change(
        op=Op.UPDATE,
        table="shop.customers",
        key={"id": 7, "region": "eu"},
        after={"id": 7, "region": "eu", "limit": Decimal("10.50"), "doc": {"$x": 1}},
        before={"id": 7, "region": "eu", "limit": Decimal("9.00"), "doc": None},
        position=position,
        commit_ts=datetime(2024, 5, 1, 10, tzinfo=UTC),
        detected_at=datetime(2024, 5, 1, 10, 0, 0, 12, tzinfo=UTC),
        origin="app_shop",
        changed_fields=("limit",),
    )
    row = rowcodec.change_to_row(ch)
    assert row.key_text == codec.key_text(ch.key)
    back = rowcodec.change_from_row(row)
    assert back == ch
    assert _same(back.after, ch.after) and _same(back.before, ch.before)


def test_every_value_type_round_trips_through_the_store(store: SqlStateStore) -> None:
    after = {f"c{i}": v for i, v in enumerate(VALUES)}
    odd_times = datetime(2024, 1, 1, 8, 0, 0, 1, tzinfo=PLUS2)
    ch = Change(
        op=Op.INSERT,
        table="public.everything",
        key={"id": Decimal("1.10"), "k": b"\x01"},
        after=after,
        before=None,
        position=PgPosition(99, 0),
        commit_ts=odd_times,
        detected_at=datetime(2024, 1, 1, 6, 0, 0, 2, tzinfo=UTC),
        changed_fields=(),
    )
    assert store.append_changes("s", "a", [("everything", ch)], None) == 1
    (entry,) = store.pending("s", "everything")
    assert _same(entry.change.after, after)
    assert _same(entry.change.key, ch.key)
    assert entry.change.commit_ts == odd_times  # the same instant, given back in UTC
    assert entry.change.detected_at == ch.detected_at
    assert entry.change.changed_fields == ()
    assert entry.change == ch


def test_key_text_fast_path_writes_what_the_encoder_writes() -> None:
    from syncswim_lib.values.codec import _SORTED_ENCODER, encode

    keys: list[dict[str, Any]] = [
        {"id": 5},
        {"id": -12},
        {"Id_2": 10**20},
        {"id": True},
        {"id": "5"},
        {"a b": 1},
        {"é": 3},
        {"id": 1, "b": 2},
    ]
    for key in keys:
        assert codec.key_text(key) == _SORTED_ENCODER.encode(encode(key)), key


@settings(max_examples=300, deadline=None)
@given(
    lsn=st.integers(min_value=0, max_value=2**64 - 1),
    seq=st.integers(min_value=0, max_value=2**40),
    file=st.text(),
    pos=st.integers(min_value=0, max_value=2**64),
)
def test_position_text_is_the_sorted_encoders_text(lsn: int, seq: int, file: str, pos: int) -> None:
    # the journal's dedup key: the text written directly must be the encoder's, or a
    # change journaled before would be journaled again
    for position in (PgPosition(lsn, seq), BinlogPosition(file, pos, seq)):
        text = rowcodec.position_text(position)
        assert text == codec._SORTED_ENCODER.encode(position.to_json())
        assert position_from_json(text) == position
