"""Connections, names and error translation shared by the PostgreSQL connector's modules."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, NoReturn

from syncswim_lib.errors import ConfigError, FatalError, RetriableError

if TYPE_CHECKING:
    import psycopg

MARKER_SCHEMA = "syncswim"
MARKER_TABLE = "applied"
MARKER_QUALIFIED = f"{MARKER_SCHEMA}.{MARKER_TABLE}"
_SYNC_NAME = re.compile(r"^[a-z0-9_]+$")
# Slot and publication names are identifiers: NAMEDATALEN (64) - 1 bytes, "syncswim_" included.
_MAX_SYNC_LEN = 63 - len("syncswim_")

# Every value that leaves the server as text (capture decodes the text output of the
# walsender-side functions, snapshot casts some types to text) must come out in one fixed
# form, whatever the server's or the DSN's defaults.
SESSION_SETTINGS = (
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET bytea_output = 'hex'",
    "SET extra_float_digits = 1",
)


def slot_name(sync: str) -> str:
    """The replication slot and publication name for `sync`, after validating it."""
    if not _SYNC_NAME.match(sync) or len(sync) > _MAX_SYNC_LEN:
        raise ConfigError(
            f"sync name {sync!r} is not usable for PostgreSQL: use 1-{_MAX_SYNC_LEN} "
            "characters from a-z, 0-9 and _"
        )
    return f"syncswim_{sync}"


def split_table(name: str) -> tuple[str, str]:
    """`schema.table` -> (schema, table); a bare name is in `public`."""
    parts = name.split(".")
    if len(parts) == 1 and parts[0]:
        return "public", parts[0]
    if len(parts) == 2 and all(parts):
        return parts[0], parts[1]
    raise ConfigError(f"table name {name!r} is not 'schema.table' or 'table'")


def qualify(name: str) -> str:
    schema, table = split_table(name)
    return f"{schema}.{table}"


def connect(dsn: str, *, autocommit: bool = True) -> psycopg.Connection:
    import psycopg

    try:
        conn = psycopg.connect(dsn, autocommit=True)
    except psycopg.OperationalError as exc:
        raise RetriableError(f"cannot connect to PostgreSQL: {_first_line(exc)}") from exc
    for statement in SESSION_SETTINGS:
        conn.execute(statement)
    row = conn.execute("SHOW synchronous_commit").fetchone()
    if row is not None and row[0] == "off":
        # an apply reported as committed must survive a crash of the server, or the
        # pipeline would record writes that are gone; it also makes our commits visible
        # to logical decoding at once instead of after the WAL writer's next round
        conn.execute("SET synchronous_commit = local")
    conn.autocommit = autocommit
    return conn


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def error_text(exc: BaseException) -> str:
    """The server's message with its DETAIL, on one line: what a parked record shows."""
    return " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())


def is_record_error(exc: BaseException) -> bool:
    """A failure caused by one row's values (bad value, constraint, trigger RAISE)."""
    state = getattr(exc, "sqlstate", None) or ""
    return state[:2] in ("22", "23", "P0") or state == "42804"  # 42804: datatype mismatch


def raise_translated(exc: BaseException, what: str) -> NoReturn:
    """Re-raise a driver error as the taxonomy's error the orchestrator can act on."""
    import psycopg

    state = getattr(exc, "sqlstate", None) or ""
    text = f"{what}: {error_text(exc)}"
    if isinstance(exc, psycopg.OperationalError) and not state:
        raise RetriableError(text) from exc  # connection lost, server gone
    # 40: serialization/deadlock, 08: connection, 53: resources, 57: shutdown/cancel,
    # 55: object in use / lock not available
    if state[:2] in ("40", "08", "53", "57", "55"):
        raise RetriableError(text) from exc
    raise FatalError(text) from exc
