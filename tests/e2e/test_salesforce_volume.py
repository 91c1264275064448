"""API calls of a large PostgreSQL → Salesforce sync, counted from the emulator's request
log (every call under /services/data, the calls an org charges to its daily allowance):
an initial (`full`) sync of customers and their contacts (the lookup translated, parents
first) through Bulk API 2.0 ingest jobs, then a run that carries changes to many of them.

The issue's bounds: at most 1 call per 1,000 records for the load, at most 6 per 1,000
changed records for incremental writes. Each Bulk API 2.0 job costs a handful of calls
whatever its size (up to 10,000 records a job), and the load's reads do not grow with
the records either, so the bounds are a matter of scale: the suite runs 2,000 + 2,000
records and checks the load's calls kind by kind (at most 20 in all, what 20,000 records
may cost), and that every write went through one job per object and operation (no
collection calls) at a bounded cost per job; `bench/salesforce_calls.py` runs the same
scenario with 10,000 + 10,000 and prints the calls per 1,000 records, writes and reads
apart and by kind (docs/salesforce.md has the figures).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from syncswim_lib.config import load_project
from syncswim_lib.pipeline.run import run_entity, run_sync
from syncswim_lib.pipeline.runtime import Runtime
from syncswim_lib.sandbox.salesforce.emulator import Emulator, start_emulator
from tests.connectors.salesforce.conftest import SCHEMA

pytestmark = pytest.mark.integration

SYNC = "app_crm"
DDL = """
CREATE TABLE customers (
    id serial PRIMARY KEY, code varchar(20) UNIQUE, name varchar(255), credit numeric(10,2));
CREATE TABLE contacts (
    id serial PRIMARY KEY, last_name varchar(80) NOT NULL, email varchar(80),
    customer_id int REFERENCES customers(id));
"""
YAML = """
endpoints:
  app: {kind: postgres, dsn: {env: SFV_PG_DSN}}
  crm:
    kind: salesforce
    instance_url: {env: SFV_SF_URL}
    token: {env: SFV_SF_TOKEN}
    ca_bundle: {env: SFV_SF_CA}
    bulk_write_threshold: 500
state: {env: SFV_STATE_URL}
syncs:
  app_crm:
    between: [app, crm]
    run: micro_batch
    batch_size: BATCH
    entities:
      customers:
        app: {table: public.customers, key: [id]}
        crm: {object: Account, key: Id}
        mode: {external_id: {app: code, crm: Code__c}}
        fields: {name: Name, credit: Credit__c}
      contacts:
        app: {table: public.contacts, key: [id]}
        crm: {object: Contact, key: Id}
        mode: {system_of_record: app, external_id: {crm: App_Id__c}}
        fields: {last_name: LastName, email: Email, customer_id: AccountId}
        references: {customer_id: customers}
