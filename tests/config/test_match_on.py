"""`match_on:` (adopting existing records by a natural key): the forms it takes and each
load-time error, with its key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncswim_lib.config import load_project
from tests.config.test_config_errors import BASE, edit, load_error

FIELDS = "          credit_limit: credit_limit\n"
AT = "syncs.app_shop.entities.customers.match_on"


def with_match_on(value: str) -> str:
    return edit(FIELDS, FIELDS + f"        match_on: {value}\n")


@pytest.mark.parametrize(
    ("value", "fields", "normalised"),
    [
        ("email", ("email",), None),
        ("[email, full_name]", ("email", "full_name"), None),
        ("{fields: [email], normalise: [strip, lower]}", ("email",), " Ann@X.com "),
        ("{fields: email, normalise: lower}", ("email",), "Ann@X.com"),
    ],
)
def test_forms(tmp_path: Path, value: str, fields: tuple[str, ...], normalised: str | None) -> None:
    path = tmp_path / "sync.yaml"
    path.write_text(with_match_on(value))
    match = load_project(path).syncs["app_shop"].entities["customers"].match_on
    assert match is not None and match.fields == fields
    if normalised is None:
        assert match.normalise is None
    else:
        assert match.normalise is not None and match.normalise(normalised) == "ann@x.com"


def test_absent_by_default(tmp_path: Path) -> None:
    path = tmp_path / "sync.yaml"
    path.write_text(BASE)
    assert load_project(path).syncs["app_shop"].entities["customers"].match_on is None


@pytest.mark.parametrize(
    ("value", "path", "fragment"),
    [
        ("emial", AT, "'emial' is not a mapped field (a side-a column of `fields`); did you mean"),
        ("name", AT, "'name' is not a mapped field"),  # the side-b column, not side a's
        ("id", AT, "'id' is not a mapped field"),  # the key is matched by the mode
        ("[]", AT, "expected a side-a field name or a list of them, got"),
        ("[email, email]", AT, "a field is named twice"),
        ("{fields: [email], normalise: lowr}", f"{AT}.normalise", "lowr"),
        ("{fields: [email], normalise: []}", f"{AT}.normalise", "expected a transform name"),
        ("{normalise: lower}", AT, "fields"),
        ("{fields: [email], match: x}", f"{AT}.match", "unknown key 'match'"),
        ("7", AT, "expected a side-a field name or a list of them, got"),
    ],
)
def test_errors(tmp_path: Path, value: str, path: str, fragment: str) -> None:
    err = load_error(tmp_path, with_match_on(value))
    assert (err.path or "") == path
    assert fragment in str(err)


def test_a_reference_cannot_match(tmp_path: Path) -> None:
    text = edit(
        "        fields: {customer_id: customer_id, total: total}\n",
        "        fields: {customer_id: customer_id, total: total}\n"
        "        references: {customer_id: customers}\n"
        "        match_on: customer_id\n",
    )
    err = load_error(tmp_path, text)
    assert err.path == "syncs.app_shop.entities.orders.match_on"
    assert "'customer_id' is a reference" in str(err)
