"""The merge property test (test_merge_properties.py) with a Salesforce org as one side:
the same state machine and model, with the real SalesforceConnector against the emulator
(the unmodified simple-salesforce client, CometD for the change events) on one side and a
memory database on the other. Random inserts, updates of field subsets, deletes and
external-id changes on both sides, syncs in between, conflicts by the declared rule, and
`full` runs finding changes capture never saw; after every sync both sides hold the
model's rows, the conflicts recorded are the model's, and one more run writes nothing.

What a Salesforce side changes, and how the machine takes it:

- `Id` is made by the org and never changes: no key changes on that side
  (`ids_change`); the org's records are found by their identity like any row the sync
  created.
- Commit times are the change events' `commitTimestamp`, in milliseconds: the org's
  clock is set to the machine's before each edit (tests/pipeline/sides.py), and `newest`
  compares them at that precision with the memory side's microseconds.
- `score` is a `currency(10,2)` field: exact decimals both ways (cents, and all ten
  digits, more than a float keeps exactly).
- No edit inside a run's apply on the org side (sides.py says why); on the memory side as
  in the memory test.

Three scenarios: external-id mode (`Code__c`, `newest`, `name` preferring the org);
system of record the database (its key in `App_Id__c`); system of record the org (its
`Id` written back into the database's `app_id`).

Each example resets the org, so a run takes a while: SYNCSWIM_SF_PROPERTY_EXAMPLES
(default 30 per scenario) and SYNCSWIM_SF_PROPERTY_STEPS (default 20) set the effort, apart
from the memory test's SYNCSWIM_PROPERTY_EXAMPLES so that a long hunt there does not make
this one hours long. Without SYNCSWIM_SF_PROPERTY_EXAMPLES the examples are the same on
every run (derandomised)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from syncswim_lib.config.models import ConflictRule
from syncswim_lib.connectors.base import Connector
from syncswim_lib.connectors.memory import MICROSECOND, MemoryDatabase
from syncswim_lib.connectors.salesforce.connector import SalesforceConnector
from syncswim_lib.pipeline.mapping import EntityMap, Letter, SideView
from syncswim_lib.sandbox.salesforce.emulator import Emulator, start_emulator
from syncswim_lib.values import ColumnInfo, TableInfo
from tests.pipeline.sides import MILLISECOND, Field, ObjectMap, SalesforceSide, Side, int_key
from tests.pipeline.test_merge_properties import (
    ENDPOINTS,
    FIELDS,
    PREFER_A,
    SYNC,
    TABLES,
    VALUES,
    MergeMachine,
    Record,
    Scenario,
    other,
)

pytestmark = [pytest.mark.integration, pytest.mark.salesforce, pytest.mark.slow]

EXAMPLES = int(os.environ.get("SYNCSWIM_SF_PROPERTY_EXAMPLES", "30"))
STEPS = int(os.environ.get("SYNCSWIM_SF_PROPERTY_STEPS", "20"))

SOBJECT = "Account"
# the fields an admin gives the org for this sync
SCHEMA: list[dict[str, Any]] = [
    {
        "name": SOBJECT,
        "fields": [
            {"name": "Code__c", "type": "string", "length": 20, "externalId": True, "unique": True},
            {
                "name": "App_Id__c",
                "type": "string",
                "length": 20,
                "externalId": True,
                "unique": True,
            },
            {"name": "Email__c", "type": "string", "length": 50},
            {"name": "Score__c", "type": "currency", "precision": 10, "scale": 2},
        ],
    }
]
SF_COLUMNS = {"name": "Name", "email": "Email__c", "score": "Score__c"}  # Name is required
SF_VALUES: dict[str, st.SearchStrategy[Any]] = {
    **VALUES,
    "score": st.sampled_from([None, Decimal("0.10"), Decimal("2.50"), Decimal("12345678.91")]),
}
SCORE = ColumnInfo("score", "decimal", "numeric(10,2)", precision=10, scale=2)
# the memory side across from the org, by the org's letter
MEMORY_INFO: dict[Letter, TableInfo] = {
    "b": TableInfo(  # the org on b: a is the database, the SOR in that scenario
        TABLES["a"],
        (
            ColumnInfo("id", "int", "integer", nullable=False, auto_generated=True),
            ColumnInfo("code", "text", "varchar(20)", max_length=20),
            ColumnInfo("name", "text", "text"),
            ColumnInfo("email", "text", "text"),
            SCORE,
        ),
        ("id",),
        (("id",), ("code",)),
    ),
    "a": TableInfo(  # the org on a, the SOR: its Id kept in app_id
        TABLES["b"],
        (
            ColumnInfo("id", "int", "int", nullable=False, auto_generated=True),
            ColumnInfo("app_id", "text", "varchar(18)", max_length=18),
            ColumnInfo("name", "text", "varchar(50)", max_length=50),
            ColumnInfo("email", "text", "varchar(50)", max_length=50),
            SCORE,
        ),
        ("id",),
        (("id",), ("app_id",)),
    ),
}


@dataclass(frozen=True)
class SalesforceScenario(Scenario):
    salesforce: Letter = "b"  # the org's side


SCENARIOS = [
    SalesforceScenario(
        "external_id-newest",
        "external_id",
        ConflictRule("newest"),
        {"name": ConflictRule("prefer", prefer="b")},
        precision_b=MILLISECOND,
    ),
    SalesforceScenario("database_is_sor", "system_of_record", PREFER_A, {}, MILLISECOND),
    SalesforceScenario(
        "salesforce_is_sor",
        "system_of_record",
        PREFER_A,
        {},
        precision_b=MICROSECOND,
        precision_a=MILLISECOND,
        salesforce="a",
    ),
]


class SalesforceMergeMachine(MergeMachine):
    scenario: SalesforceScenario
    emu: ClassVar[Emulator]
    values = SF_VALUES

    @property
    def sf(self) -> Letter:
        return self.scenario.salesforce

    def open_sides(self) -> tuple[dict[Letter, Side], dict[Letter, Connector]]:
        self.emu.control.reset()  # an empty org for each example
        db_letter = other(self.sf)
        db = MemoryDatabase(ENDPOINTS[db_letter], clock=self.clock, precision=MICROSECOND)
        db.create_table(MEMORY_INFO[self.sf])
        columns = {n: Field(SF_COLUMNS[n]) for n in FIELDS}
        columns["code"] = Field("Code__c")
        if self.sf == "b":
            columns["app_id"] = int_key("App_Id__c")
        self.org = SalesforceSide(
            self.emu, self.clock, {TABLES[self.sf]: ObjectMap(SOBJECT, columns)}
        )
        settings = {
            "instance_url": self.emu.url,
            "ca_bundle": str(self.emu.ca_path),
            "token": self.emu.token("integration"),
        }
        conns: dict[Letter, Connector] = {
            db_letter: db.connector(ENDPOINTS[db_letter]),
            self.sf: SalesforceConnector.from_settings(ENDPOINTS[self.sf], settings),
        }
        return {db_letter: db, self.sf: self.org}, conns

    def _entity_map(self) -> EntityMap:
        s, sf = self.scenario, self.sf

        def column(letter: Letter, name: str) -> str:
            return SF_COLUMNS.get(name, name) if letter == sf else name

        def ext(letter: Letter) -> str | None:
            if s.mode == "external_id":
                return "Code__c" if letter == sf else "code"
            if letter == "a":
                return None  # the SOR
            return "App_Id__c" if letter == sf else "app_id"

        def view(letter: Letter) -> SideView:
            if letter == sf:
                info, key = self.conns[letter].describe(SOBJECT), ("Id",)
            else:
                info, key = MEMORY_INFO[sf], ("id",)
            cols = tuple(column(letter, n) for n in FIELDS)
            return SideView(letter, ENDPOINTS[letter], info, key, ext(letter), cols)

        fields = tuple((column("a", n), column("b", n), None, None) for n in FIELDS)
        return EntityMap(
            SYNC, "customers", view("a"), view("b"), s.mode, s.sor, fields, s.conflicts()
        )

    def ids_change(self, letter: Letter) -> bool:
        return letter != self.sf

    def edits_during_runs(self, letter: Letter) -> bool:
        return letter != self.sf

    def model_field(self, column_a: str) -> str:
        if self.sf == "b":
            return column_a
        return next((n for n, f in SF_COLUMNS.items() if f == column_a), column_a)

    def garbled_sor_key(self, rec: Record) -> Any:
        # the org's Id kept in a text column: garbled, it is text too
        return super().garbled_sor_key(rec) if self.sf == "b" else f"X{rec.rid}"

    def teardown(self) -> None:
        super().teardown()
        self.org.close()


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emu = start_emulator(schema=SCHEMA)
    yield emu
    emu.stop()


def machine_for(scenario: SalesforceScenario, emu: Emulator) -> type[SalesforceMergeMachine]:
    return type(
        f"SalesforceMerge_{scenario.name}",
        (SalesforceMergeMachine,),
        {"scenario": scenario, "emu": emu},
    )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_merge_properties_with_salesforce(scenario: SalesforceScenario, emulator: Emulator) -> None:
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


def test_the_org_side_is_the_org(emulator: Emulator) -> None:
    """The machine's Salesforce side is the emulator's org: a record made by the machine
    is an Account there, with its decimal exact, and the sync carries it across."""
    scenario = next(s for s in SCENARIOS if s.name == "external_id-newest")
    m = machine_for(scenario, emulator)()
    try:
        values = {"name": "ann", "email": None, "score": Decimal("12345678.91"), "code": "C1"}
        rec = m.do_insert("b", values)
        m.run_sync()
        [account] = m.org.reader.query("SELECT Id, Score__c FROM Account")["records"]
        assert account["Id"] == m.key_of(rec, "b")
        assert account["Score__c"] == Decimal("12345678.91")
        assert [r["score"] for r in m.dbs["a"].rows(TABLES["a"])] == [Decimal("12345678.91")]
    finally:
        m.teardown()


@pytest.mark.parametrize(("after_ms", "tie"), [(0.5, True), (1.0, False)])
def test_newest_orders_the_orgs_changes_at_the_millisecond(
    emulator: Emulator, after_ms: float, tie: bool
) -> None:
    """The org's change event gives its commit time in milliseconds: a database change
    half a millisecond later cannot be ordered against it (a tie, settled by the
    tie-break, side a, and recorded as one); a whole millisecond later it is newer."""
    scenario = next(s for s in SCENARIOS if s.name == "external_id-newest")
    m = machine_for(scenario, emulator)()
    try:
        rec = m.do_insert("a", {"name": "ann", "email": None, "score": None, "code": "C1"})
        m.run_sync()
        m.tick(1.0)
        m.do_update(rec, "b", {"score": Decimal("2.50")})
        m.tick(after_ms / 1000)
        m.do_update(rec, "a", {"score": Decimal("0.10")})
        m.run_sync()  # the model's decision, and every check of the machine
        [c] = [c for c in m.store.conflicts(SYNC, "customers") if c.field == "score"]
        assert (c.outcome, c.tie, c.value) == ("a", tie, Decimal("0.10")), c
    finally:
        m.teardown()
