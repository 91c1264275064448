"""Secrets in the declaration: named environment variables, resolved only when connecting.

Loading never reads the environment, because Dagster loads the definitions in processes
that hold no secrets (the webserver, the daemon). A secret is resolved at connect time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from syncswim_lib.errors import ConfigError


@dataclass(frozen=True)
class Secret:
    """A value taken from the environment variable `env`, or written literally (`value`).

    `repr` and `str` name the variable and never show a value.
    """

    env: str | None = None
    value: str | None = field(default=None, repr=False)
    # where it was declared, for the error when the variable is missing
    path: str | None = field(default=None, compare=False)
    file: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if (self.env is None) == (self.value is None):
            raise ValueError("a Secret has exactly one of env or value")

    def resolve(self, path_for_errors: str | None = None) -> str:
        if self.value is not None:
            return self.value
        assert self.env is not None
        where = path_for_errors or self.path
        found = os.environ.get(self.env)
        if found is None:
            raise ConfigError(
                f"environment variable {self.env} is not set", file=self.file, path=where
            )
        if not found.strip():
            raise ConfigError(
                f"environment variable {self.env} is set but empty", file=self.file, path=where
            )
        return found

    def __repr__(self) -> str:
        return f"Secret(env={self.env!r})" if self.env is not None else "Secret(<literal>)"

    __str__ = __repr__


def resolve(value: Secret | str, path_for_errors: str | None = None) -> str:
    """A setting's text, whether it was declared as a secret or as plain text."""
    return value.resolve(path_for_errors) if isinstance(value, Secret) else value
