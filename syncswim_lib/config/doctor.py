"""`syncswim doctor PATH`: are the endpoints' servers ready for change capture?

For each endpoint a sync captures from, the checks of its connector (settings, free
replication slots, rights, binlog retention; `connectors/*/checks.py`), each finding with
what to set and where. Exit 0 when there are no errors (warnings allowed), 1 when a
server is not ready, 2 when the declaration itself is invalid or an endpoint unreachable.
The same checks run inside live `validate` and before `setup` changes anything.
"""

from __future__ import annotations

import sys
from typing import TextIO

from syncswim_lib.config.cli_validate import LiveDescriber, endpoint_syncs
from syncswim_lib.config.loader import load_project
from syncswim_lib.errors import ConfigError

EXIT_OK = 0
EXIT_NOT_READY = 1
EXIT_INVALID = 2


def run_doctor(path: str, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        project = load_project(path)
        describer = LiveDescriber(project)
        try:
            findings = describer.check_servers()
        finally:
            describer.close()
    except ConfigError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_INVALID
    for name in endpoint_syncs(project):
        kind = project.endpoints[name].kind
        mine = [f for f in findings if f.endpoint == name]
        print(f"{name} ({kind}): {'ok' if not mine else ''}".rstrip(), file=out)
        for f in mine:
            print(f"  {f.severity}: {f.problem}", file=out)
            print(f"    fix: {f.fix}", file=out)
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    print(
        f"doctor: {errors} error{'s' * (errors != 1)}, {warnings} warning"
        f"{'s' * (warnings != 1)}" + (": fix the errors before `syncswim setup`" if errors else ""),
        file=out,
    )
    return EXIT_NOT_READY if errors else EXIT_OK
