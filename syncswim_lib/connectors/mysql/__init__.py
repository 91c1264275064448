"""The MySQL / MariaDB connector: binlog capture, consistent snapshots, marked applies.

`kind` describes the kind and imports no driver: the config loader reads it. The
connector (and its driver) is imported when `MySQLConnector` is first asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncswim_lib.connectors.mysql.connector import MySQLConnector

__all__ = ["MySQLConnector"]


def __getattr__(name: str) -> Any:
    if name == "MySQLConnector":
        from syncswim_lib.connectors.mysql.connector import MySQLConnector

        return MySQLConnector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
