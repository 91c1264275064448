"""The reference property test (test_relation_properties.py) with a Salesforce org as one
side: the same state machine and model (relation_model.py), with the real
SalesforceConnector against the emulator (the unmodified simple-salesforce client, CometD
for the change events) over `run_entities`, a memory database as the other side.

`parents` are Accounts and `children` Contacts, the child's `parent_id` the Contact's
`AccountId` lookup (`references: {parent_id: parents}`): translated through the parents'
links, parents first. Three scenarios: system of record the database (its key in
`App_Id__c`); external-id mode (`code` ⇄ `Code__c`); system of record the org (the org
on side a, its Ids written back into the database's `app_id`, the database's foreign key
holding its own keys). On the org's side a parent is
deleted the way the org does it: deleting an Account deletes its Contacts in the same
transaction (a DELETE event each), or a person deletes the Contacts first; the sync must
take the cascade without a failed or waiting record. The self-reference scenarios are
left out: an Account's `ParentId` is not a cascading lookup (the org clears it), which
is not the model's foreign key.

After every sync the checks of the memory test: every reference holds an existing
record's key, the links pair every record, a child's two references are one parent
link's keys, nothing is left waiting or failed, both sides hold the model's records, the
first run did everything and one more run does nothing.

Each example resets the org: SYNCSWIM_SF_PROPERTY_EXAMPLES (default 30 per scenario) and
SYNCSWIM_SF_PROPERTY_STEPS (default 20) set the effort, as for
test_merge_properties_salesforce.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, run_state_machine_as_test

from syncswim_lib.connectors.base import Connector
from syncswim_lib.connectors.memory import MemoryDatabase
from syncswim_lib.connectors.salesforce.connector import SalesforceConnector
from syncswim_lib.sandbox.salesforce.emulator import Emulator, start_emulator
from syncswim_lib.values import ColumnInfo, TableInfo
from tests.pipeline.relation_model import CHILDREN, PARENTS, Kind, Letter, Record, other
from tests.pipeline.sides import Field, ObjectMap, SalesforceSide, Side, int_key
from tests.pipeline.test_relation_properties import (
    ENDPOINTS,
    Fk,
    RelationMachine,
    Scenario,
)

pytestmark = [pytest.mark.integration, pytest.mark.salesforce, pytest.mark.slow]

EXAMPLES = int(os.environ.get("SYNCSWIM_SF_PROPERTY_EXAMPLES", "30"))
STEPS = int(os.environ.get("SYNCSWIM_SF_PROPERTY_STEPS", "20"))

IDENTITY = [
    {"name": "Code__c", "type": "string", "length": 20, "externalId": True, "unique": True},
    {"name": "App_Id__c", "type": "string", "length": 20, "externalId": True, "unique": True},
]
# the fields an admin gives the org for this sync
SCHEMA: list[dict[str, Any]] = [
    {"name": "Account", "fields": IDENTITY},
    {"name": "Contact", "fields": IDENTITY},
]
OBJECTS = {PARENTS.name: "Account", CHILDREN.name: "Contact"}
# the machine's columns as the objects' fields (Name and LastName are required: the
# machine's names and labels are never empty)
FIELDS: dict[str, dict[str, Field]] = {
    PARENTS.name: {"name": Field("Name")},
    CHILDREN.name: {"label": Field("LastName"), "parent_id": Field("AccountId")},
}
IDENTITY_FIELDS = {"code": Field("Code__c"), "app_id": int_key("App_Id__c")}


@dataclass(frozen=True)
class SalesforceScenario(Scenario):
    salesforce: Letter = "b"  # the org's side (side a is the system of record)

    def table(self, kind: Kind, letter: Letter) -> str:
        return OBJECTS[kind.name] if letter == self.salesforce else super().table(kind, letter)

    def info(self, kind: Kind, letter: Letter) -> TableInfo:
        info = super().info(kind, letter)
        if letter == "a" or self.salesforce == "b":
            return info
        # the org's Id, written back into the database's app_id: text
        cols = tuple(SF_KEY if c.name == "app_id" else c for c in info.columns)
        return replace(info, columns=cols)

    def endpoint(self, letter: Letter) -> str:
        if letter != self.salesforce:
            return super().endpoint(letter)
        # nothing is read from these: the machine hands the runtime its connector
        return (
            "{kind: salesforce, instance_url: {env: RELATION_TEST_SF_URL},"
            " token: {env: RELATION_TEST_SF_TOKEN}}"
        )

    def side(self, kind: Kind, letter: Letter) -> str:
        if letter != self.salesforce:
            return super().side(kind, letter)
        return f"{{object: {OBJECTS[kind.name]}, key: Id}}"

    def column(self, kind: Kind, letter: Letter, column: str) -> str:
        if letter != self.salesforce:
            return column
        found = FIELDS[kind.name].get(column) or IDENTITY_FIELDS[column]
        return found.name


SF_KEY = ColumnInfo("app_id", "text", "varchar(18)", max_length=18)
SCENARIOS = [
    SalesforceScenario("parent_child-system_of_record", "system_of_record", (PARENTS, CHILDREN)),
    SalesforceScenario("parent_child-external_id", "external_id", (PARENTS, CHILDREN)),
    SalesforceScenario(
        "parent_child-salesforce_is_sor", "system_of_record", (PARENTS, CHILDREN), "a"
    ),
]


class SalesforceRelationMachine(RelationMachine):
    scenario: SalesforceScenario
    emu: ClassVar[Emulator]

    @property
    def sf(self) -> Letter:
        return self.scenario.salesforce

    def open_sides(self) -> tuple[dict[Letter, Side], dict[str, Connector]]:
        self.emu.control.reset()  # an empty org for each example
        s, sf = self.scenario, self.sf
        db = MemoryDatabase(ENDPOINTS[other(sf)], clock=self.clock)
        for kind in s.kinds:
            db.create_table(s.info(kind, other(sf)))
        tables = {
            OBJECTS[k.name]: ObjectMap(OBJECTS[k.name], {**FIELDS[k.name], **IDENTITY_FIELDS})
            for k in s.kinds
        }
        self.org = SalesforceSide(self.emu, self.clock, tables)
        settings = {
            "instance_url": self.emu.url,
            "ca_bundle": str(self.emu.ca_path),
            "token": self.emu.token("integration"),
        }
        conn = SalesforceConnector.from_settings(ENDPOINTS[sf], settings)
        return {other(sf): db, sf: self.org}, {ENDPOINTS[sf]: conn}

    @initialize(
        fk_a=st.sampled_from(["cascade", "children_first"]),
        fk_b=st.sampled_from(["cascade", "children_first"]),
    )
    def foreign_keys(self, fk_a: Fk, fk_b: Fk) -> None:
        """How a parent goes on each side: on the org, the Account alone (its Contacts
        go with it) or a person deleting the Contacts first."""
        self.fk = {"a": fk_a, "b": fk_b}

    def key_column(self, letter: Letter) -> str:
        return "Id" if letter == self.sf else "id"

    def delete_rows(self, letter: Letter, gone: list[Record], how: Fk) -> None:
        if letter != self.sf:
            return super().delete_rows(letter, gone, how)
        rec = gone[-1]
        for r in gone if how == "children_first" else [rec]:  # the org cascades the rest
            assert self.org.delete(self.table(r.kind, letter), self.key_of(r, letter)) is not None
        left = {r["id"] for k in self.scenario.kinds for r in self.org.rows(self.table(k, letter))}
        stayed = [r.rid for r in gone if self.key_of(r, letter) in left]
        assert not stayed, f"records {stayed} are still in the org after the delete"

    def teardown(self) -> None:
        super().teardown()
        self.org.close()


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emu = start_emulator(schema=SCHEMA)
    yield emu
    emu.stop()


def machine_for(scenario: SalesforceScenario, emu: Emulator) -> type[SalesforceRelationMachine]:
    return type(
        f"SalesforceRelations_{scenario.name}",
        (SalesforceRelationMachine,),
        {"scenario": scenario, "emu": emu},
    )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_relation_properties_with_salesforce(
    scenario: SalesforceScenario, emulator: Emulator
) -> None:
    run_state_machine_as_test(
        machine_for(scenario, emulator),
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            derandomize="SYNCSWIM_SF_PROPERTY_EXAMPLES" not in os.environ,
            report_multiple_bugs=False,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        ),
    )


def test_an_account_deleted_in_the_org_takes_its_contacts_on_both_sides(
    emulator: Emulator,
) -> None:
    """The org's cascade, through the machine: an Account with two Contacts synced, then
    deleted in the org alone; both Contacts go in the same transaction there, and the
    database loses them before their parent, nothing failed or waiting."""
    m = machine_for(SCENARIOS[0], emulator)()
    try:
        p = m.do_insert(PARENTS, "a", {"data": "ann"})
        m.do_insert(CHILDREN, "a", {"data": "bob", "ref": p.rid})
        m.do_insert(CHILDREN, "a", {"data": "cy", "ref": p.rid})
        m.sync()
        assert len(m.org.rows("Contact")) == 2
        m.fk["b"] = "cascade"
        m.do_delete(p, "b")
        m.sync()
        assert m.dbs["a"].rows("public.children") == [] and m.dbs["a"].rows("public.parents") == []
    finally:
        m.teardown()
