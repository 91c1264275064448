"""The PostgreSQL connector: logical decoding (pgoutput) capture, snapshot, apply.

`kind` describes the kind and imports no driver: the config loader reads it. The
connector (and its driver) is imported when `PostgresConnector` is first asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncswim_lib.connectors.postgres.connector import PostgresConnector

__all__ = ["PostgresConnector"]


def __getattr__(name: str) -> Any:
    if name == "PostgresConnector":
        from syncswim_lib.connectors.postgres.connector import PostgresConnector

        return PostgresConnector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
