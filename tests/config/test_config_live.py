"""Live validation against the private PostgreSQL and MariaDB servers."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pymysql
import pytest

from syncswim_lib.config import Project, parse_project
from syncswim_lib.config.live import Describe, validate_live
from syncswim_lib.connectors.base import Connector
from syncswim_lib.connectors.mysql import MySQLConnector
from syncswim_lib.connectors.postgres import PostgresConnector
from syncswim_lib.errors import ConfigError
from syncswim_lib.values import TableInfo

pytestmark = pytest.mark.integration

PG_SCHEMA = """
CREATE TABLE customers (
    id serial PRIMARY KEY,
    code varchar(20) UNIQUE,
    email varchar(200),
    full_name varchar(100),
    credit_limit numeric(12,2),
    notes jsonb,
    phone text,
    plain_id integer,
    loose_code varchar(20),
    region text,
    UNIQUE (region, loose_code)
);
CREATE TABLE fixed_keys (id integer PRIMARY KEY, label text);
"""
MYSQL_SCHEMA = [
    """CREATE TABLE customers (
        id int AUTO_INCREMENT PRIMARY KEY,
        app_customer_id int NULL UNIQUE,
        short_ref varchar(5) NULL UNIQUE,
        code varchar(20) NULL UNIQUE,
        code_date date NULL UNIQUE,
        email varchar(200),
        name varchar(100),
        credit_limit decimal(12,2),
        notes_count int,
        phone_digits int,
        loose_ref int NULL
    )""",
    """CREATE TABLE labels (
        id int AUTO_INCREMENT PRIMARY KEY,
        app_id int NULL,
        label text
    )""",
]

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
        fields:
          email: email
          full_name: {to: name, transform: {shop_db: strip}}
          credit_limit: credit_limit
"""


@pytest.fixture
def describe(pg_dsn: str, mysql_dsn: str) -> Iterator[Describe]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(PG_SCHEMA)
    mysql = MySQLConnector(mysql_dsn, "shop_db")
    conn2 = pymysql.connect(
        host="127.0.0.1", port=mysql.dsn.port, user="root", database=mysql.db, autocommit=True
    )
    with conn2.cursor() as cur:
        for statement in MYSQL_SCHEMA:
            cur.execute(statement)
    conn2.close()
    connectors: dict[str, Connector] = {
        "app_db": PostgresConnector(pg_dsn, "app_db"),
        "shop_db": mysql,
    }

    def describe(endpoint: str, table: str) -> TableInfo:
        return connectors[endpoint].describe(table)

    yield describe
    for connector in connectors.values():
        connector.close()


def project(text: str) -> Project:
    return parse_project(text, "sync.yaml")


def edit(old: str, new: str, text: str = YAML) -> str:
    assert old in text, f"the test's edit does not apply: {old!r}"
    return text.replace(old, new, 1)


def live_error(text: str, describe: Describe) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        validate_live(project(text), describe)
    assert caught.value.file == "sync.yaml"
    return caught.value


def test_valid_declaration_passes(describe: Describe) -> None:
    assert validate_live(project(YAML), describe) == []


def test_missing_table(describe: Describe) -> None:
    err = live_error(edit("{table: customers, key: [id]}", "{table: clients, key: [id]}"), describe)
    assert err.path == "syncs.app_shop.entities.customers.shop_db.table"
    assert "table 'clients' not found on shop_db" in str(err)
    assert "does not exist" in str(err)


def test_missing_postgres_table(describe: Describe) -> None:
    err = live_error(edit("public.customers", "public.clients"), describe)
    assert err.path == "syncs.app_shop.entities.customers.app_db.table"
    assert "table 'public.clients' not found on app_db" in str(err)


def test_missing_mapped_column_lists_the_columns(describe: Describe) -> None:
    err = live_error(edit("email: email", "email: e_mail"), describe)
    assert err.path == "syncs.app_shop.entities.customers.fields.email"
    assert "column 'e_mail' does not exist in shop_db" in str(err)
    assert "(columns: id, app_customer_id, short_ref, code, code_date, email, name," in str(err)


