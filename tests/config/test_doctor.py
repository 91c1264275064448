"""`syncswim doctor`, live `validate` and `setup` against servers that are not ready for
change capture (PostgreSQL with wal_level=replica, MariaDB without its binary log), roles
without the rights, and what setup and teardown leave behind."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pymysql
import pytest

from syncswim_lib.cli import main
from syncswim_lib.config.cli_validate import run_validate
from syncswim_lib.config.doctor import run_doctor
from syncswim_lib.connectors.postgres import PostgresConnector
from syncswim_lib.errors import ConfigError
from syncswim_lib.sandbox.servers import MariaDBServer, PostgresServer

pytestmark = pytest.mark.integration

YAML = """\
endpoints:
  app_db:  {kind: postgres, dsn: {env: DOCTOR_PG_DSN}}
  shop_db: {kind: mysql, dsn: {env: DOCTOR_MY_DSN}}
syncs:
  app_shop:
    between: [app_db, shop_db]
    entities:
      customers:
        app_db:  {table: public.customers, key: [id]}
        shop_db: {table: customers, key: [id]}
        mode: {system_of_record: app_db, external_id: {shop_db: app_customer_id}}
        fields: {name: name}
"""
PG_TABLE = "CREATE TABLE customers (id serial PRIMARY KEY, name varchar(80))"
MY_TABLE = (
    "CREATE TABLE customers (id int AUTO_INCREMENT PRIMARY KEY, app_customer_id int UNIQUE,"
    " name varchar(80))"
)


@pytest.fixture(scope="module")
def replica_pg(server_root: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(
        server_root / "pg-replica",
        settings={"wal_level": "replica", "max_replication_slots": "0", "max_wal_senders": "0"},
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def no_binlog_mysql(server_root: Path) -> Iterator[MariaDBServer]:
    server = MariaDBServer(
        server_root / "mysql-nobinlog",
        binlog=False,
        settings={"binlog_expire_logs_seconds": "3600"},
    )
    server.start()
    yield server
    server.stop()


def _pg_db(server: PostgresServer) -> str:
    name = f"d_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = f"postgresql://postgres@127.0.0.1:{server.port}/{name}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(PG_TABLE)
    return dsn


def _my_exec(dsn: str, *statements: str) -> None:
    rest, db = dsn.rsplit("/", 1)
    port = int(rest.rsplit(":", 1)[1])
    conn = pymysql.connect(host="127.0.0.1", port=port, user="root", autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{db}`")
        cur.execute(f"USE `{db}`")
        for statement in statements:
            cur.execute(statement)
    conn.close()


@pytest.fixture
def declaration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "sync.yaml"
    path.write_text(YAML)
    return path


def _use(monkeypatch: pytest.MonkeyPatch, pg: str, my: str) -> None:
    monkeypatch.setenv("DOCTOR_PG_DSN", pg)
    monkeypatch.setenv("DOCTOR_MY_DSN", my)


def test_ready_servers_pass(
    declaration: Path,
    pg_dsn: str,
    mysql_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(PG_TABLE)
    _my_exec(mysql_dsn, MY_TABLE)
    _use(monkeypatch, pg_dsn, mysql_dsn)
    assert run_doctor(str(declaration)) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "app_db (postgres): ok",
        "shop_db (mysql): ok",
        "doctor: 0 errors, 0 warnings",
    ]


def test_servers_not_ready_for_capture(
    declaration: Path,
    replica_pg: PostgresServer,
    no_binlog_mysql: MariaDBServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pg = _pg_db(replica_pg)
    my = f"mysql://root@127.0.0.1:{no_binlog_mysql.port}/d_{uuid.uuid4().hex[:10]}"
    _my_exec(my, MY_TABLE, "SET GLOBAL binlog_row_metadata = 'MINIMAL'")
    _use(monkeypatch, pg, my)
    try:
        assert main(["doctor", str(declaration)]) == 1
        out = capsys.readouterr().out
        assert "app_db (postgres):\n  error: wal_level is replica" in out
        assert "    fix: postgresql.conf: wal_level = logical, then restart the server" in out
        assert "1 replication slot(s) needed, 0 free (max_replication_slots = 0" in out
        assert "fix: postgresql.conf: max_replication_slots = 1 or more" in out
        # the sync streams (the default between two databases): a WAL sender too
        assert "1 WAL sender(s) needed for streaming, 0 free (max_wal_senders = 0" in out
        assert "fix: postgresql.conf: max_wal_senders = 3 or more" in out
        assert "shop_db (mysql):\n  error: the binary log is off: capture needs log_bin=ON" in out
        assert "    fix: my.cnf [mysqld]: log_bin = binlog" in out
        assert "capture needs binlog_row_metadata=FULL, it is MINIMAL" in out
        assert "SET GLOBAL binlog_row_metadata = 'FULL';" in out
        assert "  warning: binary logs are purged after 3600 s" in out
        assert out.splitlines()[-1].startswith("doctor: 5 errors, 1 warning: fix the errors")

        # live validate runs the same checks: the errors, one line each, exit 2
        assert run_validate(str(declaration)) == 2
        err = capsys.readouterr().err
        assert "error: endpoints.app_db: wal_level is replica" in err
        assert "error: endpoints.shop_db: the binary log is off" in err
        assert "Traceback" not in err
    finally:
        _my_exec(my, "SET GLOBAL binlog_row_metadata = 'FULL'")


def test_failed_setup_leaves_nothing_behind(
    declaration: Path,
    replica_pg: PostgresServer,
    mysql_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pg = _pg_db(replica_pg)
    _my_exec(mysql_dsn, MY_TABLE)
    _use(monkeypatch, pg, mysql_dsn)
    assert main(["setup", str(declaration)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("syncswim: error: setup of sync app_shop in endpoint app_db: the ")
    assert "wal_level is replica" in err and len(err.strip().splitlines()) == 1
    with psycopg.connect(pg, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)
        assert conn.execute("SELECT to_regnamespace('syncswim')").fetchone() == (None,)
        identity = conn.execute(
            "SELECT relreplident::text FROM pg_class WHERE relname = 'customers'"
        ).fetchone()
        assert identity == ("d",)


def test_setup_that_fails_late_is_undone(pg_dsn: str) -> None:
    """Past the checks: a slot of the sync's name made by another plugin. What setup had
    already created (schema, publication, replica identity) goes again; the slot stays."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(PG_TABLE)
        conn.execute("SELECT pg_create_logical_replication_slot('syncswim_late', 'test_decoding')")
        connector = PostgresConnector(pg_dsn, "app_db")
        try:
            with pytest.raises(ConfigError, match="already exists"):
                connector.setup("late", ["customers"])
        finally:
            connector.close()
        assert conn.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)
        assert conn.execute("SELECT to_regnamespace('syncswim')").fetchone() == (None,)
        identity = conn.execute(
            "SELECT relreplident::text FROM pg_class WHERE relname = 'customers'"
        ).fetchone()
        assert identity == ("d",)
        slot = conn.execute(
            "SELECT plugin FROM pg_replication_slots WHERE slot_name = 'syncswim_late'"
        ).fetchone()
        assert slot == ("test_decoding",)


