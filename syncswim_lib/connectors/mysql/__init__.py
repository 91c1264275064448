"""The MySQL / MariaDB connector: binlog capture, consistent snapshots, marked applies."""

from syncswim_lib.connectors.mysql.connector import MySQLConnector

__all__ = ["MySQLConnector"]