def test_missing_key_column(describe: Describe) -> None:
    err = live_error(edit("public.customers, key: [id]", "public.customers, key: [uid]"), describe)
    assert err.path == "syncs.app_shop.entities.customers.app_db.key"
    assert "column 'uid' does not exist in app_db public.customers" in str(err)


def test_missing_external_id_column(describe: Describe) -> None:
    err = live_error(edit("{shop_db: app_customer_id}", "{shop_db: app_id}"), describe)
    assert err.path == "syncs.app_shop.entities.customers.mode.external_id.shop_db"
    assert "column 'app_id' does not exist in shop_db" in str(err)


def test_unconvertible_type(describe: Describe) -> None:
    err = live_error(edit("credit_limit: credit_limit", "notes: notes_count"), describe)
    assert err.path == "syncs.app_shop.entities.customers.fields.notes"
    assert (
        "cannot convert app_db.notes (jsonb) -> shop_db.notes_count (int(11)): "
        "json values cannot become int" in str(err)
    )


def test_text_to_int_needs_a_transform(describe: Describe) -> None:
    text = edit("credit_limit: credit_limit", "phone: phone_digits")
    err = live_error(text, describe)
    assert err.path == "syncs.app_shop.entities.customers.fields.phone"
    assert "text values cannot become int (declare a transform (e.g. to_int)" in str(err)
    fixed = edit(
        "credit_limit: credit_limit",
        "phone: {to: phone_digits, transform: {shop_db: to_int}}",
    )
    assert validate_live(project(fixed), describe) == []


def test_sor_key_must_be_generated(describe: Describe) -> None:
    text = edit("public.customers, key: [id]}", "public.fixed_keys, key: [id]}")
    text = edit(
        """          email: email
          full_name: {to: name, transform: {shop_db: strip}}
          credit_limit: credit_limit
""",
        "          label: name\n",
        text,
    )
    err = live_error(text, describe)
    assert err.path == "syncs.app_shop.entities.customers.app_db.key"
    assert "the key 'id' of app_db public.fixed_keys (integer) is not generated" in str(err)


def test_external_id_column_too_narrow(describe: Describe) -> None:
    err = live_error(edit("{shop_db: app_customer_id}", "{shop_db: short_ref}"), describe)
    assert err.path == "syncs.app_shop.entities.customers.mode.external_id.shop_db"
    assert (
        "shop_db column 'short_ref' cannot store the keys of app_db: varchar(5) is too narrow "
        "for integer keys (needs 10 characters)" in str(err)
    )


def test_external_id_mode_incompatible_columns(describe: Describe) -> None:
    text = edit(
        "{system_of_record: app_db, external_id: {shop_db: app_customer_id}}",
        "{external_id: {app_db: code, shop_db: code_date}}",
    )
    err = live_error(text, describe)
    assert err.path == "syncs.app_shop.entities.customers.mode.external_id.shop_db"
    assert "external-id columns do not match: app_db.code (character varying(20))" in str(err)
    assert "text values cannot become date" in str(err)


def test_warnings_for_risky_declarations(describe: Describe, mysql_dsn: str) -> None:
    db = mysql_dsn.rsplit("/", 1)[1]
    text = edit(
        "shop_db: {table: customers, key: [id]}", "shop_db: {table: customers, key: [code]}"
    )
    text = edit("full_name: {to: name, transform: {shop_db: strip}}", "full_name: name", text)
    text = edit("email: email", "email: short_ref", text)
    warnings = validate_live(project(text), describe)
    assert warnings == [
        "syncs.app_shop.entities.customers.shop_db.key: declared key [code] is not the primary "
        f"key [id] of {db}.customers: it must be unique",
        "syncs.app_shop.entities.customers.shop_db.key: the key of shop_db customers is not "
        "generated by the database: records the sync creates there need a default for it",
        "syncs.app_shop.entities.customers.fields.email: app_db.email (character varying(200)) "
        "-> shop_db.short_ref (varchar(5)): values longer than 5 characters will be rejected",
    ]


