"""What `syncswim retry` does: failed and parked records tried again now, without `full`.

`retry PATH` takes every failed and parked record of every entity back to pending and
runs the syncs once (as `syncswim sync` does: the same writer lease, the same report);
`--entity E` only that entity's (after its ancestors, which write only what is pending);
`--side ENDPOINT --key K` only that record's entries. The attempts already made are kept,
so the audit shows how many tries a record took. Bad input is one line and exit code 2.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from pathlib import Path

from syncswim_lib.pipeline.audit_cmd import _entity, _parse_key, _side
from syncswim_lib.pipeline.conflicts_cmd import UsageError, _run, _runtime


def retry(
    path: str | Path,
    entity: str | None = None,
    side: str | None = None,
    key: str | None = None,
) -> int:
    """Exit code: 0 when the run that follows applied everything it took, 1 when some
    record failed again (or a sync could not run), 2 on bad input."""
    taken: list[int] = []

    def requeue() -> Generator[str, None, None]:
        if key is not None and side is None:
            raise UsageError("--key names a row of one side: give --side too")
        with _runtime(path) as rt:
            if entity is None:
                if side is not None:
                    raise UsageError("--side and --key name a record of one entity: give --entity")
                targets = [(s, e) for s, d in rt.project.syncs.items() for e in d.entities]
                endpoint, parsed = None, None
            else:
                decl = _entity(rt.project, None, entity)
                targets = [(decl.sync, decl.name)]
                endpoint = None if side is None else _side(decl, side, key)
                parsed = None if key is None else _parse_key(decl, endpoint, key)
            for sync, name in targets:
                keys = None if parsed is None else [parsed]
                n = rt.store.requeue(sync, name, side=endpoint, keys=keys)
                taken.append(n)
                if n:
                    yield f"{sync}.{name}: {n} failed or parked changes pending again"
        if not sum(taken):
            yield "no failed or parked changes to retry"

    code = _run(requeue)
    if code or not sum(taken):
        return code
    from syncswim_lib.pipeline.admin import run_once

    sys.stdout.flush()
    return run_once(path, None if entity is None else entity.rpartition(".")[2])
