"""Fixtures for the MySQL connector tests: a connector and a plain connection per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pymysql
import pytest

from syncswim_lib.connectors.mysql import MySQLConnector

ENDPOINT = "shop_db"


@pytest.fixture
def db_name(mysql_dsn: str) -> str:
    return urlsplit(mysql_dsn).path.lstrip("/")


@pytest.fixture
def conn(mysql_dsn: str) -> Iterator[pymysql.Connection]:
    """Someone else's session: autocommit, the server's default sql_mode, UTC."""
    parts = urlsplit(mysql_dsn)
    c = pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=parts.username or "root",
        database=parts.path.lstrip("/"),
        autocommit=True,
        charset="utf8mb4",
        init_command="SET time_zone = '+00:00'",
    )
    yield c
    c.close()


@pytest.fixture
def connector(mysql_dsn: str) -> Iterator[MySQLConnector]:
    c = MySQLConnector(mysql_dsn, ENDPOINT)
    yield c
    c.close()


class Db:
    """Plain SQL on the test database, as another application would write it."""

    def __init__(self, conn: pymysql.Connection, name: str) -> None:
        self.conn = conn
        self.name = name

    def run(self, *statements: str, args: Any = None) -> None:
        with self.conn.cursor() as cur:
            for s in statements:
                cur.execute(s, args)

    def rows(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())


@pytest.fixture
def db(conn: pymysql.Connection, db_name: str) -> Db:
    return Db(conn, db_name)
