"""The files `sandbox up` writes: the connection settings as a shell file to source
(`. .sandbox/sandbox.env`) and private JSON records."""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def render_env(values: Mapping[str, str | None], header: str = "") -> str:
    """`export NAME=value` per set value; `unset NAME` per None, so sourcing a newer file
    clears a setting an older one left in the shell."""
    lines = [f"# {line}" for line in header.splitlines()]
    for name, value in values.items():
        if not _NAME.match(name):
            raise ValueError(f"not a shell variable name: {name!r}")
        lines.append(f"unset {name}" if value is None else f"export {name}={shlex.quote(value)}")
    return "\n".join(lines) + "\n"


def write_env(path: Path, values: Mapping[str, str | None], header: str = "") -> None:
    """Write atomically and readable by the owner only: the file carries tokens."""
    _write_private(path, render_env(values, header))


def read_env(path: Path) -> dict[str, str]:
    """The exported values of a file written by `write_env` (not a general shell parser)."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, value = words[1].split("=", 1)
            out[name] = value
    return out


def write_private_json(path: Path, payload: Any) -> None:
    """sandbox.json and the emulator's record carry tokens too: same treatment."""
    _write_private(path, json.dumps(payload, indent=2) + "\n")


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
