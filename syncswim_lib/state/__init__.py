"""The state store: journal, links with their shadows, positions, apply plans, conflicts
(see `base.StateStore`).

`open_store(url)` picks the backend from the URL:

- `sqlite:///abs/path.db`, or a plain file path: SQLite (the embedded default);
- `postgresql://user@host:port/db` (or `postgres://`): PostgreSQL, tables in the schema
  `syncswim_state`, or the one named by a `schema=` query parameter.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from syncswim_lib.errors import ConfigError
from syncswim_lib.redact import redact
from syncswim_lib.state.base import (
    BatchRecord,
    ConflictRecord,
    ConflictStatus,
    EntryUpdate,
    JournalEntry,
    Link,
    StateStore,
    Status,
)

__all__ = [
    "BatchRecord",
    "ConflictRecord",
    "ConflictStatus",
    "EntryUpdate",
    "JournalEntry",
    "Link",
    "StateStore",
    "Status",
    "open_store",
]


def open_store(url: str) -> StateStore:
    """Open (and create when new) the state store at `url`."""
    if "://" not in url:
        if not url.strip():
            raise ConfigError("the state store URL is empty")
        from syncswim_lib.state.sqlite import SqliteStateStore

        return SqliteStateStore(url)
    scheme = url.split("://", 1)[0].lower()
    if scheme == "sqlite":
        try:
            path = urlsplit(url).path
        except ValueError as e:
            raise ConfigError(f"not a valid SQLite state store URL: {e}", path="state") from None
        if not path or path == "/":
            raise ConfigError(f"the SQLite state store URL {url!r} names no file", path="state")
        from syncswim_lib.state.sqlite import SqliteStateStore

        return SqliteStateStore(path)
    if scheme in ("postgresql", "postgres"):
        from syncswim_lib.state.postgres import DEFAULT_SCHEMA, PostgresStateStore

        try:
            parts = urlsplit(url)
            query = parse_qsl(parts.query, keep_blank_values=True)
        except ValueError as e:
            # from None: the parser's traceback would show the line holding the URL
            raise ConfigError(
                f"not a valid PostgreSQL state store URL: {redact(str(e), url)}", path="state"
            ) from None
        schema_name = DEFAULT_SCHEMA
        rest = []
        for name, value in query:
            if name == "schema":
                schema_name = value
            else:
                rest.append((name, value))
        dsn = urlunsplit(parts._replace(query=urlencode(rest)))
        return PostgresStateStore(dsn, schema_name=schema_name)
    raise ConfigError(
        f"unsupported state store URL scheme {scheme!r}: use sqlite:///path or postgresql://...",
        path="state",
    )