"""


@dataclass(frozen=True)
class Figures:
    records: int  # customers + contacts
    load_calls: int
    load_writes: list[str]  # "METHOD path" of the load's write calls
    load_s: float
    changed: int
    change_calls: int
    change_writes: list[str]
    change_s: float
    load_kinds: dict[str, int]  # calls by kind (`kind_of`)
    change_kinds: dict[str, int]

    @property
    def load_per_1000(self) -> float:
        return self.load_calls * 1000 / self.records

    @property
    def change_per_1000(self) -> float:
        return self.change_calls * 1000 / self.changed


def _api_calls(emu: Emulator) -> list[dict[str, Any]]:
    return [r for r in emu.control.requests() if r["path"].startswith("/services/data/")]


def _is_write(call: dict[str, Any]) -> bool:
    path = call["path"].split("/v62.0/")[-1]
    if path.startswith("jobs/ingest"):
        return True
    # a POST to composite/sobjects/<Object> is a retrieve (records by Id): a read
    retrieve = call["method"] == "POST" and path.count("/") == 2
    return path.startswith("composite/sobjects") and not retrieve


def kind_of(call: dict[str, Any]) -> str:
    """What an API call was for: `describe`, `count`, `snapshot` (a SOQL read of a whole
    object, page after page), `lookup` (SOQL by a list of values, or a Bulk API 2.0 query
    job), `retrieve` (records by Id), `job create|upload|close|poll|results` (Bulk API 2.0
    ingest), `collections` (sObject Collections writes), else the path."""
    path = call["path"].split("/v62.0/")[-1]
    q = str((call.get("query") or {}).get("q") or "")
    if path.endswith("/describe/") or path.endswith("/describe"):
        return "describe"
    if path.rstrip("/") == "query" or path.startswith("query/"):
        if "COUNT()" in q:
            return "count"
        return "lookup" if " IN (" in q else "snapshot"
    if path.startswith("jobs/query"):
        return "lookup"  # a snapshot's job reads by SOQL without IN; none here
    if path.startswith("jobs/ingest"):
        tail = path.removeprefix("jobs/ingest").strip("/")
        if not tail:
            return "job create"
        if tail.endswith("/batches"):
            return "job upload"
        if tail.endswith("Results") or tail.endswith("unprocessedrecords"):
            return "job results"
        return "job close" if call["method"] == "PATCH" else "job poll"
    if path.startswith("composite/sobjects"):
        return "collections" if _is_write(call) else "retrieve"
    return path


def _kinds(calls: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in calls:
        out[kind_of(c)] = out.get(kind_of(c), 0) + 1
    return dict(sorted(out.items()))


def _writes(calls: list[dict[str, Any]]) -> list[str]:
    return [f"{c['method']} {c['path'].split('/v62.0/')[-1]}" for c in calls if _is_write(c)]


def environment(pg_dsn: str, emu: Emulator, workdir: Path) -> dict[str, str]:
    """The variables the declaration reads (set them before `measure`)."""
    return {
        "SFV_PG_DSN": pg_dsn,
        "SFV_SF_URL": emu.url,
        "SFV_SF_TOKEN": emu.token("integration"),
        "SFV_SF_CA": str(emu.ca_path),
        "SFV_STATE_URL": f"sqlite:///{workdir / 'state.db'}",
    }


def measure(pg_dsn: str, emu: Emulator, workdir: Path, per_table: int, batch: int) -> Figures:
    """`per_table` customers and as many contacts in PostgreSQL, synced to an empty org
    by a full run; then half the customers and half the contacts changed and a run."""
    path = workdir / "sync.yaml"
    path.write_text(YAML.replace("BATCH", str(batch)))
    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        pg.execute(DDL)
        pg.execute(
            "INSERT INTO customers (code, name, credit) SELECT 'C' || i, 'customer ' || i,"
            " i / 100.0 FROM generate_series(1, %s) i",
            (per_table,),
        )
        pg.execute(
            "INSERT INTO contacts (last_name, email, customer_id) SELECT 'person ' || i,"
            " 'p' || i || '@example.com', i FROM generate_series(1, %s) i",
            (per_table,),
        )
        before = len(_api_calls(emu))
        started = time.monotonic()
        with Runtime(load_project(path)) as rt:
            reports = run_sync(rt, SYNC, full=True)
        load_s = time.monotonic() - started
        load = _api_calls(emu)[before:]
        created = {r.entity: r.side("crm").inserted for r in reports}
        assert created == {"customers": per_table, "contacts": per_table}, created

        half = per_table // 2
        pg.execute("UPDATE customers SET name = name || ' (renamed)' WHERE id <= %s", (half,))
        pg.execute("UPDATE contacts SET email = 'new' || email WHERE id <= %s", (half,))
        before = len(_api_calls(emu))
        started = time.monotonic()
        with Runtime(load_project(path)) as rt:
            reports = run_sync(rt, SYNC)
        change_s = time.monotonic() - started
        change = _api_calls(emu)[before:]
        updated = {r.entity: r.side("crm").updated for r in reports}
        assert updated == {"customers": half, "contacts": half}, updated
    return Figures(
        2 * per_table,
        len(load),
        _writes(load),
        load_s,
        2 * half,
        len(change),
        _writes(change),
        change_s,
        _kinds(load),
        _kinds(change),
    )


@pytest.fixture(scope="module")
def _emulator() -> Iterator[Emulator]:
    emu = start_emulator(schema=SCHEMA)
    yield emu
    emu.stop()


def test_a_large_sync_stays_within_the_call_budget(
    pg_dsn: str, _emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _emulator.control.reset()
    for key, value in environment(pg_dsn, _emulator, tmp_path).items():
        monkeypatch.setenv(key, value)
    got = measure(pg_dsn, _emulator, tmp_path, per_table=2000, batch=2000)
    # the org: every Account and Contact there once, each Contact under its Account
    sf = _emulator.client()
    contacts = sf.query_all("SELECT App_Id__c, Account.Code__c FROM Contact")["records"]
    assert len(contacts) == 2000
    assert all(f"C{c['App_Id__c']}" == c["Account"]["Code__c"] for c in contacts)
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 2000
    # the load, per kind: each object described once and read once (an empty org's
    # first SOQL page says so: no count), no lookup of a Contact by App_Id__c nor of an
    # Account by Id (the snapshot said no Contact exists, the Account job's results gave
    # the Ids), one ingest job per object (up to 10,000 records a job), each create,
    # upload, close, a poll or a few, its successful-results file. None of these grows
    # with the records up to 10,000 per object, so 10,000 + 10,000 cost the same (the
    # bench): at most 20 calls, 1 per 1,000 records
    k = got.load_kinds
    assert k.get("describe") == 2 and k.get("snapshot") == 2, k
    assert not {"count", "lookup", "retrieve", "collections"} & set(k), k
    for step in ("job create", "job upload", "job close", "job results"):
        assert k.get(step) == 2, k
    assert 2 <= k.get("job poll", 0) <= 6, k
    assert got.load_calls <= 20, k
    # every write in jobs: one per object for the load (upserts), one per object for the
    # changes (updates); each job create, upload, close, a few polls, its result file
    for writes in (got.load_writes, got.change_writes):
        assert not [w for w in writes if "/composite/" in w], writes
        assert sum(w == "POST jobs/ingest" for w in writes) == 2, writes
        assert len(writes) <= 2 * 9, writes
    # every lookup by Id a retrieve of up to 2,000 Ids (no SOQL `Id IN` list, about 430
    # a call): the changes' reads are 2 describes, one SOQL lookup by Code__c and 5
    # retrieves (linked records, parents, compare-and-set), where SOQL took 21
    soql = [str((c.get("query") or {}).get("q")) for c in _api_calls(_emulator)]
    assert not [q for q in soql if " Id IN (" in q], [q[:80] for q in soql if " Id IN (" in q]
    assert got.change_calls - len(got.change_writes) <= 10, got


def _lookups(calls: list[dict[str, Any]]) -> tuple[list[str], int]:
    """(the SOQL of the lookups by App_Id__c, the retrieves of Accounts by Id) in `calls`."""
    soql = [str((c.get("query") or {}).get("q")) for c in calls]
    by_app_id = [q for q in soql if "App_Id__c IN (" in q]
    retrieves = sum(
        c["method"] == "POST" and c["path"].endswith("/composite/sobjects/Account") for c in calls
    )
    return by_app_id, retrieves


def test_a_full_run_creates_children_of_parents_it_saw_without_lookups(
    pg_dsn: str, _emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Contact whose Account is linked and was seen in the org by this run (its snapshot
    of Accounts, or the Account job's results) is created in bulk, its lookup translated
    through the link, with no lookup of the Account nor of the Contact; one whose
    customer is not linked waits, and one whose linked Account is gone from the org goes
    through the planner and is not created under the deleted Account."""
    _emulator.control.reset()
    for key, value in environment(pg_dsn, _emulator, tmp_path).items():
        monkeypatch.setenv(key, value)
    path = tmp_path / "sync.yaml"
    path.write_text(YAML.replace("BATCH", "100"))
    sf = _emulator.client()

    def org_contacts() -> dict[str, str | None]:
        rows = sf.query_all("SELECT App_Id__c, AccountId, Account.Code__c FROM Contact")
        return {r["App_Id__c"]: (r.get("Account") or {}).get("Code__c") for r in rows["records"]}

    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        pg.execute(DDL)
        pg.execute("ALTER TABLE customers ALTER code TYPE varchar(40)")
        pg.execute(
            "INSERT INTO customers (code, name) SELECT 'C' || i, 'customer ' || i"
            " FROM generate_series(1, 4) i"
        )
        # C5's code is longer than Code__c takes: the customer is refused, not linked
        pg.execute("INSERT INTO customers (code, name) VALUES (%s, 'too long')", ("C" * 30,))
        pg.execute(
            "INSERT INTO contacts (last_name, customer_id) SELECT 'person ' || i,"
            " CASE WHEN i = 6 THEN 1 ELSE i END FROM generate_series(1, 6) i"
        )
        # the customers first (the Account of C2 deleted by a person after), then all:
        # C1, C3 and C4 are linked and in the org's snapshot of Accounts
        with Runtime(load_project(path)) as rt:
            run_entity(rt, SYNC, "customers", full=True)
        gone = sf.query("SELECT Id FROM Account WHERE Code__c = 'C2'")["records"][0]["Id"]
        sf.Account.delete(gone)
        before = len(_api_calls(_emulator))
        with Runtime(load_project(path)) as rt:
            reports = {r.entity: r for r in run_sync(rt, SYNC, full=True)}
        calls = _api_calls(_emulator)[before:]
        contacts = org_contacts()
        assert {k: contacts.get(k) for k in "1346"} == {"1": "C1", "3": "C3", "4": "C4", "6": "C1"}
        assert reports["contacts"].created_in_bulk == 4
        assert "5" not in contacts and reports["contacts"].waiting_parent >= 1  # under C5
        # person 2: not created under the deleted Account (the planner's, who looks)
        assert gone not in str(sf.query_all("SELECT AccountId FROM Contact")["records"])
        soql = [str((c.get("query") or {}).get("q")) for c in calls]
        by_app_id = [q for q in soql if "App_Id__c IN (" in q]
        assert all(f"'{i}'" not in q for q in by_app_id for i in "1346"), by_app_id
        # (the retrieves of Accounts by Id left are the planner's: C2's delete, person 2's
        # parent)
        retrieved = [c for c in calls if c["method"] == "POST" and c["path"].endswith("/Account")]
        assert len(retrieved) <= 2, retrieved
