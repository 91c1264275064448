"""Salesforce the system of record: records born in PostgreSQL are created in the org, and
a create whose answer is lost must not make a second record when it is sent again.

The emulator's `drop_after` fault lets the org commit the call and then closes the
connection without an answer, which is how a real timeout after the commit looks to the
client (simple-salesforce raises a ConnectionError). With `origin_id` the create carries
the row's key in an External ID field and goes as an upsert on it, so the retry finds
the record the lost call made; without it, live `validate` warns.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
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

pytestmark = pytest.mark.integration

SYNC = "app_crm"
BULK_AT = 3  # bulk_write_threshold: more creates than this go as one Bulk API 2.0 job


def _ext(name: str, length: int = 18, unique: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "type": "string",
        "length": length,
        "externalId": True,
        "unique": unique,
    }


SCHEMA: list[dict[str, Any]] = [
    {
        "name": "Account",
        "fields": [
            _ext("App_Row_Id__c"),
            _ext("Short_Id__c", length=2),  # too narrow for an int key
            _ext("Shared_Id__c", unique=False),  # an external id the org does not keep unique
            {"name": "Plain__c", "type": "string", "length": 18, "unique": True},
        ],
    },
    {"name": "Contact", "fields": [_ext("App_Row_Id__c")]},
]

DDL = """
CREATE TABLE customers (
    id serial PRIMARY KEY, name varchar(255) NOT NULL, sf_id varchar(18) UNIQUE);
CREATE TABLE contacts (
    id serial PRIMARY KEY, last_name varchar(80) NOT NULL, sf_id varchar(18) UNIQUE,
    customer_id int REFERENCES customers(id));
"""

YAML = """
endpoints:
  app: {kind: postgres, dsn: {env: SFO_PG_DSN}}
  crm:
    kind: salesforce
    instance_url: {env: SFO_SF_URL}
    token: {env: SFO_SF_TOKEN}
    ca_bundle: {env: SFO_SF_CA}
    bulk_write_threshold: BULK_AT
state: {env: SFO_STATE_URL}
syncs:
  app_crm:
    between: [app, crm]
    run: micro_batch
    retry: {attempts: 6, base_seconds: 0.02, max_seconds: 0.1}
    entities:
      customers:
        app: {table: public.customers, key: [id]}
        crm: {object: Account, key: Id}
        mode: {system_of_record: crm, external_id: {app: sf_id}ORIGIN_ACCOUNT}
        fields: {name: Name}
      contacts:
        app: {table: public.contacts, key: [id]}
        crm: {object: Contact, key: Id}
        mode: {system_of_record: crm, external_id: {app: sf_id}ORIGIN_CONTACT}
        fields: {last_name: LastName, customer_id: AccountId}
        references: {customer_id: customers}
"""


@pytest.fixture(scope="module")
def _emulator() -> Iterator[Emulator]:
    emu = start_emulator(schema=SCHEMA)
    yield emu
    emu.stop()


class Sides:
    def __init__(self, pg_dsn: str, emu: Emulator, workdir: Path) -> None:
        self.emu = emu
        self.yaml = workdir / "sync.yaml"
        self.declare("App_Row_Id__c", "App_Row_Id__c")
        self.env = {
            "SFO_PG_DSN": pg_dsn,
            "SFO_SF_URL": emu.url,
            "SFO_SF_TOKEN": emu.token("integration"),
            "SFO_SF_CA": str(emu.ca_path),
            "SFO_STATE_URL": f"sqlite:///{workdir / 'state.db'}",
        }
        self.pg = psycopg.connect(pg_dsn, autocommit=True, row_factory=dict_row)
        self.pg.execute(DDL)
        self.human: Salesforce = emu.client(user="human")

    def declare(self, account: str | None, contact: str | None) -> None:
        """The YAML with `origin_id` on Account and Contact (None: not declared)."""

        def origin(field: str | None) -> str:
            return f", origin_id: {{crm: {field}}}" if field else ""

        text = YAML.replace("BULK_AT", str(BULK_AT))
        text = text.replace("ORIGIN_ACCOUNT", origin(account))
        self.yaml.write_text(text.replace("ORIGIN_CONTACT", origin(contact)))

    def run(self) -> dict[str, EntityReport]:
        with Runtime(load_project(self.yaml)) as rt:
            return {r.entity: r for r in run_sync(rt, SYNC)}

    def validate(self) -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        code = run_validate(str(self.yaml), live=True, out=out, err=err)
        return code, err.getvalue()

    def pg_rows(self, table: str) -> list[dict[str, Any]]:
        return list(self.pg.execute(f"SELECT * FROM {table} ORDER BY id").fetchall())

    def sf_rows(self, soql: str) -> list[dict[str, Any]]:
        return list(self.human.query_all(soql)["records"])

    def lose_answers(self, method: str, path: str) -> None:
        """The next such call is committed by the org and its answer never arrives."""
        self.emu.control.add_fault("drop_after", method=method, path=path, times=1)

    def dropped(self) -> list[int]:
        """How many answers each fault dropped, in the order they were added."""
        return [f["fired"] for f in self.emu.control.state()["faults"]]

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


def _linked_once(s: Sides, table: str, sobject: str) -> dict[int, dict[str, Any]]:
    """Each row's one record in the org (by its origin id), with the Id written back."""
    rows = s.pg_rows(table)
    records = s.sf_rows(f"SELECT Id, App_Row_Id__c FROM {sobject}")
    assert len(records) == len(rows), records
    by_origin = {r["App_Row_Id__c"]: r for r in records}
    assert sorted(by_origin) == sorted(str(r["id"]) for r in rows)
    for row in rows:
        assert row["sf_id"] == by_origin[str(row["id"])]["Id"], row
    return {row["id"]: by_origin[str(row["id"])] for row in rows}


