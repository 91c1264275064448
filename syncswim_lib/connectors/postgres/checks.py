"""The server settings and rights logical-replication capture needs (`syncswim doctor`).

Micro-batch capture reads its slot through the SQL functions
(`pg_logical_slot_peek_binary_changes`): a replication slot, no WAL sender. A streaming
sync reads it over the replication protocol: one WAL sender per sync while it streams,
and a logical replication connection (`replication=database`) the server accepts. Such a
connection is matched in pg_hba.conf by its database name like any other (the
`replication` keyword there is for physical replication only), so what refuses it in
practice is a full set of WAL senders, a role without REPLICATION, or a connection
pooler in between (`streaming_findings`).
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


_SENDERS = """
SELECT current_setting('max_wal_senders')::int,
       (SELECT count(*) FROM pg_stat_replication),
       (SELECT count(*) FROM pg_replication_slots WHERE active AND slot_name = ANY(%s))
"""


def streaming_findings(
    conn: psycopg.Connection, dsn: str, endpoint: str, syncs: Sequence[str]
) -> list[Finding]:
    """What the streaming syncs among `syncs` need of this server: a free WAL sender
    each (one already streaming holds its own) and a replication connection it accepts."""
    import psycopg

    if not syncs:
        return []
    out: list[Finding] = []
    ours = [slot_name(s) for s in syncs]
    row = conn.execute(_SENDERS, (ours,)).fetchone()
    limit, in_use, streaming = (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)
    needed = len(ours) - streaming
    if in_use + needed > limit:
        out.append(
            Finding(
                "error",
                endpoint,
                f"{needed} WAL sender(s) needed for streaming, {max(limit - in_use, 0)} free "
                f"(max_wal_senders = {limit}, {in_use} in use)",
                f"postgresql.conf: max_wal_senders = {in_use + needed + 2} or more (one "
                "per streaming sync, plus your standbys and backups), then restart the "
                "server; or run these syncs with `run: micro_batch`",
            )
        )
        return out
    try:
        with psycopg.connect(dsn, autocommit=True, replication="database") as rep:
            rep.execute("IDENTIFY_SYSTEM")
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        out.append(
            Finding(
                "error",
                endpoint,
                f"a replication connection, which streaming needs, is refused: {first}",
                "connect the endpoint to the server itself, not through a connection pooler "
                "(PgBouncer and the like do not pass replication connections), with a role "
                "that has REPLICATION; or run these syncs with `run: micro_batch`",
            )
        )
    return out
