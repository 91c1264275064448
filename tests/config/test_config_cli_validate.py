"""`syncswim validate`: output and exit codes, offline and against the private servers."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from syncswim_lib.config import Endpoint, load_project
from syncswim_lib.config.cli_validate import LiveDescriber, main, run_validate
from syncswim_lib.connectors.base import Connector
from syncswim_lib.errors import ConfigError

YAML = """\
endpoints:
  app_db:  {kind: postgres, dsn: {env: APP_DB_DSN}}
  shop_db: {kind: mysql, dsn: {env: SHOP_DB_DSN}}
syncs:
  app_shop:
    between: [app_db, shop_db]
    entities:
      customers:
        app_db:  {table: public.customers, key: [id]}
        shop_db: {table: customers, key: [id]}
        mode: {system_of_record: app_db, external_id: {shop_db: app_customer_id}}
        fields: {email: email, full_name: name}
"""


@pytest.fixture
def declaration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("APP_DB_DSN", raising=False)
    monkeypatch.delenv("SHOP_DB_DSN", raising=False)
    path = tmp_path / "sync.yaml"
    path.write_text(YAML)
    return path


def test_offline_ok(declaration: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_validate(str(declaration), live=False) == 0
    out, err = capsys.readouterr()
    assert out == "OK: 1 syncs, 1 entities\n"
    assert err == ""


def test_offline_error_is_one_line_and_exit_2(
    declaration: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    declaration.write_text(YAML.replace("{kind: mysql,", "{kind: mssql,"))
    assert main(["--no-live", str(declaration)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"error: {declaration}: endpoints.shop_db.kind: unknown endpoint kind 'mssql' "
        "(expected one of: postgres, mysql, salesforce, sqlite; did you mean 'mysql'?) (line 3)\n"
    )


def test_live_needs_the_environment(declaration: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_validate(str(declaration)) == 2
    err = capsys.readouterr().err
    assert "endpoints.app_db.dsn: environment variable APP_DB_DSN is not set" in err


def test_unreachable_endpoint_is_reported_without_the_password(
    declaration: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # port 1 on the loopback refuses at once: a connection error, not a hang
    monkeypatch.setenv("APP_DB_DSN", "postgresql://app:Top-Secret-9@127.0.0.1:1/app")
    assert run_validate(str(declaration)) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: {declaration}: endpoints.app_db: cannot reach postgres endpoint app_db: "
    )
    assert "Connection refused" in err
    assert "Top-Secret-9" not in err
    assert err.count("\n") == 1


@pytest.mark.integration
def test_live_against_the_servers(
    declaration: Path,
    pg_dsn: str,
    mysql_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import pymysql

    from syncswim_lib.connectors.mysql.connection import parse_dsn

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE customers (id serial PRIMARY KEY, email text, full_name varchar(80))"
        )
    target = parse_dsn(mysql_dsn, "shop_db")
    conn2 = pymysql.connect(
        host="127.0.0.1", port=target.port, user="root", database=target.database
    )
    with conn2.cursor() as cur:
        cur.execute(
            "CREATE TABLE customers (id int AUTO_INCREMENT PRIMARY KEY, app_customer_id int UNIQUE,"
            " email varchar(100), name varchar(80))"
        )
    conn2.close()
    monkeypatch.setenv("APP_DB_DSN", pg_dsn)
    monkeypatch.setenv("SHOP_DB_DSN", mysql_dsn)
    assert run_validate(str(declaration)) == 0
    out, err = capsys.readouterr()
    assert out == "OK: 1 syncs, 1 entities\n"
    assert err == (
        "warning: syncs.app_shop.entities.customers.fields.email: app_db.email (text) -> "
        "shop_db.email (varchar(100)): values longer than 100 characters will be rejected\n"
    )

    declaration.write_text(YAML.replace("full_name: name", "full_name: nom"))
    assert run_validate(str(declaration)) == 2
    err = capsys.readouterr().err
    assert (
        f"error: {declaration}: syncs.app_shop.entities.customers.fields.full_name: "
        "column 'nom' does not exist in shop_db" in err
    )


def test_bad_dsn_is_placed_on_the_endpoint(
    declaration: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_DB_DSN", "postgresql://app@127.0.0.1:1/app")
    monkeypatch.setenv("SHOP_DB_DSN", "postgresql://shop:Pw-77@127.0.0.1:1/shop")
    declaration.write_text(YAML.replace("between: [app_db, shop_db]", "between: [shop_db, app_db]"))
    assert run_validate(str(declaration)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {declaration}: endpoints.shop_db.dsn: expected a DSN like")
    assert "Pw-77" not in err


def test_driver_messages_are_scrubbed_of_secrets(
    declaration: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_dsn = "postgresql://app:Sup3r-Secret@db.example/app"
    monkeypatch.setenv("APP_DB_DSN", secret_dsn)
    project = load_project(declaration)

    def open_connector(endpoint: Endpoint) -> Connector:
        # a driver that echoes its connection string, as some do in their errors
        raise RuntimeError(f"bad connection string {endpoint.resolve_setting('dsn')}")

    describer = LiveDescriber(project, open_connector)
    with pytest.raises(ConfigError) as caught:
        describer("app_db", "public.customers")
    assert str(caught.value) == (
        f"{declaration}: endpoints.app_db: cannot use postgres endpoint app_db: "
        "RuntimeError: bad connection string ***"
    )


def entity_block(name: str, columns: str, references: str) -> str:
    return (
        f"      {name}:\n"
        f"        app_db:  {{table: public.{name}, key: [id]}}\n"
        f"        shop_db: {{table: {name}, key: [id]}}\n"
        f"        mode: {{external_id: {{app_db: code, shop_db: code}}}}\n"
        f"        fields: {{{columns}}}\n"
        f"        references: {references}\n"
    )


def test_offline_prints_the_apply_order_and_the_cycles(
    declaration: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = YAML.replace("  app_shop:", "  plain:", 1) + YAML.split("syncs:\n")[1]
    text += entity_block("order_lines", "order_id: order_id", "{order_id: orders}")
    text += entity_block("orders", "customer_id: customer_id", "{customer_id: customers}")
    text += entity_block(
        "employees",
        "reports_to: reports_to, mentor_id: mentor_id",
        "{reports_to: {entity: employees, on_delete: set_null}, mentor_id: employees}",
    )
    text += entity_block("a", "b_id: b_id", "{b_id: b}")
    text += entity_block("b", "a_id: a_id, c_id: c_id", "{a_id: a, c_id: c}")
    text += entity_block("c", "b_id: b_id, a_id: a_id", "{b_id: b, a_id: a}")
    declaration.write_text(text)
    assert run_validate(str(declaration), live=False) == 0
    out, err = capsys.readouterr()
    assert err == ""
    # the sync without references prints what it always did: nothing but the count
    assert out.splitlines() == [
        "app_shop: apply order customers -> orders -> order_lines -> employees -> a -> b -> c",
        "app_shop: employees refers to itself (reports_to, mentor_id): rows are inserted "
        "parents first; a circle of rows is inserted without reports_to and mentor_id, which "
        "are set in a second pass",
        "app_shop: a, b, c refer to each other (a.b_id -> b, b.a_id -> a, b.c_id -> c, "
        "c.b_id -> b, c.a_id -> a): they are applied in this order; rows of a are inserted "
        "without b_id and rows of b without c_id, which are set in a second pass",
        "OK: 2 syncs, 8 entities",
    ]


def test_a_two_entity_cycle_and_a_single_self_reference(
    declaration: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = YAML + entity_block("staff", "boss_id: boss_id", "{boss_id: staff}")
    text += entity_block("teams", "lead_id: lead_id", "{lead_id: leads}")
    text += entity_block("leads", "team_id: team_id", "{team_id: teams}")
    declaration.write_text(text)
    assert run_validate(str(declaration), live=False) == 0
    assert capsys.readouterr().out.splitlines() == [
        "app_shop: apply order customers -> staff -> teams -> leads",
        "app_shop: staff refers to itself (boss_id): rows are inserted parents first; a circle "
        "of rows is inserted without boss_id, which is set in a second pass",
        "app_shop: teams, leads refer to each other (teams.lead_id -> leads, leads.team_id -> "
        "teams): they are applied in this order; rows of teams are inserted without lead_id, "
        "which is set in a second pass",
        "OK: 1 syncs, 4 entities",
    ]
