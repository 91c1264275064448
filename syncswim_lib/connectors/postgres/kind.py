"""The `postgres` kind: a PostgreSQL database, read by logical replication (or polled
with `capture: poll`, docs/polling.md) and written in transactions with a batch marker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from syncswim_lib.config.timeouts import KEYS as TIMEOUT_KEYS
from syncswim_lib.config.timeouts import Timeouts
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
from syncswim_lib.envelope import PgPosition, Position

if TYPE_CHECKING:
    from syncswim_lib.config.models import Endpoint
    from syncswim_lib.config.secrets import Secret
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
    from syncswim_lib.connectors.postgres.connector import PostgresConnector

    pg = PostgresConnector(
        endpoint.resolve_setting("dsn"), endpoint.name, resolved(endpoint, TIMEOUT_KEYS)
    )
    if endpoint.polled:  # capture: poll (docs/polling.md)
        from syncswim_lib.connectors.polling.postgres import PolledPostgres

        return PolledPostgres(pg, endpoint.polls)
    return pg


def _stream(
    conn: Connector, sync: str, tables: Sequence[str], since: Position | None
) -> ContinuousReader:
    from syncswim_lib.connectors.postgres.connector import PostgresConnector
    from syncswim_lib.connectors.postgres.replication import ReplicationStream

    assert isinstance(conn, PostgresConnector)  # the stream reading opens no other
    assert since is None or isinstance(since, PgPosition)
    return ReplicationStream(conn.dsn, conn.endpoint, sync, tables, since)


def check_timeouts(settings: Mapping[str, Secret | str], path: str) -> None:
    """The timeout keys written literally, refused at load rather than at the first
    connect; `{env: ...}` ones are read (and checked) at connect."""
    Timeouts.from_settings({k: v for k, v in settings.items() if isinstance(v, str)}, path)


KIND = KindDescription(
    name="postgres",
    settings=Settings(
        required=("dsn",), optional=(*TIMEOUT_KEYS, "capture"), secret=frozenset({"dsn"})
    ),
    table_word="table",
    table_pattern=TABLE_RE,
    table_example=TABLE_EXAMPLE,
    readings=(Reading("stream", PgPosition, CAPABILITIES, stream=_stream), POLLED),
    open=_open,
    check=check_timeouts,
)
