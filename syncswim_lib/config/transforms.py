"""Named value transforms a field mapping applies when writing to one side.

Builtins are named (`strip`, `to_int`, ...); a custom one is `python: package.module:function`
and is imported when the declaration loads, so a typo fails before anything runs.
Every transform passes None through. A value a transform cannot handle raises
RecordError: that record is parked with the reason, the others go on.
"""

from __future__ import annotations

import difflib
import importlib
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from syncswim_lib.errors import RecordError

TransformFn = Callable[[Any], Any]

_TRUE = {"true", "t", "yes", "y", "1", "on"}
_FALSE = {"false", "f", "no", "n", "0", "off"}


def _bad(name: str, value: Any, why: str) -> RecordError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return RecordError(f"transform {name}: {type(value).__name__} {shown} {why}")


def _text_only(name: str, fn: Callable[[str], Any]) -> TransformFn:
    def apply(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise _bad(name, value, "is not text (add to_str before it)")
        return fn(value)

    return apply


def _none_if_empty(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _to_str(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad("to_str", value, "is not UTF-8 text") from None
    return str(value)


def _to_int(value: Any) -> Any:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return int(text)
        except ValueError:
            pass
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise _bad("to_int", value, "is not an integer") from None
    if isinstance(value, float | Decimal):
        finite = value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)
        if not finite:
            raise _bad("to_int", value, "is not a finite number")
        if value != int(value):
            raise _bad("to_int", value, "has a fractional part")
        return int(value)
    raise _bad("to_int", value, "is not a number")


def _to_decimal(value: Any) -> Any:
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise _bad("to_decimal", value, "is not a number")
    if isinstance(value, str):
        if not value.strip():
            return None
        value = value.strip()
    elif not isinstance(value, int | float):
        raise _bad("to_decimal", value, "is not a number")
    try:
        result = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise _bad("to_decimal", value, "is not a number") from None
    if not result.is_finite():
        raise _bad("to_decimal", value, "is not a finite number")
    return result


def _to_bool(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            return None
        if text in _TRUE | _FALSE:
            return text in _TRUE
    raise _bad("to_bool", value, "is not a boolean (true/false, yes/no, 1/0)")


def _iso_date(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return datetime.fromisoformat(text).date()
        except ValueError:
            raise _bad("iso_date", value, "is not an ISO-8601 date or timestamp") from None
    raise _bad("iso_date", value, "is not a date")


BUILTINS: dict[str, TransformFn] = {
    "strip": _text_only("strip", str.strip),
    "lower": _text_only("lower", str.lower),
    "upper": _text_only("upper", str.upper),
    "none_if_empty": _none_if_empty,
    "to_str": _to_str,
    "to_int": _to_int,
    "to_decimal": _to_decimal,
    "to_bool": _to_bool,
    "iso_date": _iso_date,
}


@dataclass(frozen=True)
class Transform:
    """One or more named steps applied in order; equal when the names are equal."""

    steps: tuple[str, ...]
    funcs: tuple[TransformFn, ...] = field(compare=False, repr=False)

    @property
    def name(self) -> str:
        return " | ".join(self.steps)

    def __call__(self, value: Any) -> Any:
        for fn in self.funcs:
            value = fn(value)
        return value


class TransformError(Exception):
    """A transform name that does not resolve; the loader turns it into a ConfigError."""


def python_target(spec: str) -> str | None:
    """`module:function` for a custom spec (`python: m:f` or `m:f`), None for a builtin name."""
    text = spec.strip()
    if text.startswith("python:"):
        return text[len("python:") :].strip()
    return text if ":" in text else None


def import_callable(target: str, search_dir: Path | None = None) -> TransformFn:
    """Import `package.module:function`; `search_dir` (the YAML's folder) is tried last."""
    module_name, sep, attr = target.partition(":")
    module_name, attr = module_name.strip(), attr.strip()
    if not sep or not module_name or not attr:
        raise TransformError(f"expected 'package.module:function', got {target!r}")
    added = search_dir is not None and str(search_dir) not in sys.path
    if added:
        # appended, not prepended: a file next to the YAML must not shadow a real package
        sys.path.append(str(search_dir))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            where = "the Python path" + (" and the declaration's folder" if search_dir else "")
            raise TransformError(f"module {module_name!r} not found (looked on {where})") from None
        raise TransformError(f"importing {module_name!r} failed: {exc}") from None
    except Exception as exc:
        raise TransformError(f"importing {module_name!r} failed: {exc!r}") from None
    finally:
        if added:
            sys.path.remove(str(search_dir))
    fn: object = getattr(module, attr, None)
    if fn is None:
        raise TransformError(f"module {module_name!r} has no attribute {attr!r}")
    if not callable(fn):
        raise TransformError(f"{target!r} is not callable")
    return fn


def build_transform(specs: Sequence[str], search_dir: Path | None = None) -> Transform:
    """A Transform from step names; raises TransformError naming the step that fails."""
    funcs: list[TransformFn] = []
    steps: list[str] = []
    for spec in specs:
        target = python_target(spec)
        if target is not None:
            funcs.append(import_callable(target, search_dir))
            steps.append(f"python: {target}")
            continue
        name = spec.strip()
        if name not in BUILTINS:
            close = difflib.get_close_matches(name, BUILTINS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise TransformError(
                f"unknown transform {name!r} ({hint}builtins: {', '.join(BUILTINS)}; "
                "or 'python: package.module:function')"
            )
        funcs.append(BUILTINS[name])
        steps.append(name)
    return Transform(tuple(steps), tuple(funcs))