def test_warnings_for_keys_and_generated_columns(describe: Describe, mysql_dsn: str) -> None:
    db = mysql_dsn.rsplit("/", 1)[1]
    target = MySQLConnector(mysql_dsn, "shop_db").dsn
    conn = pymysql.connect(host="127.0.0.1", port=target.port, user="root", database=db)
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE strict_customers (id int AUTO_INCREMENT,"
            " app_customer_id int NOT NULL UNIQUE, email varchar(200),"
            " total int AS (length(email)) STORED, UNIQUE KEY (id))"
        )
    conn.close()
    text = edit("{table: customers, key: [id]}", "{table: strict_customers, key: [id]}")
    text = edit(
        """          full_name: {to: name, transform: {shop_db: strip}}
          credit_limit: credit_limit
""",
        "          plain_id: total\n",
        text,
    )
    base = "syncs.app_shop.entities.customers"
    assert validate_live(project(text), describe) == [
        f"{base}.shop_db.key: {db}.strict_customers has no primary key: the key must be unique",
        f"{base}.mode.external_id.shop_db: app_customer_id is NOT NULL: records created on "
        "shop_db cannot exist before app_db has given them a key",
        f"{base}.fields.plain_id: shop_db column 'total' is generated by the database; "
        "writes to it will be rejected",
    ]


def test_external_id_mode_narrowing_warns(describe: Describe) -> None:
    text = edit(
        "{system_of_record: app_db, external_id: {shop_db: app_customer_id}}",
        "{external_id: {app_db: code, shop_db: short_ref}}",
    )
    assert validate_live(project(text), describe) == [
        "syncs.app_shop.entities.customers.mode.external_id.shop_db: from app_db: values "
        "longer than 5 characters will be rejected",
    ]


def test_external_id_needs_a_unique_index(describe: Describe) -> None:
    err = live_error(edit("{shop_db: app_customer_id}", "{shop_db: loose_ref}"), describe)
    assert err.path == "syncs.app_shop.entities.customers.mode.external_id.shop_db"
    assert str(err) == (
        "sync.yaml: syncs.app_shop.entities.customers.mode.external_id.shop_db: column "
        "loose_ref on shop_db customers needs a unique index: rows are matched by it"
    )


def test_external_id_mode_needs_a_unique_index_on_each_side(describe: Describe) -> None:
    # loose_code is only unique together with region: that does not identify a row
    text = edit(
        "{system_of_record: app_db, external_id: {shop_db: app_customer_id}}",
        "{external_id: {app_db: loose_code, shop_db: code}}",
    )
    err = live_error(text, describe)
    assert err.path == "syncs.app_shop.entities.customers.mode.external_id.app_db"
    assert "column loose_code on app_db public.customers needs a unique index" in str(err)


MIXED_PG = """
CREATE TABLE wide (
    id serial PRIMARY KEY,
    code text UNIQUE,
    amount numeric(14,4),
    big bigint,
    note varchar(300),
    body text,
    happened timestamptz,
    flag boolean,
    ratio double precision,
    born date,
    changed_at timestamptz
);
"""
MIXED_MYSQL = """CREATE TABLE narrow (
    id int AUTO_INCREMENT PRIMARY KEY,
    code varchar(64) NULL UNIQUE,
    amount decimal(10,2),
    big int,
    note tinytext,
    body text,
    happened datetime,
    flag tinyint(1),
    ratio decimal(8,3),
    born date,
    updated_at datetime(6),
    stamp datetime
)"""
MIXED = """\
endpoints:
  app_db:  {kind: postgres, dsn: {env: APP_DB_DSN}}
  shop_db: {kind: mysql, dsn: {env: SHOP_DB_DSN}}
syncs:
  app_shop:
    between: [app_db, shop_db]
    entities:
      things:
        app_db:  {table: public.wide, key: [id]}
        shop_db: {table: narrow, key: [id]}
        mode: {external_id: {app_db: code, shop_db: code}}
        fields: {amount: amount, big: big, note: note, body: body, happened: happened,
                 flag: flag, ratio: ratio, born: born}
"""


