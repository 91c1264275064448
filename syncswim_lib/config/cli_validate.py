"""`syncswim validate PATH`: load the declaration, check it against the live tables.

Prints, for each sync with references, its apply order and how each cycle is applied,
then "OK: N syncs, M entities" (warnings on stderr) and returns 0; or prints the one
error line on stderr and returns 2.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO
from urllib.parse import urlsplit

from syncswim_lib.config.live import Describe, validate_live
from syncswim_lib.config.loader import load_project
from syncswim_lib.config.models import Endpoint, Project, Sync
from syncswim_lib.config.secrets import Secret
from syncswim_lib.connectors.checks import CheckedServer, Finding
from syncswim_lib.errors import ConfigError, SyncSwimError
from syncswim_lib.values import TableInfo

if TYPE_CHECKING:
    from syncswim_lib.connectors.base import Connector

EXIT_OK = 0
EXIT_INVALID = 2

OpenConnector = Callable[[Endpoint], "Connector"]


def secret_texts(endpoint: Endpoint) -> list[str]:
    """Resolved secret values of an endpoint (and URL passwords), to keep out of messages."""
    texts: list[str] = []
    for name, value in endpoint.settings.items():
        if not isinstance(value, Secret):
            continue
        try:
            text = endpoint.resolve_setting(name)
        except ConfigError:
            continue
        texts.append(text)
        try:
            password = urlsplit(text).password
        except ValueError:
            password = None
        if password:
            texts.append(password)
    return sorted(texts, key=len, reverse=True)


class LiveDescriber:
    """`describe(endpoint, table)` through one connector per endpoint, opened on first use."""

    def __init__(self, project: Project, open_connector: OpenConnector | None = None) -> None:
        if open_connector is None:
            from syncswim_lib.connectors.registry import open_connector as default_open

            open_connector = default_open
        self.project = project
        self.open_connector = open_connector
        self.connectors: dict[str, Connector] = {}

    def _endpoint_error(self, endpoint: Endpoint, what: str, exc: Exception) -> ConfigError:
        named = isinstance(exc, SyncSwimError)  # our own errors already say what failed
        text = (str(exc) if named else f"{type(exc).__name__}: {exc}").strip()
        text = text.splitlines()[0] if text else type(exc).__name__
        for secret in secret_texts(endpoint):
            text = text.replace(secret, "***")
        return ConfigError(
            f"cannot {what} {endpoint.kind} endpoint {endpoint.name}: {text}",
            file=self.project.source_name,
            path=f"endpoints.{endpoint.name}",
        )

    def __call__(self, endpoint_name: str, table: str) -> TableInfo:
        endpoint = self.project.endpoints[endpoint_name]
        connector = self.connector(endpoint_name)
        try:
            return connector.describe(table)
        except ConfigError:
            raise  # the table is missing: live validation names the declaration's key
        except Exception as exc:  # a driver's connection error: one line, no secrets
            raise self._endpoint_error(endpoint, "reach", exc) from None

    def connector(self, endpoint_name: str) -> Connector:
        """The endpoint's connector, opened on first use; failures as one-line errors."""
        endpoint = self.project.endpoints[endpoint_name]
        if endpoint_name not in self.connectors:
            try:
                self.connectors[endpoint_name] = self.open_connector(endpoint)
            except ConfigError as exc:
                if exc.path is not None:  # e.g. an unset environment variable
                    raise
                raise self._endpoint_error(endpoint, "use", exc) from None
            except Exception as exc:
                raise self._endpoint_error(endpoint, "use", exc) from None
        return self.connectors[endpoint_name]

    def check_servers(self) -> list[Finding]:
        """What `syncswim doctor` finds on the servers of the syncs' endpoints."""
        findings: list[Finding] = []
        for name, syncs in endpoint_syncs(self.project).items():
            endpoint = self.project.endpoints[name]
            connector = self.connector(name)
            if not isinstance(connector, CheckedServer):
                continue
            streaming = [s for s in syncs if self.project.syncs[s].run == "streaming"]
            try:
                findings += connector.check_server(syncs)
                check_streaming = getattr(connector, "check_streaming", None)
                if streaming and check_streaming is not None:
                    findings += check_streaming(streaming)
            except Exception as exc:
                raise self._endpoint_error(endpoint, "check", exc) from None
        return findings

    def close(self) -> None:
        for connector in self.connectors.values():
            # closing is best effort: the check already has its answer
            with contextlib.suppress(Exception):
                connector.close()
        self.connectors.clear()


