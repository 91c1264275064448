from __future__ import annotations

import psycopg
import pymysql

from syncswim_lib.sandbox.servers import MariaDBServer, PostgresServer


def test_postgres_has_logical_wal(pg_server: PostgresServer, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
        assert conn.execute("SHOW TimeZone").fetchone() == ("UTC",)
    assert pg_server.running()


def test_mariadb_has_row_binlog(mysql_server: MariaDBServer) -> None:
    conn = pymysql.connect(host="127.0.0.1", port=mysql_server.port, user="root")
    with conn.cursor() as cur:
        cur.execute("SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata")
        assert cur.fetchone() == (1, "ROW", "FULL", "FULL")
    conn.close()
