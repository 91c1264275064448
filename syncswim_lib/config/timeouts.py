"""How long a database connection waits: the endpoint keys, their defaults and parsing.

Every connection the connectors open is bounded by these, so a server that stops
answering fails the operation with a RetriableError instead of hanging a run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from syncswim_lib.errors import ConfigError

# endpoint key -> Timeouts field; the same keys for PostgreSQL and MySQL endpoints
KEYS: Mapping[str, str] = {
    "connect_timeout": "connect",
    "statement_timeout": "statement",
    "read_timeout": "read",
    "write_timeout": "write",
}


@dataclass(frozen=True)
class Timeouts:
    """Seconds (fractions allowed).

    connect: to open a connection (TCP and login). statement: the server cancels a
    statement that runs longer (PostgreSQL `statement_timeout`; MariaDB
    `max_statement_time`, MySQL `max_execution_time` for SELECTs; not applied to the
    streaming read of a MySQL snapshot, which runs as long as the snapshot). read: the
    client gives up on a server that sends nothing for this long (above `statement`, so
    that a slow statement is cancelled by the server first). write: the same for sending
    (MySQL; PostgreSQL's sends are bounded by `read` through `tcp_user_timeout`)."""

    connect: float = 10.0
    statement: float = 120.0
    read: float = 150.0
    write: float = 150.0

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, str], where: str, base: Timeouts | None = None
    ) -> Timeouts:
        """The declared keys among an endpoint's (resolved) `settings`, over `base` (what
        the DSN says, else the defaults)."""
        given = {
            KEYS[key]: seconds(value, f"{where}.{key}")
            for key, value in settings.items()
            if key in KEYS
        }
        out = replace(base or cls(), **given)
        if out.read <= out.statement and {"read", "statement"} & given.keys():
            raise ConfigError(
                f"read_timeout ({out.read:g} s) must be longer than statement_timeout "
                f"({out.statement:g} s): the server cancels a slow statement, the client "
                "gives up only on a server that does not answer",
                path=where,
            )
        return out

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def seconds(text: str, path: str) -> float:
    """A positive number of seconds, or a ConfigError naming `path`."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"expected a positive number of seconds, got {text!r}", path=path)
    return value
