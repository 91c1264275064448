"""A plan as JSON text (saved before any write, replayed after a crash)."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

from syncswim_lib.pipeline.plan import Plan, RecordPlan, Write
from syncswim_lib.state.base import ConflictRecord, EntryUpdate, Link
from syncswim_lib.values.codec import dumps, loads


def _link(data: dict[str, Any] | None) -> Link | None:
    return None if data is None else Link(**data)


def _conflict(data: dict[str, Any]) -> ConflictRecord:
    data = dict(data)
    data["entry_ids"] = tuple(data.get("entry_ids") or ())
    for name in ("ts_a", "ts_b", "created_at", "resolved_at"):
        value = data.get(name)
        assert value is None or isinstance(value, datetime)
    return ConflictRecord(**data)


def _record(data: dict[str, Any]) -> RecordPlan:
    data = dict(data)
    data["entry_ids"] = tuple(data["entry_ids"])
    data["old_link"] = _link(data["old_link"])
    data["writes"] = tuple(Write(**w) for w in data["writes"])
    data["conflicts"] = tuple(_conflict(c) for c in data["conflicts"])
    return RecordPlan(**data)


def _shallow(obj: Any) -> dict[str, Any]:
    # not dataclasses.asdict: it deep-copies every value, which costs more than the JSON
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _record_data(r: RecordPlan) -> dict[str, Any]:
    data = _shallow(r)
    data["old_link"] = None if r.old_link is None else _shallow(r.old_link)
    data["writes"] = [_shallow(w) for w in r.writes]
    data["conflicts"] = [_shallow(c) for c in r.conflicts]
    return data


def plan_to_text(plan: Plan) -> str:
    return dumps(
        {
            "records": [_record_data(r) for r in plan.records],
            "updates": [_shallow(u) for u in plan.updates],
            "release": list(plan.release),
            "counts": {
                f.name: getattr(plan, f.name)
                for f in fields(plan)
                if f.name not in ("records", "updates", "release")
            },
        }
    )


def plan_from_text(text: str) -> Plan:
    data = loads(text)
    plan = Plan(
        records=[_record(r) for r in data["records"]],
        updates=[EntryUpdate(**u) for u in data["updates"]],
        release=list(data["release"]),
    )
    for name, value in data["counts"].items():
        setattr(plan, name, value)
    return plan
