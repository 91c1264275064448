"""What live `validate` (and `doctor`) say about a polled table: its modification column
exists and holds a timestamp or a version (an error otherwise), leads an index (a
warning otherwise: every poll would read the whole table), and something keeps it
current on every write (a trigger or an ON UPDATE default; a warning when none is found,
since an application may still set it, which no database can tell us). Also warned: a
modification column that may be NULL (such rows are never polled), and a timestamp
without time zone in a database whose sessions do not start on UTC. A soft-delete
column must be of a type our deletes can set (rows.MARKABLE)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from syncswim_lib.config.polling import PollSpec, poll_key
from syncswim_lib.connectors.checks import Finding
from syncswim_lib.connectors.polling.rows import MARKABLE
from syncswim_lib.values import TableInfo

MOD_FAMILIES = ("timestamp", "timestamptz", "int")


class PollChecked(Protocol):
    endpoint: str

    def describe(self, table: str) -> TableInfo: ...

    def index_columns(self, table: str) -> list[tuple[str, ...]]:
        """The column lists of the table's indexes, in index order."""
        ...

    def maintained(self, table: str, column: str) -> bool | None:
        """True when the database itself keeps `column` current on UPDATE (a trigger, an
        ON UPDATE default); None when it cannot tell."""
        ...


def poll_findings(
    conn: PollChecked, polls: Mapping[str, PollSpec], syncs: Mapping[str, Sequence[str]]
) -> list[Finding]:
    out: list[Finding] = []
    ep = conn.endpoint
    for sync, tables in syncs.items():
        for table in tables:
            spec = polls.get(poll_key(sync, table))
            if spec is None:
                continue
            info = conn.describe(table)
            where = f"{table}.{spec.column}"
            column = info.column(spec.column)
            if column is None:
                out.append(
                    Finding(
                        "error",
                        ep,
                        f"the modification column {where} does not exist",
                        f"name an existing column in poll.{ep}.column of the entity",
                    )
                )
                continue
            if column.family not in MOD_FAMILIES:
                out.append(
                    Finding(
                        "error",
                        ep,
                        f"the modification column {where} is {column.db_type}",
                        "poll by a timestamp or an increasing integer version column",
                    )
                )
                continue
            for extra in (spec.deleted.column, spec.written_by):
                if extra is not None and info.column(extra) is None:
                    out.append(
                        Finding(
                            "error",
                            ep,
                            f"column {table}.{extra} named in poll.{ep} does not exist",
                            "name an existing column",
                        )
                    )
            soft = None if spec.deleted.column is None else info.column(spec.deleted.column)
            if soft is not None and soft.family not in MARKABLE:
                out.append(
                    Finding(
                        "error",
                        ep,
                        f"the soft-delete column {table}.{soft.name} is {soft.db_type}: the "
                        "sync cannot mark a row deleted in it",
                        "use a timestamp, date, boolean, integer or text column",
                    )
                )
            if column.nullable:
                out.append(
                    Finding(
                        "warning",
                        ep,
                        f"{where} may be NULL: a row where it is NULL is never polled",
                        f"make {spec.column} NOT NULL (with a default), or let every writer set it",
                    )
                )
            zone = _local_zone(conn, table, spec.column) if column.family == "timestamp" else None
            if zone is not None:
                what, fix = zone
                out.append(
                    Finding(
                        "warning",
                        ep,
                        f"{where} is a timestamp without time zone and {what}: writers stamp "
                        "it in their zone, the sync reads it as UTC, and a row stamped behind "
                        "UTC looks older than the poll's cursor and is never polled",
                        fix,
                    )
                )
            if not any(ix and ix[0] == spec.column for ix in conn.index_columns(table)):
                out.append(
                    Finding(
                        "warning",
                        ep,
                        f"no index starts with the modification column {where}: every poll "
                        "reads the whole table",
                        f"CREATE INDEX ON {table} ({spec.column})",
                    )
                )
            if not conn.maintained(table, spec.column):
                out.append(
                    Finding(
                        "warning",
                        ep,
                        f"nothing in the database is seen to keep {where} current on UPDATE "
                        "(no trigger or ON UPDATE default): a write that does not set it is "
                        "never polled",
                        "add an UPDATE trigger that sets it, or make sure every writer does",
                    )
                )
    return out


def _local_zone(conn: PollChecked, table: str, column: str) -> tuple[str, str] | None:
    """(which zone the database's sessions stamp local times in, the fix) when it is not
    UTC; a connector that can tell has `local_time_zone`."""
    ask = getattr(conn, "local_time_zone", None)
    found = ask(table, column) if callable(ask) else None
    if isinstance(found, tuple) and len(found) == 2:
        return str(found[0]), str(found[1])
    return None
