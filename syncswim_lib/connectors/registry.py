"""Which endpoint kinds this build has: kind -> the module describing it.

The modules are imported when a kind is first asked for, and each imports only light
modules (see `connectors.kinds`), so the config loader can read a kind's settings
without loading a driver. Adding a kind is one line here and a `kind.py` in its package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from syncswim_lib.connectors.kinds import KindDescription
from syncswim_lib.errors import ConfigError

if TYPE_CHECKING:
    from syncswim_lib.config.models import Endpoint
    from syncswim_lib.connectors.base import Connector

# each module exposes KIND, a KindDescription named like the key
KINDS: dict[str, str] = {
    "postgres": "syncswim_lib.connectors.postgres.kind",
    "mysql": "syncswim_lib.connectors.mysql.kind",
    "salesforce": "syncswim_lib.connectors.salesforce.kind",
    "sqlite": "syncswim_lib.connectors.sqlite.kind",
}

_loaded: dict[str, KindDescription] = {}


def kind_of(name: str) -> KindDescription:
    """The description of kind `name`; KeyError for a kind this build does not have."""
    if name not in _loaded:
        module = importlib.import_module(KINDS[name])
        kind = module.KIND
        if not isinstance(kind, KindDescription) or kind.name != name:
            raise TypeError(f"{KINDS[name]}.KIND does not describe kind {name}")
        _loaded[name] = kind
    return _loaded[name]


def open_connector(endpoint: Endpoint) -> Connector:
    """A live connector for `endpoint`; secrets are resolved here, at connect time."""
    if endpoint.kind not in KINDS:
        raise ConfigError(
            f"endpoint kind {endpoint.kind!r} has no connector in this build yet",
            path=f"endpoints.{endpoint.name}.kind",
        )
    try:
        return kind_of(endpoint.kind).open(endpoint)
    except ConfigError as exc:
        file = _declared_in(endpoint)
        if exc.file is not None or exc.path is None or file is None:
            raise
        # a connector names the key (endpoints.x.dsn); the file it was declared in is ours
        message = str(exc).removeprefix(f"{exc.path}: ")
        raise ConfigError(message, file=file, path=exc.path) from None


def _declared_in(endpoint: Endpoint) -> str | None:
    from syncswim_lib.config.secrets import Secret

    return next((v.file for v in endpoint.settings.values() if isinstance(v, Secret)), None)
