"""PostgreSQL ⇄ Salesforce end to end through the library path (`run_sync`, as the Dagster
asset and `syncswim sync` call it): a private PostgreSQL and the Salesforce emulator,
reached through the unmodified simple-salesforce client and CometD.

`customers` ⇄ Account in external-id mode (the shared `code` ⇄ `Code__c`); `contacts` ⇄
Contact in system-of-record mode (PostgreSQL the SOR, its key in `App_Id__c`), whose
`customer_id` foreign key is the Contact's `AccountId` lookup. Each run opens a new
runtime, as separate processes would: positions and links come from the state store.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from simple_salesforce.api import Salesforce

from syncswim_lib.config import load_project
from syncswim_lib.config.cli_validate import run_validate
from syncswim_lib.pipeline.report import EntityReport
from syncswim_lib.pipeline.run import run_sync
from syncswim_lib.pipeline.runtime import Runtime
from syncswim_lib.sandbox.salesforce.emulator import Emulator, start_emulator
from tests.connectors.salesforce.conftest import SCHEMA

pytestmark = pytest.mark.integration

SYNC = "app_crm"

DDL = """
CREATE TABLE customers (
    id serial PRIMARY KEY, code varchar(20) UNIQUE, name varchar(255), tier text,
    credit numeric(10,2));
CREATE TABLE contacts (
    id serial PRIMARY KEY, last_name varchar(80) NOT NULL, email varchar(80),
    customer_id int REFERENCES customers(id));
"""

YAML = """
endpoints:
  app: {kind: postgres, dsn: {env: SFE_PG_DSN}}
  crm:
    kind: salesforce
    instance_url: {env: SFE_SF_URL}
    token: {env: SFE_SF_TOKEN}
    ca_bundle: {env: SFE_SF_CA}
state: {env: SFE_STATE_URL}
syncs:
  app_crm:
    between: [app, crm]
    run: RUN_MODE
    # fault tests wait for these backoffs: short ones keep them quick
    retry: {attempts: 6, base_seconds: 0.02, max_seconds: 0.1}
    entities:
      customers:
        app: {table: public.customers, key: [id]}
        crm: {object: Account, key: Id}
        mode: {external_id: {app: code, crm: Code__c}}
        fields: {name: Name, tier: Tier__c, credit: Credit__c}
      contacts:
        app: {table: public.contacts, key: [id]}
        crm: {object: Contact, key: Id}
        mode: {system_of_record: app, external_id: {crm: App_Id__c}}
        fields: {last_name: LastName, email: Email, customer_id: AccountId}
        references: {customer_id: customers}
