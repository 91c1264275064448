"""What a run tells a person about each record: a row of the materialisation's change
table per write, and a log event per conflict, failure and parked record, each naming
the record by its key on both sides (a key alone names a row of one side only)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from syncswim_lib.pipeline.mapping import EntityMap, Letter, other
from syncswim_lib.pipeline.plan import Write
from syncswim_lib.state.base import ConflictRecord

CELL = 160  # characters of a value or a cell, past which it is cut (the journal keeps all)


def short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def key_label(endpoint: str, key: Mapping[str, Any] | None) -> str:
    if key is None:
        return f"{endpoint} (new)"
    return f"{endpoint} " + ",".join(f"{k}={short(v, 40)}" for k, v in key.items())


def record_label(m: EntityMap, keys: Mapping[Letter, Mapping[str, Any] | None]) -> str:
    return f"{key_label(m.a.endpoint, keys['a'])} / {key_label(m.b.endpoint, keys['b'])}"


def transforms_of(m: EntityMap, w: Write) -> dict[str, str]:
    """Target column -> the transform applied to its value on the way (declared ones)."""
    out: dict[str, str] = {}
    for pair in m.fields:
        col = pair[0] if w.target == "a" else pair[1]
        fn = pair[2] if w.target == "a" else pair[3]
        if fn is not None and col in w.values:
            out[col] = str(getattr(fn, "name", getattr(fn, "__name__", "transform")))
    return out


def fields_text(w: Write) -> str:
    if w.action == "delete":
        return ""
    seen = w.expected or {}
    parts = []
    for col, new in w.values.items():
        if w.action == "update" and col in seen:
            parts.append(f"{col}: {short(seen[col])} → {short(new)}")
        else:
            parts.append(f"{col}={short(new)}")
    text = "; ".join(parts)
    return text if len(text) <= CELL else text[: CELL - 1] + "…"


def change_row(
    m: EntityMap, w: Write, outcome: str, keys: Mapping[Letter, Mapping[str, Any] | None]
) -> dict[str, str]:
    source: Letter = other(w.target)
    return {
        "outcome": outcome[:CELL],
        "action": w.action,
        "from": key_label(m.side(source).endpoint, keys[source]),
        "to": key_label(m.side(w.target).endpoint, keys[w.target]),
        "fields": fields_text(w),
    }


def conflict_event(m: EntityMap, c: ConflictRecord) -> tuple[str, str]:
    keys: dict[Letter, Mapping[str, Any] | None] = {"a": c.key_a, "b": c.key_b}
    where = f"{m.sync}.{m.entity} {record_label(m, keys)}"
    versions = (
        f"{m.a.endpoint} {short(c.value_a)} vs {m.b.endpoint} {short(c.value_b)} "
        f"(base {short(c.base_a)})"
    )
    if c.status == "open":
        return (
            "error",
            f"conflict on {where}, field {c.field}: {versions}; waits for a person "
            "(syncswim conflicts list / resolve)",
        )
    winner = {"a": m.a.endpoint, "b": m.b.endpoint}.get(c.outcome, c.outcome)
    tie = " (a tie, broken by the tie-break)" if c.tie else ""
    return (
        "warning",
        f"conflict on {where}, field {c.field}: {versions}; {c.rule} chose {winner}{tie}",
    )
