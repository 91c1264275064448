"""What a server needs before a sync can capture from it, as findings a person can act on.

The connectors that have server settings to check (PostgreSQL, MySQL/MariaDB) implement
`CheckedServer`; `syncswim doctor`, live `validate` and each connector's own `setup` use
the same checks, so setup refuses for the same reasons doctor prints, before it changes
anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from syncswim_lib.errors import FatalError

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    severity: Severity
    endpoint: str
    problem: str  # what is wrong, with the value found
    fix: str  # what to set and where

    def line(self) -> str:
        """One line, as `validate` prints it after `error:` or `warning:`."""
        return f"endpoints.{self.endpoint}: {self.problem} (fix: {self.fix})"


@runtime_checkable
class CheckedServer(Protocol):
    def check_server(self, syncs: Mapping[str, Sequence[str]]) -> list[Finding]:
        """Findings for capturing the given syncs (sync -> its tables on this endpoint)."""
        ...


def refuse_on_errors(findings: Sequence[Finding], what: str) -> None:
    """Raise one error naming every error finding (warnings do not stop anything)."""
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        detail = "; ".join(f"{f.problem} (fix: {f.fix})" for f in errors)
        # fatal, not a configuration error of the declaration: the server must change
        raise FatalError(f"{what}: the server is not ready: {detail}")
