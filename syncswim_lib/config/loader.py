"""Loading a declaration file into a `Project`, with errors that name file, key and line.

Loading reads no environment variable and opens no connection: Dagster loads the
definitions in processes that hold no secrets. `live.validate_live` checks the tables.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from syncswim_lib.config.build import build_project
from syncswim_lib.config.keypath import At
from syncswim_lib.config.models import Project
from syncswim_lib.config.yamltree import duplicates, parse
from syncswim_lib.errors import ConfigError


def parse_project(text: str, file: str = "<string>", source_path: Path | None = None) -> Project:
    """A Project from YAML text; `file` is the name errors show."""
    try:
        tree = parse(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.context:
            started = f" at line {exc.context_mark.line + 1}" if exc.context_mark else ""
            what += f" ({exc.context}{' that starts' if started else ''}{started})"
        raise ConfigError(f"YAML syntax error{where}: {what}", file=file) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML syntax error: {exc}", file=file) from None
    found = sorted(duplicates(tree), key=lambda item: item[1].line)
    if found:
        path, dup = found[0]
        raise At(file, path, dup.line).error(
            f"duplicate key {dup.key!r} (first given at line {dup.first_line})"
        )
    return build_project(tree, file, source_path)


def load_project(path: str | Path) -> Project:
    """Load and check the declaration at `path`; raises ConfigError."""
    shown = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=shown) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the file: {exc}", file=shown) from None
    return parse_project(text, shown, Path(path).absolute())
