"""One table in two syncs (a hub): a write made by one sync is a real change for the other,
which carries it on, and neither loops. Two MariaDB tables fed from one PostgreSQL table;
and PostgreSQL's table synced to MariaDB and to Salesforce (the emulator, through the
unmodified simple-salesforce client)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from syncswim_lib.config import load_project
from syncswim_lib.pipeline.run import run_entity
from syncswim_lib.pipeline.runtime import Runtime
from syncswim_lib.sandbox.salesforce.emulator import Emulator, start_emulator
from tests.connectors.salesforce.conftest import SCHEMA
from tests.e2e.harness import TwoDbs

pytestmark = pytest.mark.integration

HUB_YAML = """
endpoints:
  app: {kind: postgres, dsn: {env: E2E_PG_DSN}}
  shop: {kind: mysql, dsn: {env: E2E_MY_DSN}}
state: {env: E2E_STATE_URL}
syncs:
  app_shop:
    between: [app, shop]
    entities:
      customers:
        app: {table: public.customers, key: [id]}
        shop: {table: customers, key: [id]}
        mode: {system_of_record: app, external_id: {shop: app_id}}
        fields: {name: name, notes: notes}
  app_archive:
    between: [app, shop]
    entities:
      customers:
        app: {table: public.customers, key: [id]}
        shop: {table: archive, key: [id]}
        mode: {system_of_record: app, external_id: {shop: app_id}}
        fields: {name: name, notes: notes}
"""


def _run_all(dbs: TwoDbs) -> int:
    writes = 0
    with Runtime(load_project(dbs.yaml_path)) as rt:
        for sync in ("app_shop", "app_archive"):
            r = run_entity(rt, sync, "customers")
            writes += r.writes + r.write_backs
    return writes


def test_hub_carries_changes_on_without_loops(dbs: TwoDbs) -> None:
    dbs.my_exec(
        "CREATE TABLE archive (id int AUTO_INCREMENT PRIMARY KEY, app_id int UNIQUE,"
        " name varchar(100), notes text)"
    )
    dbs.yaml_path.write_text(HUB_YAML)
    _run_all(dbs)
    dbs.my_exec("INSERT INTO customers (name, notes) VALUES ('from shop', 'hop')")
    # first round: shop -> app (and the key write-back); second: app -> archive
    rounds = [_run_all(dbs) for _ in range(4)]
    assert rounds[-1] == 0 and rounds[-2] == 0, rounds  # settled: no loop
    app = dbs.pg_rows("customers")
    archive = dbs.my_rows("archive")
    assert [(r["name"], r["notes"]) for r in app] == [("from shop", "hop")]
    assert [(r["app_id"], r["name"]) for r in archive] == [(app[0]["id"], "from shop")]

    dbs.my_exec("UPDATE customers SET notes = 'second hop'")
    for _ in range(3):
        _run_all(dbs)
    assert dbs.my_rows("archive")[0]["notes"] == "second hop"
    assert dbs.pg_rows("customers")[0]["notes"] == "second hop"


SF_HUB_YAML = """
endpoints:
  app: {kind: postgres, dsn: {env: E2E_PG_DSN}}
  shop: {kind: mysql, dsn: {env: E2E_MY_DSN}}
  crm:
    kind: salesforce
    instance_url: {env: E2E_SF_URL}
    token: {env: E2E_SF_TOKEN}
    ca_bundle: {env: E2E_SF_CA}
state: {env: E2E_STATE_URL}
syncs:
  app_shop:
    between: [app, shop]
    run: micro_batch
    entities:
      customers:
        app: {table: public.customers, key: [id]}
        shop: {table: customers, key: [id]}
        mode: {system_of_record: app, external_id: {shop: app_id}}
        fields: {name: name, notes: notes, amount: amount}
  app_crm:
    between: [app, crm]
    entities:
      customers:
        app: {table: public.customers, key: [id]}
        crm: {object: Account, key: Id}
        mode: {system_of_record: app, external_id: {crm: App_Id__c}}
        fields: {name: Name, notes: Description, amount: Revenue__c}
