"""DSN parsing, PyMySQL connections with our session settings, and error mapping."""

from __future__ import annotations

import functools
import ssl
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from syncswim_lib.config.timeouts import Timeouts, seconds
from syncswim_lib.errors import ConfigError, FatalError, RetriableError, SyncSwimError
from syncswim_lib.redact import redact

if TYPE_CHECKING:
    import pymysql

MARKER_TABLE = "_syncswim_applied"

# Strict: a value the column cannot hold is an error, never a silent truncation or zero date.
SQL_MODE = (
    "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,"
    "NO_ENGINE_SUBSTITUTION"
)
# Every session reads and writes TIMESTAMP columns in UTC, as the canonical values are.
INIT_COMMAND = f"SET time_zone = '+00:00', sql_mode = '{SQL_MODE}'"

# Lost connection, server gone, lock wait timeout, deadlock, too many connections,
# connection killed, server shutting down: the next attempt may well succeed.
RETRIABLE_CODES = frozenset({1040, 1053, 1205, 1213, 1927, 2002, 2003, 2006, 2013, 2055})
_AUTH_CODES = frozenset({1044, 1045, 1227, 1698})
UNKNOWN_DATABASE = 1049
DUPLICATE_KEY = 1062
PARSE_ERROR = 1064
NO_SUCH_TABLE = 1146
BINLOG_READ_ERROR = 1236


_SSL_MODES = ("auto", "disabled", "preferred", "required", "verify_identity")
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@functools.cache
def _ssl_context(verify: bool) -> ssl.SSLContext:
    # built once: loading the CA bundle costs tens of ms, and PyMySQL would do it per connect
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass(frozen=True)
class MySQLDsn:
    """`mysql://user:pass@host:port/db?ssl_mode=...` (also `mariadb://`), user and password
    %-encoded. ssl_mode: `auto` (default: off on loopback, else `preferred`), `disabled`,
    `preferred` (TLS when the server offers it), `required`, `verify_identity`."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    connect_timeout: float = Timeouts.connect
    ssl_mode: str = "auto"
    # seconds, see config.timeouts: the socket's read and write bounds, and the server's
    # bound on one statement (set on every connection but the streaming ones)
    read_timeout: float = Timeouts.read
    write_timeout: float = Timeouts.write
    statement_timeout: float = Timeouts.statement

    def kwargs(self) -> dict[str, Any]:
        """Arguments for `pymysql.connect` (and mysql-replication's connection settings)."""
        args: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "charset": "utf8mb4",
            "connect_timeout": self.connect_timeout,
            # PyMySQL reads the server's greeting under read_timeout too
            "read_timeout": self.read_timeout,
            "write_timeout": self.write_timeout,
        }
        mode = self.ssl_mode
        if mode == "auto":
            mode = "disabled" if self.host in _LOOPBACK else "preferred"
        if mode == "disabled":
            args["ssl_disabled"] = True
        elif mode in ("required", "verify_identity"):
            args["ssl"] = _ssl_context(mode == "verify_identity")
        return args

    def safe(self) -> str:
        """The DSN without its password, for messages."""
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"


def parse_dsn(dsn: str, endpoint: str, settings: Mapping[str, str] | None = None) -> MySQLDsn:
    """`dsn` read, or a ConfigError naming `endpoints.<endpoint>.dsn` (never the password).
    The endpoint's timeout `settings` win over the DSN's `connect_timeout`, which wins over
    the default."""
    path = f"endpoints.{endpoint}.dsn"
    try:
        parts = urlsplit(dsn)
        hostname, username, password = parts.hostname, parts.username, parts.password
    except ValueError as exc:
        # from None: a traceback of the driver's error would show the line holding the DSN
        raise ConfigError(f"not a valid MySQL DSN: {redact(str(exc), dsn)}", path=path) from None
    if parts.scheme not in ("mysql", "mariadb", "mysql+pymysql"):
        raise ConfigError(
            "expected a DSN like mysql://user:pass@host:port/db, "
            f"got scheme {parts.scheme or '(none)'!r}",
            path=path,
        )
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise ConfigError("the DSN must name one database (mysql://user@host:port/db)", path=path)
    try:
        port = parts.port or 3306
    except ValueError:
        raise ConfigError("the DSN's port is not a number from 1 to 65535", path=path) from None
    query = parse_qs(parts.query)
    timeout = query.get("connect_timeout", [str(Timeouts.connect)])[0]
    base = Timeouts(connect=seconds(timeout, f"{path} (connect_timeout)"))
    ssl_mode = query.get("ssl_mode", ["auto"])[0].lower()
    if ssl_mode not in _SSL_MODES:
        raise ConfigError(f"ssl_mode must be one of {', '.join(_SSL_MODES)}", path=path)
    t = Timeouts.from_settings(settings or {}, f"endpoints.{endpoint}", base)
    return MySQLDsn(
        host=hostname or "127.0.0.1",
        port=port,
        user=unquote(username or "root"),
        password=unquote(password or ""),
        database=database,
        connect_timeout=t.connect,
        ssl_mode=ssl_mode,
        read_timeout=t.read,
        write_timeout=t.write,
        statement_timeout=t.statement,
    )