"""

NOTHING = {"inserted": 0, "updated": 0, "deleted": 0}


@pytest.fixture(scope="module")
def _emulator() -> Iterator[Emulator]:
    emu = start_emulator(schema=SCHEMA)
    yield emu
    emu.stop()


class Sides:
    def __init__(self, pg_dsn: str, emu: Emulator, workdir: Path) -> None:
        self.emu = emu
        self.yaml = workdir / "sync.yaml"
        self.yaml.write_text(YAML.replace("RUN_MODE", "micro_batch"))
        self.env = {
            "SFE_PG_DSN": pg_dsn,
            "SFE_SF_URL": emu.url,
            "SFE_SF_TOKEN": emu.token("integration"),
            "SFE_SF_CA": str(emu.ca_path),
            "SFE_STATE_URL": f"sqlite:///{workdir / 'state.db'}",
        }
        self.pg = psycopg.connect(pg_dsn, autocommit=True, row_factory=dict_row)
        self.pg.execute(DDL)
        self.human: Salesforce = emu.client(user="human")  # edits "in the UI"

    def run(self) -> dict[str, EntityReport]:
        with Runtime(load_project(self.yaml)) as rt:
            return {r.entity: r for r in run_sync(rt, SYNC)}

    def settled(self) -> None:
        """A run after a sync writes nothing on either side: no echo loops."""
        for name, report in self.run().items():
            for endpoint in ("app", "crm"):
                counts = report.side(endpoint)
                got = {"inserted": counts.inserted, "updated": counts.updated}
                got["deleted"] = counts.deleted
                assert got == NOTHING, (name, endpoint, got)

    def pg_rows(self, table: str) -> list[dict[str, Any]]:
        return list(self.pg.execute(f"SELECT * FROM {table} ORDER BY id").fetchall())

    def sf_rows(self, soql: str) -> list[dict[str, Any]]:
        return list(self.human.query_all(soql)["records"])

    def accounts(self) -> dict[str, dict[str, Any]]:
        rows = self.sf_rows("SELECT Id, Code__c, Name, Tier__c, Credit__c FROM Account")
        return {r["Code__c"]: r for r in rows}

    def contacts(self) -> list[dict[str, Any]]:
        return self.sf_rows("SELECT Id, LastName, Email, AccountId, App_Id__c FROM Contact")

    def close(self) -> None:
        self.pg.close()
        self.human.session.close()


@pytest.fixture
def s(
    pg_dsn: str, _emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Sides]:
    _emulator.control.reset()
    sides = Sides(pg_dsn, _emulator, tmp_path)
    for k, v in sides.env.items():
        monkeypatch.setenv(k, v)
    yield sides
    sides.close()


def test_external_id_mode_create_update_delete_on_either_side(s: Sides) -> None:
    s.run()  # sets capture up before the first change
    s.pg.execute(
        "INSERT INTO customers (code, name, tier, credit) VALUES ('C1', 'Acme', 'Gold', 12.5)"
    )
    s.run()
    acme = s.accounts()["C1"]
    assert (acme["Name"], acme["Tier__c"], acme["Credit__c"]) == ("Acme", "Gold", 12.5)
    s.settled()

    made = s.human.Account.create({"Name": "Hand Made", "Code__c": "H1", "Tier__c": "Silver"})
    s.run()
    [row] = [r for r in s.pg_rows("customers") if r["code"] == "H1"]
    assert (row["name"], row["tier"], row["credit"]) == ("Hand Made", "Silver", None)
    s.settled()

    s.pg.execute("UPDATE customers SET name = 'Acme Ltd', credit = 99.99 WHERE code = 'C1'")
    s.human.Account.update(made["id"], {"Tier__c": "Gold"})
    s.run()
    assert s.accounts()["C1"]["Name"] == "Acme Ltd"
    assert s.accounts()["C1"]["Credit__c"] == 99.99
    assert [r["tier"] for r in s.pg_rows("customers") if r["code"] == "H1"] == ["Gold"]
    s.settled()

    s.pg.execute("DELETE FROM customers WHERE code = 'C1'")
    s.human.Account.delete(made["id"])
    s.run()
    assert s.accounts() == {} and s.pg_rows("customers") == []
    s.settled()


def test_sor_mode_with_the_lookup_translated_both_ways(s: Sides) -> None:
    s.run()
    s.pg.execute("INSERT INTO customers (code, name) VALUES ('C1', 'Acme')")
    s.pg.execute(
        "INSERT INTO contacts (last_name, email, customer_id)"
        " SELECT 'Lovelace', 'ada@example.com', id FROM customers WHERE code = 'C1'"
    )
    s.run()
    account = s.accounts()["C1"]["Id"]
    [pg_contact] = s.pg_rows("contacts")
    [sf_contact] = s.contacts()
    assert sf_contact["App_Id__c"] == str(pg_contact["id"])  # the SOR key, in the ext id
    assert (sf_contact["LastName"], sf_contact["AccountId"]) == ("Lovelace", account)
    s.settled()

    # created in Salesforce: PostgreSQL makes the key, which is written back
    s.human.Contact.create({"LastName": "Hopper", "AccountId": account})
    s.run()
    hopper = next(r for r in s.pg_rows("contacts") if r["last_name"] == "Hopper")
    customer_id = s.pg_rows("customers")[0]["id"]
    assert hopper["customer_id"] == customer_id  # the lookup as the foreign key
    written_back = {c["LastName"]: c["App_Id__c"] for c in s.contacts()}
    assert written_back["Hopper"] == str(hopper["id"])
    s.settled()  # the write-back came back as an echo, not as a change

    s.human.Contact.update(sf_contact["Id"], {"Email": "ada@lovelace.example"})
    s.pg.execute("UPDATE contacts SET last_name = 'Hopper-Smith' WHERE id = %s", (hopper["id"],))
    s.run()
    assert [r["email"] for r in s.pg_rows("contacts") if r["last_name"] == "Lovelace"] == [
        "ada@lovelace.example"
    ]
    assert "Hopper-Smith" in {c["LastName"] for c in s.contacts()}
    s.settled()

    s.pg.execute("DELETE FROM contacts WHERE last_name = 'Lovelace'")
    hopper_sf = next(c["Id"] for c in s.contacts() if c["LastName"] == "Hopper-Smith")
    s.human.Contact.delete(hopper_sf)
    s.run()
    assert s.contacts() == [] and s.pg_rows("contacts") == []
    s.settled()


def test_a_record_salesforce_rejects_fails_alone_while_the_others_sync(s: Sides) -> None:
    s.run()
    s.pg.execute(
        "INSERT INTO customers (code, name, tier) VALUES"
        " ('OK1', 'One', 'Gold'), ('BAD', 'Bad tier', 'Bronze'), ('OK2', 'Two', NULL)"
    )
    report = s.run()["customers"]
    assert report.failed == 1 and report.side("crm").inserted == 2
    assert sorted(s.accounts()) == ["OK1", "OK2"]
    assert any("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" in m for _, m in report.events)
    # fixed at the source: the next change of the record takes it along
    s.pg.execute("UPDATE customers SET tier = 'Silver' WHERE code = 'BAD'")
    s.run()
    assert s.accounts()["BAD"]["Tier__c"] == "Silver"


def test_a_full_run_links_records_that_exist_on_both_sides(s: Sides) -> None:
    s.pg.execute("INSERT INTO customers (code, name, credit) VALUES ('F1', 'First', 1.5)")
    s.human.Account.create({"Name": "Second", "Code__c": "F2"})
    with Runtime(load_project(s.yaml)) as rt:
        run_sync(rt, SYNC, full=True)
    assert sorted(s.accounts()) == ["F1", "F2"]
    assert sorted(r["code"] for r in s.pg_rows("customers")) == ["F1", "F2"]
    assert s.accounts()["F1"]["Credit__c"] == 1.5
    s.settled()


def test_validate_checks_the_mapping_against_the_org(s: Sides) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run_validate(str(s.yaml), live=True, out=out, err=err) == 0, err.getvalue()
    assert "OK: 1 syncs, 2 entities" in out.getvalue()
    s.emu.bus.disable("Contact")  # polled instead (test_salesforce_polled.py): a warning
    err = io.StringIO()
    assert run_validate(str(s.yaml), live=True, out=out, err=err) == 0, err.getvalue()
    assert "warning: endpoints.crm: Change Data Capture is not enabled for Contact" in (
        err.getvalue()
    )
    s.emu.bus.enable("Contact")
    bad = s.yaml.read_text().replace("Code__c}}", "Nope__c}}")
    s.yaml.write_text(bad)
    assert run_validate(str(s.yaml), live=True, out=out, err=err) == 2
    assert "Nope__c" in err.getvalue()


def test_decimal_values_keep_their_scale_across(s: Sides) -> None:
    s.run()
    s.human.Account.create({"Name": "Money", "Code__c": "M1", "Credit__c": 1234.5})
    s.run()
    [row] = s.pg_rows("customers")
    assert row["credit"] == Decimal("1234.50")
    s.settled()


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("lock", {}),  # 400 UNABLE_TO_LOCK_ROW
        ("error", {"status": 503, "error_code": "SERVER_UNAVAILABLE"}),
    ],
)
def test_api_faults_are_retried_and_every_record_arrives_once(
    s: Sides, kind: str, options: dict[str, Any]
) -> None:
    # REQUEST_LIMIT_EXCEEDED is not retried but pauses the run: test_salesforce_budget.py
    s.run()
    s.pg.execute(
        "INSERT INTO customers (code, name) SELECT 'R' || g, 'n' || g FROM generate_series(1, 5) g"
    )
    s.emu.control.add_fault(kind, method="*", path="/composite/sobjects", times=2, **options)
    report = s.run()["customers"]
    assert report.side("crm").inserted == 5 and len(report.retries) >= 1
    assert sorted(s.accounts()) == [f"R{i}" for i in range(1, 6)]
    assert s.human.query("SELECT COUNT() FROM Account")["totalSize"] == 5
    s.settled()


def test_a_gap_event_leads_to_a_reconciliation_not_a_loss(s: Sides) -> None:
    s.run()
    # records the org changed without describing them (no change event), then the gap
    [quiet] = s.emu.control.seed("Account", [{"Name": "Quiet", "Code__c": "Q1"}], publish=False)
    s.run()
    assert s.pg_rows("customers") == []  # no event: capture alone cannot know
    user = s.emu.users["integration"].user_id
    s.emu.bus.inject("Account", "GAP_UPDATE", [quiet], user)
    s.run()  # PositionLost: capture goes on from now, the entity is reconciled in full
    assert [r["code"] for r in s.pg_rows("customers")] == ["Q1"]
    s.settled()


def test_deleting_an_account_in_salesforce_takes_its_contacts_along(s: Sides) -> None:
    """The org cascades the delete to the Account's Contacts (one DELETE event each):
    PostgreSQL loses the contact before the customer its foreign key points to."""
    s.run()
    s.pg.execute("INSERT INTO customers (code, name) VALUES ('C1', 'Acme')")
    s.pg.execute(
        "INSERT INTO contacts (last_name, customer_id) SELECT 'Lovelace', id FROM customers"
    )
    s.run()
    s.human.Account.delete(s.accounts()["C1"]["Id"])
    s.run()
    assert s.pg_rows("contacts") == [] and s.pg_rows("customers") == []
    assert s.contacts() == []
    s.settled()


def test_the_dagster_asset_materialises_a_salesforce_entity(s: Sides) -> None:
    """The same path through the Dagster definitions: the customers asset of the sync."""
    from dagster import AssetKey, materialize

    from syncswim_defs.factory import build_definitions

    defs = build_definitions(s.yaml, state_url=s.env["SFE_STATE_URL"])
    asset = defs.resolve_assets_def(AssetKey([SYNC, "customers"]))
    assert materialize([asset]).success  # sets capture up
    s.human.Account.create({"Name": "From the UI", "Code__c": "D1"})
    result = materialize([asset])
    assert result.success
    assert [r["code"] for r in s.pg_rows("customers")] == ["D1"]
    [mat] = result.asset_materializations_for_node(f"{SYNC}__customers")
    assert "D1" in str(mat.metadata)


MY_YAML = """
endpoints:
  shop: {kind: mysql, dsn: {env: SFE_MY_DSN}}
  crm:
    kind: salesforce
    instance_url: {env: SFE_SF_URL}
    token: {env: SFE_SF_TOKEN}
    ca_bundle: {env: SFE_SF_CA}
