"""Where a declaration's state store lives: one answer for the CLI, Dagster and the demo.

The rule (docs/your-own-databases.md, "Where the state lives"):

1. the declaration's `state:` key, when it has one (a plain file path in it is read
   relative to the declaration's folder);
2. else the SQLite file `.syncswim/syncswim_state.db` in the declaration's folder.

Neither the working directory nor `DAGSTER_HOME` takes part: the state belongs to the
declaration, so `syncswim sync` from one folder, `syncswim audit` from another and
`dagster dev` in a third all open the same store. The result is always absolute.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from syncswim_lib.redact import redact

if TYPE_CHECKING:
    from syncswim_lib.config import Project

log = logging.getLogger("syncswim.state")

STATE_DIR = ".syncswim"
STATE_FILE = "syncswim_state.db"


def default_state_path(declaration: Path | None) -> Path:
    """The SQLite file beside the declaration (the working directory only for a project
    parsed from text, which has no file: tests and tools)."""
    folder = declaration.parent if declaration is not None else Path.cwd()
    return (folder / STATE_DIR / STATE_FILE).resolve()


def state_url_for(project: Project) -> str:
    """The state store URL of `project`, absolute; secrets are resolved (env) here."""
    declared = project.resolve_state()
    base = project.source_path.parent if project.source_path is not None else Path.cwd()
    if declared is None:
        path = default_state_path(project.source_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    if "://" not in declared:  # a plain path (through an env variable): the file's folder
        return f"sqlite:///{(base / declared).resolve()}"
    return declared


def redact_url(url: str) -> str:
    """`url` with its password replaced by `***`, for messages and `-v` output."""
    return redact(url, url)


def announce(url: str, project: Project, *, given: bool = False) -> None:
    """Say which store a command uses (shown by `-v`): the question a user asks first when
    two commands seem to see different journals."""
    if given:
        how = "given by the caller"
    else:
        how = "declared by `state:`" if project.state is not None else "beside the declaration"
    log.info("state store: %s (%s)", redact_url(url), how)
