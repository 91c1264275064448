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
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from simple_salesforce.api import Salesforce

from syncswim_lib.config import load_project
from syncswim_lib.config.cli_validate import run_validate
from syncswim_lib.errors import ConfigError
from syncswim_lib.pipeline.report import EntityReport
from syncswim_lib.pipeline.run import run_sync
from syncswim_lib.pipeline.runtime import Runtime
from syncswim_lib.sandbox.salesforce.emulator import Emulator, start_emulator

pytestmark = pytest.mark.integration

SYNC = "app_crm"
SYNCSWIM = str(Path(sys.executable).with_name("syncswim"))
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


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        (
            "{external_id: {app: sf_id, crm: Ext__c}, origin_id: {crm: App_Row_Id__c}}",
            "origin_id is only valid in system-of-record mode",
        ),
        (
            "{system_of_record: crm, external_id: {app: sf_id}, origin_id: {app: id}}",
            "origin_id names a field on the system of record crm",
        ),
        (
            "{system_of_record: app, external_id: {crm: App_Id__c}, origin_id: {app: sf_id}}",
            "postgres endpoint app replays its creates by their batch marker already",
        ),
        (
            "{system_of_record: crm, external_id: {app: sf_id}, origin_id: {crm: A__c, app: B}}",
            "expected one entry",
        ),
    ],
)
def test_the_config_refuses_an_origin_id_that_cannot_apply(
    tmp_path: Path, mode: str, reason: str
) -> None:
    path = tmp_path / "sync.yaml"
    text = YAML.replace("BULK_AT", "3").replace("ORIGIN_CONTACT", "")
    old = "{system_of_record: crm, external_id: {app: sf_id}ORIGIN_ACCOUNT}"
    path.write_text(text.replace(old, mode))
    with pytest.raises(ConfigError) as caught:
        load_project(path)
    assert "syncs.app_crm.entities.customers.mode" in str(caught.value)
    assert reason in str(caught.value), caught.value


def test_the_config_refuses_origin_id_for_a_key_of_two_columns(tmp_path: Path) -> None:
    path = tmp_path / "sync.yaml"
    text = YAML.replace("BULK_AT", "3").replace("ORIGIN_CONTACT", "")
    text = text.replace("ORIGIN_ACCOUNT", ", origin_id: {crm: App_Row_Id__c}")
    path.write_text(
        text.replace(
            "{table: public.customers, key: [id]}", "{table: public.customers, key: [id, name]}"
        )
    )
    with pytest.raises(ConfigError, match=r"origin_id stores app's key in one field, but app"):
        load_project(path)


def test_a_process_killed_after_the_org_committed_replays_its_creates_once(s: Sides) -> None:
    """The other way an answer is lost: the process dies after the org committed the
    creates and before the state recorded them; the next run replays the saved plan."""

    s.run()
    s.pg.execute("INSERT INTO customers (name) VALUES ('Initech'), ('Umbrella')")
    env = {**os.environ, "SYNCSWIM_FAILPOINT": "before_write_back"}
    killed = subprocess.run(
        [SYNCSWIM, "sync", str(s.yaml), "--entity", "customers"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(s.sf_rows("SELECT Id FROM Account")) == 2  # created, not recorded
    assert [r["sf_id"] for r in s.pg_rows("customers")] == [None, None]
    assert s.run()["customers"].recovered_batches == 1  # the saved plan, written again
    assert len(_linked_once(s, "customers", "Account")) == 2
