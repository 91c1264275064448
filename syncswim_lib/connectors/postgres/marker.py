"""The marker table `syncswim.applied`: one row per applied batch, with its result.

`apply` inserts the batch's row first in its transaction (capture reads the origin from
that insert; the primary key makes a replay a no-op) and stores the ApplyResult as JSON
on it before committing, so `applied_result` answers "did batch X commit, and what did
it write?" after a crash. `prune` deletes old rows; capture emits nothing for them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from syncswim_lib.connectors.base import ApplyResult
from syncswim_lib.connectors.postgres.connection import (
    MARKER_SCHEMA,
    MARKER_TABLE,
    raise_translated,
)
from syncswim_lib.connectors.results import result_from_data, result_to_data
from syncswim_lib.errors import ConfigError, FatalError

if TYPE_CHECKING:
    import psycopg

_Q = f"{MARKER_SCHEMA}.{MARKER_TABLE}"

MARKER_DDL = f"""
CREATE TABLE IF NOT EXISTS {_Q} (
    batch_id text PRIMARY KEY,
    origin text NOT NULL,
    result jsonb,
    created_at timestamptz DEFAULT now()
)
"""


def begin_batch(conn: psycopg.Connection, batch_id: str, origin: str) -> ApplyResult | None:
    """Write the marker row (inside the caller's transaction); a replay gets the old result.

    A second apply of the same batch waits here for the first to commit or roll back.
    """
    import psycopg

    try:
        first = conn.execute(
            f"INSERT INTO {_Q} (batch_id, origin) VALUES (%s, %s) "
            "ON CONFLICT (batch_id) DO NOTHING RETURNING batch_id",
            (batch_id, origin),
        ).fetchone()
    except psycopg.errors.UndefinedTable as exc:
        raise FatalError(
            f"{_Q} is missing: run the setup of sync {origin} before applying"
        ) from exc
    if first is not None:
        return None
    row = conn.execute(f"SELECT result FROM {_Q} WHERE batch_id = %s", (batch_id,)).fetchone()
    assert row is not None
    return result_from_json(row[0])


def finish_batch(conn: psycopg.Connection, result: ApplyResult) -> None:
    from psycopg.types.json import Jsonb

    conn.execute(
        f"UPDATE {_Q} SET result = %s WHERE batch_id = %s",
        (Jsonb(result_to_json(result)), result.batch_id),
    )


def applied_result(conn: psycopg.Connection, sync: str, batch_id: str) -> ApplyResult | None:
    import psycopg

    try:
        row = conn.execute(
            f"SELECT result FROM {_Q} WHERE batch_id = %s AND origin = %s", (batch_id, sync)
        ).fetchone()
    except psycopg.errors.UndefinedTable:
        return None  # never set up: nothing can have been applied
    except psycopg.Error as exc:
        raise_translated(exc, f"reading the result of batch {batch_id}")
    return None if row is None or row[0] is None else result_from_json(row[0])


# Rows deleted per transaction: bounds the locks held and what capture decodes at once.
PRUNE_CHUNK = 5000

_PRUNE = f"""
DELETE FROM {_Q} WHERE batch_id IN (
    SELECT batch_id FROM {_Q} WHERE created_at < %(cutoff)s LIMIT %(chunk)s
)
"""


def prune(conn: psycopg.Connection, older_than: timedelta, endpoint: str) -> int:
    """Delete the markers created before the server's now() - `older_than`.

    `conn` is in autocommit: each chunk commits on its own, so a long prune holds no lock
    for long, and one that fails half-way has still done the chunks before.
    """
    import psycopg

    if older_than < timedelta(0):
        raise ConfigError(f"older_than must not be negative, got {older_than}")
    total = 0
    try:
        row = conn.execute("SELECT now() - %s::interval", (older_than,)).fetchone()
        assert row is not None
        while True:
            cur = conn.execute(_PRUNE, {"cutoff": row[0], "chunk": PRUNE_CHUNK})
            total += cur.rowcount
            if cur.rowcount < PRUNE_CHUNK:
                return total
    except psycopg.errors.UndefinedTable:
        return total  # never set up: no markers to prune
    except psycopg.Error as exc:
        raise_translated(exc, f"pruning {_Q} in endpoint {endpoint}")


def result_to_json(result: ApplyResult) -> dict[str, Any]:
    return result_to_data(result)


def result_from_json(data: dict[str, Any] | str) -> ApplyResult:
    return result_from_data(data)
