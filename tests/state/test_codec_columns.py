"""`codec.dumps_columns` writes a batch of rows' objects a column at a time: the same text,
character for character, as `codec.dumps` of each row's dict; and a link given its shadow
text made already (`EncodedShadow`) is stored with that text and reads back as the dict."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncswim_lib.state.base import BatchRecord, Link, StateStore
from syncswim_lib.values import codec
from tests.state.test_codec_dumps import KEYS, SCALARS, VALUES


def rowwise(names: list[str], columns: list[list[Any]], rows: int) -> list[str]:
    return [
        codec.dumps({n: c[i] for n, c in zip(names, columns, strict=True)}) for i in range(rows)
    ]


# columns of one type (the fast map), of one type and None, and of anything
COLUMN = st.integers(min_value=0, max_value=6).flatmap(
    lambda rows: st.tuples(
        st.just(rows),
        st.lists(
            st.one_of(
                st.lists(VALUES, min_size=rows, max_size=rows),
                SCALARS.flatmap(lambda v: st.just([v] * rows)),
                st.lists(st.one_of(st.none(), st.integers()), min_size=rows, max_size=rows),
                st.lists(st.one_of(st.none(), st.text()), min_size=rows, max_size=rows),
            ),
            max_size=5,
        ),
    )
)


@settings(max_examples=300, deadline=None)
@given(COLUMN, st.lists(KEYS, min_size=5, max_size=5, unique=True))
def test_columns_are_written_as_dumps_writes_each_row(
    shape: tuple[int, list[list[Any]]], keys: list[str]
) -> None:
    rows, columns = shape
    names = keys[: len(columns)]
    assert codec.dumps_columns(names, columns, rows) == rowwise(names, columns, rows)


def test_the_awkward_names_and_values() -> None:
    cases: list[tuple[list[str], list[list[Any]]]] = [
        (["$decimal"], [[Decimal("1.5"), None]]),  # an object shaped like a tag: escaped
        (["a%s", "%"], [[1, 2], ["x%sy", "%%"]]),  # the template's own marks in names
        (['q"uote', "zoë\n"], [['"', "\x00\t"], [b"\x00", None]]),
        (["t", "d"], [[datetime(1, 1, 1, tzinfo=UTC), None], [date(9999, 12, 31), None]]),
        (["f", "j"], [[float("nan"), 1.0], [{"$x": 1}, [1, {"a": Decimal("2")}]]]),
        ([], []),
    ]
    for names, columns in cases:
        assert codec.dumps_columns(names, columns, 2) == rowwise(names, columns, 2)


def test_mismatched_columns_are_refused() -> None:
    with pytest.raises(ValueError, match="one column"):
        codec.dumps_columns(["a", "b"], [[1]], 1)
    with pytest.raises(ValueError, match="one column"):
        codec.dumps_columns(["a"], [[1, 2]], 1)
    with pytest.raises(TypeError, match="dict key"):
        codec.dumps_columns([1], [[1]], 1)  # type: ignore[list-item]


def test_a_link_with_its_shadow_text_is_stored_with_it(store: StateStore) -> None:
    shadow = {
        "a": {"id": 1, "n": Decimal("1.10"), "at": datetime(2024, 1, 1, 0, 0, 0, 5, tzinfo=UTC)},
        "b": {"id": 7, "doc": {"$decimal": "not a tag"}, "raw": b"\x00"},
    }
    text = codec.dumps(shadow)
    encoded = codec.EncodedShadow(shadow, text)
    assert encoded == shadow and codec.shadow_text(encoded) == text
    assert codec.shadow_text(None) is None and codec.shadow_text(shadow) == text
    store.record(
        BatchRecord("s", "e", upsert_links=[Link("s", "e", {"id": 1}, {"id": 7}, encoded)])
    )
    got = store.link_by_key("s", "e", "a", {"id": 1})
    assert got is not None and got.shadow == shadow and type(got.shadow) is dict
    # the text is what is stored: a wrong one shows (it is trusted, not re-encoded)
    wrong = codec.EncodedShadow(shadow, codec.dumps({"a": {"id": 2}}))
    store.record(BatchRecord("s", "e", upsert_links=[Link("s", "e", {"id": 1}, {"id": 7}, wrong)]))
    again = store.link_by_key("s", "e", "a", {"id": 1})
    assert again is not None and again.shadow == {"a": {"id": 2}}


def test_a_column_passed_again_reuses_its_texts() -> None:
    docs: list[Any] = [{"b": [1, Decimal("2.5")]}, None, {"a": "x"}]
    ids = [1, 2, 3]
    cache: dict[int, tuple[Any, list[str]]] = {}
    first = codec.dumps_columns(["id", "doc"], [ids, docs], 3, cache)
    assert first == rowwise(["id", "doc"], [ids, docs], 3)
    assert cache[id(docs)][0] is docs
    # the very same list: its texts reused; an equal list of other objects: its own
    again = codec.dumps_columns(["doc"], [docs], 3, cache)
    assert again == rowwise(["doc"], [docs], 3)
    other: list[Any] = [{"b": [1]}, 5, None]
    cache[id(other)] = (list(other), ["wrong"] * 3)  # a stale entry for a reused id
    assert codec.dumps_columns(["doc"], [other], 3, cache) == rowwise(["doc"], [other], 3)