state: {env: SFE_STATE_URL}
syncs:
  shop_crm:
    between: [shop, crm]
    run: micro_batch  # run_sync's path; the streaming run: test_streaming_salesforce.py
    entities:
      customers:
        shop: {table: customers, key: [id]}
        crm: {object: Account, key: Id}
        mode: {external_id: {shop: code, crm: Code__c}}
        fields: {name: Name, credit: Credit__c}
"""


def test_mariadb_and_salesforce_with_the_same_yaml_shape(
    s: Sides, mysql_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pymysql

    monkeypatch.setenv("SFE_MY_DSN", mysql_dsn)
    rest, db = mysql_dsn.rsplit("/", 1)
    host, port = rest.split("@", 1)[1].split(":")
    my = pymysql.connect(host=host, port=int(port), user="root", database=db, autocommit=True)
    s.yaml.write_text(MY_YAML)

    def run() -> EntityReport:
        with Runtime(load_project(s.yaml)) as rt:
            [report] = run_sync(rt, "shop_crm")
            return report

    try:
        with my.cursor() as cur:
            cur.execute(
                "CREATE TABLE customers (id int AUTO_INCREMENT PRIMARY KEY,"
                " code varchar(20) UNIQUE, name varchar(255), credit decimal(10,2))"
            )
        run()  # run_sync, as a micro_batch run (the sync declares it)
        with my.cursor() as cur:
            cur.execute("INSERT INTO customers (code, name, credit) VALUES ('M1', 'Maria', 3.25)")
        s.human.Account.create({"Name": "Sales", "Code__c": "S1", "Credit__c": 7})
        run()
        assert s.accounts()["M1"]["Credit__c"] == 3.25
        with my.cursor() as cur:
            cur.execute("SELECT code, name, credit FROM customers ORDER BY code")
            assert cur.fetchall() == (
                ("M1", "Maria", Decimal("3.25")),
                ("S1", "Sales", Decimal("7.00")),
            )
        again = run()
        assert again.writes == 0
    finally:
        my.close()


def test_a_restart_of_the_org_resumes_from_the_stored_replay_id(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulator keeps its records and its change events on disk: after a restart the
    next run captures what happened before it, from the journal's replay id, once."""
    data = tmp_path / "org"
    first = start_emulator(schema=SCHEMA, data_dir=data)
    s = Sides(pg_dsn, first, tmp_path)
    for k, v in s.env.items():
        monkeypatch.setenv(k, v)
    try:
        s.run()
        s.pg.execute("INSERT INTO customers (code, name) VALUES ('C1', 'Before')")
        s.run()
        s.human.Account.create({"Name": "While we were away", "Code__c": "H1"})
        s.human.session.close()
    finally:
        first.stop()
    second = start_emulator(schema=SCHEMA, data_dir=data, port=first.port)
    try:
        s.human = second.client(user="human")
        s.run()
        assert sorted(r["code"] for r in s.pg_rows("customers")) == ["C1", "H1"]
        assert sorted(s.accounts()) == ["C1", "H1"]
        s.settled()
    finally:
        s.close()
        second.stop()
