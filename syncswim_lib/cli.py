"""The `syncswim` command.

Each subcommand imports its module when it runs, so `syncswim --help` stays fast and a build
without some part still offers the others.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from syncswim_lib.errors import SyncSwimError

Handler = Callable[[argparse.Namespace], Any]


def _sandbox_up(a: argparse.Namespace) -> Any:
    from syncswim_lib.sandbox.manager import run_up

    return run_up(a.dir, salesforce=not a.no_salesforce)


def _sandbox_down(a: argparse.Namespace) -> Any:
    from syncswim_lib.sandbox.manager import run_down

    return run_down(a.dir)


def _sandbox_status(a: argparse.Namespace) -> Any:
    from syncswim_lib.sandbox.manager import run_status

    return run_status(a.dir)


def _validate(a: argparse.Namespace) -> Any:
    from syncswim_lib.config.cli_validate import run_validate

    return run_validate(str(a.path), a.live)


def _init(a: argparse.Namespace) -> Any:
    from syncswim_lib.config.init_cmd import run_init

    return run_init(a.a_dsn, a.b_dsn, a.out, a.tables or (), a.force)


def _doctor(a: argparse.Namespace) -> Any:
    from syncswim_lib.config.doctor import run_doctor

    return run_doctor(str(a.path))


def _setup(a: argparse.Namespace) -> Any:
    from syncswim_lib.pipeline.admin import setup

    return setup(a.path)


def _teardown(a: argparse.Namespace) -> Any:
    from syncswim_lib.pipeline.admin import teardown

    return teardown(a.path)


def _sync(a: argparse.Namespace) -> Any:
    if a.dry_run:
        if not a.full:
            print("syncswim: --dry-run goes with --full (sync --full --dry-run)", file=sys.stderr)
            return 2
        from syncswim_lib.pipeline.preview import preview

        return preview(a.path, a.entity)
    from syncswim_lib.pipeline.admin import run_once

    return run_once(a.path, a.entity, a.full)


def _stop(a: argparse.Namespace) -> Any:
    from syncswim_lib.pipeline.stop_cmd import stop

    return stop(a.path, a.sync, resume=a.resume, wait_s=a.wait)


def _retry(a: argparse.Namespace) -> Any:
    from syncswim_lib.pipeline.retry_cmd import retry

    return retry(a.path, a.entity, a.side, a.key)


def _demo(a: argparse.Namespace) -> Any:
    from syncswim_lib.sandbox.demo import run_demo

    return run_demo(a.dir, a.port)


def _audit(a: argparse.Namespace) -> Any:
    from syncswim_lib.pipeline.audit_cmd import audit

    return audit(
        a.path,
        a.entity,
        a.key,
        sync=a.sync,
        side=a.side,
        record=a.record,
        status=a.status,
        since=a.since,
        limit=a.limit,
        as_json=a.json,
    )


def _verify(a: argparse.Namespace) -> Any:
    from syncswim_lib.pipeline.verify_cmd import verify

    return verify(a.path, a.entity, a.limit, as_json=a.json)


def _conflicts_list(a: argparse.Namespace) -> Any:
    from syncswim_lib.pipeline.conflicts_cmd import list_conflicts

    return list_conflicts(a.path, a.sync, a.entity, a.status, a.limit)


def _conflicts_show(a: argparse.Namespace) -> Any:
    from syncswim_lib.pipeline.conflicts_cmd import show_conflict

    return show_conflict(a.path, a.id)


def _conflicts_resolve(a: argparse.Namespace) -> Any:
    from syncswim_lib.pipeline.conflicts_cmd import resolve_conflict

    return resolve_conflict(a.path, a.id, a.take, a.value)


def _conflicts_restore(a: argparse.Namespace) -> Any:
    from syncswim_lib.pipeline.conflicts_cmd import restore_conflict

    return restore_conflict(a.path, a.id)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"syncswim {version('syncswim')}"
    except PackageNotFoundError:
        return "syncswim (not installed)"


class _VersionAction(argparse.Action):
    """Looks the version up only when asked: package metadata is slow to load."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(_version())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="syncswim",
        description="Sync or Swim: two-way record sync between PostgreSQL, MySQL, "
        "Salesforce and polled sources, on Dagster.",
    )
    p.add_argument("--version", action=_VersionAction)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def cmd(name: str, handler: Handler, help: str, parent: Any = sub) -> argparse.ArgumentParser:
        c: argparse.ArgumentParser = parent.add_parser(name, help=help, description=help)
        c.set_defaults(handler=handler)
        return c

    def spec(c: argparse.ArgumentParser) -> argparse.ArgumentParser:
        c.add_argument("path", type=Path, metavar="PATH", help="the sync declaration (YAML)")
        c.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            help="say which state store is used (on stderr, passwords hidden)",
        )
        return c

    sandbox = sub.add_parser("sandbox", help="private PostgreSQL, MariaDB and Salesforce emulator")
    sb = sandbox.add_subparsers(dest="action", metavar="ACTION", required=True)
    dir_opt: dict[str, Any] = {
        "type": Path,
        "default": Path(".sandbox"),
        "help": "where the servers keep data and state (default .sandbox)",
    }
    up = cmd("up", _sandbox_up, "start the sandbox (or report it, when it runs)", sb)
    up.add_argument("--dir", **dir_opt)
    up.add_argument("--no-salesforce", action="store_true", help="do not start the emulator")
    cmd("down", _sandbox_down, "stop everything the sandbox started", sb).add_argument(
        "--dir", **dir_opt
    )
    cmd("status", _sandbox_status, "what runs; exit 0 only when all is up", sb).add_argument(
        "--dir", **dir_opt
    )

    v = spec(cmd("validate", _validate, "check a declaration (and, live, its endpoints)"))
    v.add_argument(
        "--no-live",
        dest="live",
        action="store_false",
        help="check the file only, connect to nothing",
    )
    i = cmd("init", _init, "write a starting declaration from two databases (their DSNs)")
    i.add_argument("a_dsn", metavar="A_DSN", help="side a: postgresql://, mysql:// or env:VAR")
    i.add_argument("b_dsn", metavar="B_DSN", help="side b, the same way")
    i.add_argument("--out", type=Path, default=Path("syncswim.yaml"), help="default syncswim.yaml")
    i.add_argument(
        "--tables", action="append", metavar="T,...", help="only these tables (by name; repeatable)"
    )
    i.add_argument("--force", action="store_true", help="overwrite --out when it exists")
    spec(
        cmd(
            "doctor",
            _doctor,
            "check the endpoints' servers for change capture: settings, slots, grants",
        )
    )
    spec(cmd("setup", _setup, "create what the syncs need on the endpoints (slots, ...)"))
    spec(cmd("teardown", _teardown, "remove what setup created"))
    s = spec(cmd("sync", _sync, "run one sync pass now, outside Dagster"))
    s.add_argument("--entity", help="only this entity (and what it needs)")
    s.add_argument("--full", action="store_true", help="reconcile both sides from snapshots")
    s.add_argument(
        "--dry-run",
        action="store_true",
        help="with --full: say what it would adopt, create and merge on each side; write nothing",
    )
    rt = spec(cmd("retry", _retry, "try failed and parked changes again now, then run once"))
    rt.add_argument("--entity", help="only this entity's (or sync.entity)")
    rt.add_argument("--side", metavar="ENDPOINT", help="with --key: the side the record is on")
    rt.add_argument("--key", help="one record of --side: id=7, region=eu,id=7 or JSON")
    st = spec(cmd("stop", _stop, "end a sync's streaming run at its next batch boundary"))
    st.add_argument("sync", metavar="SYNC", help="the sync whose streaming run to stop")
    st.add_argument("--resume", action="store_true", help="let its sensor start one again")
    st.add_argument("--wait", type=float, default=60.0, help="seconds to wait (default 60)")
    d = cmd("demo", _demo, "start the sandbox, a demo sync and the Dagster UI")
    d.add_argument("--dir", **dir_opt)
    d.add_argument("--port", type=int, default=3000, help="port of the Dagster UI (default 3000)")
    au = spec(cmd("audit", _audit, "what happened to records: applied, conflicts, failures"))
    au.add_argument("--sync", help="only this sync")
    au.add_argument("--entity", help="only this entity (or sync.entity)")
    au.add_argument("--side", metavar="ENDPOINT", help="only changes captured on this endpoint")
    au.add_argument(
        "--key",
        help="one record of --side: id=7, region=eu,id=7 or JSON '{\"id\": 7}'",
    )
    au.add_argument(
        "--record",
        action="store_true",
        help="with --side and --key: also the linked record's history on the other side",
    )
    au.add_argument(
        "--status",
        metavar="STATUS",
        help="pending, waiting, applied, skipped, conflict, failed, parked, or all (default)",
    )
    au.add_argument("--since", metavar="WHEN", help="detected since: 30m, 2h, 7d or an ISO time")
    au.add_argument("--limit", default="200", metavar="N", help="at most N (default 200)")
    au.add_argument("--json", action="store_true", help="one JSON object per line")
    ve = spec(cmd("verify", _verify, "compare both sides record by record; read only"))
    ve.add_argument("--entity", help="only this entity (or sync.entity)")
    ve.add_argument(
        "--limit", default="100", metavar="N", help="differences shown per entity (default 100)"
    )
    ve.add_argument("--json", action="store_true", help="one JSON object per line")

    conflicts = sub.add_parser(
        "conflicts",
        help="fields both sides changed: list, show, resolve, restore",
        description="Fields both sides changed to different values, and what became of them.",
    )
    cf = conflicts.add_subparsers(dest="action", metavar="ACTION", required=True)
    # ids and numbers are read as text and checked by the command: one-line messages
    cl = spec(cmd("list", _conflicts_list, "the newest conflicts, as a table", cf))
    cl.add_argument("--sync", help="only this sync")
    cl.add_argument("--entity", help="only this entity")
    cl.add_argument(
        "--status",
        default="all",
        metavar="STATUS",
        help="open (waiting for a person), decided (by a rule), resolved, applied, or all "
        "(default)",
    )
    cl.add_argument("--limit", default="100", metavar="N", help="at most N (default 100)")
    cs = spec(cmd("show", _conflicts_show, "everything about one conflict", cf))
    cs.add_argument("id", metavar="ID", help="the conflict's id (see `conflicts list`)")
    cr = spec(
        cmd(
            "resolve",
            _conflicts_resolve,
            "choose a conflict's value; the next run writes it to both sides",
            cf,
        )
    )
    cr.add_argument("id", metavar="ID", help="the conflict's id")
    cr.add_argument("--take", metavar="SIDE", help="this side's value: an endpoint name, a or b")
    cr.add_argument(
        "--value",
        metavar="JSON",
        help="this value, as JSON in side a's form ('\"text\"', 12.50, null)",
    )
    cx = spec(
        cmd(
            "restore",
            _conflicts_restore,
            "for a conflict a rule decided: choose the value that lost",
            cf,
        )
    )
    cx.add_argument("id", metavar="ID", help="the conflict's id")
    return p


def _missing(e: ImportError) -> str | None:
    """The part of this build that is absent, when `e` says so (not a broken dependency)."""
    name = e.name or ""
    if not name.startswith("syncswim_lib"):
        return None
    if isinstance(e, ModuleNotFoundError):
        return name
    return f"{name} ({e.msg})"


def _verbose() -> None:
    """`-v`: the library's notes (`syncswim.*` loggers: the state store used) on stderr."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("syncswim: %(message)s"))
    logger = logging.getLogger("syncswim")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "verbose", False):
        _verbose()
    try:
        result = args.handler(args)
    except ImportError as e:
        if (what := _missing(e)) is None:
            raise
        print(f"syncswim: not available in this build: {what}", file=sys.stderr)
        return 1
    except SyncSwimError as e:
        from syncswim_lib.redact import redact

        # the last guard: messages are redacted where they are made, with the DSNs at hand
        print(f"syncswim: error: {redact(str(e))}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
