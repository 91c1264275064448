"""describe(), DSN parsing and connection errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from syncswim_lib.connectors.mysql import MySQLConnector
from syncswim_lib.connectors.mysql.connection import parse_dsn, server_id_for
from syncswim_lib.errors import ConfigError, FatalError, RetriableError
from syncswim_lib.sandbox.servers import MariaDBServer, free_port
from syncswim_lib.values import ColumnInfo

if TYPE_CHECKING:
    from conftest import Db


@pytest.mark.integration
def test_describe_reports_families_and_keys(connector: MySQLConnector, db: Db) -> None:
    db.run("""
        CREATE TABLE t (
          a int NOT NULL AUTO_INCREMENT, b varchar(12) NOT NULL, flag boolean, n decimal(9,3),
          doc json, plain longtext, at datetime(3), ts timestamp(6) NULL, d date,
          raw blob, f float, big bigint unsigned, tm time,
          old varchar(5) CHARACTER SET latin1, mb3 text CHARACTER SET utf8mb3,
          PRIMARY KEY (b, a), KEY (a)
        ) CHARACTER SET utf8mb4""")
    info = connector.describe("t")
    assert info.name == f"{db.name}.t"
    assert info.primary_key == ("b", "a")
    cols = {c.name: c for c in info.columns}
    assert [c.name for c in info.columns][:3] == ["a", "b", "flag"]
    assert cols["a"] == ColumnInfo("a", "int", "int(11)", False, auto_generated=True)
    assert cols["b"] == ColumnInfo(
        "b", "text", "varchar(12)", False, max_length=12, charset="utf8mb4"
    )
    # each text column's own character set; none for the others (json's is the server's)
    assert (cols["old"].charset, cols["mb3"].charset) == ("latin1", "utf8mb3")
    assert [cols[n].charset for n in ("a", "doc", "n", "raw")] == [None] * 4
    assert cols["flag"].family == "bool" and cols["flag"].db_type == "tinyint(1)"
    assert (cols["n"].family, cols["n"].precision, cols["n"].scale) == ("decimal", 9, 3)
    assert cols["doc"].family == "json"  # LONGTEXT + json_valid CHECK on MariaDB
    assert cols["plain"].family == "text"
    assert (cols["at"].family, cols["at"].precision) == ("timestamp", 3)
    assert (cols["ts"].family, cols["ts"].precision) == ("timestamptz", 6)
    assert [cols[n].family for n in ("d", "raw", "f", "big", "tm")] == [
        "date",
        "bytes",
        "float",
        "int",
        "time",
    ]
    assert connector.describe(f"{db.name}.t") == info


@pytest.mark.integration
def test_describe_missing_table(connector: MySQLConnector, db: Db) -> None:
    with pytest.raises(ConfigError) as err:
        connector.describe("nope")
    assert str(err.value) == f"table nope does not exist in endpoint shop_db (database {db.name})"
    with pytest.raises(ConfigError, match=r"table other_db\.t does not exist"):
        connector.describe("other_db.t")
    with pytest.raises(ConfigError, match="nope does not exist"):
        connector.setup("s", ["nope"])


@pytest.mark.integration
def test_setup_needs_a_primary_key(connector: MySQLConnector, db: Db) -> None:
    db.run("CREATE TABLE nokey (v int)")
    with pytest.raises(ConfigError, match="no primary key"):
        connector.setup("s", ["nokey"])


@pytest.mark.integration
def test_connection_errors_map_to_the_taxonomy(mysql_server: MariaDBServer) -> None:
    closed = MySQLConnector(f"mysql://root@127.0.0.1:{free_port()}/x?connect_timeout=2", "e")
    with pytest.raises(RetriableError, match="connecting to endpoint e"):
        closed.describe("t")
    unknown_db = MySQLConnector(f"mysql://root@127.0.0.1:{mysql_server.port}/no_such_db", "e")
    with pytest.raises(ConfigError, match="no_such_db"):
        unknown_db.describe("t")
    bad_user = MySQLConnector(f"mysql://nobody:secret@127.0.0.1:{mysql_server.port}/x", "e")
    with pytest.raises(FatalError) as err:
        bad_user.describe("t")
    assert "secret" not in str(err.value)


def test_parse_dsn() -> None:
    dsn = parse_dsn("mysql://us%40er:p%3Ass@db.example:3307/shop?connect_timeout=3", "e")
    assert (dsn.user, dsn.password, dsn.host, dsn.port, dsn.database) == (
        "us@er",
        "p:ss",
        "db.example",
        3307,
        "shop",
    )
    assert dsn.connect_timeout == 3
    assert "p:ss" not in repr(dsn) and "p:ss" not in dsn.safe()
    assert parse_dsn("mariadb://root@localhost/shop", "e").port == 3306
    for bad, why in [
        ("postgresql://h/db", "scheme"),
        ("mysql://h:1/", "one database"),
        ("mysql://h:port/db", "port"),
        ("mysql://h/db?ssl_mode=maybe", "ssl_mode"),
        ("mysql://h/db?connect_timeout=soon", "connect_timeout"),
    ]:
        with pytest.raises(ConfigError, match=why):
            parse_dsn(bad, "e")


def test_ssl_modes() -> None:
    assert parse_dsn("mysql://127.0.0.1/db", "e").kwargs().get("ssl_disabled") is True
    assert "ssl_disabled" not in parse_dsn("mysql://db.example/db", "e").kwargs()
    assert "ssl" in parse_dsn("mysql://127.0.0.1/db?ssl_mode=required", "e").kwargs()
    assert parse_dsn("mysql://db.example/db?ssl_mode=disabled", "e").kwargs()["ssl_disabled"]


def test_server_ids_differ_per_sync_and_stay_clear_of_real_servers() -> None:
    ids = {server_id_for("e", "h:1/db", f"sync{i}", "capture") for i in range(1000)}
    assert len(ids) == 1000
    assert all(1_000_000 <= i < 2**32 for i in ids)
    assert server_id_for("e", "h:1/db", "s", "capture") == server_id_for(
        "e", "h:1/db", "s", "capture"
    )


@pytest.mark.integration
def test_describe_lists_the_unique_column_sets(connector: MySQLConnector, db: Db) -> None:
    db.run("""
        CREATE TABLE u (
          id int NOT NULL, code varchar(40), a int, b int, c int, doc text,
          PRIMARY KEY (id), UNIQUE KEY u_ab (a, b), UNIQUE KEY u_code (code(10)),
          UNIQUE KEY u_doc (doc), KEY u_c (c)
        )""")
    info = connector.describe("u")
    # a prefix index keeps its column; a long unique (text, by hash) counts too
    assert info.unique == (("id",), ("a", "b"), ("code",), ("doc",))
    db.run("CREATE TABLE loose (a int, b int, KEY (a))")
    assert connector.describe("loose").unique == ()
