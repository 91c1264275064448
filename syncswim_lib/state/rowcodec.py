"""The journal's, links' and conflicts' rows to and from their records (values in the
JSON of `syncswim_lib.values.codec`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring as _string  # ensure_ascii=False's, in C
from typing import Any

from syncswim_lib.envelope import (
    BinlogPosition,
    Change,
    Op,
    PgPosition,
    Position,
    position_from_json,
)
from syncswim_lib.state.base import ConflictRecord, JournalEntry, Link
from syncswim_lib.values.codec import (
    _ENCODER,
    _SORTED_ENCODER,
    dumps_opt,
    key_text,
    loads,
    loads_opt,
)


def position_text(position: Position) -> str:
    """Canonical text of a position: stored, and the dedup key of a journaled change."""
    # the streams' two kinds written directly (every captured change has one): the same
    # text the sorted encoder writes, members in name order (tests/state/test_state_codec.py)
    if type(position) is PgPosition and type(position.seq) is int:
        return f'{{"kind":"pg","lsn":"{position.format_lsn(position.lsn)}","seq":{position.seq}}}'
    if (
        type(position) is BinlogPosition
        and type(position.file) is str
        and type(position.pos) is int
        and type(position.seq) is int
    ):
        p = position
        return f'{{"file":{_string(p.file)},"kind":"binlog","pos":{p.pos},"seq":{p.seq}}}'
    return _SORTED_ENCODER.encode(position.to_json())


@dataclass(frozen=True)
class ChangeRow:
    """The journal columns that hold one `Change` (timestamps still as datetimes)."""

    op: str
    table_name: str
    key_text: str
    key: str
    before: str | None
    after: str | None
    changed_fields: str | None
    position: str
    commit_ts: datetime | None
    detected_at: datetime
    origin: str | None


def change_to_row(change: Change) -> ChangeRow:
    pos = position_text(change.position)
    key = key_text(change.key)  # also the stored key: a JSON object like any other
    return ChangeRow(
        op=Op(change.op).value,
        table_name=change.table,
        key_text=key,
        key=key,
        before=dumps_opt(change.before),
        after=dumps_opt(change.after),
        changed_fields=(
            None if change.changed_fields is None else _ENCODER.encode(list(change.changed_fields))
        ),
        position=pos,
        commit_ts=change.commit_ts,
        detected_at=change.detected_at,
        origin=change.origin,
    )


def change_from_row(row: ChangeRow) -> Change:
    position = position_from_json(row.position)
    assert position is not None
    fields = None if row.changed_fields is None else tuple(json.loads(row.changed_fields))
    return Change(
        op=Op(row.op),
        table=row.table_name,
        key=loads(row.key),
        after=loads_opt(row.after),
        before=loads_opt(row.before),
        position=position,
        commit_ts=row.commit_ts,
        detected_at=row.detected_at,
        origin=row.origin,
        changed_fields=fields,
    )


def as_read_back(change: Change, commit_ts: datetime | None, detected_at: datetime) -> Change:
    """`change` as `change_from_row` reads it back from its row: the key's columns in the
    key text's order, the timestamps as the store gives them back, the changed fields a
    tuple. The images are kept as they are: the codec gives back exactly
    the values it was given (tests/state/test_recent_entries.py compares the two)."""
    key = change.key
    if len(key) > 1:
        key = dict(sorted(key.items()))
    fields = change.changed_fields
    return Change(
        op=Op(change.op),
        table=change.table,
        key=key,
        after=change.after,
        before=change.before,
        position=change.position,
        commit_ts=commit_ts,
        detected_at=detected_at,
        origin=change.origin,
        changed_fields=None if fields is None else tuple(fields),
    )


def link_from_row(row: Sequence[Any]) -> Link:
    """A `Link` from the columns of `schema.LINK_COLUMNS`."""
    _id, sync, entity, key_a, key_b, shadow, ext_id = row
    return Link(
        sync=sync,
        entity=entity,
        key_a=loads_opt(key_a),
        key_b=loads_opt(key_b),
        shadow=loads_opt(shadow),
        ext_id=ext_id,
    )


def _change_of(row: Sequence[Any], ts_out: Callable[[Any], datetime | None]) -> Change:
    """The change of a journal row (`schema.JOURNAL_COLUMNS`), decoded."""
    op, table_name, key, before, after, changed_fields, position, commit_ts, detected_at = row[4:13]
    origin = row[13]
    detected = ts_out(detected_at)
    assert detected is not None, "detected_at is NOT NULL"
    return change_from_row(
        ChangeRow(
            op=op,
            table_name=table_name,
            key_text="",  # not read back: it is derived from the key
            key=key,
            before=before,
            after=after,
            changed_fields=changed_fields,
            position=position,
            commit_ts=ts_out(commit_ts),
            detected_at=detected,
            origin=origin,
        )
    )


def entry_from_row(
    row: Sequence[Any],
    ts_out: Callable[[Any], datetime | None],
    kept: Change | None = None,
) -> JournalEntry:
    """A `JournalEntry` from the columns of `schema.JOURNAL_COLUMNS`; `ts_out` reads a
    timestamp column of the backend. `kept`: the row's change, kept since it was journaled
    (`as_read_back`), instead of decoding it again."""
    id_, sync, entity, side = row[:4]
    status, batch_id, detail, applied_at, attempts = row[14:19]
    change = kept if kept is not None else _change_of(row, ts_out)
    return JournalEntry(
        id=int(id_),
        sync=sync,
        entity=entity,
        side=side,
        change=change,
        status=status,
        batch_id=batch_id,
        detail=loads_opt(detail),
        applied_at=ts_out(applied_at),
        attempts=int(attempts),
    )


def conflict_from_row(
    row: Sequence[Any], ts_out: Callable[[Any], datetime | None]
) -> ConflictRecord:
    """A `ConflictRecord` from the columns of `schema.CONFLICT_COLUMNS`."""
    (
        id_, sync, entity, key_a, key_b, ext_id, field, base_a, base_b, value_a, value_b,
        ts_a, ts_b, rule, outcome, value, tie, status, entry_ids, created_at, resolved_at,
        note,
    ) = row  # fmt: skip
    return ConflictRecord(
        sync=sync,
        entity=entity,
        key_a=loads_opt(key_a),
        key_b=loads_opt(key_b),
        ext_id=ext_id,
        field=field,
        base_a=loads(base_a),
        base_b=loads(base_b),
        value_a=loads(value_a),
        value_b=loads(value_b),
        ts_a=ts_out(ts_a),
        ts_b=ts_out(ts_b),
        rule=rule,
        outcome=outcome,
        value=loads(value),
        tie=bool(tie),
        status=status,
        id=int(id_),
        entry_ids=tuple(int(i) for i in json.loads(entry_ids)),
        created_at=ts_out(created_at),
        resolved_at=ts_out(resolved_at),
        note=note,
    )
