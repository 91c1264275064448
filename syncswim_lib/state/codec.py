"""JSON that round-trips the canonical value types of `syncswim_lib.envelope` exactly.

Plain JSON cannot tell Decimal('1.10') from 1.1, a date from a string, or bytes from
anything, so those travel as *tagged* objects: a JSON object with exactly one member whose
name starts with "$" (`{"$decimal": "1.10"}`). A JSON-document value that happens to have
that shape itself is escaped as `{"$dict": {...}}`, so a document can never be mistaken
for a tag, whatever its content.

Also here: the canonical key text used for lookups and uniqueness, and the mapping of a
`Change` to and from the journal's columns (and of a `ConflictRecord` from its row).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from syncswim_lib.envelope import Change, Op, Position, position_from_json
from syncswim_lib.state.base import ConflictRecord, JournalEntry, Link

_DECIMAL = "$decimal"
_DATE = "$date"
_DATETIME = "$datetime"
_BYTES = "$bytes"
_FLOAT = "$float"  # NaN and the infinities, which JSON has no spelling for
_DICT = "$dict"  # a document that looks like a tag

_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _is_tag_shaped(d: dict[str, Any]) -> bool:
    if len(d) != 1:
        return False
    (name,) = d
    return isinstance(name, str) and name.startswith("$")


_PLAIN = frozenset((type(None), bool, int, str))


def _float(value: float) -> Any:
    if math.isfinite(value):
        return value
    return {_FLOAT: "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}


def _dict(value: dict[Any, Any]) -> Any:
    out: dict[str, Any] = {}
    for k, v in value.items():
        if type(k) is not str and not isinstance(k, str):
            # JSON would silently turn 1 into "1": refuse instead of changing the key
            raise TypeError(f"cannot encode a dict key of type {type(k).__name__}: {k!r}")
        out[k] = v if type(v) in _PLAIN else encode(v)
    return {_DICT: out} if len(out) == 1 and _is_tag_shaped(out) else out


# by exact type: one lookup for the types rows are made of (journal images, shadows and
# details encode every value of every row); subclasses take the isinstance chain below
_BY_TYPE: dict[type, Callable[[Any], Any]] = {
    float: _float,
    Decimal: lambda v: {_DECIMAL: str(v)},
    datetime: lambda v: {_DATETIME: v.isoformat(timespec="microseconds")},
    date: lambda v: {_DATE: v.isoformat()},
    dict: _dict,
    list: lambda v: [encode(x) for x in v],
    tuple: lambda v: [encode(x) for x in v],
}


def encode(value: Any) -> Any:
    """The JSON-ready form of a canonical value (nested values included)."""
    t = type(value)
    if t in _PLAIN:  # the common case first: capture encodes every row
        return value
    fast = _BY_TYPE.get(t)
    if fast is not None:
        return fast(value)
    # bool before int (bool is an int); datetime before date (datetime is a date)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {_FLOAT: "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, Decimal):
        return {_DECIMAL: str(value)}
    if isinstance(value, datetime):
        return {_DATETIME: value.isoformat(timespec="microseconds")}
    if isinstance(value, date):
        return {_DATE: value.isoformat()}
    if isinstance(value, bytes | bytearray | memoryview):
        return {_BYTES: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if type(k) is not str and not isinstance(k, str):
                # JSON would silently turn 1 into "1": refuse instead of changing the key
                raise TypeError(f"cannot encode a dict key of type {type(k).__name__}: {k!r}")
            out[k] = v if type(v) in _PLAIN else encode(v)
        return {_DICT: out} if len(out) == 1 and _is_tag_shaped(out) else out
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    raise TypeError(f"cannot encode a value of type {type(value).__name__}: {value!r}")


def decode(data: Any) -> Any:
    """The inverse of `encode`."""
    if isinstance(data, list):
        return [v if type(v) in _PLAIN else decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if len(data) == 1 and _is_tag_shaped(data):
        ((tag, body),) = data.items()
        if tag == _DICT:
            return {k: decode(v) for k, v in body.items()}
        if tag == _DECIMAL:
            return Decimal(body)
        if tag == _DATETIME:
            return datetime.fromisoformat(body)
        if tag == _DATE:
            return date.fromisoformat(body)
        if tag == _BYTES:
            return base64.b64decode(body)
        if tag == _FLOAT:
            return _NONFINITE[body]
        raise ValueError(f"unknown tag {tag!r} in stored JSON")
    return {k: v if type(v) in _PLAIN else decode(v) for k, v in data.items()}


# allow_nan=False: a non-finite float that escaped `encode` must fail, not write NaN
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_SORTED_ENCODER = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True
)


def dumps(value: Any) -> str:
    if type(value) is dict:
        return _dumps_dict(value)
    return _ENCODER.encode(encode(value))


# The JSON text of the scalar types rows are made of, written directly: exactly what
# `_ENCODER.encode(encode(value))` writes (the tests compare the two), without building
# the tagged objects first. A shadow or a row image is a dict (of dicts) of such values,
# encoded for every link and journaled change, where the two passes cost most of the time.
_string = json.encoder.encode_basestring  # ensure_ascii=False's spelling, in C


def _decimal(v: Decimal) -> str:
    return '{"' + _DECIMAL + '":' + _string(str(v)) + "}"


def _stamp(v: datetime) -> str:
    return '{"' + _DATETIME + '":' + _string(v.isoformat(timespec="microseconds")) + "}"


def _day(v: date) -> str:
    return '{"' + _DATE + '":' + _string(v.isoformat()) + "}"


def _finite(v: float) -> str:
    return float.__repr__(v) if math.isfinite(v) else _ENCODER.encode(_float(v))


_TEXT: dict[type, Callable[[Any], str]] = {
    str: _string,
    type(None): lambda v: "null",
    bool: lambda v: "true" if v else "false",
    int: int.__repr__,
    float: _finite,
    Decimal: _decimal,
    datetime: _stamp,
    date: _day,
}


def _dumps_dict(value: dict[Any, Any]) -> str:
    if len(value) == 1 and _is_tag_shaped(value):
        return _ENCODER.encode(encode(value))  # escaped as {"$dict": ...}
    parts = []
    for k, v in value.items():
        if type(k) is not str:
            return _ENCODER.encode(encode(value))  # refused there, with its message
        t = type(v)
        text = _TEXT.get(t)
        if text is not None:
            parts.append(_string(k) + ":" + text(v))
        elif t is dict:
            parts.append(_string(k) + ":" + _dumps_dict(v))
        else:
            parts.append(_string(k) + ":" + _ENCODER.encode(encode(v)))
    return "{" + ",".join(parts) + "}"


def loads(text: str | bytes) -> Any:
    return decode(json.loads(text))


def dumps_opt(value: Any) -> str | None:
    """`dumps`, with SQL NULL (not JSON null) for None."""
    return None if value is None else dumps(value)


def loads_opt(text: str | bytes | None) -> Any:
    return None if text is None else loads(text)


def key_text(key: dict[str, Any]) -> str:
    """Canonical text of a record key: columns sorted, values type-exact (1 and "1" differ)."""
    if len(key) == 1:
        # the common key, one integer column: the same text the encoder writes, built
        # directly (the planner asks for it several times per record)
        ((name, value),) = key.items()
        if type(value) is int and type(name) is str and name.isidentifier():
            return f'{{"{name}":{value}}}'
    return _SORTED_ENCODER.encode(encode(key))


def position_text(position: Position) -> str:
    """Canonical text of a position: stored, and the dedup key of a journaled change."""
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


def entry_from_row(row: Sequence[Any], ts_out: Callable[[Any], datetime | None]) -> JournalEntry:
    """A `JournalEntry` from the columns of `schema.JOURNAL_COLUMNS`; `ts_out` reads a
    timestamp column of the backend."""
    (
        id_, sync, entity, side, op, table_name, key, before, after, changed_fields,
        position, commit_ts, detected_at, origin, status, batch_id, detail, applied_at,
        attempts,
    ) = row  # fmt: skip
    detected = ts_out(detected_at)
    assert detected is not None, "detected_at is NOT NULL"
    change = change_from_row(
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