@pytest.fixture
def mixed(describe: Describe, pg_dsn: str, mysql_dsn: str) -> Describe:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(MIXED_PG)
    target = MySQLConnector(mysql_dsn, "shop_db")
    conn2 = pymysql.connect(
        host="127.0.0.1", port=target.dsn.port, user="root", database=target.db, autocommit=True
    )
    with conn2.cursor() as cur:
        cur.execute(MIXED_MYSQL)
    conn2.close()
    target.close()
    return describe


def test_every_narrowing_is_listed_in_both_directions(mixed: Describe) -> None:
    base = "syncs.app_shop.entities.things"

    def field(name: str, a_type: str, b_type: str, forward: bool, why: str) -> str:
        a, b = f"app_db.{name} ({a_type})", f"shop_db.{name} ({b_type})"
        return f"{base}.fields.{name}: {a + ' -> ' + b if forward else b + ' -> ' + a}: {why}"

    zero_date = (
        "zero dates ('0000-00-00'), which MariaDB/MySQL stores when the sql_mode lacks "
        "NO_ZERO_DATE, cannot be written to {}: such a record is parked"
    )
    assert validate_live(project(MIXED), mixed) == [
        f"{base}.mode.external_id.shop_db: from app_db: values longer than 64 characters "
        "will be rejected",
        field(
            "amount",
            "numeric(14,4)",
            "decimal(10,2)",
            True,
            "values with more than 8 integer digits will be rejected",
        ),
        field(
            "amount",
            "numeric(14,4)",
            "decimal(10,2)",
            True,
            "values are rounded to 2 decimal places",
        ),
        field(
            "big",
            "bigint",
            "int(11)",
            True,
            "values outside the range of int(11) (-2147483648 to 2147483647) will be rejected",
        ),
        field(
            "note",
            "character varying(300)",
            "tinytext",
            True,
            "tinytext holds 255 bytes, not characters: values longer than 255 bytes (as few as "
            "63 characters of 4-byte UTF-8) will be rejected",
        ),
        field(
            "body",
            "text",
            "text",
            True,
            "text holds 65535 bytes, not characters: values longer than 65535 bytes (as few as "
            "16383 characters of 4-byte UTF-8) will be rejected",
        ),
        field(
            "happened",
            "timestamp with time zone",
            "datetime",
            True,
            "fractional seconds are dropped (whole seconds only)",
        ),
        field(
            "happened",
            "timestamp with time zone",
            "datetime",
            True,
            "the time zone is dropped: values are stored as UTC",
        ),
        field(
            "happened",
            "timestamp with time zone",
            "datetime",
            False,
            zero_date.format("timestamp with time zone"),
        ),
        field(
            "flag",
            "boolean",
            "tinyint(1)",
            False,
            "tinyint(1) can hold other values than 0 and 1: a record holding one is parked",
        ),
        field(
            "ratio",
            "double precision",
            "decimal(8,3)",
            True,
            "values with more than 5 integer digits will be rejected",
        ),
        field(
            "ratio",
            "double precision",
            "decimal(8,3)",
            True,
            "values are rounded to 3 decimal places",
        ),
        field(
            "ratio",
            "double precision",
            "decimal(8,3)",
            True,
            "NaN and infinity, which PostgreSQL allows in double precision, cannot be written to "
            "decimal(8,3)",
        ),
        field("born", "date", "date", False, zero_date.format("date")),
    ]