def test_teardown_restores_the_replica_identity(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(PG_TABLE)
        conn.execute("CREATE TABLE tags (id int PRIMARY KEY, code text NOT NULL UNIQUE)")
        conn.execute("ALTER TABLE tags REPLICA IDENTITY USING INDEX tags_code_key")
        conn.execute("CREATE TABLE notes (id int PRIMARY KEY)")
        conn.execute("ALTER TABLE notes REPLICA IDENTITY NOTHING")

        def identities() -> dict[str, str]:
            rows = conn.execute(
                "SELECT relname::text, relreplident::text FROM pg_class "
                "WHERE relname IN ('customers', 'tags', 'notes')"
            ).fetchall()
            return dict(rows)

        before = identities()
        assert before == {"customers": "d", "tags": "i", "notes": "n"}
        connector = PostgresConnector(pg_dsn, "app_db")
        try:
            connector.setup("one", ["customers", "tags", "notes"])
            connector.setup("two", ["tags"])  # a table in two syncs keeps its first record
            assert set(identities().values()) == {"f"}
            connector.teardown("one")
            assert identities() == {"customers": "d", "tags": "f", "notes": "n"}
            connector.teardown("two")
        finally:
            connector.close()
        assert identities() == before
        index = conn.execute(
            "SELECT i.relname::text FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indisreplident"
        ).fetchall()
        assert index == [("tags_code_key",)]
        assert conn.execute("SELECT to_regnamespace('syncswim')").fetchone() == (None,)


def test_a_role_without_the_rights(
    declaration: Path,
    pg_server: PostgresServer,
    pg_dsn: str,
    mysql_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    role = f"r_{uuid.uuid4().hex[:8]}"
    db = pg_dsn.rsplit("/", 1)[1]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(PG_TABLE)
        conn.execute(f"CREATE ROLE {role} LOGIN")
    user = f"u_{uuid.uuid4().hex[:8]}"
    my_db = mysql_dsn.rsplit("/", 1)[1]
    _my_exec(
        mysql_dsn,
        MY_TABLE,
        f"CREATE USER '{user}'@'%'",
        f"GRANT ALL ON `{my_db}`.* TO '{user}'@'%'",
    )
    _use(
        monkeypatch,
        f"postgresql://{role}@127.0.0.1:{pg_server.port}/{db}",
        mysql_dsn.replace("root@", f"{user}@"),
    )
    try:
        assert run_doctor(str(declaration)) == 1
        out = capsys.readouterr().out
        assert f"role {role} has neither REPLICATION nor superuser" in out
        assert f'fix: as a superuser: ALTER ROLE "{role}" REPLICATION;' in out
        assert f"table public.customers belongs to postgres, not {role}" in out
        assert f'fix: ALTER TABLE public.customers OWNER TO "{role}";' in out
        assert f'fix: GRANT CREATE ON DATABASE "{db}" TO "{role}";' in out
        assert f"{user}@% lacks REPLICATION SLAVE and REPLICATION CLIENT" in out
        assert f"fix: GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{user}'@'%';" in out

        # the fixes it printed are enough
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'ALTER ROLE "{role}" REPLICATION')
            conn.execute(f'ALTER TABLE public.customers OWNER TO "{role}"')
            conn.execute(f'GRANT CREATE ON DATABASE "{db}" TO "{role}"')
        _my_exec(mysql_dsn, f"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{user}'@'%'")
        assert run_doctor(str(declaration)) == 0, capsys.readouterr().out
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute('ALTER TABLE public.customers OWNER TO "postgres"')
            conn.execute(f'REVOKE CREATE ON DATABASE "{db}" FROM "{role}"')
            conn.execute(f'DROP ROLE "{role}"')
        _my_exec(mysql_dsn, f"DROP USER '{user}'@'%'")
