"""The `mysql` kind: a MySQL or MariaDB database, read from the binary log (or polled
with `capture: poll`, docs/polling.md) and written in transactions with a batch marker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from syncswim_lib.config.timeouts import KEYS as TIMEOUT_KEYS
from syncswim_lib.connectors.kinds import (
    TABLE_EXAMPLE,
    TABLE_RE,
    Capabilities,
    KindDescription,
    Reading,
    Settings,
    resolved,
)
from syncswim_lib.connectors.polling.kind import POLLED
from syncswim_lib.connectors.postgres.kind import check_timeouts
from syncswim_lib.envelope import BinlogPosition, Position
from syncswim_lib.errors import ConfigError

if TYPE_CHECKING:
    from syncswim_lib.config.models import Endpoint
    from syncswim_lib.connectors.base import Connector, ContinuousReader

CAPABILITIES = Capabilities(
    change_stream=True,
    hard_deletes=True,
    upsert_by_external_id=True,
    origin_tagging=True,
    batch_markers=True,
    max_batch_rows=5000,
)


def _open(endpoint: Endpoint) -> Connector:
    from syncswim_lib.connectors.mysql.connector import MySQLConnector

    my = MySQLConnector(
        endpoint.resolve_setting("dsn"), endpoint.name, resolved(endpoint, TIMEOUT_KEYS)
    )
    if endpoint.polled:  # capture: poll (docs/polling.md)
        from syncswim_lib.connectors.polling.mysql import PolledMySQL

        return PolledMySQL(my, endpoint.polls)
    return my


def _stream(
    conn: Connector, sync: str, tables: Sequence[str], since: Position | None
) -> ContinuousReader:
    from syncswim_lib.connectors.mysql.connector import MySQLConnector
    from syncswim_lib.connectors.mysql.stream import BinlogStream

    assert isinstance(conn, MySQLConnector)  # the stream reading opens no other
    if not isinstance(since, BinlogPosition):  # setup stores one before any capture
        raise ConfigError(f"sync {sync} has no binlog position for {conn.endpoint}")
    return BinlogStream(conn, sync, tables, since)


KIND = KindDescription(
    name="mysql",
    settings=Settings(
        required=("dsn",), optional=(*TIMEOUT_KEYS, "capture"), secret=frozenset({"dsn"})
    ),
    table_word="table",
    table_pattern=TABLE_RE,
    table_example=TABLE_EXAMPLE,
    readings=(Reading("stream", BinlogPosition, CAPABILITIES, stream=_stream), POLLED),
    open=_open,
    check=check_timeouts,
)