def test_a_clock_column_is_a_timestamp(mixed: Describe) -> None:
    text = MIXED.split("        fields:")[0] + "        fields: {amount: amount}\n"
    ok = text + "        clock: {app_db: changed_at, shop_db: updated_at}\n"
    assert validate_live(project(ok), mixed) == [
        "syncs.app_shop.entities.things.mode.external_id.shop_db: from app_db: values longer "
        "than 64 characters will be rejected",
        "syncs.app_shop.entities.things.fields.amount: app_db.amount (numeric(14,4)) -> "
        "shop_db.amount (decimal(10,2)): values with more than 8 integer digits will be rejected",
        "syncs.app_shop.entities.things.fields.amount: app_db.amount (numeric(14,4)) -> "
        "shop_db.amount (decimal(10,2)): values are rounded to 2 decimal places",
    ]
    path = "syncs.app_shop.entities.things.clock.shop_db"
    whole_seconds = validate_live(project(text + "        clock: {shop_db: stamp}\n"), mixed)
    assert whole_seconds[-1] == (
        f"{path}: stamp (datetime) keeps 0 fractional-second digits, but clock values are "
        "compared as exact to the microsecond: two changes within the same second can be "
        "ordered wrongly (use a 6-digit type, e.g. DATETIME(6))"
    )
    err = live_error(text + "        clock: {shop_db: note}\n", mixed)
    assert err.path == path
    assert (
        "clock column 'note' of shop_db narrow is tinytext: a clock is a timestamp column"
        in str(err)
    )
    err = live_error(text + "        clock: {shop_db: modified}\n", mixed)
    assert err.path == path
    assert "column 'modified' does not exist in shop_db" in str(err)


RELATED_PG = """
CREATE TABLE parents (id bigserial PRIMARY KEY, code varchar(64) UNIQUE, label varchar(50));
CREATE TABLE coded (code varchar(20) PRIMARY KEY, label varchar(50));
CREATE TABLE kids (
    id serial PRIMARY KEY,
    code varchar(64) UNIQUE,
    label varchar(50),
    parent_id bigint,
    parent_small integer,
    coded_id integer,
    boss_id integer
);
"""
RELATED_MYSQL = [
    """CREATE TABLE parents (id int AUTO_INCREMENT PRIMARY KEY, code varchar(64) NULL UNIQUE,
        label varchar(50))""",
    """CREATE TABLE coded (id int AUTO_INCREMENT PRIMARY KEY, code varchar(20) NULL UNIQUE,
        label varchar(50))""",
    """CREATE TABLE kids (
        id int AUTO_INCREMENT PRIMARY KEY,
        code varchar(64) NULL UNIQUE,
        label varchar(50),
        parent_id int NULL,
        parent_date date NULL,
        parent_short varchar(3) NULL,
        coded_id int NULL,
        boss_id int NOT NULL
    )""",
]
KIDS_FIELDS = "        fields: {label: label, parent_id: parent_id}\n"
KIDS_REFS = "        references: {parent_id: parents}\n"
# the children first: the checks see every parent whatever the declaration order
RELATED = f"""\
endpoints:
  app_db:  {{kind: postgres, dsn: {{env: APP_DB_DSN}}}}
  shop_db: {{kind: mysql, dsn: {{env: SHOP_DB_DSN}}}}
syncs:
  app_shop:
    between: [app_db, shop_db]
    entities:
      kids:
        app_db:  {{table: public.kids, key: [id]}}
        shop_db: {{table: kids, key: [id]}}
        mode: {{external_id: {{app_db: code, shop_db: code}}}}
{KIDS_FIELDS}{KIDS_REFS}      parents:
        app_db:  {{table: public.parents, key: [id]}}
        shop_db: {{table: parents, key: [id]}}
        mode: {{external_id: {{app_db: code, shop_db: code}}}}
        fields: {{label: label}}
      coded:
        app_db:  {{table: public.coded, key: [code]}}
        shop_db: {{table: coded, key: [id]}}
        mode: {{external_id: {{app_db: code, shop_db: code}}}}
        fields: {{label: label}}
"""
REF = "syncs.app_shop.entities.kids.references"


