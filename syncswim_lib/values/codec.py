"""JSON that round-trips the canonical value types of `syncswim_lib.envelope` exactly.

Plain JSON cannot tell Decimal('1.10') from 1.1, a date from a string, or bytes from
anything, so those travel as *tagged* objects: a JSON object with exactly one member whose
name starts with "$" (`{"$decimal": "1.10"}`). A JSON-document value that happens to have
that shape itself is escaped as `{"$dict": {...}}`, so a document can never be mistaken
for a tag, whatever its content.

Also here: the canonical key text used for lookups and uniqueness. The journal's columns
are mapped to and from `Change`s in `state/rowcodec.py`.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

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
        elif t is list and all(type(x) in _PLAIN for x in v):
            # a list of plain values (a JSON document's usual list): no tags to write,
            # the encoder's own text
            parts.append(_string(k) + ":" + _ENCODER.encode(v))
        else:
            parts.append(_string(k) + ":" + _ENCODER.encode(encode(v)))
    return "{" + ",".join(parts) + "}"


def _tag(d: dict[str, Any]) -> Any:
    """`decode` of one object whose members are decoded already (json's object_hook)."""
    if len(d) != 1:
        return d
    ((tag, body),) = d.items()
    if type(tag) is not str or not tag.startswith("$"):
        return d
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


# the tags turned into values by the C parser, object by object, inside out: every row the
# journal and the links hold is read through here. Inside out is only right when no
# document was escaped (its members must not be read as tags): those go through `decode`.
_DECODER = json.JSONDecoder(object_hook=_tag)


def loads(text: str | bytes) -> Any:
    if not isinstance(text, str) or _DICT in text:
        # bytes (json detects their encoding), or an escaped document (or a value that
        # mentions the word)
        return decode(json.loads(text))
    return _DECODER.decode(text)


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


def _value_text(value: Any) -> str:
    """`dumps` of one value as a member of an object (what `_dumps_dict` writes for it)."""
    t = type(value)
    text = _TEXT.get(t)
    if text is not None:
        return text(value)
    if t is dict:
        return _dumps_dict(value)
    return _ENCODER.encode(encode(value))


def _column_text(values: Sequence[Any]) -> list[str]:
    """The JSON text of each value of one column: one C-level map where the column has
    one type the encoder writes directly (the common case), per value otherwise."""
    kinds = set(map(type, values))
    if len(kinds) == 1:
        (t,) = kinds
        text = _TEXT.get(t)
        if text is not None:
            return list(map(text, values))
    elif len(kinds) == 2 and type(None) in kinds:
        (t,) = kinds - {type(None)}
        text = _TEXT.get(t)
        if text is not None:
            return ["null" if v is None else text(v) for v in values]
    return list(map(_value_text, values))


def dumps_columns(
    names: Sequence[str],
    columns: Sequence[Sequence[Any]],
    rows: int,
    cache: dict[int, tuple[Sequence[Any], list[str]]] | None = None,
) -> list[str]:
    """`dumps({name: column[i] for each name})` for every row i, written a column at a
    time (the same text, character for character): a shadow's side for a batch of rows.
    `cache` keeps each column's texts by the column's identity, for a column passed again
    (the other side's column that holds the very same values)."""
    if len(names) != len(columns) or any(len(c) != rows for c in columns):
        raise ValueError("dumps_columns: one column of `rows` values per name")
    if any(type(k) is not str for k in names) or len(set(names)) != len(names):
        return [dumps(dict(zip(names, row, strict=True))) for row in _rows(columns, rows)]
    if len(names) == 1 and names[0].startswith("$"):
        # an object that looks like a tag is escaped: `dumps` knows how
        return [dumps({names[0]: v}) for v in columns[0]]
    if not names:
        return ["{}"] * rows
    texts: list[list[str]] = []
    for column in columns:
        known = cache.get(id(column)) if cache is not None else None
        if known is not None and known[0] is column:
            texts.append(known[1])
            continue
        made = _column_text(column)
        if cache is not None:
            cache[id(column)] = (column, made)
        texts.append(made)
    template = "{" + ",".join(_string(k).replace("%", "%%") + ":%s" for k in names) + "}"
    return [template % row for row in zip(*texts, strict=True)]


def _rows(columns: Sequence[Sequence[Any]], rows: int) -> Iterator[tuple[Any, ...]]:
    return zip(*columns, strict=True) if columns else iter([()] * rows)


class EncodedShadow(dict[str, Any]):
    """A shadow with its `dumps` text made already (`dumps_columns`, for a batch of new
    links): the store writes `text` instead of encoding the dict again. It is a plain
    dict otherwise; `text` must be the dict's own `dumps` (do not change one without the
    other)."""

    __slots__ = ("text",)

    def __init__(self, values: dict[str, Any], text: str) -> None:
        super().__init__(values)
        self.text = text


def shadow_text(shadow: dict[str, Any] | None) -> str | None:
    """`dumps_opt` of a link's shadow, the text made already where it was."""
    if type(shadow) is EncodedShadow:
        return shadow.text
    return dumps_opt(shadow)
