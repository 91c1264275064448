"""An application's SQLite file as an endpoint (kind `sqlite`), captured by polling.

`kind` describes the kind and imports no driver: the config loader reads it. The
connector (and its driver) is imported when `SqliteConnector` is first asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncswim_lib.connectors.sqlite.connector import SqliteConnector

__all__ = ["SqliteConnector"]


def __getattr__(name: str) -> Any:
    if name == "SqliteConnector":
        from syncswim_lib.connectors.sqlite.connector import SqliteConnector

        return SqliteConnector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
