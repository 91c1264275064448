"""Creates in a system of record that keeps no batch markers (Salesforce), made idempotent
by `origin_id:` (docs/salesforce.md "Writing and idempotence").

A record born on the other side is created in the SOR, which generates its key. A
database SOR commits the create with the batch's marker, so a replay finds it; Salesforce
has neither transactions nor markers, and a plain create whose answer was lost (a
timeout after the org committed, a process gone before the state was recorded) would be
made again by the replay. With `origin_id` the create carries the other side's key of the
row in an external-id field of the SOR and goes as an upsert on it: the replay matches
the record created before, and the key written back is that record's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from syncswim_lib.pipeline.mapping import EntityMap, Letter, other
from syncswim_lib.pipeline.plan import RecordPlan, Write
from syncswim_lib.values.coerce import coerce


def origin_match(m: EntityMap, target: Letter) -> str | None:
    """The column creates on `target` are matched by when they carry no external id."""
    return m.side(target).origin_column


def with_origin_ids(
    m: EntityMap, target: Letter, records: Sequence[RecordPlan], writes: Sequence[Write]
) -> list[Write]:
    """`writes` to `target`, its creates given the origin column (the source row's key).

    Added at apply time from the records' keys rather than by the planner, so a plan
    saved before `origin_id` was declared is replayed with it too."""
    name = origin_match(m, target)
    if name is None:
        return list(writes)
    column = m.side(target).col(name)
    source = other(target)
    keys = {r.ref: r.key(source) for r in records}
    out: list[Write] = []
    for w in writes:
        key = keys.get(w.ref)
        if w.action != "insert" or not key or w.values.get(name) is not None:
            out.append(w)
            continue
        # validate checked that the field holds every key (one column: config refuses more)
        [value] = key.values()
        out.append(replace(w, values={**w.values, name: coerce(value, column)}))
    return out