def split_table(name: str, default_db: str) -> tuple[str, str]:
    """`table` is in the DSN's database; `db.table` names another one."""
    db, dot, table = name.partition(".")
    return (db, table) if dot else (default_db, name)


def qident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def qtable(db: str, table: str) -> str:
    return f"{qident(db)}.{qident(table)}"


def server_id_for(*parts: str) -> int:
    """A replica server_id stable for (endpoint, database, sync, call site).

    The server kills an older binlog dump that used the same id, so two readers must never
    share one; ids below 1,000,000 are left to real servers and replicas.
    """
    digest = zlib.crc32("\0".join(parts).encode("utf-8"))
    return 1_000_000 + digest % 3_000_000_000


def connect(dsn: MySQLDsn, endpoint: str, *, streaming: bool = False) -> pymysql.Connection:
    """An autocommit connection with UTC time zone, strict sql_mode and FOUND_ROWS.

    FOUND_ROWS makes UPDATE report matched rows, so an update that changes nothing is not
    mistaken for a missing row.
    """
    import pymysql
    from pymysql.constants import CLIENT

    kwargs = dsn.kwargs()
    kwargs.update(
        database=dsn.database,
        autocommit=True,
        client_flag=CLIENT.FOUND_ROWS,
        init_command=INIT_COMMAND,
    )
    if streaming:
        kwargs["cursorclass"] = pymysql.cursors.SSCursor
    from syncswim_lib.connectors.mysql.infile import InfileConnection, RowsConnection

    try:
        # LOAD DATA LOCAL from memory for the inserts of an apply; no file on disk is served
        conn = RowsConnection(**kwargs) if streaming else InfileConnection(**kwargs)
        if not streaming:
            # a streaming read (a snapshot) lasts as long as the client reads: not bounded
            with conn.cursor() as cur:
                cur.execute(_statement_timeout(conn.get_server_info(), dsn.statement_timeout))
    except pymysql.err.MySQLError as exc:
        raise map_error(exc, f"connecting to endpoint {endpoint} ({dsn.safe()})") from exc
    return conn


def _statement_timeout(server_info: str, seconds: float) -> str:
    # MariaDB bounds every statement; MySQL has only max_execution_time, for SELECTs
    if "mariadb" in server_info.lower():
        return f"SET SESSION max_statement_time = {seconds:.3f}"
    return f"SET SESSION max_execution_time = {max(1, round(seconds * 1000))}"


def error_code(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def error_text(exc: BaseException) -> str:
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    if len(args) >= 2:
        return f"({args[0]}) {args[1]}"
    return str(exc) or type(exc).__name__


def is_retriable(exc: BaseException) -> bool:
    import pymysql

    if isinstance(exc, pymysql.err.InterfaceError | ConnectionError | TimeoutError):
        return True
    return error_code(exc) in RETRIABLE_CODES


# Refusals that are the statement's or the session's, never one row's: a missing table or
# column, a parse error, missing privileges, a read-only server. Every other server error
# raised by a row's statement (1048 NULL, 1062 duplicate, 1264 out of range, 1366 bad
# value, 1406 too long, 1452 missing parent, 3819/4025 CHECK, 3140 invalid JSON, ...) is that
# row's, so one row never blocks the batch, whatever code the server gives.
STATEMENT_CODES = frozenset(
    {
        1044,  # access denied to the database
        1045,  # access denied for the user
        1049,  # unknown database
        1054,  # unknown column
        PARSE_ERROR,
        1142,  # command denied on the table
        1143,  # command denied on a column
        NO_SUCH_TABLE,
        1227,  # a privilege is missing
        1290,  # the server runs with --read-only (or another option refusing the statement)
        1792,  # a read-only transaction
        1836,  # read-only mode
    }
)


def is_record_error(exc: BaseException) -> bool:
    """Whether the server refused a statement for the sake of (one of) its rows; the errors
    that end the transaction (deadlock, lock wait, a lost connection) are retriable and
    the statement's own errors are not a row's."""
    import pymysql

    if not isinstance(exc, pymysql.err.MySQLError):
        return False
    return not (is_retriable(exc) or error_code(exc) in STATEMENT_CODES)


def map_error(exc: BaseException, what: str) -> SyncSwimError:
    """The taxonomy error for a driver error raised while doing `what`."""
    text = redact(f"{what}: {error_text(exc)}")
    code = error_code(exc)
    if is_retriable(exc):
        return RetriableError(text)
    if code in _AUTH_CODES:
        return FatalError(text)
    if code == UNKNOWN_DATABASE:
        return ConfigError(text)
    return FatalError(text)
