"""Which connector class serves which endpoint kind."""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncswim_lib.errors import ConfigError

if TYPE_CHECKING:
    from syncswim_lib.config import Endpoint
    from syncswim_lib.connectors.base import Connector


def open_connector(endpoint: Endpoint) -> Connector:
    """A live connector for `endpoint`; secrets are resolved here, at connect time."""
    if endpoint.kind == "postgres":
        from syncswim_lib.connectors.postgres import PostgresConnector

        return PostgresConnector(endpoint.resolve_setting("dsn"), endpoint.name)
    if endpoint.kind == "mysql":
        from syncswim_lib.connectors.mysql import MySQLConnector

        return MySQLConnector(endpoint.resolve_setting("dsn"), endpoint.name)
    raise ConfigError(
        f"endpoint kind {endpoint.kind!r} has no connector in this build yet",
        path=f"endpoints.{endpoint.name}.kind",
    )
