"""The `sqlite` kind: an application's SQLite file, always polled (it has no change
stream, docs/polling.md), written in transactions with a batch marker."""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncswim_lib.connectors.kinds import (
    TABLE_EXAMPLE,
    TABLE_RE,
    KindDescription,
    Settings,
)
from syncswim_lib.connectors.polling.kind import POLLED

if TYPE_CHECKING:
    from syncswim_lib.config.models import Endpoint
    from syncswim_lib.connectors.base import Connector


def _open(endpoint: Endpoint) -> Connector:
    from syncswim_lib.connectors.sqlite.connector import SqliteConnector

    return SqliteConnector(endpoint.resolve_setting("path"), endpoint.name, endpoint.polls)


KIND = KindDescription(
    name="sqlite",
    settings=Settings(required=("path",), paths=frozenset({"path"})),
    table_word="table",
    table_pattern=TABLE_RE,
    table_example=TABLE_EXAMPLE,
    readings=(POLLED,),
    open=_open,
)