def endpoint_syncs(project: Project) -> dict[str, dict[str, list[str]]]:
    """endpoint -> sync -> the tables (objects) the sync declares on it."""
    out: dict[str, dict[str, list[str]]] = {}
    for sync in project.syncs.values():
        for entity in sync.entities.values():
            for letter in ("a", "b"):
                side = entity.side(letter)
                tables = out.setdefault(side.endpoint, {}).setdefault(sync.name, [])
                if side.table not in tables:
                    tables.append(side.table)
    return out


def _and(items: Sequence[str]) -> str:
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]


def relationship_lines(sync: Sync) -> list[str]:
    """The apply order of a sync with references, and how each of its cycles is applied
    (docs/relationships.md): what the runs will do, said before they do it."""
    if not any(e.references for e in sync.entities.values()):
        return []
    lines = [f"{sync.name}: apply order {' -> '.join(sync.apply_order())}"]
    forward = sync.forward_references()
    for group in sync.cycles():
        later = [(child, ref.column) for child, ref in forward if child in group]
        if len(group) == 1:
            columns = [column for _, column in later]
            lines.append(
                f"{sync.name}: {group[0]} refers to itself ({', '.join(columns)}): rows are "
                f"inserted parents first; a circle of rows is inserted without "
                f"{_and(columns)}, which {'is' if len(columns) == 1 else 'are'} set in a "
                "second pass"
            )
            continue
        edges = [
            f"{name}.{ref.column} -> {ref.parent}"
            for name in group
            for ref in sync.entities[name].references.values()
            if ref.parent in group
        ]
        by_child: dict[str, list[str]] = {}
        for child, column in later:
            by_child.setdefault(child, []).append(column)
        left_out = [
            f"rows of {child} {'are inserted ' if i == 0 else ''}without {_and(columns)}"
            for i, (child, columns) in enumerate(by_child.items())
        ]
        lines.append(
            f"{sync.name}: {', '.join(group)} refer to each other ({', '.join(edges)}): they "
            f"are applied in this order; {_and(left_out)}, which "
            f"{'is' if len(later) == 1 else 'are'} set in a second pass"
        )
    return lines


def run_validate(
    path: str,
    live: bool = True,
    *,
    describe: Describe | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Check the declaration at `path`; `describe` replaces the connectors (tests, tools)."""
    out = out or sys.stdout
    err = err or sys.stderr
    warnings: list[str] = []
    findings: list[Finding] = []
    try:
        project = load_project(path)
        if live:
            describer = None
            if describe is None:
                describer = LiveDescriber(project)
                describe = describer
            try:
                warnings = validate_live(project, describe)
                if describer is not None:
                    findings = describer.check_servers()
            finally:
                if describer is not None:
                    describer.close()
    except ConfigError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_INVALID
    for warning in warnings:
        print(f"warning: {warning}", file=err)
    for finding in findings:
        print(f"{finding.severity}: {finding.line()}", file=err)
    if any(f.severity == "error" for f in findings):
        return EXIT_INVALID
    for sync in project.syncs.values():
        for line in relationship_lines(sync):
            print(line, file=out)
    entities = sum(len(s.entities) for s in project.syncs.values())
    print(f"OK: {len(project.syncs)} syncs, {entities} entities", file=out)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="syncswim validate", description="Check a sync declaration."
    )
    parser.add_argument("path", help="the YAML declaration")
    parser.add_argument(
        "--no-live",
        action="store_true",
        help="check the file only, connect to nothing",
    )
    args = parser.parse_args(argv)
    return run_validate(args.path, live=not args.no_live)


if __name__ == "__main__":
    sys.exit(main())