def test_a_create_whose_answer_is_lost_is_matched_by_its_origin_id(s: Sides) -> None:
    s.run()
    s.pg.execute("INSERT INTO customers (name) VALUES ('Acme'), ('Globex')")
    # the parent is owned by Salesforce too: the child born in the database waits for its
    # link, then goes with the parent's Id in AccountId
    s.pg.execute(
        "INSERT INTO contacts (last_name, customer_id) SELECT 'Lovelace', id FROM customers"
        " WHERE name = 'Acme'"
    )
    s.lose_answers("PATCH", r"/composite/sobjects/Account/App_Row_Id__c$")
    s.lose_answers("PATCH", r"/composite/sobjects/Contact/App_Row_Id__c$")
    reports = s.run()
    assert s.dropped() == [1, 1]  # both creates were committed without an answer
    assert reports["customers"].retries
    accounts = _linked_once(s, "customers", "Account")
    [contact] = _linked_once(s, "contacts", "Contact").values()
    [pg_contact] = s.pg_rows("contacts")
    got = s.sf_rows(f"SELECT AccountId FROM Contact WHERE Id = '{contact['Id']}'")
    assert got[0]["AccountId"] == accounts[pg_contact["customer_id"]]["Id"]
    for report in s.run().values():  # settled: nothing written again on either side
        for side in ("app", "crm"):
            counts = report.side(side)
            assert (counts.inserted, counts.updated, counts.deleted) == (0, 0, 0)


def test_a_bulk_job_whose_results_are_lost_is_matched_by_its_origin_id(s: Sides) -> None:
    s.run()
    s.pg.execute(
        "INSERT INTO customers (name) SELECT 'c' || g FROM generate_series(1, %s) g",
        (BULK_AT + 2,),
    )
    # the job ran and committed; the answer with its created Ids never comes back
    s.lose_answers("GET", r"/jobs/ingest/[^/]+/successfulResults")
    report = s.run()["customers"]
    assert s.dropped() == [1] and report.retries
    jobs = s.emu.control.requests(r"/jobs/ingest$", "POST")
    assert len(jobs) == 2  # the job, and the one its retry sent: no collection calls
    assert not s.emu.control.requests(r"/composite/sobjects", "POST")
    assert len(_linked_once(s, "customers", "Account")) == BULK_AT + 2


def test_without_origin_id_validate_warns_and_a_lost_answer_duplicates(s: Sides) -> None:
    s.declare(None, "App_Row_Id__c")
    code, err = s.validate()
    assert code == 0, err
    [warning] = [line for line in err.splitlines() if "origin_id" in line]
    assert warning.startswith("warning: syncs.app_crm.entities.customers.mode: ")
    assert "origin_id: {crm: <field>}" in warning and "key id" in warning
    # what the warning is about: the plain create is sent again after its answer is lost
    s.run()
    s.pg.execute("INSERT INTO customers (name) VALUES ('Twice')")
    s.lose_answers("POST", r"/composite/sobjects$")
    s.run()
    assert s.dropped() == [1]
    assert [r["Name"] for r in s.sf_rows("SELECT Name FROM Account")] == ["Twice", "Twice"]


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("Nope__c", "column 'Nope__c' does not exist in crm Account"),
        ("Plain__c", "field Plain__c of Account is not a unique External ID field"),
        ("Shared_Id__c", "field Shared_Id__c of Account is not a unique External ID field"),
        ("Short_Id__c", "field Short_Id__c of Account cannot store the keys of app"),
    ],
)
def test_validate_refuses_an_origin_id_field_that_cannot_match(
    s: Sides, field: str, reason: str
) -> None:
    s.declare(field, "App_Row_Id__c")
    code, err = s.validate()
    assert code == 2
    assert "syncs.app_crm.entities.customers.mode.origin_id.crm" in err and reason in err, err


def test_validate_passes_with_origin_id_declared(s: Sides) -> None:
    code, err = s.validate()
    assert code == 0 and "origin_id" not in err, err
