"""Whether a column's new type holds every value its old type could (schema drift).

A mapped column retyped to a type of the same family that is at least as wide (a longer
varchar, a bigger integer, more digits on both sides of a decimal point, a finer fraction
of a second, a double for a float) changes nothing a change can carry: schema drift takes
it as the new baseline with a warning instead of stopping the entity. Anything else (a
narrower type, another family, a type this module does not know) is not a widening, and
the entity stops until a person decides. The rules are written for the type names
PostgreSQL's `format_type` and MariaDB/MySQL's `COLUMN_TYPE` give.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# a name, its arguments if any, then words such as "unsigned" or "with time zone"
_TYPE = re.compile(r"^([a-z][a-z ]*?)\s*(?:\(([^)]*)\)\s*([a-z ]*)|)$")
_SUFFIXES = ("without time zone", "with time zone", "zerofill", "unsigned")

# integers by width; MySQL's tinyint(1) is the project's boolean and kept out of it
_INTS = {"smallint": 2, "integer": 4, "int": 4, "bigint": 8, "tinyint": 1, "mediumint": 3}
_INT_ALIASES = {"int2": "smallint", "int4": "integer", "int8": "bigint"}
# MySQL's text types by the bytes they hold
_TEXTS = {"tinytext": 255, "text": 65_535, "mediumtext": 16_777_215, "longtext": 4_294_967_295}
_VARCHARS = ("varchar", "character varying")
_DECIMALS = ("numeric", "decimal")
_FLOATS = {"real": 4, "float": 4, "double precision": 8, "double": 8}
_TIMES = ("timestamp", "datetime", "time", "timetz", "timestamptz")


@dataclass(frozen=True)
class _Type:
    base: str
    args: tuple[int, ...]
    suffix: str  # "unsigned", "with time zone", ...


def _parse(text: str) -> _Type | None:
    norm = " ".join(text.lower().split())
    match = _TYPE.match(norm)
    if match is None:
        return None
    base, raw_args, suffix = match.group(1).strip(), match.group(2), (match.group(3) or "").strip()
    # without parentheses the words after the name are in `base`: "int unsigned",
    # PostgreSQL's "timestamp without time zone"
    for word in _SUFFIXES:
        if base.endswith(" " + word):
            base, suffix = base.removesuffix(" " + word), f"{word} {suffix}".strip()
    try:
        args = tuple(int(a) for a in raw_args.split(",")) if raw_args else ()
    except ValueError:
        return None
    return _Type(_INT_ALIASES.get(base, base), args, suffix)


def widens(old: str, new: str, *, mysql: bool) -> bool:
    """Whether every value of a column of type `old` fits one of type `new`. `mysql`:
    the names are MariaDB/MySQL's (a bare `time`/`datetime` has whole seconds there, six
    digits of a second on PostgreSQL)."""
    a, b = _parse(old), _parse(new)
    if a is None or b is None or old == new:
        return False
    if a.base in _INTS and b.base in _INTS:
        if mysql and "tinyint" in (a.base, b.base) and 1 in (*a.args, *b.args):
            return False  # tinyint(1) is a boolean
        return a.suffix == b.suffix and _INTS[b.base] >= _INTS[a.base]
    if a.base in _VARCHARS and a.args:
        if b.base in _VARCHARS and b.args:
            return b.args[0] >= a.args[0]
        if not mysql and b.base == "text":
            return True
        # four bytes a character at most (utf8mb4)
        return mysql and b.base in _TEXTS and _TEXTS[b.base] >= 4 * a.args[0]
    if mysql and a.base in _TEXTS and b.base in _TEXTS:
        return _TEXTS[b.base] >= _TEXTS[a.base]
    if a.base in _DECIMALS and b.base in _DECIMALS and a.args:
        if not b.args:
            return not mysql  # PostgreSQL's unconstrained numeric holds any
        p1, s1 = a.args[0], a.args[1] if len(a.args) > 1 else 0
        p2, s2 = b.args[0], b.args[1] if len(b.args) > 1 else 0
        return s2 >= s1 and p2 - s2 >= p1 - s1
    if a.base in _FLOATS and b.base in _FLOATS:
        return not a.args and not b.args and _FLOATS[b.base] >= _FLOATS[a.base]
    if a.base in _TIMES and a.base == b.base and a.suffix == b.suffix:
        bare = 0 if mysql else 6
        return (b.args[0] if b.args else bare) >= (a.args[0] if a.args else bare)
    return False
