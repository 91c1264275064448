"""The PostgreSQL connector: logical decoding (pgoutput) capture, snapshot, apply."""

from syncswim_lib.connectors.postgres.connector import PostgresConnector

__all__ = ["PostgresConnector"]
