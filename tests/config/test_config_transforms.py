"""The builtin transforms, custom `python:` ones, and the errors they raise."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from syncswim_lib.config.transforms import BUILTINS, TransformError, build_transform
from syncswim_lib.errors import RecordError

CASES: list[tuple[str, Any, Any]] = [
    ("strip", "  a b  ", "a b"),
    ("lower", "AbC", "abc"),
    ("upper", "AbC", "ABC"),
    ("none_if_empty", "   ", None),
    ("none_if_empty", "x", "x"),
    ("none_if_empty", 0, 0),
    ("to_str", 12, "12"),
    ("to_str", True, "true"),
    ("to_str", Decimal("1.50"), "1.50"),
    ("to_str", date(2024, 2, 29), "2024-02-29"),
    ("to_str", b"caf\xc3\xa9", "café"),
    ("to_int", " 42 ", 42),
    ("to_int", "42.0", 42),
    ("to_int", "", None),
    ("to_int", Decimal("7"), 7),
    ("to_int", 3.0, 3),
    ("to_int", False, 0),
    ("to_decimal", "12.50", Decimal("12.50")),
    ("to_decimal", 0.1, Decimal("0.1")),
    ("to_decimal", 5, Decimal(5)),
    ("to_bool", "Yes", True),
    ("to_bool", "0", False),
    ("to_bool", 1, True),
    ("to_bool", "", None),
    ("iso_date", "2024-02-29T23:10:00+00:00", date(2024, 2, 29)),
    ("iso_date", "2024-02-29", date(2024, 2, 29)),
    ("iso_date", datetime(2024, 1, 2, 3, 4, tzinfo=UTC), date(2024, 1, 2)),
]


@pytest.mark.parametrize(("name", "value", "expected"), CASES)
def test_builtin(name: str, value: Any, expected: Any) -> None:
    assert build_transform([name])(value) == expected


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_none_passes_through(name: str) -> None:
    assert build_transform([name])(None) is None


BAD: list[tuple[str, Any, str]] = [
    ("strip", 12, "is not text (add to_str before it)"),
    ("to_int", "12a", "is not an integer"),
    ("to_int", "1.5", "has a fractional part"),
    ("to_int", float("inf"), "is not a finite number"),
    ("to_int", [1], "is not a number"),
    ("to_decimal", "abc", "is not a number"),
    ("to_decimal", True, "is not a number"),
    ("to_decimal", "NaN", "is not a finite number"),
    ("to_decimal", [1], "is not a number"),
    ("to_bool", "maybe", "is not a boolean"),
    ("to_bool", 2, "is not a boolean"),
    ("iso_date", "29/02/2024", "is not an ISO-8601 date"),
    ("iso_date", 20240229, "is not a date"),
    ("to_str", b"\xff", "is not UTF-8 text"),
]


@pytest.mark.parametrize(("name", "value", "why"), BAD)
def test_bad_value_is_a_record_error(name: str, value: Any, why: str) -> None:
    with pytest.raises(RecordError, match=f"transform {name}: .*{re.escape(why)}"):
        build_transform([name])(value)


def test_chain_applies_in_order() -> None:
    chain = build_transform(["strip", "none_if_empty", "to_int"])
    assert chain.name == "strip | none_if_empty | to_int"
    assert chain("  7 ") == 7
    assert chain("   ") is None


def test_python_transform_by_module_path() -> None:
    t = build_transform(["python: json:dumps"])
    assert t.steps == ("python: json:dumps",)
    assert t({"a": 1}) == '{"a": 1}'
    assert build_transform(["json:dumps"]) == t  # the prefix is optional


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("python: json", "expected 'package.module:function'"),
        ("python: json:nope", "module 'json' has no attribute 'nope'"),
        ("python: json:__doc__", "'json:__doc__' is not callable"),
        ("python: syncswim_no_such_module:f", "module 'syncswim_no_such_module' not found"),
        ("lowercase", "unknown transform 'lowercase' (did you mean 'lower'?"),
    ],
)
def test_unresolvable_transform(spec: str, message: str) -> None:
    with pytest.raises(TransformError) as caught:
        build_transform([spec])
    assert message in str(caught.value)


def test_module_failing_on_import_is_reported(tmp_path: Any) -> None:
    (tmp_path / "broken_rules_mod.py").write_text("import syncswim_missing_dependency\n")
    with pytest.raises(TransformError) as caught:
        build_transform(["python: broken_rules_mod:f"], tmp_path)
    assert "importing 'broken_rules_mod' failed: No module named 'syncswim_missing_dependency'" in (
        str(caught.value)
    )


def test_module_raising_on_import_is_reported(tmp_path: Any) -> None:
    (tmp_path / "raising_rules_mod.py").write_text("raise ValueError('boom')\n")
    with pytest.raises(TransformError) as caught:
        build_transform(["python: raising_rules_mod:f"], tmp_path)
    assert "importing 'raising_rules_mod' failed: ValueError('boom')" in str(caught.value)
