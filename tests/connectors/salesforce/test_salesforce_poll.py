"""Polling SystemModstamp (`capture: poll` on a Salesforce endpoint) against the emulator
through the unmodified simple-salesforce client: the polling cursor's rules over SOQL
`queryAll`, deletes from the recycle bin, the key-set comparison's lookups, validate."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from simple_salesforce.api import Salesforce

from syncswim_lib.config import load_project
from syncswim_lib.config.polling import DeleteDetection, PollSpec
from syncswim_lib.connectors.salesforce.kind import POLLED_CAPABILITIES
from syncswim_lib.connectors.salesforce.poll import PolledSalesforce
from syncswim_lib.envelope import Op, WatermarkPosition, position_from_json
from syncswim_lib.errors import ConfigError, FatalError
from syncswim_lib.sandbox.salesforce.emulator import Emulator
from tests.connectors.salesforce.conftest import connector_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]

SYNC = "app_crm"
# what docs/salesforce.md declares: the org keeps SystemModstamp, deletes in the recycle bin
SALESFORCE_POLL = PollSpec("SystemModstamp", DeleteDetection(column="IsDeleted"))
POLLS = {f"{SYNC}/Account": SALESFORCE_POLL, f"{SYNC}/Contact": SALESFORCE_POLL}


def polled(emu: Emulator, polls: dict[str, PollSpec] = POLLS) -> PolledSalesforce:
    return PolledSalesforce(connector_for(emu), polls)


@pytest.fixture
def pc(emu: Emulator) -> Iterator[PolledSalesforce]:
    # the org publishes no change events for these objects: polling must not need them
    emu.bus.disable("Account")
    emu.bus.disable("Contact")
    c = polled(emu)
    yield c
    c.close()


def _freeze(emu: Emulator) -> datetime:
    """Stop the org's clock now: every write stamps the same SystemModstamp (a real org
    stamps whole seconds, so records written within one second share it)."""
    now = datetime.now(UTC).replace(microsecond=0)
    emu.control.clock_set(now, frozen=True)
    return now


def test_records_sharing_one_stamp_across_polls_are_captured_once(
    emu: Emulator, pc: PolledSalesforce, human: Salesforce
) -> None:
    _freeze(emu)
    pc.setup(SYNC, ["Account"])
    start = pc.current_position(SYNC)
    a = human.Account.create({"Name": "A"})["id"]
    b = human.Account.create({"Name": "B"})["id"]
    first = pc.capture(SYNC, ["Account"], start, 100)
    assert sorted(c.key["Id"] for c in first.changes) == sorted([a, b])
    assert {c.op for c in first.changes} == {Op.UPDATE}
    assert {c.after["Name"] for c in first.changes if c.after} == {"A", "B"}
    c_id = human.Account.create({"Name": "C"})["id"]  # the same stamp as A and B
    second = pc.capture(SYNC, ["Account"], first.end_position, 100)
    assert [c.key["Id"] for c in second.changes] == [c_id]
    human.Account.update(a, {"Name": "A2"})  # the same stamp again, other values
    third = pc.capture(SYNC, ["Account"], second.end_position, 100)
    assert [(c.key["Id"], c.after and c.after["Name"]) for c in third.changes] == [(a, "A2")]
    assert pc.capture(SYNC, ["Account"], third.end_position, 100).changes == ()
    stamps = {
        r["SystemModstamp"] for r in human.query("SELECT SystemModstamp FROM Account")["records"]
    }
    assert len(stamps) == 1


def test_a_page_boundary_inside_one_stamp_loses_and_doubles_nothing(
    emu: Emulator, pc: PolledSalesforce, human: Salesforce
) -> None:
    _freeze(emu)
    made = {human.Account.create({"Name": f"N{i}"})["id"] for i in range(5)}
    info = pc.describe("Account")
    seen: list[str] = []
    after = None
    while True:
        rows = pc.source.changed_rows(info, "SystemModstamp", None, after, ["Id"], 2)
        seen += [r["Id"] for r in rows]
        if len(rows) < 2:
            break
        after = (rows[-1]["SystemModstamp"], (rows[-1]["Id"],))
    assert sorted(seen) == sorted(made) and len(seen) == 5


def test_deletes_come_from_the_recycle_bin_and_purges_from_the_key_set(
    emu: Emulator, pc: PolledSalesforce, human: Salesforce
) -> None:
    pc.setup(SYNC, ["Account", "Contact"])
    start = pc.current_position(SYNC)
    acc = human.Account.create({"Name": "Parent"})["id"]
    kid = human.Contact.create({"LastName": "Kid", "AccountId": acc})["id"]
    gone = human.Account.create({"Name": "Purged"})["id"]
    first = pc.capture(SYNC, ["Account", "Contact"], start, 100)
    assert len(first.changes) == 3
    human.Account.delete(acc)  # its Contact goes with it, into the recycle bin
    second = pc.capture(SYNC, ["Account", "Contact"], first.end_position, 100)
    assert sorted((c.table, c.op, c.key["Id"]) for c in second.changes) == [
        ("Account", Op.DELETE, acc),
        ("Contact", Op.DELETE, kid),
    ]
    assert all(c.after is None and c.before is not None for c in second.changes)
    assert pc.capture(SYNC, ["Account", "Contact"], second.end_position, 100).changes == ()
    # a record emptied from the recycle bin leaves no trace a poll can read: the key-set
    # comparison (deleted: {keyset_every: ...}) finds it by its Id
    human.Account.delete(gone)
    assert emu.control.purge([gone]) == 1
    info = pc.describe("Account")
    keys = [{"Id": gone}, {"Id": acc}]
    assert pc.existing_keys(info, ["Id"], keys) == []
    live = human.Account.create({"Name": "Live"})["id"]
    assert pc.existing_keys(info, ["Id"], [{"Id": live}, *keys]) == [{"Id": live}]


def test_deleted_none_reads_no_recycle_bin(emu: Emulator, human: Salesforce) -> None:
    emu.bus.disable("Account")
    spec = PollSpec("SystemModstamp", DeleteDetection())
    c = polled(emu, {f"{SYNC}/Account": spec})
    try:
        start = c.current_position(SYNC)
        a = human.Account.create({"Name": "A"})["id"]
        first = c.capture(SYNC, ["Account"], start, 100)
        human.Account.delete(a)
        assert c.capture(SYNC, ["Account"], first.end_position, 100).changes == ()
    finally:
        c.close()


def test_a_new_connector_resumes_from_the_stored_cursor(
    emu: Emulator, pc: PolledSalesforce, human: Salesforce
) -> None:
    start = pc.current_position(SYNC)
    human.Account.create({"Name": "Before"})
    first = pc.capture(SYNC, ["Account"], start, 100)
    assert isinstance(first.end_position, WatermarkPosition)
    stored = first.end_position.to_json()
    pc.close()
    later = human.Account.create({"Name": "While away"})["id"]
    again = polled(emu)
    try:
        resumed = again.capture(SYNC, ["Account"], position_from_json(stored), 100)
        assert [c.key["Id"] for c in resumed.changes] == [later]
    finally:
        again.close()


def test_validate_finds_no_cdc_problem_and_checks_the_modification_field(
    emu: Emulator, pc: PolledSalesforce
) -> None:
    assert pc.check_server({SYNC: ["Account", "Contact"]}) == []
    pc.setup(SYNC, ["Account", "Contact"])  # no Change Data Capture needed
    bad = polled(emu, {f"{SYNC}/Account": PollSpec("Name", SALESFORCE_POLL.deleted)})
    try:
        [finding] = bad.check_server({SYNC: ["Account"]})
        assert finding.severity == "error" and "Account.Name" in finding.problem
    finally:
        bad.close()
    mine = PollSpec("SystemModstamp", SALESFORCE_POLL.deleted, written_by="Description")
    soft = PollSpec("SystemModstamp", DeleteDetection(column="Description"))
    odd = polled(emu, {f"{SYNC}/Account": mine, f"{SYNC}/Contact": soft})
    try:
        problems = [f.problem for f in odd.check_server({SYNC: ["Account", "Contact"]})]
        assert any("written_by" in p and "not supported yet" in p for p in problems)
        assert any("recycle bin" in p for p in problems)
        with pytest.raises(FatalError, match="not supported yet"):
            odd.setup(SYNC, ["Account"])
    finally:
        odd.close()


def test_the_documented_declaration_loads(tmp_path: Path) -> None:
    text = (ROOT / "docs/salesforce.md").read_text()
    [example] = [
        b for b in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL) if "capture: poll}" in b
    ]
    path = tmp_path / "sync.yaml"
    path.write_text(example)
    project = load_project(path)
    crm = project.endpoints["crm"]
    assert crm.polled and crm.reading.capabilities is POLLED_CAPABILITIES
    spec = crm.polls[f"{SYNC}/Account"]
    assert (spec.column, spec.deleted.column, spec.safety_lag_s) == (
        "SystemModstamp",
        "IsDeleted",
        60,
    )
    # a Salesforce side of a polled endpoint says how it is read, as every polled side does
    block = "poll: {crm: {column: SystemModstamp, deleted: {column: IsDeleted}, safety_lag: 1m}}"
    assert block in example
    path.write_text(example.replace(block, ""))
    with pytest.raises(ConfigError, match="the entity needs poll:"):
        load_project(path)
