"""Where a value sits in the declaration (file, key path, line), and the checks that name it.

Every error the loader raises goes through `At.error`, so each one carries the file, the
dotted key path (`syncs.app_shop.entities.customers.fields.email`) and the line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from syncswim_lib.config.yamltree import LineDict
from syncswim_lib.errors import ConfigError

NAME_RE = re.compile(r"[a-z][a-z0-9_]*")


def describe(value: Any) -> str:
    """How a YAML value reads to the person who wrote it."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a yes/no value)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value!r}"
    return type(value).__name__


def suggest(word: str, options: Collection[str]) -> str:
    """ "; did you mean 'x'?" for the closest option (by spelling, or a shared stem)."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    if not close:
        lowered = word.lower()
        close = [
            o for o in options if len(o) >= 3 and (lowered.startswith(o) or o.startswith(lowered))
        ]
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True)
class At:
    file: str
    path: tuple[str, ...] = ()
    line: int | None = None

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    def key(self, name: Any, container: Any = None) -> At:
        """The position of `container[name]` (line taken from the container when known)."""
        line = self.line
        if isinstance(container, LineDict):
            line = container.key_lines.get(name, container.line)
        return At(self.file, (*self.path, str(name)), line)

    def item(self, index: int) -> At:
        last = self.path[-1] if self.path else ""
        return At(self.file, (*self.path[:-1], f"{last}[{index}]"), self.line)

    def error(self, message: str) -> ConfigError:
        suffix = f" (line {self.line})" if self.line is not None else ""
        return ConfigError(message + suffix, file=self.file, path=self.dotted or None)

    # -- checks -------------------------------------------------------------------------

    def mapping(self, value: Any, expected: str) -> LineDict:
        if not isinstance(value, dict):
            raise self.error(f"expected {expected}, got {describe(value)}")
        if not isinstance(value, LineDict):  # built in code rather than read from YAML
            wrapped = LineDict(value)
            wrapped.line, wrapped.key_lines, wrapped.duplicates = self.line, {}, []
            return wrapped
        return value

    def keys(
        self,
        value: LineDict,
        allowed: Sequence[str],
        required: Sequence[str] = (),
        what: str = "",
    ) -> None:
        """Unknown keys (with the closest valid name) and missing required keys."""
        for key in value:
            if not isinstance(key, str):
                raise self.key(key, value).error(
                    f"expected a name as key, got {describe(key)} (quote it if it is a name)"
                )
            if key not in allowed:
                raise self.key(key, value).error(
                    f"unknown key {key!r}{' in ' + what if what else ''} "
                    f"(expected one of: {', '.join(allowed)}{suggest(key, allowed)})"
                )
        for key in required:
            if key not in value:
                at = At(self.file, self.path, value.line or self.line)
                raise at.error(f"missing key {key!r}{' in ' + what if what else ''}")

    def text(self, value: Any, expected: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"expected {expected}, got {describe(value)}")
        return value.strip()

    def name(self, value: Any, what: str) -> str:
        if not isinstance(value, str) or not NAME_RE.fullmatch(value):
            raise self.error(
                f"{what} must be lowercase letters, digits and underscores, starting with a "
                f"letter, got {describe(value)}"
            )
        return value

    def one_of(self, value: Any, options: Sequence[str], what: str) -> str:
        if not isinstance(value, str) or value not in options:
            hint = suggest(value, options) if isinstance(value, str) else ""
            raise self.error(
                f"unknown {what} {value!r} (expected one of: {', '.join(options)}{hint})"
                if isinstance(value, str)
                else f"expected {what} (one of: {', '.join(options)}), got {describe(value)}"
            )
        return value
