"""Materialisation metadata from a run report: what the asset history in the UI shows."""

from __future__ import annotations

from typing import Any

from dagster import MetadataValue

from syncswim_lib.pipeline.report import EntityReport


def report_metadata(report: EntityReport) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for endpoint, counts in sorted(report.sides.items()):
        meta[f"{endpoint}/inserted"] = counts.inserted
        meta[f"{endpoint}/updated"] = counts.updated
        meta[f"{endpoint}/deleted"] = counts.deleted
    meta.update(
        {
            "captured": report.captured,
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
    if report.retries:
        meta["retried_calls"] = MetadataValue.json(report.retries)
    if report.errors:
        meta["errors"] = MetadataValue.md("\n".join(f"- {e}" for e in report.errors[:50]))
    return meta
