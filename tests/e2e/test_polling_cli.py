"""`syncswim sync` on a polled side does what a polling tick does: it polls, and it runs
the key-set comparisons that are due."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncswim_lib.connectors.polling.keyset import marker_side
from syncswim_lib.envelope import WatermarkPosition
from tests.connectors.polling.harness import PolledPair

pytestmark = pytest.mark.integration

SYNCSWIM = str(Path(sys.executable).with_name("syncswim"))


def _cli_sync(pair: PolledPair) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [SYNCSWIM, "sync", str(pair.yaml_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def _compared_minutes_ago(pair: PolledPair, minutes: float) -> None:
    """The last key-set comparison as if it ran that long ago (the state it keeps)."""
    when = datetime.now(UTC) - timedelta(minutes=minutes)
    with pair.runtime() as rt:
        side = marker_side("legacy", "customers")
        rt.store.set_position("app_legacy", side, WatermarkPosition(when.isoformat()))


def test_syncswim_sync_runs_the_due_key_set_comparisons(pg_dsn: str, tmp_path: Path) -> None:
    """`syncswim sync` does what a polling tick does: it polls, and runs the key-set
    comparisons that are due (keyset_every), so a row deleted from a table without a
    soft-delete column reaches the other side without Dagster."""
    pair = PolledPair(pg_dsn, tmp_path, deleted="{keyset_every: 10m}")
    pair.run(full=True)
    for name in ("Lu", "Mo", "Ned"):
        pair.lite("INSERT INTO customers (name) VALUES (?)", (name,))
    assert "app +3" in _cli_sync(pair).stdout
    pair.lite("DELETE FROM customers WHERE name = 'Mo'")
    _compared_minutes_ago(pair, 11)  # due
    done = _cli_sync(pair)
    assert "customers: key-set comparison on legacy: 3 linked rows looked up, 1 gone" in (
        done.stdout
    )
    assert "app +0 ~0 -1" in done.stdout
    assert sorted(r["name"] for r in pair.pg_rows()) == ["Lu", "Ned"]
    # compared just now: the next is due in ten minutes, not at every run
    pair.lite("DELETE FROM customers WHERE name = 'Lu'")
    assert "key-set comparison" not in _cli_sync(pair).stdout
    assert sorted(r["name"] for r in pair.pg_rows()) == ["Lu", "Ned"]
    _compared_minutes_ago(pair, 11)
    _cli_sync(pair)
    assert [r["name"] for r in pair.pg_rows()] == ["Ned"]


def test_a_persons_materialisation_runs_the_due_key_set_comparisons(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Re-materialising a polled entity in the UI does what `syncswim sync` does: a row
    deleted from the table without a soft-delete column reaches the other side when its
    comparison is due, without waiting for the polling sensor's tick."""
    from dagster import AssetKey, materialize

    from syncswim_defs.factory import build_definitions

    pair = PolledPair(pg_dsn, tmp_path, deleted="{keyset_every: 10m}")
    pair.run(full=True)
    for name in ("Lu", "Mo"):
        pair.lite("INSERT INTO customers (name) VALUES (?)", (name,))
    pair.run()
    pair.lite("DELETE FROM customers WHERE name = 'Mo'")
    defs = build_definitions(pair.yaml_path, state_url=pair.state_url)
    asset = defs.resolve_assets_def(AssetKey(["app_legacy", "customers"]))

    def materialise() -> None:  # no sensor or schedule tag: a person's
        assert materialize([asset]).success

    _compared_minutes_ago(pair, 1)
    materialise()  # compared a minute ago: not due, the row stays
    assert sorted(r["name"] for r in pair.pg_rows()) == ["Lu", "Mo"]
    _compared_minutes_ago(pair, 11)
    materialise()
    assert [r["name"] for r in pair.pg_rows()] == ["Lu"]
