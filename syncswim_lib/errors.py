"""The error taxonomy the orchestrator acts on."""

from __future__ import annotations


class SyncSwimError(Exception):
    """Base of every error the library raises on purpose."""


class ConfigError(SyncSwimError):
    """The declaration is wrong: names the file, the key path and what was expected."""

    def __init__(self, message: str, *, file: str | None = None, path: str | None = None):
        self.file = file
        self.path = path
        where = ": ".join(p for p in (file, path) if p)
        super().__init__(f"{where}: {message}" if where else message)


class RetriableError(SyncSwimError):
    """Network, lock, timeout, API limit: retry with backoff."""


class Paused(RetriableError):
    """A target asks for no more calls for a while (its API budget is spent): not retried
    within the run. The run stops at a batch boundary, keeps what it applied, and ends as
    paused; the pending work stays in the journal for a later run (pipeline/pausing.py).
    `endpoint` is the endpoint that paused, `reason` what the materialisation says."""

    def __init__(self, message: str, endpoint: str, reason: str = "api budget") -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.reason = reason


class FatalError(SyncSwimError):
    """Authentication, missing slot, dropped table: stop and report."""


class PositionLost(FatalError):
    """The stream position a sync stored is gone from the source (a purged binlog, an
    invalidated replication slot): changes made since may be lost to capture. The pipeline
    answers it by capturing again from now and reconciling the affected entities."""


class RecordError(SyncSwimError):
    """The target rejected one record: park it, go on with the rest."""
