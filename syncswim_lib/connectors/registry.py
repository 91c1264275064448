"""Which connector class serves which endpoint kind."""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncswim_lib.config.secrets import Secret
from syncswim_lib.config.timeouts import KEYS as TIMEOUT_KEYS
from syncswim_lib.errors import ConfigError

if TYPE_CHECKING:
    from syncswim_lib.config import Endpoint
    from syncswim_lib.connectors.base import Connector


def open_connector(endpoint: Endpoint) -> Connector:
    """A live connector for `endpoint`; secrets are resolved here, at connect time."""
    try:
        return _open(endpoint)
    except ConfigError as exc:
        file = _declared_in(endpoint)
        if exc.file is not None or exc.path is None or file is None:
            raise
        # a connector names the key (endpoints.x.dsn); the file it was declared in is ours
        message = str(exc).removeprefix(f"{exc.path}: ")
        raise ConfigError(message, file=file, path=exc.path) from None


def _declared_in(endpoint: Endpoint) -> str | None:
    return next((v.file for v in endpoint.settings.values() if isinstance(v, Secret)), None)


def _open(endpoint: Endpoint) -> Connector:
    if endpoint.kind == "postgres":
        from syncswim_lib.connectors.postgres import PostgresConnector

        pg = PostgresConnector(endpoint.resolve_setting("dsn"), endpoint.name, _timeouts(endpoint))
        if endpoint.polled:  # capture: poll (docs/polling.md)
            from syncswim_lib.connectors.polling.postgres import PolledPostgres

            return PolledPostgres(pg, endpoint.polls)
        return pg
    if endpoint.kind == "mysql":
        from syncswim_lib.connectors.mysql import MySQLConnector

        my = MySQLConnector(endpoint.resolve_setting("dsn"), endpoint.name, _timeouts(endpoint))
        if endpoint.polled:  # capture: poll (docs/polling.md)
            from syncswim_lib.connectors.polling.mysql import PolledMySQL

            return PolledMySQL(my, endpoint.polls)
        return my
    if endpoint.kind == "salesforce":
        from syncswim_lib.connectors.salesforce.connector import SalesforceConnector

        # every declared setting, secrets read now; the connector logs in at first use
        values = {k: endpoint.resolve_setting(k) for k in endpoint.settings}
        return SalesforceConnector.from_settings(endpoint.name, values)
    if endpoint.kind == "sqlite":
        from syncswim_lib.connectors.sqlite import SqliteConnector

        return SqliteConnector(endpoint.resolve_setting("path"), endpoint.name, endpoint.polls)
    raise ConfigError(
        f"endpoint kind {endpoint.kind!r} has no connector in this build yet",
        path=f"endpoints.{endpoint.name}.kind",
    )


def _timeouts(endpoint: Endpoint) -> dict[str, str]:
    """The timeout keys the endpoint declares, resolved (see `config.timeouts`)."""
    return {k: endpoint.resolve_setting(k) for k in TIMEOUT_KEYS if k in endpoint.settings}
