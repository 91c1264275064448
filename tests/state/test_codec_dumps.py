"""`codec.dumps` writes a dict's JSON directly: the same text, character for character, as
the generic two passes (`encode`, then the JSON encoder), for every canonical value."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncswim_lib.values import codec

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.text(),
    st.binary(max_size=20),
    st.dates(),
    st.datetimes(timezones=st.sampled_from([None, UTC, timezone(timedelta(hours=-3))])),
)
KEYS = st.one_of(st.text(max_size=8), st.sampled_from(["$decimal", "$dict", "$x", "a"]))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=20,
)


def generic(value: Any) -> str:
    return codec._ENCODER.encode(codec.encode(value))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=6))
def test_a_dict_is_written_as_the_generic_encoder_writes_it(value: dict[str, Any]) -> None:
    assert codec.dumps(value) == generic(value)
    assert codec.loads(codec.dumps(value)) == codec.decode(codec.encode(value))


def test_a_shadow_of_every_family() -> None:
    shadow = {
        "a": {
            "id": 1,
            "n": Decimal("1.10"),
            "at": datetime(2024, 1, 1, 0, 0, 0, 5, tzinfo=UTC),
            "day": date(2024, 2, 29),
            "ok": True,
            "ratio": float("nan"),
            "doc": {"$decimal": "not a tag"},
            "name": 'tab\t"quote" Zoë \x00',
            "raw": b"\x00\xff",
            "none": None,
        },
        "b": {"id": 7, "tags": [1, "x", None]},
    }
    assert codec.dumps(shadow) == generic(shadow)
    assert codec.loads(codec.dumps(shadow)) == {
        **shadow,
        "a": {**shadow["a"], "ratio": codec.loads(codec.dumps(shadow))["a"]["ratio"]},
    }


def test_a_key_that_is_not_text_is_refused_as_before() -> None:
    with pytest.raises(TypeError, match="dict key"):
        codec.dumps({"a": {1: "x"}})