"""
SF_SYNCS = ("app_shop", "app_crm")
MAX_ROUNDS = 6  # a change crosses the hub in two rounds at most; the rest is slack


@pytest.fixture(scope="module")
def _emulator() -> Iterator[Emulator]:
    emu = start_emulator(schema=SCHEMA)
    yield emu
    emu.stop()


class Hub:
    """PostgreSQL's customers in app_shop (to MariaDB) and app_crm (to the org's Accounts);
    `human` edits the org as a person in its UI would (no client origin)."""

    def __init__(self, dbs: TwoDbs, emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
        self.dbs, self.emu = dbs, emu
        monkeypatch.setenv("E2E_SF_URL", emu.url)
        monkeypatch.setenv("E2E_SF_TOKEN", emu.token("integration"))
        monkeypatch.setenv("E2E_SF_CA", str(emu.ca_path))
        dbs.yaml_path.write_text(SF_HUB_YAML)
        self.human = emu.client(user="human")

    def round(self) -> int:
        """One run of each sync, as its sensor would start them; the rows they wrote."""
        writes = 0
        with Runtime(load_project(self.dbs.yaml_path)) as rt:
            for sync in SF_SYNCS:
                r = run_entity(rt, sync, "customers")
                assert r.failed == 0, (sync, r.errors)
                writes += r.writes + r.write_backs
        return writes

    def settle(self) -> list[int]:
        """Rounds until one writes nothing (a loop never gets there), then one more, which
        must write nothing too: the hub is quiet."""
        rounds = [self.round()]
        while rounds[-1]:
            assert len(rounds) < MAX_ROUNDS, f"still writing after {len(rounds)} rounds: {rounds}"
            rounds.append(self.round())
        assert self.round() == 0, f"a round after a quiet one wrote: {rounds}"
        return rounds

    def everywhere(self) -> list[tuple[Any, ...]]:
        """(app id, name, notes, amount) of each customer on each system, which must agree."""
        app = [(r["id"], r["name"], r["notes"], r["amount"]) for r in self.dbs.pg_rows("customers")]
        shop = [
            (r["app_id"], r["name"], r["notes"], r["amount"]) for r in self.dbs.my_rows("customers")
        ]
        found = self.human.query_all(
            "SELECT App_Id__c, Name, Description, Revenue__c FROM Account"
        )["records"]
        crm = sorted(
            (
                int(r["App_Id__c"]),
                r["Name"],
                r["Description"],
                None if r["Revenue__c"] is None else Decimal(str(r["Revenue__c"])),
            )
            for r in found
        )
        assert app == shop == crm, {"app": app, "shop": shop, "crm": crm}
        return app

    def account_id(self, app_id: int) -> str:
        q = f"SELECT Id FROM Account WHERE App_Id__c = '{app_id}'"
        [rec] = self.human.query_all(q)["records"]
        return str(rec["Id"])

    def close(self) -> None:
        self.human.session.close()


@pytest.fixture
def hub(dbs: TwoDbs, _emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    _emulator.control.reset()
    h = Hub(dbs, _emulator, monkeypatch)
    yield h
    h.close()


def test_hub_with_salesforce_carries_each_systems_changes_to_the_other_two(hub: Hub) -> None:
    """A change made in PostgreSQL, in MariaDB and in Salesforce reaches the other two
    systems, through PostgreSQL for the two that are not paired, and then nothing more
    is written: each sync's write is a real change for the other, never an echo loop."""
    hub.round()  # sets capture up on the three systems before the first change
    pg = hub.dbs.pg

    pg.execute("INSERT INTO customers (name, notes, amount) VALUES ('Ada', 'from app', 12.50)")
    hub.settle()
    [(ada, *_)] = hub.everywhere()
    assert hub.everywhere() == [(ada, "Ada", "from app", Decimal("12.50"))]

    hub.dbs.my_exec("UPDATE customers SET notes = 'from shop' WHERE app_id = %s", (ada,))
    rounds = hub.settle()
    assert rounds[0] > 0, "the shop's change was not carried"
    assert hub.everywhere() == [(ada, "Ada", "from shop", Decimal("12.50"))]

    hub.human.Account.update(hub.account_id(ada), {"Name": "Ada L.", "Revenue__c": 99.99})
    hub.settle()
    assert hub.everywhere() == [(ada, "Ada L.", "from shop", Decimal("99.99"))]

    # a record born in the org: the app (the system of record) makes its key, which is
    # written back into App_Id__c, and the shop gets it from the app
    hub.human.Account.create({"Name": "Grace", "Description": "from crm"})
    hub.settle()
    rows = hub.everywhere()
    assert [r[1:] for r in rows] == [
        ("Ada L.", "from shop", Decimal("99.99")),
        ("Grace", "from crm", None),
    ]

    # deletes, one from each side of the hub
    grace = rows[1][0]
    hub.dbs.my_exec("DELETE FROM customers WHERE app_id = %s", (grace,))
    hub.human.Account.delete(hub.account_id(ada))
    hub.settle()
    assert hub.everywhere() == []
