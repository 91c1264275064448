"""The server settings and rights logical-replication capture needs (`syncswim doctor`).

Capture reads its slot through the SQL functions (`pg_logical_slot_peek_binary_changes`),
not a walsender connection, so it takes a replication slot but no WAL sender.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from syncswim_lib.connectors.checks import Finding
from syncswim_lib.connectors.postgres.connection import MARKER_SCHEMA, slot_name, split_table

if TYPE_CHECKING:
    import psycopg

_SETTINGS = """
SELECT name, setting FROM pg_settings
WHERE name IN ('wal_level', 'max_replication_slots', 'max_slot_wal_keep_size')
"""
_ROLE = "SELECT current_user, rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user"
_TABLE = """
SELECT pg_get_userbyid(c.relowner), pg_has_role(current_user, c.relowner, 'USAGE')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s
"""


def server_findings(
    conn: psycopg.Connection, endpoint: str, syncs: Mapping[str, Sequence[str]]
) -> list[Finding]:
    out: list[Finding] = []

    def error(problem: str, fix: str) -> None:
        out.append(Finding("error", endpoint, problem, fix))

    def warning(problem: str, fix: str) -> None:
        out.append(Finding("warning", endpoint, problem, fix))

    settings = {str(k): str(v) for k, v in conn.execute(_SETTINGS).fetchall()}
    if settings.get("wal_level") != "logical":
        error(
            f"wal_level is {settings.get('wal_level')}, logical decoding needs logical",
            "postgresql.conf: wal_level = logical, then restart the server",
        )
    slots = {
        str(name): (str(db), None if status is None else str(status))
        for name, db, status in conn.execute(
            "SELECT slot_name, database, wal_status FROM pg_replication_slots"
        ).fetchall()
    }
    ours = [slot_name(s) for s in syncs]
    missing = [s for s in ours if s not in slots]
    limit = int(settings.get("max_replication_slots", "0"))
    if len(slots) + len(missing) > limit:
        error(
            f"{len(missing)} replication slot(s) needed, {max(limit - len(slots), 0)} free "
            f"(max_replication_slots = {limit}, {len(slots)} in use)",
            f"postgresql.conf: max_replication_slots = {len(slots) + len(missing)} or more, "
            "then restart the server",
        )
    database = conn.info.dbname
    # a slot of the same name for another database is the declaration's problem (the
    # sync's name): setup reports it as such
    for slot in ours:
        if slot in slots and slots[slot][0] == database and slots[slot][1] == "lost":
            error(
                f"replication slot {slot} has lost WAL it needed (max_slot_wal_keep_size)",
                "`syncswim teardown`, `syncswim setup`, then `syncswim sync --full` to "
                "reconcile what was missed",
            )
    if settings.get("max_slot_wal_keep_size") == "-1":
        warning(
            "max_slot_wal_keep_size is -1: a sync that stops keeps WAL without a bound "
            "until the disk fills",
            "postgresql.conf: max_slot_wal_keep_size = '20GB' (a reload is enough; more "
            "than the WAL written while a sync may be stopped; a slot past it needs a "
            "`sync --full`)",
        )
    role = conn.execute(_ROLE).fetchone()
    user, superuser, replication = (
        (str(role[0]), bool(role[1]), bool(role[2]))
        if role
        else (
            "?",
            False,
            False,
        )
    )
    if not (superuser or replication):
        error(
            f"role {user} has neither REPLICATION nor superuser: it cannot create or read "
            "replication slots",
            f'as a superuser: ALTER ROLE "{user}" REPLICATION;',
        )
    if not superuser:
        schema = conn.execute("SELECT to_regnamespace(%s)", (MARKER_SCHEMA,)).fetchone()
        can_create = conn.execute(
            "SELECT has_database_privilege(current_database(), 'CREATE')"
        ).fetchone()
        if schema is not None and schema[0] is None and not (can_create and can_create[0]):
            error(
                f"role {user} cannot create the schema {MARKER_SCHEMA} in {database}",
                f'GRANT CREATE ON DATABASE "{database}" TO "{user}";',
            )
        for table in sorted({t for tables in syncs.values() for t in tables}):
            row = conn.execute(_TABLE, split_table(table)).fetchone()
            if row is not None and not row[1]:
                error(
                    f"table {table} belongs to {row[0]}, not {user}: publications and "
                    "REPLICA IDENTITY FULL need the table's owner",
                    f'ALTER TABLE {table} OWNER TO "{user}"; (or run setup as {row[0]})',
                )
    return out
