"""Connections, names and error translation shared by the PostgreSQL connector's modules."""

from __future__ import annotations

import contextlib
import functools
import math
import re
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn

from syncswim_lib.config.timeouts import Timeouts
from syncswim_lib.errors import ConfigError, FatalError, RetriableError
from syncswim_lib.redact import redact

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


class Conninfo(str):
    """A libpq connection string with the endpoint's timeouts in it, carrying the client-side
    read bound libpq has no parameter for; its repr shows no password."""

    read_timeout: float | None

    def __new__(cls, text: str, read_timeout: float | None = None) -> Conninfo:
        self = super().__new__(cls, text)
        self.read_timeout = read_timeout
        return self

    def __repr__(self) -> str:
        return repr(redact(str(self), str(self)))


def prepare_dsn(
    dsn: str,
    endpoint: str,
    settings: Mapping[str, str] | None = None,
    *,
    path: str | None = None,
) -> Conninfo:
    """`dsn` checked (a ConfigError naming `path`, by default `endpoints.<endpoint>.dsn`,
    with no password in it), with connect and statement timeouts, TCP keepalives and
    tcp_user_timeout added. The endpoint's `settings` (timeout keys) win over the DSN, the
    DSN over the defaults."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    where = f"endpoints.{endpoint}"
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        # from None: the driver's error (shown by a traceback) quotes the DSN
        raise ConfigError(
            f"not a valid PostgreSQL DSN: {redact(_first_line(exc), dsn)}",
            path=path or f"{where}.dsn",
        ) from None
    base = Timeouts()
    if "connect_timeout" in params:
        with contextlib.suppress(TypeError, ValueError):  # libpq reports it at connect
            base = replace(base, connect=float(params["connect_timeout"]))  # type: ignore[arg-type]
    given = settings or {}
    t = Timeouts.from_settings(given, where, base)
    statement = f"-c statement_timeout={round(t.statement * 1000)}"
    options = str(params.get("options") or "")
    # a statement_timeout the DSN's own options set wins over the default, not over the key
    options = f"{options} {statement}" if "statement_timeout" in given else f"{statement} {options}"
    extra: dict[str, Any] = {
        # libpq counts whole seconds
        "connect_timeout": max(1, math.ceil(t.connect)),
        "options": options.strip(),
    }
    defaults = {
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        # sent data unacknowledged this long: the peer is gone (a network cut)
        "tcp_user_timeout": round(t.read * 1000),
    }
    extra.update({k: v for k, v in defaults.items() if k not in params})
    return Conninfo(make_conninfo(dsn, **extra), read_timeout=t.read)


def open_connection(dsn: str, what: str = "cannot connect to PostgreSQL") -> psycopg.Connection:
    """An autocommit connection; a `Conninfo`'s read bound applies to every wait on it.
    Failing to connect is a RetriableError starting with `what`, without the password."""
    import psycopg

    try:
        conn = _bounded_connection_class().connect(dsn, autocommit=True)
    except psycopg.OperationalError as exc:
        raise RetriableError(f"{what}: {redact(_first_line(exc), dsn)}") from exc
    except psycopg.ProgrammingError as exc:  # a DSN that did not go through prepare_dsn
        raise ConfigError(f"not a valid PostgreSQL DSN: {redact(_first_line(exc), dsn)}") from None
    conn.idle_limit = getattr(dsn, "read_timeout", None)  # type: ignore[attr-defined]
    return conn


def connect(dsn: str, *, autocommit: bool = True) -> psycopg.Connection:
    """A session with our settings (see `open_connection`)."""
    conn = open_connection(dsn)
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


# SQLSTATE classes and codes a single row's values cause: 22 data exception, 23 integrity
# constraint, 44 WITH CHECK OPTION, P0 a trigger's RAISE; 42804 datatype mismatch; 54000
# program_limit_exceeded, which PostgreSQL raises for one row too big for its index
# ("index row size ... exceeds btree maximum") or for a value past a type's limit. The
# other codes of class 54 (too many columns or arguments) are the statement's, not a row's.
# classes of errors that are not one row's: the connection, the transaction, resources,
# locks, the server, privileges and the statement itself (class 42: syntax, access, a
# table or column that does not exist); a row is refused with anything else
_STATEMENT_CLASSES = frozenset(
    {"08", "0A", "25", "26", "28", "34", "3D", "3F", "40", "42", "53", "54", "55", "57"}
    | {"58", "F0", "HV", "XX"}
)
# row errors in those classes: a value of the wrong type for its column; a row too large
# for an index (54000; the rest of class 54 is the statement's: too many arguments...)
_ROW_STATES = frozenset({"42804", "54000"})


def is_record_error(exc: BaseException) -> bool:
    """A failure caused by one row's values (a bad value, a constraint, a trigger's RAISE
    with whatever code, a row too large for an index): that row is parked, the rest of
    the batch goes on. An error without a SQLSTATE is the client's or the connection's."""
    state = getattr(exc, "sqlstate", None) or ""
    if not state:
        return False
    return state in _ROW_STATES or state[:2] not in _STATEMENT_CLASSES


@functools.cache
def _bounded_connection_class() -> type[psycopg.Connection]:
    # built on first use, so importing this module does not import psycopg
    import psycopg

    class BoundedConnection(psycopg.Connection):
        """A connection whose every wait gives up after `idle_limit` seconds in which the
        server sent nothing: libpq has no read timeout, and a stopped server (SIGSTOP, a
        hung host) keeps the TCP connection open and acknowledged, so keepalives and
        tcp_user_timeout never fire. statement_timeout cancels slow statements server-side
        first, as the limit is longer."""

        idle_limit: float | None = None

        def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
            limit = self.idle_limit
            if limit is None or timeout is not None:
                return super().wait(gen, interval, timeout)
            try:
                return super().wait(_idle_bounded(gen, limit), interval, None)
            except ServerSilent as exc:
                # the exchange stopped half-way: the session cannot be used again
                self.pgconn.finish()
                raise psycopg.OperationalError(str(exc)) from None

    return BoundedConnection


class ServerSilent(Exception):
    """The server sent nothing for the read timeout."""


def _idle_bounded(gen: Any, limit: float) -> Any:
    """`gen` (a psycopg generator), stopped with ServerSilent once the socket has stayed
    unready for `limit` seconds; the waiting loop wakes it every interval with READY_NONE."""
    deadline = time.monotonic() + limit
    try:
        state = next(gen)
        while True:
            ready = yield state
            now = time.monotonic()
            if ready:
                deadline = now + limit
            elif now >= deadline:
                gen.close()
                raise ServerSilent(f"no answer from the server for {limit:g} s (read_timeout)")
            state = gen.send(ready)
    except StopIteration as stop:
        return stop.value


def raise_translated(exc: BaseException, what: str) -> NoReturn:
    """Re-raise a driver error as the taxonomy's error the orchestrator can act on."""
    import psycopg

    state = getattr(exc, "sqlstate", None) or ""
    text = redact(f"{what}: {error_text(exc)}")
    if isinstance(exc, psycopg.OperationalError) and not state:
        raise RetriableError(text) from exc  # connection lost, server gone
    # 40: serialization/deadlock, 08: connection, 53: resources, 57: shutdown/cancel,
    # 55: object in use / lock not available
    if state[:2] in ("40", "08", "53", "57", "55"):
        raise RetriableError(text) from exc
    raise FatalError(text) from exc
