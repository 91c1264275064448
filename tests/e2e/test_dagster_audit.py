"""Dagster as the audit trail, through the definitions against real servers: a run with
a conflict carries the change table (both sides' keys, old and new values) and a failing
asset check, and logs the conflict at WARNING with the record's keys; a parked record
fails the records check at ERROR severity; positions are JSON objects; each journal
outcome carries both sides' keys and the Dagster run id."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    materialize,
)

from syncswim_defs.factory import build_definitions
from syncswim_defs.metadata import CHECK_CONFLICTS, CHECK_RECORDS
from tests.e2e.merge_harness import ENTITY, SYNC, MergeDbs, customers

pytestmark = pytest.mark.integration

NODE = f"{SYNC}__{ENTITY}"


@pytest.fixture
def m(
    pg_dsn: str, mysql_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MergeDbs]:
    dbs = MergeDbs(pg_dsn, mysql_dsn, tmp_path)
    for k, v in dbs.env().items():
        monkeypatch.setenv(k, v)
    yield dbs
    dbs.close()


def _materialise(m: MergeDbs) -> tuple[Any, DagsterInstance]:
    defs = build_definitions(m.yaml_path, state_url=m.state_url)
    instance = DagsterInstance.ephemeral()
    result = materialize([defs.resolve_assets_def(AssetKey([SYNC, ENTITY]))], instance=instance)
    assert result.success
    return result, instance


def _checks(result: Any) -> dict[str, Any]:
    return {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events
        if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION
    }


def _logged(run: tuple[Any, DagsterInstance], level: int) -> list[str]:
    """The run's log lines at `level` (what the step logged, as the UI shows them)."""
    result, instance = run
    return [
        e.user_message
        for e in instance.all_logs(result.run_id)
        if e.level == level and e.dagster_event is None
    ]


def test_a_conflict_shows_in_the_change_table_a_failing_check_and_a_warning(
    m: MergeDbs,
) -> None:
    import logging

    m.create(customers("ext"))
    _materialise(m)
    m.insert("app", name="Ann", email="ann@x", notes="first")
    first, _ = _materialise(m)
    checks = _checks(first)
    assert checks[CHECK_CONFLICTS].passed and checks[CHECK_RECORDS].passed
    (mat,) = first.asset_materializations_for_node(NODE)
    meta = {k: v.value for k, v in mat.metadata.items()}
    positions = meta["positions"]
    assert isinstance(positions, dict) and positions  # JSON objects, not repr text
    assert {p["kind"] for p in positions.values()} == {"pg", "binlog"}
    assert meta["changes"] == 1
    (row,) = [r.data for r in meta["change_table"].records]
    app_id = m.rows("app")[0]["id"]
    shop_id = m.rows("shop")[0]["id"]
    assert row["outcome"] == "applied" and row["action"] == "insert"
    assert row["from"] == f"app id={app_id}" and row["to"] == f"shop id={shop_id}"
    assert 'name="Ann"' in row["fields"]

    # the same field changed on both sides: a conflict the mode's rule decides
    m.exec("app", "UPDATE customers SET notes = 'from app'")
    m.exec("shop", "UPDATE customers SET notes = 'from shop'")
    run = _materialise(m)
    second = run[0]
    checks = _checks(second)
    assert not checks[CHECK_CONFLICTS].passed
    assert checks[CHECK_CONFLICTS].severity == AssetCheckSeverity.WARN
    assert checks[CHECK_RECORDS].passed
    (mat,) = second.asset_materializations_for_node(NODE)
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["conflicts"] == 1
    rows = [r.data for r in meta["change_table"].records]
    assert rows and all(r["outcome"] == "applied" for r in rows)
    assert any('notes: "from' in r["fields"] and "→" in r["fields"] for r in rows)
    warnings = _logged(run, logging.WARNING)
    (line,) = [w for w in warnings if w.startswith("conflict on")]
    assert f"app id={app_id} / shop id={shop_id}" in line and "field notes" in line
    assert '"from app"' in line and '"from shop"' in line
    # the outcome in the journal: both sides' keys and the run
    updates = [e for e in m.entries() if e.change.op.value == "update"]
    assert {e.side for e in updates} == {"app", "shop"}
    entry = updates[0]
    assert entry.detail["record"] == {"app": {"id": app_id}, "shop": {"id": shop_id}}
    assert entry.detail["run_id"] == second.run_id


def test_a_parked_record_fails_the_records_check_at_error(m: MergeDbs) -> None:
    import logging

    schema = customers("sor")
    m.create(schema)
    text = m.yaml_path.read_text().replace(
        "    entities:", "    retry: {records: {attempts: 1}}\n    entities:", 1
    )
    m.yaml_path.write_text(text)
    _materialise(m)
    # the target refuses it (a value the mapping's own checks cannot foresee)
    m.my_exec("ALTER TABLE customers ADD CONSTRAINT no_bad CHECK (name <> 'bad')")
    m.insert("app", name="bad")
    run = _materialise(m)
    result = run[0]
    checks = _checks(result)
    assert not checks[CHECK_RECORDS].passed
    assert checks[CHECK_RECORDS].severity == AssetCheckSeverity.ERROR
    errors = _logged(run, logging.ERROR)
    assert any(e.startswith("parked app_shop.customers app id=") for e in errors), errors
    (mat,) = result.asset_materializations_for_node(NODE)
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["parked"] == 1
    (row,) = [r.data for r in meta["change_table"].records]
    assert row["outcome"].startswith("rejected:") and row["to"] == "shop (new)"
