"""`syncswim init A_DSN B_DSN [--out FILE] [--tables T ...] [--force]`: a starting
declaration from two live databases (PostgreSQL or MariaDB/MySQL, in either order).

Each DSN is given on the command line or as `env:VARIABLE` (read from the environment, so
it stays out of the shell's history). The file names the DSNs as `{env: VARIABLE}` and
never holds a password; init prints the SQL to run first (it is in the file's comments
too), the variables to set and the next commands. Exit 0 when the file is written, 2 when
nothing is (an existing file without `--force`, a DSN that cannot be read or reached, a
table named by `--tables` that is not on both sides, no table on both sides).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from syncswim_lib.config.introspect import kind_of, read_database, safe_dsn
from syncswim_lib.config.scaffold import LETTERS, Letter, Scaffold, Side, endpoint_names, propose
from syncswim_lib.config.scaffold_render import render, sql_by_endpoint, sql_header
from syncswim_lib.errors import ConfigError
from syncswim_lib.redact import redact

EXIT_OK = 0
EXIT_FAILED = 2
DEFAULT_OUT = "syncswim.yaml"
ENV_PREFIX = "env:"


def _dsn(given: str, which: str) -> tuple[str, str | None]:
    """(the DSN, the variable it came from), for a DSN or `env:VARIABLE`."""
    if not given.startswith(ENV_PREFIX):
        return given, None
    name = given[len(ENV_PREFIX) :]
    value = os.environ.get(name, "")
    if not name or not value.strip():
        raise ConfigError(f"{which} DSN: environment variable {name or '(none)'} is not set")
    return value, name


def _summary(scaffold: Scaffold) -> str:
    lossy = sum(len(f.notes) > 0 for e in scaffold.entities for f in e.fields)
    left_out = sum(len(e.left_out) for e in scaffold.entities)
    one_side = sum(len(t) for t in scaffold.only_on.values()) + len(scaffold.skipped)
    decide = sum(len(e.decisions) for e in scaffold.entities)
    parts = [
        f"{one_side} table{'s' * (one_side != 1)} not synced",
        f"{left_out} field{'s' * (left_out != 1)} left out",
        f"{lossy} lossy mapping{'s' * (lossy != 1)}",
        f"{decide} other decision{'s' * (decide != 1)}",
    ]
    return ", ".join(parts)


def run_init(
    a_dsn: str,
    b_dsn: str,
    out_file: str | Path = DEFAULT_OUT,
    tables: Sequence[str] = (),
    force: bool = False,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    path = Path(out_file)
    given = (a_dsn, b_dsn)
    try:
        if path.exists() and not force:
            raise ConfigError(f"{path} exists: give --force to overwrite it")
        dsns = [_dsn(d, which) for d, which in zip(given, ("first", "second"), strict=True)]
        for dsn, _ in dsns:
            kind_of(dsn)  # both schemes checked before connecting to either
        names = [t.strip() for spec in tables for t in spec.split(",") if t.strip()]
        dbs = [
            read_database(dsn, which, names)
            for (dsn, _), which in zip(dsns, ("first", "second"), strict=True)
        ]
        endpoints = endpoint_names(dbs[0], dbs[1])
        sides: dict[Letter, Side] = {
            letter: Side(endpoints[i], env or f"{endpoints[i].upper()}_DSN", dbs[i])
            for i, (letter, (_, env)) in enumerate(zip(LETTERS, dsns, strict=True))
        }
        scaffold = propose(sides, names)
        if not scaffold.entities:
            listed = "; ".join(
                f"{sides[lt].name}: {', '.join(scaffold.only_on[lt]) or '(no tables)'}"
                for lt in LETTERS
            )
            raise ConfigError(f"no table is on both sides, nothing to declare ({listed})")
        text = render(scaffold)
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    except ConfigError as exc:
        print(f"error: {redact(str(exc), *given)}", file=err)
        return EXIT_FAILED
    entities = len(scaffold.entities)
    a, b = sides["a"], sides["b"]
    print(
        f"wrote {path}: sync {scaffold.sync} between {a.name} ({a.kind}) and {b.name} "
        f"({b.kind}), {entities} entit{'ies' if entities != 1 else 'y'}",
        file=out,
    )
    print(f"  to decide (see the comments in the file): {_summary(scaffold)}", file=out)
    for warning in scaffold.warnings:
        print(f"warning: {warning}", file=err)
    blocks = sql_by_endpoint(scaffold)
    if blocks:
        print("run this SQL first:", file=out)
        for letter, statements in blocks:
            print(f"  {sql_header(scaffold, letter)}", file=out)
            for statement in statements:
                print(f"  {statement}", file=out)
    print("set the DSNs in the environment (the file names the variables, not the DSNs):", file=out)
    for (dsn, env), letter in zip(dsns, LETTERS, strict=True):
        side = sides[letter]
        if env:
            print(f"  {side.env} (already set)", file=out)
            continue
        shown = safe_dsn(dsn)
        hint = "   # with the password in place of ***" if shown != dsn else ""
        print(f"  export {side.env}='{shown}'{hint}", file=out)
    print(
        f"then: syncswim validate {path} && syncswim setup {path} && syncswim sync {path} --full",
        file=out,
    )
    return EXIT_OK
