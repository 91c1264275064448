"""`health:` of a sync: its defaults, the forms it takes, and each load-time error with
its key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncswim_lib.config import load_project
from syncswim_lib.config.health import GIB, MIB, HealthSettings, Threshold
from tests.config.test_config_errors import BASE, edit, load_error

BETWEEN = "    between: [app_db, shop_db]\n"
AT = "syncs.app_shop.health"


def with_health(value: str) -> str:
    return edit(BETWEEN, BETWEEN + f"    health: {value}\n")


def test_defaults(tmp_path: Path) -> None:
    path = tmp_path / "sync.yaml"
    path.write_text(BASE)
    got = load_project(path).syncs["app_shop"].health
    assert got == HealthSettings()
    assert got.slot_lag_bytes == Threshold(GIB, 16 * GIB)
    assert got.backlog == Threshold(10_000, 100_000)


def test_given(tmp_path: Path) -> None:
    path = tmp_path / "sync.yaml"
    path.write_text(
        with_health(
            "{slot_lag_bytes: {warn: 512MiB, error: 2GB}, backlog: {warn: 5}, "
            "oldest_pending_s: {warn: null, error: 60.5}, "
            "binlog_lag_bytes: {warn: null, error: 4KiB}}"
        )
    )
    got = load_project(path).syncs["app_shop"].health
    assert got.slot_lag_bytes == Threshold(512 * MIB, 2 * 1000**3)
    assert got.backlog == Threshold(5, 100_000)  # the level not given keeps its default
    assert got.oldest_pending_s == Threshold(None, 60.5)
    assert got.binlog_lag_bytes == Threshold(None, 4096)
    assert got.retained_wal_bytes == HealthSettings().retained_wal_bytes


@pytest.mark.parametrize(
    ("value", "seconds"), [("{}", 60.0), ("{check_every: 5m}", 300.0), ("{check_every: 5}", 5.0),
                           ("{check_every: null}", None)]
)  # fmt: skip
def test_check_every(tmp_path: Path, value: str, seconds: float | None) -> None:
    path = tmp_path / "sync.yaml"
    path.write_text(with_health(value))
    assert load_project(path).syncs["app_shop"].health.check_every == seconds


def test_levels() -> None:
    t = Threshold(10, 20)
    assert [t.level(v) for v in (None, 0, 9.9, 10, 19, 20, 1e9)] == [
        "ok", "ok", "ok", "warn", "warn", "error", "error",
    ]  # fmt: skip
    assert Threshold(None, 5).level(4) == "ok"
    assert Threshold(None, 5).level(5) == "error"
    assert Threshold(3, None).level(1e12) == "warn"


@pytest.mark.parametrize(
    ("value", "path", "fragment"),
    [
        ("3", AT, "expected a mapping like {backlog: {warn: 10000"),
        ("{lag: {warn: 1}}", f"{AT}.lag", "unknown key 'lag' in health"),
        ("{backlog: 5}", f"{AT}.backlog", "expected a mapping like {warn: 900"),
        ("{slot_lag_bytes: 5}", f"{AT}.slot_lag_bytes", "a mapping like {warn: 1GiB"),
        ("{backlog: {warning: 1}}", f"{AT}.backlog.warning", "unknown key 'warning' in health"),
        ("{backlog: {warn: 2.5}}", f"{AT}.backlog.warn", "a whole number of changes"),
        ("{backlog: {warn: -1}}", f"{AT}.backlog.warn", "at least 0, got the number -1"),
        ("{backlog: {warn: lots}}", f"{AT}.backlog.warn", "a whole number of changes (or null)"),
        ("{oldest_pending_s: {error: true}}", f"{AT}.oldest_pending_s.error", "seconds"),
        ("{oldest_pending_s: {warn: .inf}}", f"{AT}.oldest_pending_s.warn", "seconds"),
        ("{slot_lag_bytes: {warn: 3 parsecs}}", f"{AT}.slot_lag_bytes.warn", "a size like"),
        ("{slot_lag_bytes: {warn: MiB}}", f"{AT}.slot_lag_bytes.warn", "a size like"),
        ("{binlog_lag_bytes: {warn: [1]}}", f"{AT}.binlog_lag_bytes.warn", "number of bytes"),
        (
            "{backlog: {warn: 10, error: 5}}",
            f"{AT}.backlog.error",
            "error (5) must be at least warn (10)",
        ),
        # the default error level (100000) is below the given warn level
        ("{backlog: {warn: 200000}}", f"{AT}.backlog.warn", "must be at least warn"),
        ("{check_every: 2s}", f"{AT}.check_every", "at least 5s (the sensor daemon"),
        ("{check_every: soon}", f"{AT}.check_every", "a duration like 5s, 10m or 500ms"),
        ("{check_every: true}", f"{AT}.check_every", "a duration like 5s"),
        (
            "{retained_wal_bytes: {warn: 3GiB, error: 1GiB}}",
            f"{AT}.retained_wal_bytes.error",
            "error (1 GiB) must be at least warn (3 GiB)",
        ),
    ],
)
def test_errors(tmp_path: Path, value: str, path: str, fragment: str) -> None:
    err = load_error(tmp_path, with_health(value))
    assert (err.path or "") == path
    assert fragment in str(err)


def test_on_truncate(tmp_path: Path) -> None:
    from tests.config.test_config_errors import ORDERS

    path = tmp_path / "sync.yaml"
    path.write_text(edit(ORDERS, ORDERS + "\n        on_truncate: propagate"))
    entities = load_project(path).syncs["app_shop"].entities
    assert entities["orders"].on_truncate == "propagate"
    assert entities["customers"].on_truncate == "refuse"  # the default
    err = load_error(tmp_path, edit(ORDERS, ORDERS + "\n        on_truncate: delete"))
    assert err.path == "syncs.app_shop.entities.orders.on_truncate"
    assert "expected refuse or propagate, got the text 'delete'" in str(err)
