"""`syncswim init`: a declaration from two live databases that `validate` accepts once the
SQL it prints is run, and a sync that then moves rows; its refusals, one line each."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import yaml

from syncswim_lib.config import load_project
from syncswim_lib.config.init_cmd import run_init
from syncswim_lib.config.introspect import Database, ForeignKey
from syncswim_lib.config.scaffold import Side, propose
from syncswim_lib.config.scaffold_render import render
from syncswim_lib.values import ColumnInfo, TableInfo

SYNCSWIM = str(Path(sys.executable).with_name("syncswim"))
PASSWORD = "pw-Xq7s3cret"

PG_DDL = """
CREATE TABLE customers (
    id serial PRIMARY KEY, email varchar(200) NOT NULL, name text, credit numeric(14,4),
    note text, pg_only text);
CREATE TABLE orders (
    id serial PRIMARY KEY, customer_id integer NOT NULL REFERENCES customers(id),
    total numeric(10,2), placed date);
CREATE TABLE products (id serial PRIMARY KEY, sku varchar(40) UNIQUE, title text,
    price numeric(10,2));
CREATE TABLE audit_log (id serial PRIMARY KEY, what text);
"""
MY_DDL = [
    """CREATE TABLE customers (id int AUTO_INCREMENT PRIMARY KEY, email varchar(200) NOT NULL,
    name varchar(100), credit decimal(10,2), note int, legacy tinyint NOT NULL DEFAULT 0)""",
    "ALTER TABLE customers AUTO_INCREMENT = 1000",
    """CREATE TABLE orders (id int AUTO_INCREMENT PRIMARY KEY, customer_id int NOT NULL,
    total decimal(10,2), placed date, FOREIGN KEY (customer_id) REFERENCES customers (id))""",
    "ALTER TABLE orders AUTO_INCREMENT = 500",
    """CREATE TABLE products (id int AUTO_INCREMENT PRIMARY KEY, sku varchar(40) UNIQUE,
    title varchar(200), price decimal(10,2))""",
    "CREATE TABLE sessions (id int AUTO_INCREMENT PRIMARY KEY, token varchar(64))",
]


def _my_args(dsn: str) -> dict[str, Any]:
    rest, db = dsn.rsplit("/", 1)
    host, port = rest.split("@", 1)[1].split(":")
    return {"host": host, "port": int(port), "user": "root", "database": db, "autocommit": True}


@pytest.fixture
def two(pg_dsn: str, mysql_dsn: str) -> Iterator[tuple[psycopg.Connection, Any]]:
    pg = psycopg.connect(pg_dsn, autocommit=True)
    my = pymysql.connect(**_my_args(mysql_dsn))
    pg.execute(PG_DDL)
    with my.cursor() as cur:
        for stmt in MY_DDL:
            cur.execute(stmt)
    yield pg, my
    pg.close()
    my.close()


@pytest.fixture
def pg_password_dsn(pg_dsn: str) -> Iterator[str]:
    """pg_dsn as a role with a password: what init must never write or print."""
    role = f"init_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
    yield pg_dsn.replace("postgres@", f"{role}:{PASSWORD}@")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"DROP ROLE {role}")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SYNCSWIM, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def printed_sql(stdout: str) -> dict[str, list[str]]:
    """The statements init printed, by the endpoint its `-- on NAME (...)` line names."""
    out: dict[str, list[str]] = {}
    current = None
    for line in stdout.splitlines():
        text = line.strip()
        if m := re.match(r"-- on (\w+) \(", text):
            current = m.group(1)
        elif current and text.startswith(("ALTER ", "CREATE ")):
            out.setdefault(current, []).append(text)
        elif not line.startswith("  "):
            current = None
    return out


@pytest.mark.integration
@pytest.mark.parametrize("order", ["pg_first", "mysql_first"])
def test_init_writes_what_validate_accepts_after_its_sql_and_a_sync_moves_rows(
    two: tuple[psycopg.Connection, Any],
    pg_dsn: str,
    pg_password_dsn: str,
    mysql_dsn: str,
    tmp_path: Path,
    order: str,
) -> None:
    pg, my = two
    out = tmp_path / "sync.yaml"
    dsns = [pg_password_dsn, mysql_dsn] if order == "pg_first" else [mysql_dsn, pg_password_dsn]
    done = cli("init", *dsns, "--out", str(out))
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert PASSWORD not in text + done.stdout + done.stderr
    assert "127.0.0.1" not in text.split("version: 1", 1)[1]  # DSNs only from the environment

    doc = yaml.safe_load(text)
    ((sync_name, sync),) = doc["syncs"].items()
    a, b = sync["between"]
    pg_ep, my_ep = (a, b) if order == "pg_first" else (b, a)
    assert doc["endpoints"][pg_ep] == {"kind": "postgres", "dsn": {"env": f"{pg_ep.upper()}_DSN"}}
    assert doc["endpoints"][my_ep] == {"kind": "mysql", "dsn": {"env": f"{my_ep.upper()}_DSN"}}
    assert sync["run"] == "streaming"  # the default between two databases, written out
    entities = sync["entities"]
    assert list(entities) == ["customers", "orders", "products"]  # parents first
    # the first DSN generates keys too: it is the system of record
    sor = a
    there = b
    assert entities["customers"]["mode"] == {
        "system_of_record": sor,
        "external_id": {there: f"{sor}_id"},
    }
    assert entities["orders"]["references"] == {"customer_id": "customers"}
    assert entities["products"]["mode"] == {"external_id": {a: "sku", b: "sku"}}
    assert entities["customers"]["fields"] == {"email": "email", "name": "name", "credit": "credit"}
    # what a person must decide is said where it applies (comments joined up again)
    flat = re.sub(r"\n *#   ", " ", text)
    assert re.search(r"# decide: .*note \(text\) -> .*note \(int\(11\)\): text values cannot", flat)
    assert "\n          # note: note\n" in text
    assert re.search(r"# lossy: .*credit \(numeric\(14,4\)\) -> .*: values are rounded to 2", flat)
    assert f"# decide: tables only on {pg_ep}, not synced" in flat
    assert re.search(rf"tables only on {my_ep}, not synced .*: sessions\n", flat)
    assert f"columns only on {pg_ep}, not synced: pg_only (text)" in flat
    assert "legacy (tinyint(4), NOT NULL: rows the sync creates need a default)" in flat

    # the printed SQL is the one in the file's comments; run it, then validate accepts
    sql = printed_sql(done.stdout)
    assert list(sql) == [there]
    for statement in sql[there]:
        assert f"#   {statement}" in text
        if there == pg_ep:
            pg.execute(statement)
        else:
            with my.cursor() as cur:
                cur.execute(statement)
    env = {f"{pg_ep.upper()}_DSN": pg_dsn, f"{my_ep.upper()}_DSN": mysql_dsn}
    exports = [line.strip() for line in done.stdout.splitlines() if "export " in line]
    assert len(exports) == 2
    pg_export = next(line for line in exports if line.startswith(f"export {pg_ep.upper()}_DSN="))
    assert ":***@" in pg_export and pg_export.endswith("# with the password in place of ***")
    assert f"export {my_ep.upper()}_DSN='{mysql_dsn}'" in exports
    checked = cli("validate", str(out), env=env)
    assert checked.returncode == 0, checked.stderr
    assert "OK: 1 syncs, 3 entities" in checked.stdout
    load_project(out)

    # the suggested natural key adopts a customer already on both sides, uncommented
    suggestion = "        # match_on: {fields: [email], normalise: [strip, lower]}\n"
    assert text.count(suggestion) == 1 and "  orders:" in text.split(suggestion)[1]
    out.write_text(text.replace(suggestion, suggestion.replace("# ", "", 1)))
    checked = cli("validate", str(out), env=env)
    assert checked.returncode == 0, checked.stderr

    # a sync moves rows, the order's customer translated into the other side's key
    pg.execute(
        "INSERT INTO customers (email, name, credit) VALUES ('ada@example.com', 'Ada', 12.5)"
    )
    pg.execute("INSERT INTO orders (customer_id, total, placed) VALUES (1, 99.90, '2026-01-02')")
    with my.cursor() as cur:
        cur.execute(
            "INSERT INTO customers (email, name, credit) VALUES ('Ada@Example.com', 'Ada', 12.5)"
        )
        cur.execute("INSERT INTO products (sku, title, price) VALUES ('SKU-1', 'Kettle', 20)")
    assert cli("setup", str(out), env=env).returncode == 0
    synced = cli("sync", str(out), "--full", env=env)
    assert synced.returncode == 0, synced.stderr
    with my.cursor() as cur:
        cur.execute("SELECT id, name FROM customers")
        assert cur.fetchall() == ((1000, "Ada"),)  # adopted, not created twice
        cur.execute("SELECT customer_id, total FROM orders")
        assert [(r[0], str(r[1])) for r in cur.fetchall()] == [(1000, "99.90")]
    assert pg.execute("SELECT id, name FROM customers").fetchall() == [(1, "Ada")]
    assert pg.execute("SELECT sku, title FROM products").fetchall() == [("SKU-1", "Kettle")]
    assert cli("teardown", str(out), env=env).returncode == 0
    assert sync_name == f"{a}_{b}"[:40].rstrip("_")


@pytest.mark.integration
def test_init_refuses_to_overwrite_a_file_without_force(
    two: tuple[psycopg.Connection, Any], pg_dsn: str, mysql_dsn: str, tmp_path: Path
) -> None:
    out = tmp_path / "sync.yaml"
    out.write_text("mine\n")
    err = io.StringIO()
    assert run_init(pg_dsn, mysql_dsn, out, out=io.StringIO(), err=err) == 2
    assert err.getvalue() == f"error: {out} exists: give --force to overwrite it\n"
    assert out.read_text() == "mine\n"
    assert run_init(pg_dsn, mysql_dsn, out, force=True, out=io.StringIO(), err=err) == 0
    assert out.read_text().startswith("# A starting declaration")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.integration
def test_init_unreachable_dsn_is_one_line_without_the_password(pg_dsn: str, tmp_path: Path) -> None:
    out = tmp_path / "sync.yaml"
    port = _closed_port()
    for bad in (
        f"postgresql://app:{PASSWORD}@127.0.0.1:{port}/app",
        f"mysql://app:{PASSWORD}@127.0.0.1:{port}/shop",
    ):
        done = cli("init", pg_dsn, bad, "--out", str(out))
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: cannot read "), done.stderr
        assert PASSWORD not in done.stderr and "app:***@" in done.stderr
        assert str(port) in done.stderr
        assert not out.exists()


@pytest.mark.integration
def test_init_refusals_are_one_line(
    two: tuple[psycopg.Connection, Any],
    pg_dsn: str,
    mysql_dsn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "sync.yaml"

    def refused(*args: str) -> str:
        err = io.StringIO()
        assert run_init(*args[:2], out, list(args[2:]), out=io.StringIO(), err=err) == 2
        assert not out.exists()
        return err.getvalue().strip()

    assert refused(pg_dsn, f"oracle://u:{PASSWORD}@h/db") == (
        "error: a DSN must start with postgresql:// or mysql:// (also postgres://, "
        "mariadb://), got scheme 'oracle'"
    )
    monkeypatch.delenv("INIT_NOT_SET", raising=False)
    assert refused("env:INIT_NOT_SET", mysql_dsn) == (
        "error: first DSN: environment variable INIT_NOT_SET is not set"
    )
    missing = refused(pg_dsn, mysql_dsn, "customers,audit_log")
    assert missing.startswith("error: --tables: table 'audit_log' not found on t_")
    assert "(mysql://root@127.0.0.1" in missing


@pytest.mark.integration
def test_init_takes_a_dsn_from_the_environment_and_limits_tables(
    two: tuple[psycopg.Connection, Any],
    pg_dsn: str,
    mysql_dsn: str,
    tmp_path: Path,
) -> None:
    out = tmp_path / "sync.yaml"
    args = ["init", "env:APP_DB_URL", mysql_dsn, "--out", str(out)]
    done = cli(*args, "--tables", "products", env={"APP_DB_URL": pg_dsn})
    assert done.returncode == 0, done.stderr
    doc = yaml.safe_load(out.read_text())
    app = next(iter(doc["endpoints"]))
    assert doc["endpoints"][app]["dsn"] == {"env": "APP_DB_URL"}
    assert list(next(iter(doc["syncs"].values()))["entities"]) == ["products"]
    assert "APP_DB_URL (already set)" in done.stdout
    # repeated and comma-separated
    again = cli(
        *args,
        "--force",
        "--tables",
        "products,orders",
        "--tables",
        "customers",
        env={"APP_DB_URL": pg_dsn},
    )
    assert again.returncode == 0, again.stderr
    entities = next(iter(yaml.safe_load(out.read_text())["syncs"].values()))["entities"]
    assert list(entities) == ["customers", "orders", "products"]


# --- the proposal on its own (no server) ---------------------------------------------------


def _col(name: str, family: Any, db_type: str, **kw: Any) -> ColumnInfo:
    return ColumnInfo(name, family, db_type, **kw)


def _db(kind: Any, name: str, tables: dict[str, TableInfo], fks: Any = None) -> Database:
    return Database(kind, f"{kind}://x@h/{name}", name, tables, fks or {})


def test_no_generated_key_gives_a_shared_external_id_column_on_both_sides() -> None:
    def table(name: str) -> TableInfo:
        return TableInfo(
            name,
            (_col("code", "text", "varchar(10)", nullable=False), _col("v", "int", "integer")),
            ("code",),
            (("code",),),
        )

    sides = {
        "a": Side(
            "app", "APP_DSN", _db("postgres", "app", {"public.items": table("public.items")})
        ),
        "b": Side("shop", "SHOP_DSN", _db("mysql", "shop", {"items": table("items")})),
    }
    scaffold = propose(sides)  # type: ignore[arg-type]
    (plan,) = scaffold.entities
    assert plan.mode == "external_id" and plan.ext == {"a": "shared_id", "b": "shared_id"}
    assert plan.sql == [
        ("a", "ALTER TABLE public.items ADD COLUMN shared_id varchar(64) NULL UNIQUE;"),
        ("b", "ALTER TABLE `items` ADD COLUMN `shared_id` varchar(64) NULL UNIQUE;"),
    ]
    assert "no side can be the system of record" in re.sub(r"\n *#   ", " ", render(scaffold))


def test_an_existing_column_for_the_key_is_used_and_only_its_unique_index_added() -> None:
    key = _col("id", "int", "bigint", nullable=False, auto_generated=True)
    app = TableInfo("public.people", (key, _col("name", "text", "text")), ("id",), (("id",),))
    shop = TableInfo(
        "people",
        (
            _col("id", "int", "int(11)", nullable=False, auto_generated=True),
            _col("app_id", "int", "bigint(20)"),
            _col("name", "text", "varchar(50)", max_length=50),
        ),
        ("id",),
        (("id",),),
    )
    sides = {
        # the MySQL side first: its key is generated too, but the existing column decides
        "a": Side("shop", "SHOP_DSN", _db("mysql", "shop", {"people": shop})),
        "b": Side("app", "APP_DSN", _db("postgres", "app", {"public.people": app})),
    }
    (plan,) = propose(sides).entities  # type: ignore[arg-type]
    assert (plan.mode, plan.sor, plan.ext) == ("system_of_record", "b", {"a": "app_id"})
    assert plan.sql == [("a", "ALTER TABLE `people` ADD UNIQUE (`app_id`);")]
    assert [(f.a, f.b, bool(f.notes)) for f in plan.fields] == [("name", "name", True)]


def test_a_foreign_key_to_a_composite_key_is_left_out_with_the_reason() -> None:
    def tables(prefix: str) -> dict[str, TableInfo]:
        parent = TableInfo(
            f"{prefix}regions",
            (_col("zone", "int", "integer"), _col("n", "int", "integer")),
            ("zone", "n"),
        )
        child = TableInfo(
            f"{prefix}shops",
            (_col("id", "int", "integer", auto_generated=True), _col("zone", "int", "integer")),
            ("id",),
        )
        return {f"{prefix}regions": parent, f"{prefix}shops": child}

    fks = {"public.shops": (ForeignKey("zone", "public.regions", "zone"),)}
    sides = {
        "a": Side("app", "A", _db("postgres", "app", tables("public."), fks)),
        "b": Side("shop", "B", _db("postgres", "shop", tables(""))),
    }
    scaffold = propose(sides)  # type: ignore[arg-type]
    shops = next(p for p in scaffold.entities if p.name == "shops")
    assert shops.references == {}
    ((a, b, why),) = shops.left_out
    assert (a, b) == ("zone", "zone") and "a reference needs the parent's one-column key" in why


@pytest.mark.integration
def test_init_without_a_table_on_both_sides_writes_nothing(
    pg_dsn: str, mysql_dsn: str, tmp_path: Path
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE only_here (id serial PRIMARY KEY)")
    out, err = tmp_path / "sync.yaml", io.StringIO()
    assert run_init(pg_dsn, mysql_dsn, out, out=io.StringIO(), err=err) == 2
    assert not out.exists()
    assert err.getvalue().startswith("error: no table is on both sides, nothing to declare (t_")
    assert "public.only_here" in err.getvalue() and "(no tables)" in err.getvalue()


@pytest.mark.integration
def test_init_reports_a_file_it_cannot_write_and_a_malformed_dsn(
    two: tuple[psycopg.Connection, Any], pg_dsn: str, mysql_dsn: str, tmp_path: Path
) -> None:
    err = io.StringIO()
    nowhere = tmp_path / "missing" / "sync.yaml"
    assert run_init(pg_dsn, mysql_dsn, nowhere, out=io.StringIO(), err=err) == 2
    assert err.getvalue() == f"error: cannot write {nowhere}: No such file or directory\n"
    err = io.StringIO()
    bad = f"postgresql://app:{PASSWORD}@127.0.0.1:5432/app?sslmode=sometimes"
    assert run_init(bad, mysql_dsn, tmp_path / "s.yaml", out=io.StringIO(), err=err) == 2
    line = err.getvalue()
    assert line.count("\n") == 1 and PASSWORD not in line, line
    assert line.startswith("error: cannot read postgres database postgresql://app:***@")


def test_endpoint_names_are_distinct_and_never_reserved() -> None:
    from syncswim_lib.config.scaffold import endpoint_names

    assert endpoint_names(_db("postgres", "shop", {}), _db("mysql", "Shop", {})) == (
        "shop_pg",
        "shop_my",
    )
    assert endpoint_names(_db("postgres", "app", {}), _db("postgres", "app", {})) == (
        "app_1",
        "app_2",
    )
    assert endpoint_names(_db("postgres", "mode", {}), _db("mysql", "2024-sales", {})) == (
        "mode_db",
        "mysql_2024_sales",
    )


@pytest.fixture
def second_pg_dsn(pg_dsn: str) -> Iterator[str]:
    """Another database on the same private PostgreSQL server."""
    name = f"t2_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_dsn.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def second_mysql_dsn(mysql_dsn: str) -> Iterator[str]:
    name = f"t2_{uuid.uuid4().hex[:10]}"
    conn = pymysql.connect(**{**_my_args(mysql_dsn), "database": None})
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    yield mysql_dsn.rsplit("/", 1)[0] + f"/{name}"
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


def _run(dsn: str, statements: list[str]) -> None:
    if dsn.startswith("postgresql"):
        with psycopg.connect(dsn, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)
        return
    conn = pymysql.connect(**_my_args(dsn))
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    conn.close()


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_init_between_two_databases_of_one_kind(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if kind == "postgres":
        first, second = request.getfixturevalue("pg_dsn"), request.getfixturevalue("second_pg_dsn")
        ddl = [
            "CREATE TABLE people (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            "name text, born date)"
        ]
        other_ddl = ["CREATE TABLE people (id integer PRIMARY KEY, name varchar(80), born date)"]
    else:
        first = request.getfixturevalue("mysql_dsn")
        second = request.getfixturevalue("second_mysql_dsn")
        ddl = [
            "CREATE TABLE people (id bigint unsigned AUTO_INCREMENT PRIMARY KEY, "
            "name varchar(80), born date)"
        ]
        other_ddl = ["CREATE TABLE people (id int PRIMARY KEY, name varchar(80), born date)"]
    _run(first, ddl)
    _run(second, other_ddl)
    out = tmp_path / "sync.yaml"
    done = cli("init", first, second, "--out", str(out))
    assert done.returncode == 0, done.stderr
    doc = yaml.safe_load(out.read_text())
    a, b = next(iter(doc["syncs"].values()))["between"]
    assert (a, b) == tuple(doc["endpoints"]) and a != b
    people = next(iter(doc["syncs"].values()))["entities"]["people"]
    # only the first side generates its key: it is the system of record, whatever the kind
    assert people["mode"] == {"system_of_record": a, "external_id": {b: f"{a}_id"}}
    assert people["fields"] == {"name": "name", "born": "born"}
    (statement,) = printed_sql(done.stdout)[b]
    # a type that holds every key: bigint, and an unsigned bigint's range on MySQL
    assert ("bigint unsigned" if kind == "mysql" else "bigint") in statement
    _run(second, [statement])
    env = {f"{a.upper()}_DSN": first, f"{b.upper()}_DSN": second}
    checked = cli("validate", str(out), env=env)
    assert checked.returncode == 0, checked.stderr
    # two databases of one PostgreSQL server share its slot names: said before setup fails
    same_server = "both endpoints are databases of the PostgreSQL server at 127.0.0.1:"
    assert (same_server in done.stderr) == (kind == "postgres")
    assert (same_server in re.sub(r"\n#   ", " ", out.read_text())) == (kind == "postgres")


def test_a_self_reference_and_a_foreign_key_on_one_side_become_references() -> None:
    def people(name: str) -> TableInfo:
        return TableInfo(
            name,
            (
                _col("id", "int", "integer", nullable=False, auto_generated=True),
                _col("boss_id", "int", "integer"),
                _col("team_id", "int", "integer"),
            ),
            ("id",),
            (("id",),),
        )

    def teams(name: str) -> TableInfo:
        key = _col("id", "int", "integer", nullable=False, auto_generated=True)
        return TableInfo(name, (key, _col("app_id", "int", "integer")), ("id",), (("id",),))

    a_fks = {
        "public.people": (
            ForeignKey("boss_id", "public.people", "id"),
            ForeignKey("team_id", "public.teams", "id"),
        )
    }
    b_fks = {"people": (ForeignKey("boss_id", "people", "id"),)}  # team_id: no constraint
    sides = {
        "a": Side(
            "app",
            "A",
            _db(
                "postgres",
                "app",
                {"public.people": people("public.people"), "public.teams": teams("public.teams")},
                a_fks,
            ),
        ),
        "b": Side(
            "shop",
            "B",
            _db("mysql", "shop", {"people": people("people"), "teams": teams("teams")}, b_fks),
        ),
    }
    scaffold = propose(sides)  # type: ignore[arg-type]
    assert [p.name for p in scaffold.entities] == ["teams", "people"]  # parents first
    plan = scaffold.entities[1]
    assert plan.references == {"boss_id": "people", "team_id": "teams"}
    assert any("team_id: a foreign key to teams on one side only" in n for n in plan.notes)
    teams_plan = scaffold.entities[0]
    assert teams_plan.ext == {"b": "app_id"}  # there already: only its unique index added
    assert teams_plan.sql == [("b", "ALTER TABLE `teams` ADD UNIQUE (`app_id`);")]
    text = render(scaffold)
    assert "        references:\n          boss_id: people\n          team_id: teams\n" in text