@pytest.fixture
def related(describe: Describe, pg_dsn: str, mysql_dsn: str) -> Describe:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(RELATED_PG)
    target = MySQLConnector(mysql_dsn, "shop_db")
    conn2 = pymysql.connect(
        host="127.0.0.1", port=target.dsn.port, user="root", database=target.db, autocommit=True
    )
    with conn2.cursor() as cur:
        for statement in RELATED_MYSQL:
            cur.execute(statement)
    conn2.close()
    target.close()
    return describe


def kids(fields: str, references: str) -> str:
    text = edit(KIDS_FIELDS, f"        fields: {fields}\n", RELATED)
    return edit(KIDS_REFS, f"        references: {references}\n", text)


def test_reference_columns_hold_the_parents_keys(related: Describe) -> None:
    # app_db bigint -> shop_db int is not a narrowing here: each side holds its own keys
    assert validate_live(project(RELATED), related) == []


def test_a_narrower_integer_reference_warns(related: Describe) -> None:
    text = kids("{label: label, parent_small: parent_id}", "{parent_small: parents}")
    assert validate_live(project(text), related) == [
        f"{REF}.parent_small: app_db column 'parent_small' (integer) holds the keys of parents "
        "on app_db (public.parents.id, bigint): integer holds keys up to 2147483647, bigint "
        "ones go up to 9223372036854775807: a child of a parent with a larger key will be "
        "rejected",
    ]


def test_a_shorter_text_reference_warns(related: Describe) -> None:
    text = kids("{label: label, parent_id: parent_short}", "{parent_id: parents}")
    assert validate_live(project(text), related) == [
        f"{REF}.parent_id: shop_db column 'parent_short' (varchar(3)) holds the keys of parents "
        "on shop_db (parents.id, int(11)): varchar(3) holds 3 characters, int(11) keys need up "
        "to 10: a child of a parent with a longer key will be rejected",
    ]


def test_an_integer_key_into_a_date_column_is_an_error(related: Describe) -> None:
    text = kids("{label: label, parent_id: parent_date}", "{parent_id: parents}")
    err = live_error(text, related)
    assert err.path == f"{REF}.parent_id"
    assert str(err) == (
        f"sync.yaml: {REF}.parent_id: shop_db column 'parent_date' (date) cannot hold the keys "
        "of parents on shop_db (parents.id, int(11)): integer keys need an integer or text "
        "column"
    )


def test_a_text_key_into_an_integer_column_is_an_error(related: Describe) -> None:
    text = kids("{label: label, coded_id: coded_id}", "{coded_id: coded}")
    err = live_error(text, related)
    assert err.path == f"{REF}.coded_id"
    assert (
        "app_db column 'coded_id' (integer) cannot hold the keys of coded on app_db "
        "(public.coded.code, character varying(20)): text keys cannot be stored in an integer "
        "column" in str(err)
    )


def test_a_not_null_forward_reference_warns(related: Describe) -> None:
    text = kids(
        "{label: label, boss_id: boss_id}", "{boss_id: {entity: kids, on_delete: set_null}}"
    )
    # only shop_db's column is NOT NULL; a reference to an earlier entity needs no NULL
    assert validate_live(project(text), related) == [
        f"{REF}.boss_id: shop_db column 'boss_id' is NOT NULL, but boss_id -> kids is a forward "
        "reference: rows that refer to each other in a circle cannot be inserted in two passes "
        "on shop_db (first without boss_id) and will wait",
    ]
    backward = kids("{label: label, boss_id: boss_id}", "{boss_id: parents}")
    assert [w for w in validate_live(project(backward), related) if "NOT NULL" in w] == []
