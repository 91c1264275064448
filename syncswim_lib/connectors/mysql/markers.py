"""The `_syncswim_applied` marker table: one row per applied batch.

The row is written first in every apply transaction, so (1) a replayed batch finds it and
writes nothing, (2) capture recognises every row change of that transaction as ours, and
(3) the batch's result is readable after a crash between commit and recording it.
`prune` deletes old rows; capture emits nothing for them.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING

from syncswim_lib.connectors.base import ApplyResult
from syncswim_lib.connectors.mysql.connection import MARKER_TABLE, qtable
from syncswim_lib.connectors.results import result_from_data, result_to_data
from syncswim_lib.errors import ConfigError

if TYPE_CHECKING:
    import pymysql


def create_sql(db: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {qtable(db, MARKER_TABLE)} ("
        " batch_id varchar(64) NOT NULL PRIMARY KEY,"
        " origin varchar(128) NOT NULL,"
        " result longtext,"
        " created_at timestamp(6) NOT NULL DEFAULT current_timestamp(6)"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    )


def result_to_json(result: ApplyResult) -> str:
    return json.dumps(result_to_data(result), ensure_ascii=False)


def result_from_json(text: str) -> ApplyResult:
    return result_from_data(text)


def read_result(
    conn: pymysql.Connection, db: str, batch_id: str, origin: str | None = None
) -> ApplyResult | None:
    """The committed result of `batch_id` (written by sync `origin`, when given), or None
    (never applied, or still in flight)."""
    sql = f"SELECT result FROM {qtable(db, MARKER_TABLE)} WHERE batch_id = %s"
    args: tuple[str, ...] = (batch_id,)
    if origin is not None:
        sql, args = sql + " AND origin = %s", (batch_id, origin)
    with conn.cursor() as cur:
        cur.execute(sql, args)
        row = cur.fetchone()
    if row is None or row[0] is None:
        return None
    return result_from_json(row[0])


# Rows deleted per transaction: bounds the locks held and the size of one binlog event group.
PRUNE_CHUNK = 5000


def prune(conn: pymysql.Connection, db: str, older_than: timedelta) -> int:
    """Delete the markers created before the server's now - `older_than`, in autocommit
    chunks of PRUNE_CHUNK rows (so a long prune holds no lock for long)."""
    if older_than < timedelta(0):
        raise ConfigError(f"older_than must not be negative, got {older_than}")
    table = qtable(db, MARKER_TABLE)
    total = 0
    with conn.cursor() as cur:
        cur.execute(
            "SELECT CURRENT_TIMESTAMP(6) - INTERVAL %s MICROSECOND",
            (older_than // timedelta(microseconds=1),),
        )
        row = cur.fetchone()
        assert row is not None
        while True:
            deleted = cur.execute(
                f"DELETE FROM {table} WHERE created_at < %s LIMIT %s", (row[0], PRUNE_CHUNK)
            )
            total += int(deleted)
            if deleted < PRUNE_CHUNK:
                return total
