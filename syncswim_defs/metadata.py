"""Materialisation metadata from a run report: what the asset history in the UI shows,
the asset checks that flag an entity with conflicts or records that did not apply, and
the run-log events that name each of them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
)

from syncswim_lib.pipeline.report import EntityReport

# checks every entity asset carries, evaluated with each materialisation
CHECK_RECORDS = "records_applied"
CHECK_CONFLICTS = "conflicts_settled"

_CHANGE_COLUMNS = (
    ("outcome", "applied, rejected (the target's error), stale (merged next run)"),
    ("action", "insert, update or delete on the target"),
    ("from", "the record on the side the change came from (endpoint and key)"),
    ("to", "the record written (endpoint and key)"),
    ("fields", "column: old → new (insert: column=value)"),
)


class RunLog(Protocol):
    def warning(self, msg: str) -> None: ...
    def error(self, msg: str) -> None: ...


def check_specs(key: AssetKey) -> list[AssetCheckSpec]:
    return [
        AssetCheckSpec(
            CHECK_RECORDS,
            asset=key,
            description="No record failed or parked (a parked record waits for "
            "`syncswim retry` or a materialisation by hand).",
        ),
        AssetCheckSpec(
            CHECK_CONFLICTS,
            asset=key,
            description="No conflict in the last run and none waiting for a person.",
        ),
    ]


def check_results(
    key: AssetKey, report: EntityReport, unsettled: Mapping[str, int], open_conflicts: int
) -> list[AssetCheckResult]:
    """From the run's report and the entity's journal after it: a record parked or a
    conflict waiting for a person is an error; failed records that will be tried again,
    and conflicts a rule decided in this run, are warnings."""
    failed, parked = unsettled.get("failed", 0), unsettled.get("parked", 0)
    records = AssetCheckResult(
        asset_key=key,
        check_name=CHECK_RECORDS,
        passed=not failed and not parked,
        severity=AssetCheckSeverity.ERROR if parked else AssetCheckSeverity.WARN,
        metadata={"failed": failed, "parked": parked, "failed_this_run": report.failed},
        description=(
            f"{parked} parked, {failed} failed to be tried again; `syncswim audit --status "
            "parked` lists them"
            if failed or parked
            else "every record applied"
        ),
    )
    conflicts = AssetCheckResult(
        asset_key=key,
        check_name=CHECK_CONFLICTS,
        passed=not report.conflicts and not open_conflicts,
        severity=AssetCheckSeverity.ERROR if open_conflicts else AssetCheckSeverity.WARN,
        metadata={"this_run": report.conflicts, "waiting_for_a_person": open_conflicts},
        description=(
            f"{report.conflicts} in this run, {open_conflicts} waiting for a person; "
            "`syncswim conflicts list` shows them"
            if report.conflicts or open_conflicts
            else "no conflict"
        ),
    )
    return [records, conflicts]


def log_events(log: RunLog, report: EntityReport) -> None:
    """Each conflict, failure and parked record as its own line of the run log."""
    for level, message in report.events:
        (log.error if level == "error" else log.warning)(message)
    if report.events_total > len(report.events):
        log.warning(
            f"{report.sync}.{report.entity}: {report.events_total - len(report.events)} more "
            "such events; `syncswim audit` and `syncswim conflicts list` show them all"
        )


def change_table(report: EntityReport) -> MetadataValue[Any]:
    schema = TableSchema(
        columns=[TableColumn(name, "string", description=d) for name, d in _CHANGE_COLUMNS]
    )
    return MetadataValue.table([TableRecord(row) for row in report.changes], schema=schema)


def report_metadata(report: EntityReport) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for endpoint, counts in sorted(report.sides.items()):
        meta[f"{endpoint}/inserted"] = counts.inserted
        meta[f"{endpoint}/updated"] = counts.updated
        meta[f"{endpoint}/deleted"] = counts.deleted
    meta.update(
        {
            # journal entries this run settled; `captured_by_run`: of the change streams'
            # entries, those this run's own capture read (the sensor reads most)
            "changes": report.taken,
            "captured_by_run": report.captured,
            "snapshot_rows": report.snapshot_rows,
            # a `full` run's bulk part (pipeline/seed.py)
            "created_in_bulk": report.created_in_bulk,
            "already_in_step": report.in_step,
            "skipped_echoes": report.skipped_echoes,
            "conflicts": report.conflicts,
            "waiting_for_external_id": report.waiting,
            "failed": report.failed,
            # of the failed, those out of tries (`retry.records.attempts`): left for
            # `syncswim retry` or a materialisation by hand
            "parked": report.parked,
            # failed and parked records this run took again (due, by hand, or with a newer
            # change of the same record)
            "requeued": report.requeued,
            "key_write_backs": report.write_backs,
            "recovered_batches": report.recovered_batches,
            # records left for the next run: a target row changed underneath (compare-and-set)
            # or a row missing without a captured delete
            "stale_writes": report.stale,
            # of the records, those decided in bulk as one-sided updates of linked records
            # (their writes compare-and-set like the others')
            "fast_path_records": report.fast_path,
            "deferred": report.deferred,
            # relationships (docs/relationships.md)
            "waiting_for_parent": report.waiting_parent,
            "references_translated": report.translated,
            "references_set_in_second_pass": report.held,
            "children_cleared_before_parent_delete": report.cascaded,
            "positions": MetadataValue.json(report.positions),
            "duration_s": round(report.duration_s, 3),
        }
    )
    if report.changes_total:
        meta["change_table"] = change_table(report)
        if report.changes_total > len(report.changes):
            meta["change_table_more"] = (
                f"{report.changes_total - len(report.changes)} more writes: syncswim audit "
                f"--entity {report.sync}.{report.entity} --status applied --limit N"
            )
    for endpoint, usage in sorted(report.api_usage.items()):
        # API calls this run made, and the org's daily count and allowance (Salesforce)
        meta[f"{endpoint}/api_calls"] = usage.get("calls") or 0
        if usage.get("used") is not None:
            meta[f"{endpoint}/api_usage"] = f"{usage['used']}/{usage['limit']}"
    if report.paused:
        # the run stopped on an endpoint's API budget: what it applied is kept, the rest
        # waits in the journal until the retry time (pipeline/pausing.py)
        meta["paused"] = report.paused["reason"]
        meta["paused_endpoint"] = report.paused["endpoint"]
        meta["paused_until"] = report.paused["retry_at"]
        meta["paused_because"] = report.paused["message"]
    if report.retries:
        meta["retried_calls"] = MetadataValue.json(report.retries)
    if report.errors:
        meta["errors"] = MetadataValue.md("\n".join(f"- {e}" for e in report.errors[:50]))
    return meta
