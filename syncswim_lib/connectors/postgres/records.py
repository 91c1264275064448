"""What `setup` remembers in the `syncswim` schema, so that others can be refused and
`teardown` can undo it: the state store owning each sync's slot, and each table's
replica identity from before setup set it to FULL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncswim_lib.connectors.ownership import StreamOwner
from syncswim_lib.connectors.postgres.connection import MARKER_SCHEMA, split_table

if TYPE_CHECKING:
    import psycopg

OWNERS = f"{MARKER_SCHEMA}.owners"
IDENTITIES = f"{MARKER_SCHEMA}.replica_identities"
RECORDS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {OWNERS} (sync text PRIMARY KEY, state_id text NOT NULL, "
    "state text NOT NULL, claimed_at timestamptz NOT NULL DEFAULT now())",
    # relreplident before setup: d(efault), n(othing), i(ndex, with its name) or f(ull)
    f"CREATE TABLE IF NOT EXISTS {IDENTITIES} (table_name text PRIMARY KEY, "
    "identity text NOT NULL, index_name text)",
)
_IDENTITY = """
SELECT c.relreplident::text,
       (SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
        WHERE x.indrelid = c.oid AND x.indisreplident)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s
"""


def _exists(conn: psycopg.Connection, table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])


def owner(conn: psycopg.Connection, sync: str) -> StreamOwner | None:
    if not _exists(conn, OWNERS):
        return None
    row = conn.execute(f"SELECT state_id, state FROM {OWNERS} WHERE sync = %s", (sync,)).fetchone()
    return None if row is None else StreamOwner(str(row[0]), str(row[1]))


def claim(conn: psycopg.Connection, sync: str, me: StreamOwner) -> StreamOwner:
    with conn.transaction():
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {MARKER_SCHEMA}")
        for ddl in RECORDS_DDL:
            conn.execute(ddl)
        conn.execute(
            f"INSERT INTO {OWNERS} (sync, state_id, state) VALUES (%s, %s, %s) "
            "ON CONFLICT (sync) DO NOTHING",
            (sync, me.state_id, me.state),
        )
    found = owner(conn, sync)
    assert found is not None
    return found


def set_full(conn: psycopg.Connection, table: str) -> None:
    """REPLICA IDENTITY FULL on `table`, recording what it was the first time (a table
    in several syncs keeps its original record)."""
    from psycopg import sql

    schema, name = split_table(table)
    row = conn.execute(_IDENTITY, (schema, name)).fetchone()
    if row is None or row[0] == "f":
        return
    conn.execute(
        f"INSERT INTO {IDENTITIES} (table_name, identity, index_name) VALUES (%s, %s, %s) "
        "ON CONFLICT (table_name) DO NOTHING",
        (f"{schema}.{name}", row[0], row[1]),
    )
    conn.execute(
        sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(sql.Identifier(schema, name))
    )


def restore(conn: psycopg.Connection, tables: set[str]) -> None:
    """Give `tables` back the replica identity recorded before setup changed it."""
    from psycopg import sql

    if not tables or not _exists(conn, IDENTITIES):
        return
    rows = conn.execute(
        f"SELECT table_name, identity, index_name FROM {IDENTITIES} WHERE table_name = ANY(%s)",
        (sorted(tables),),
    ).fetchall()
    for table, identity, index_name in rows:
        schema, name = split_table(str(table))
        target = sql.Identifier(schema, name)
        clause: sql.Composable = sql.SQL({"n": "NOTHING"}.get(str(identity), "DEFAULT"))
        if identity == "i" and index_name:
            clause = sql.SQL("USING INDEX {}").format(sql.Identifier(str(index_name)))
        if _exists(conn, f'"{schema}"."{name}"'):
            conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY {}").format(target, clause))
        conn.execute(f"DELETE FROM {IDENTITIES} WHERE table_name = %s", (table,))
