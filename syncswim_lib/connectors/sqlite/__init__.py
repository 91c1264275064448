"""An application's SQLite file as an endpoint (kind `sqlite`), captured by polling."""

from syncswim_lib.connectors.sqlite.connector import SqliteConnector

__all__ = ["SqliteConnector"]
