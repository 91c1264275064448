"""`retry:` of a sync: its defaults, the forms it takes, and each load-time error with its
key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncswim_lib.config import load_project
from syncswim_lib.config.retry import RecordRetry, RetrySettings
from tests.config.test_config_errors import BASE, edit, load_error

BETWEEN = "    between: [app_db, shop_db]\n"
AT = "syncs.app_shop.retry"


def with_retry(value: str) -> str:
    return edit(BETWEEN, BETWEEN + f"    retry: {value}\n")


def test_defaults(tmp_path: Path) -> None:
    path = tmp_path / "sync.yaml"
    path.write_text(BASE)
    assert load_project(path).syncs["app_shop"].retry == RetrySettings()


def test_given(tmp_path: Path) -> None:
    path = tmp_path / "sync.yaml"
    path.write_text(
        with_retry("{attempts: 3, base_seconds: 1, records: {attempts: 2, max_seconds: 60}}")
    )
    got = load_project(path).syncs["app_shop"].retry
    assert got == RetrySettings(
        attempts=3,
        base_seconds=1.0,
        max_seconds=30.0,
        records=RecordRetry(attempts=2, base_seconds=30.0, max_seconds=60.0),
    )


@pytest.mark.parametrize(
    ("value", "path", "fragment"),
    [
        ("3", AT, "expected a mapping like {attempts: 5"),
        ("{tries: 3}", f"{AT}.tries", "unknown key 'tries' in retry"),
        ("{attempts: 0}", f"{AT}.attempts", "at least 1, got the number 0"),
        ("{attempts: 2.5}", f"{AT}.attempts", "a whole number of tries"),
        ("{attempts: true}", f"{AT}.attempts", "a whole number of tries"),
        ("{base_seconds: -1}", f"{AT}.base_seconds", "a positive number of seconds"),
        ("{max_seconds: .inf}", f"{AT}.max_seconds", "a positive number of seconds"),
        ("{base_seconds: 60}", f"{AT}.base_seconds", "max_seconds (30) must be at least"),
        ("{base_seconds: 5, max_seconds: 1}", f"{AT}.max_seconds", "must be at least"),
        ("{records: 8}", f"{AT}.records", "expected a mapping like {attempts: 8"),
        ("{records: {attempts: 0}}", f"{AT}.records.attempts", "at least 1"),
        ("{records: {every: 1}}", f"{AT}.records.every", "unknown key 'every' in retry.records"),
    ],
)
def test_errors(tmp_path: Path, value: str, path: str, fragment: str) -> None:
    err = load_error(tmp_path, with_retry(value))
    assert (err.path or "") == path
    assert fragment in str(err)
