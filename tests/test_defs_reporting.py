"""The streaming run's reporter (syncswim_defs/reporting.py) inside a real Dagster op: the
batches that close within `report_every_ms` of the last report are one materialisation
holding all of them, a batch after a quiet spell is reported on its own, everything queued
is written before the op returns, and a failure to write reaches the streaming loop."""

# no `from __future__ import annotations`: Dagster reads the op's `context` annotation

from pathlib import Path
from typing import Any, cast

import pytest
from dagster import AssetKey, DagsterInstance, OpExecutionContext, job, op

from syncswim_defs.reporting import Reporter
from syncswim_lib.pipeline.report import EntityReport, combine
from syncswim_lib.pipeline.streaming import Batch

SYNC = "app_shop"


def batch(number: int, updated: int, entities: tuple[str, ...] = ("customers",)) -> Batch:
    reports = {}
    for name in entities:
        r = EntityReport(SYNC, name)
        r.taken = updated
        r.side("shop_db").updated = updated
        for i in range(updated):
            r.note_change({"record": f"{number}.{i}"})
        r.note_event("warning", f"{name}: conflict in batch {number}")
        reports[name] = r
    return Batch(number, reports, captured=updated, first_change_at=0.0)


def run_op(tmp_path: Path, body: Any) -> DagsterInstance:
    @op
    def stream(context: OpExecutionContext) -> None:
        body(context)

    @job
    def streaming() -> None:
        stream()

    instance = DagsterInstance.local_temp(tempdir=str(tmp_path))
    assert streaming.execute_in_process(instance=instance).success
    return instance


def materialisations(instance: DagsterInstance, entity: str) -> list[dict[str, Any]]:
    found = instance.fetch_materializations(AssetKey([SYNC, entity]), limit=100).records
    return [
        {k: v.value for k, v in r.asset_materialization.metadata.items()}  # type: ignore[union-attr]
        for r in sorted(found, key=lambda r: r.storage_id)
    ]


def test_batches_closing_together_are_one_materialisation(tmp_path: Path) -> None:
    def body(context: OpExecutionContext) -> None:
        reporter = Reporter(context, SYNC, every_s=3600)
        for n in range(1, 6):
            reporter.batch(batch(n, updated=n))
        reporter.close()

    metas = materialisations(run_op(tmp_path, body), "customers")
    # the first is written at once; the four after it wait for the interval, or the close
    assert [(m["streaming_batch"], m["streaming_batches"]) for m in metas] in (
        [(1, 1), (5, 4)],
        [(5, 5)],  # all five queued before the reporter's thread first looked
    )
    assert sum(m["changes"] for m in metas) == 1 + 2 + 3 + 4 + 5
    assert sum(m["shop_db/updated"] for m in metas) == 15


def test_every_batch_on_its_own_with_no_interval(tmp_path: Path) -> None:
    def body(context: OpExecutionContext) -> None:
        reporter = Reporter(context, SYNC, every_s=0)
        for n in range(1, 4):
            reporter.batch(batch(n, updated=1, entities=("customers", "orders")))
        reporter.info("a line from the loop")
        reporter.close()

    instance = run_op(tmp_path, body)
    for entity in ("customers", "orders"):
        metas = materialisations(instance, entity)
        assert [(m["streaming_batch"], m["streaming_batches"]) for m in metas] == [
            (1, 1),
            (2, 1),
            (3, 1),
        ]
    (run,) = instance.get_runs()
    lines = [e.user_message for e in instance.all_logs(run.run_id)]
    assert "a line from the loop" in lines
    for n in range(1, 4):
        assert f"customers: conflict in batch {n}" in lines  # every event line is kept


def test_combined_reports_add_up() -> None:
    parts = [batch(n, updated=30).reports["customers"] for n in range(1, 4)]
    merged = combine(parts)
    assert (merged.taken, merged.side("shop_db").updated) == (90, 90)
    assert merged.changes_total == 90 and len(merged.changes) == 50  # the cap, in order
    assert merged.changes[0] == {"record": "1.0"} and merged.changes[30] == {"record": "2.0"}
    assert merged.events_total == 3
    with pytest.raises(ValueError, match="different entities"):
        combine([parts[0], EntityReport(SYNC, "orders")])
    with pytest.raises(ValueError, match="no reports"):
        combine([])


class Failing(Reporter):
    def _write(self, batches: Any) -> None:
        raise OSError("disk full")


def test_a_failure_to_write_reaches_the_loop() -> None:
    # no Dagster needed: the write itself fails before it would reach the context
    reporter = Failing(cast(Any, None), SYNC, every_s=0)
    reporter.batch(batch(1, updated=1))
    failed = "writing the run's reports to Dagster failed: disk full"
    with pytest.raises(RuntimeError, match=failed):
        reporter.close()
    with pytest.raises(RuntimeError, match=failed):
        reporter.batch(batch(2, updated=1))  # the loop's next batch stops the run
