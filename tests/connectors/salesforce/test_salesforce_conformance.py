"""The conformance suite (tests/connectors/test_conformance.py) for Salesforce.

The suite is written for databases: an `items` table with integer ids chosen by the
test, written in SQL inside transactions. An org has none of that: ids are made by the
org, another application writes through the API, and one API call is one transaction.
So each property the suite checks is stated here again in the org's terms, on Account
(`Code__c` is the items' `ext`, `Name` their `name`, `Seats__c` their `n`), and every
property that cannot hold for Salesforce is listed in SKIPPED with the reason; a test
checks that every test of the suite is one or the other.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from itertools import pairwise
from typing import Any

import pyarrow as pa
import pytest
from simple_salesforce.api import Salesforce

from syncswim_lib.connectors.base import ApplyBatch, BatchMarkers, CaptureBatch, markers_of
from syncswim_lib.connectors.salesforce.connector import SalesforceConnector
from syncswim_lib.envelope import Change, Op, Position, ReplayPosition
from syncswim_lib.sandbox.salesforce.emulator import Emulator
from syncswim_lib.values.arrow import REF, rows_to_table
from tests.connectors.salesforce.conftest import connector_for
from tests.connectors.salesforce.test_salesforce_connector import batch
from tests.connectors.test_conformance import __all__ as SUITE

pytestmark = pytest.mark.integration

SYNC = "app_crm"
ITEM = "Account"
FIELDS = ("Id", "Code__c", "Name", "Seats__c")

SKIPPED = {
    "test_a_new_primary_key_is_a_delete_and_an_insert": "a Salesforce Id never changes",
    "test_a_replayed_batch_returns_its_stale_refs": (
        "needs a stored batch result (marker); Salesforce keeps none, a replay checks again"
    ),
    "test_a_write_waiting_for_a_row_lock_sees_the_change_it_waited_for": (
        "an org shows no row locks to a client (it answers UNABLE_TO_LOCK_ROW, retried)"
    ),
    "test_keys_hold_the_declared_key_when_it_is_not_the_primary_key": (
        "a Salesforce side is keyed by Id (apply refuses another key)"
    ),
    "test_capture_skips_a_prune_and_still_advances": "no marker table: nothing is pruned",
    "test_prune_markers_deletes_old_markers_only": "no marker table: nothing is pruned",
    "test_prune_markers_in_several_transactions": "no marker table: nothing is pruned",
    "test_prune_markers_on_a_lost_connection_is_retriable": "no marker table: nothing is pruned",
    "test_prune_markers_before_setup_and_with_a_negative_age": (
        "no batch markers declared: nothing to prune (test_declares_no_batch_markers)"
    ),
    "test_snapshot_json_text_is_the_same_everywhere": "Salesforce has no JSON field type",
}


def test_every_conformance_test_is_stated_for_salesforce_or_skipped_with_a_reason() -> None:
    mine = {n for n in globals() if n.startswith("test_")}
    missing = [n for n in SUITE if n not in mine and n not in SKIPPED]
    assert missing == [], "conformance tests with no Salesforce counterpart nor reason"
    assert not set(SKIPPED) & mine


@pytest.mark.parametrize("name", sorted(SKIPPED))
def test_skipped_for_salesforce(name: str) -> None:
    pytest.skip(f"{name}: {SKIPPED[name]}")


# --- helpers ------------------------------------------------------------------------------


def org_rows(sf: Salesforce) -> dict[str, dict[str, Any]]:
    records = sf.query_all(f"SELECT {', '.join(FIELDS)} FROM {ITEM}")["records"]
    return {r["Id"]: {f: r[f] for f in FIELDS} for r in records}


def drain(c: SalesforceConnector, since: Position, max_changes: int = 1000) -> list[CaptureBatch]:
    batches = []
    position = since
    for _ in range(10_000):
        got = c.capture(SYNC, [ITEM], position, max_changes)
        if not got.changes:
            return batches
        assert got.end_position is not None
        batches.append(got)
        position = got.end_position
        c.confirm(SYNC, position)
    raise AssertionError("capture never ran dry")


def changes_of(batches: Sequence[CaptureBatch]) -> list[Change]:
    return [c for b in batches for c in b.changes]


def replay(base: dict[str, dict[str, Any]], changes: Sequence[Change]) -> dict[str, Any]:
    """Rows after the changes: an insert's image whole, an update's changed fields (an
    update event carries only those, unlike a database's full row image)."""
    state = {k: dict(v) for k, v in base.items()}
    for c in changes:
        key = c.key["Id"]
        if c.op == Op.DELETE:
            state.pop(key, None)
            continue
        assert c.after is not None
        if c.op == Op.INSERT:
            state[key] = {f: c.after.get(f) for f in FIELDS}
        else:
            # a record changed after the position and deleted before the snapshot read
            # it: its update comes first, the delete later in the stream
            row = state.setdefault(key, dict.fromkeys(FIELDS) | {"Id": key})
            row.update({f: v for f, v in c.after.items() if f in FIELDS})
    return state


def order(position: Position | None) -> int:
    assert isinstance(position, ReplayPosition)
    return position.replay_id


class Writer(threading.Thread):
    """Another application (a person's client) writing Accounts until told to stop: a
    create of one to three records per call, an update of an earlier record every third
    call, a delete every seventh."""

    def __init__(self, emu: Emulator) -> None:
        super().__init__(daemon=True)
        self.sf = emu.client(user="human")
        self.done = 0
        self.ids: list[str] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.progress = threading.Condition()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self._one()
        except BaseException as exc:  # reported by the test thread
            self.error = exc
        finally:
            with self.progress:
                self.progress.notify_all()
            self.sf.session.close()

    def _one(self) -> None:
        i = self.done
        records = [
            {"attributes": {"type": ITEM}, "Name": f"w{i}-{j}", "Seats__c": 0}
            for j in range(1 + i % 3)
        ]
        made = self.sf.restful(
            "composite/sobjects", method="POST", json={"allOrNone": True, "records": records}
        )
        self.ids += [r["id"] for r in made]
        if i % 3 == 0 and len(self.ids) > 2:
            self.sf.Account.update(self.ids[-3], {"Seats__c": i})
        if i % 7 == 0 and len(self.ids) > 5:
            self.sf.Account.delete(self.ids[-5])
        with self.progress:
            self.done += 1
            self.progress.notify_all()

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        with self.progress:
            ok = self.progress.wait_for(lambda: self.done >= count or self.error, timeout)
        if self.error is not None:
            raise AssertionError(f"the writer failed: {self.error!r}") from self.error
        assert ok, f"the writer made {self.done} calls, not {count}, in {timeout}s"

    def finish(self) -> None:
        self.stop.set()
        self.join(30)
        assert not self.is_alive()
        if self.error is not None:
            raise AssertionError(f"the writer failed: {self.error!r}") from self.error


def _with_writer(emu: Emulator, body: Callable[[Writer], None]) -> None:
    writer = Writer(emu)
    writer.start()
    try:
        body(writer)
    finally:
        writer.finish()


# --- the change stream --------------------------------------------------------------------


def test_no_gap_between_snapshot_and_stream(
    emu: Emulator, sfc: SalesforceConnector, human: Salesforce
) -> None:
    emu.control.seed(ITEM, [{"Name": f"s{i}", "Seats__c": i} for i in range(200)])
    snapshot: dict[str, dict[str, Any]] = {}
    positions: list[Position] = []

    def read(writer: Writer) -> None:
        writer.wait_for(10)
        positions.append(sfc.current_position(SYNC))  # taken mid-stream
        for b in sfc.snapshot(ITEM, FIELDS, ["Id"], 25):
            snapshot.update((r["Id"], r) for r in b.to_pylist())
            writer.wait_for(writer.done + 2)  # writes land while the snapshot is read
        writer.wait_for(writer.done + 10)

    _with_writer(emu, read)
    changes = changes_of(drain(sfc, positions[0], max_changes=50))
    assert len(snapshot) > 200 and len(changes) > 20
    assert replay(snapshot, changes) == org_rows(human)


def test_no_gap_at_any_of_many_positions(
    emu: Emulator, sfc: SalesforceConnector, human: Salesforce
) -> None:
    rounds: list[tuple[Position, dict[str, Any]]] = []

    def read(writer: Writer) -> None:
        for _ in range(10):
            writer.wait_for(writer.done + 2)
            since = sfc.current_position(SYNC)
            rows = [r for b in sfc.snapshot(ITEM, FIELDS, ["Id"], 10_000) for r in b.to_pylist()]
            rounds.append((since, {r["Id"]: r for r in rows}))

    _with_writer(emu, read)
    final = org_rows(human)
    for since, snapshot in rounds:
        assert replay(snapshot, changes_of(drain(sfc, since))) == final


def test_capture_keeps_up_with_a_writer(
    emu: Emulator, sfc: SalesforceConnector, human: Salesforce
) -> None:
    since = sfc.current_position(SYNC)
    batches: list[CaptureBatch] = []
    position = [since]

    def follow(writer: Writer) -> None:
        while writer.done < 60:
            writer.wait_for(writer.done + 1)
            got = sfc.capture(SYNC, [ITEM], position[-1], 7)
            if got.changes:
                assert got.end_position is not None
                batches.append(got)
                position.append(got.end_position)

    _with_writer(emu, follow)
    batches += drain(sfc, position[-1], max_changes=7)
    changes = changes_of(batches)
    assert len(batches) > 10
    assert all(order(c.position) < order(d.position) for c, d in pairwise(changes))
    assert replay({}, changes) == org_rows(human)


def test_positions_strictly_increase(sfc: SalesforceConnector, human: Salesforce) -> None:
    """Strictly across events; the records of one merged event share its replay id."""
    since = sfc.current_position(SYNC)
    for i in range(12):
        if i % 4 == 0:
            rows = [{"__ref": f"r{j}", "Name": "applied", "Code__c": f"P{i}-{j}"} for j in (0, 1)]
            sfc.apply(batch(f"pos-{i}", inserts=rows, insert_match=("Code__c",)))
            continue
        made = human.Account.create({"Name": f"h{i}"})["id"]
        if i % 2:
            human.Account.update(made, {"Seats__c": i})
        if i % 3 == 0:
            human.Account.delete(made)
    whole = sfc.capture(SYNC, [ITEM], since, 10_000)
    batches = drain(sfc, since, max_changes=4)
    changes = changes_of(batches)
    assert [c.position for c in changes] == [c.position for c in whole.changes]
    for c, d in pairwise(changes):
        assert order(c.position) < order(d.position) or (
            c.position == d.position and c.key != d.key and c.op == d.op
        )
    previous: Position = since
    for b in batches:
        assert b.end_position is not None
        for change in b.changes:
            assert order(previous) < order(change.position) <= order(b.end_position)
        previous = b.end_position
    idle = sfc.capture(SYNC, [ITEM], previous, 100)
    assert idle.changes == () and order(idle.end_position) == order(previous)


def test_transactions_are_never_split(sfc: SalesforceConnector, human: Salesforce) -> None:
    since = sfc.current_position(SYNC)

    def create(names: Sequence[str]) -> None:  # one collection call: one transaction
        records = [
            {"attributes": {"type": ITEM}, "Name": n, "Seats__c": k} for k, n in enumerate(names)
        ]
        human.restful(
            "composite/sobjects", method="POST", json={"allOrNone": True, "records": records}
        )

    create(["a", "b", "c", "d", "e"])
    create(["f", "g"])
    rows = [{"__ref": f"r{j}", "Name": "t", "Code__c": f"T{j}"} for j in range(3)]
    assert sfc.apply(batch("txn-1", inserts=rows, insert_match=("Code__c",))).inserted == 3
    human.Account.create({"Name": "h"})
    sizes = [len(b.changes) for b in drain(sfc, since, max_changes=1)]
    assert sizes == [5, 2, 3, 1]


def test_origins(sfc: SalesforceConnector, human: Salesforce) -> None:
    since = sfc.current_position(SYNC)
    made = human.Account.create({"Name": "user"})["id"]
    sfc.apply(batch("o-1", inserts=[{"__ref": "a", "Name": "ours", "Code__c": "O1"}]))
    hub = batch(
        "o-2",
        inserts=[{"__ref": "b", "Name": "hub", "Code__c": "O2"}],
        updates=[{"__ref": "c", "Id": made, "Name": "by hub"}],
    )
    sfc.apply(dataclasses.replace(hub, origin="hub_other"))  # another sync, same object
    human.Account.update(made, {"Seats__c": 2})
    sfc.apply(batch("o-3", deletes=[{"__ref": "d", "Id": made}]))
    got = [(c.op, c.origin) for c in changes_of(drain(sfc, since))]
    assert got == [
        (Op.INSERT, None),
        (Op.INSERT, SYNC),
        (Op.INSERT, "hub_other"),
        (Op.UPDATE, "hub_other"),
        (Op.UPDATE, None),
        (Op.DELETE, SYNC),
    ]


def test_own_writes_left_out_on_request(sfc: SalesforceConnector, human: Salesforce) -> None:
    since = sfc.current_position(SYNC)
    human.Account.create({"Name": "theirs"})
    rows = [{"__ref": f"r{j}", "Name": "ours", "Code__c": f"W{j}"} for j in range(4)]
    sfc.apply(batch("own-1", inserts=rows, insert_match=("Code__c",)))
    human.Account.create({"Name": "theirs too"})
    got = sfc.capture(SYNC, [ITEM], since, 100, skip_origin=SYNC)
    assert [c.after["Name"] for c in got.changes if c.after] == ["theirs", "theirs too"]
    assert got.echoes == {ITEM: 4}
    assert got.end_position == sfc.capture(SYNC, [ITEM], since, 100).end_position


# --- apply ----------------------------------------------------------------------------------


def _seed(emu: Emulator, n: int) -> list[str]:
    return list(
        emu.control.seed(
            ITEM, [{"Name": f"name{i}", "Code__c": f"E{i}", "Seats__c": i} for i in range(n)]
        )
    )


def test_apply_twice_writes_once(
    emu: Emulator, sfc: SalesforceConnector, human: Salesforce
) -> None:
    """The same batch delivered twice: inserts matched by external id the second time
    (updated, not created again), the update written again with the same values, the
    delete found gone (missing); no marker, so the two results differ in their counts."""
    old, gone = _seed(emu, 2)
    since = sfc.current_position(SYNC)
    b = batch(
        "b-1",
        inserts=[
            {"__ref": "i1", "Name": "one", "Code__c": "N1"},
            {"__ref": "i2", "Name": "two", "Code__c": "N2"},
            {"__ref": "bad", "Name": "x" * 300, "Code__c": "N3"},
        ],
        updates=[{"__ref": "u1", "Id": old, "Name": "new"}],
        deletes=[{"__ref": "d1", "Id": gone}],
        insert_match=("Code__c",),
    )
    first = sfc.apply(b)
    again = sfc.apply(b)
    assert (first.inserted, first.updated, first.deleted) == (2, 1, 1)
    assert (again.inserted, again.updated, again.deleted) == (0, 3, 0)
    assert again.missing == ("d1",) and set(first.rejected) == set(again.rejected) == {"bad"}
    assert {r: first.keys[r] for r in ("i1", "i2")} == {r: again.keys[r] for r in ("i1", "i2")}
    assert sorted(r["Code__c"] for r in org_rows(human).values()) == ["E0", "N1", "N2"]
    ops = [c.op for c in changes_of(drain(sfc, since))]
    assert ops.count(Op.INSERT) == 2 and ops.count(Op.DELETE) == 1


def test_concurrent_applies_of_one_batch_write_once(
    sfc: SalesforceConnector, emu: Emulator, human: Salesforce
) -> None:
    b = batch(
        "cc-1",
        inserts=[{"__ref": f"i{j}", "Name": "c", "Code__c": f"C{j}"} for j in range(30)],
        insert_match=("Code__c",),
    )
    second = connector_for(emu)
    results: list[Any] = []

    def apply(c: SalesforceConnector) -> None:
        try:
            results.append(c.apply(b))
        except Exception as exc:  # reported below, by the test thread
            results.append(exc)

    threads = [threading.Thread(target=apply, args=(c,)) for c in (sfc, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    second.close()
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(r.inserted for r in results) == 30  # whichever came first created them
    assert len(org_rows(human)) == 30


def test_delete_round_trips(emu: Emulator, sfc: SalesforceConnector, human: Salesforce) -> None:
    a, b = _seed(emu, 2)
    since = sfc.current_position(SYNC)
    human.Account.delete(a)
    sfc.apply(batch("del-1", deletes=[{"__ref": "d", "Id": b}]))
    changes = changes_of(drain(sfc, since))
    assert [(c.op, c.key["Id"], c.origin) for c in changes] == [
        (Op.DELETE, a, None),
        (Op.DELETE, b, SYNC),
    ]
    assert all(c.after is None and c.before == c.key for c in changes)


def test_a_partial_update_sets_only_the_named_columns(
    emu: Emulator, sfc: SalesforceConnector, human: Salesforce
) -> None:
    a, b = _seed(emu, 2)
    since = sfc.current_position(SYNC)
    res = sfc.apply(
        batch(
            "p-1",
            updates=[
                {"__ref": "u1", "Id": a, "Name": "set", "Code__c": "ignored", "__set": ["Name"]},
                {"__ref": "u2", "Id": b, "Name": "ignored", "Code__c": "X2", "__set": ["Code__c"]},
            ],
        )
    )
    assert (res.updated, res.rejected, res.missing, res.stale) == (2, {}, (), ())
    rows = org_rows(human)
    assert (rows[a]["Name"], rows[a]["Code__c"]) == ("set", "E0")
    assert (rows[b]["Name"], rows[b]["Code__c"]) == ("name1", "X2")
    assert res.keys == {"u1": {"Id": a}, "u2": {"Id": b}}
    first = changes_of(drain(sfc, since))[0]
    assert first.changed_fields is not None and "Name" in first.changed_fields
    assert "Code__c" not in first.changed_fields


def test_mixed_set_lists_in_one_batch(
    emu: Emulator, sfc: SalesforceConnector, human: Salesforce
) -> None:
    ids = _seed(emu, 5)
    human.Account.delete(ids[4])
    res = sfc.apply(
        batch(
            "mix-1",
            updates=[
                {"__ref": "name", "Id": ids[0], "Name": "n0", "Seats__c": 90, "__set": ["Name"]},
                {"__ref": "n", "Id": ids[1], "Name": "xx", "Seats__c": 91, "__set": ["Seats__c"]},
                {"__ref": "all", "Id": ids[2], "Name": "n2", "Seats__c": 92, "__set": None},
                {"__ref": "none", "Id": ids[3], "Name": "xx", "Seats__c": 93, "__set": []},
                {"__ref": "gone", "Id": ids[4], "Name": "n4", "Seats__c": 94, "__set": None},
            ],
        )
    )
    assert res.updated == 4 and res.missing == ("gone",) and not res.rejected
    rows = org_rows(human)
    assert [(rows[i]["Name"], rows[i]["Seats__c"]) for i in ids[:4]] == [
        ("n0", 0),
        ("name1", 91),
        ("n2", 92),
        ("name3", 3),
    ]


def test_an_update_or_delete_with_a_null_key_is_rejected(
    emu: Emulator, sfc: SalesforceConnector, human: Salesforce
) -> None:
    [a] = _seed(emu, 1)
    res = sfc.apply(
        batch(
            "null-1",
            updates=[
                {"__ref": "u-null", "Id": None, "Name": "x"},
                {"__ref": "u-ok", "Id": a, "Name": "y"},
            ],
            deletes=[{"__ref": "d-null", "Id": None}],
        )
    )
    assert res.rejected == {"u-null": "key column Id is NULL", "d-null": "key column Id is NULL"}
    assert (res.missing, res.stale, res.updated, res.deleted) == ((), (), 1, 0)
    assert [r["Name"] for r in org_rows(human).values()] == ["y"]


def test_a_row_gone_is_missing_and_a_row_changed_is_stale(
    emu: Emulator, sfc: SalesforceConnector, human: Salesforce
) -> None:
    ids = _seed(emu, 4)
    human.Account.delete(ids[0])
    human.Account.update(ids[1], {"Seats__c": 50})
    human.Account.delete(ids[2])
    human.Account.update(ids[3], {"Seats__c": 60})
    check = ["Seats__c"]
    res = sfc.apply(
        batch(
            "gone-1",
            updates=[
                {"__ref": "u-gone", "Id": ids[0], "Seats__c": 1},
                {"__ref": "u-changed", "Id": ids[1], "Seats__c": 1},
            ],
            deletes=[{"__ref": "d-gone", "Id": ids[2]}, {"__ref": "d-changed", "Id": ids[3]}],
            expected=[
                {"__ref": "u-gone", "__check": check, "Seats__c": 0},
                {"__ref": "u-changed", "__check": check, "Seats__c": 1},
                {"__ref": "d-gone", "__check": check, "Seats__c": 2},
                {"__ref": "d-changed", "__check": check, "Seats__c": 3},
            ],
        )
    )
    assert sorted(res.missing) == ["d-gone", "u-gone"]
    assert sorted(res.stale) == ["d-changed", "u-changed"]
    assert (res.updated, res.deleted, res.keys) == (0, 0, {})
    assert sorted(r["Seats__c"] for r in org_rows(human).values()) == [50, 60]


def test_a_row_changed_since_the_plan_is_stale_not_overwritten(
    emu: Emulator, sfc: SalesforceConnector, human: Salesforce
) -> None:
    ids = _seed(emu, 3)
    human.Account.update(ids[0], {"Name": "theirs"})
    res = sfc.apply(
        batch(
            "stale-1",
            updates=[
                {"__ref": "u1", "Id": ids[0], "Name": "ours"},
                {"__ref": "u2", "Id": ids[1], "Name": "ours"},
            ],
            deletes=[{"__ref": "d3", "Id": ids[2]}],
            expected=[
                {"__ref": "u1", "__check": ["Name"], "Name": "name0"},
                {"__ref": "u2", "__check": ["Name"], "Name": "name1"},
                {"__ref": "d3", "__check": ["Name"], "Name": "name2"},
            ],
        )
    )
    assert res.stale == ("u1",) and (res.updated, res.deleted) == (1, 1)
    assert {r["Name"] for r in org_rows(human).values()} == {"theirs", "ours"}


def test_describe_lists_the_unique_column_sets(sfc: SalesforceConnector) -> None:
    assert sfc.describe(ITEM).unique == (("Id",), ("Code__c",), ("App_Id__c",))
    assert sfc.describe("Contact").unique == (("Id",), ("App_Id__c",))


def test_declares_no_batch_markers(sfc: SalesforceConnector) -> None:
    """No transactions to hold a marker: the pipeline never asks for one."""
    assert not sfc.capabilities.batch_markers
    assert markers_of(sfc) is None
    assert not isinstance(sfc, BatchMarkers)


# --- values -----------------------------------------------------------------------------------

TYPED = ("Code__c", "Name", "Credit__c", "Seats__c", "Active__c", "Since__c", "Seen__c")
TYPED_ROWS: list[dict[str, Any]] = [
    {
        "Code__c": "T1",
        "Name": "Zoë 😀 東京",
        "Credit__c": Decimal("-1234.50"),
        "Seats__c": 999_999,
        "Active__c": True,
        "Since__c": date(2024, 2, 29),
        "Seen__c": datetime(2024, 6, 1, 10, 30, 45, tzinfo=UTC),
    },
    {  # written by apply from a zone that is not UTC: read back as the instant in UTC
        "Code__c": "T2",
        "Name": "  padded  ",
        "Credit__c": Decimal("0.01"),
        "Seats__c": -1,
        "Active__c": False,
        "Since__c": None,
        "Seen__c": datetime(2024, 3, 31, 1, 30, tzinfo=timezone(timedelta(hours=2))),
    },
]


def test_the_same_row_reads_as_the_same_canonical_values(
    sfc: SalesforceConnector, human: Salesforce
) -> None:
    since = sfc.current_position(SYNC)
    first = dict(TYPED_ROWS[0])
    human.Account.create(
        {
            **first,
            "Credit__c": float(first["Credit__c"]),
            "Since__c": first["Since__c"].isoformat(),
            "Seen__c": "2024-06-01T10:30:45.000Z",
        }
    )
    info = sfc.describe(ITEM)
    cols = [c for c in info.columns if c.name in TYPED]
    inserts = rows_to_table([{REF: "t2", **TYPED_ROWS[1]}], cols)
    empty = pa.table({REF: pa.array([], pa.string()), "Id": pa.array([], pa.string())})
    applied = sfc.apply(ApplyBatch("typed-1", SYNC, ITEM, ("Id",), inserts, empty, empty))
    assert applied.inserted == 1 and not applied.rejected
    want = [{k: v for k, v in r.items()} for r in TYPED_ROWS]
    want[1]["Seen__c"] = want[1]["Seen__c"].astimezone(UTC)
    captured = [{k: (c.after or {})[k] for k in TYPED} for c in changes_of(drain(sfc, since))]
    fetched = sorted(sfc.fetch(ITEM, "Code__c", ["T1", "T2"]), key=lambda r: r["Code__c"])
    snapped = [r for b in sfc.snapshot(ITEM, TYPED, ["Code__c"], 10) for r in b.to_pylist()]
    for path, rows in (("capture", captured), ("fetch", fetched), ("snapshot", snapped)):
        got = [{k: r[k] for k in TYPED} for r in rows]
        assert got == want, path
        for row in got:
            for name, value in row.items():
                expected = next(w[name] for w in want if w["Code__c"] == row["Code__c"])
                assert type(value) is type(expected), f"{path} {name}: {type(value)}"


def test_compare_and_set_compares_canonical_values(
    emu: Emulator, sfc: SalesforceConnector, human: Salesforce
) -> None:
    """1234.5 (a float the org sends) is the plan's Decimal('1234.50'); an aware datetime
    in another zone is the same instant; a changed value is stale."""
    [a] = list(
        emu.control.seed(
            ITEM,
            [{"Name": "n", "Credit__c": 1234.5, "Seen__c": "2024-06-01T10:30:45.000Z"}],
        )
    )
    [b] = list(emu.control.seed(ITEM, [{"Name": "m", "Credit__c": 1.0}]))
    later = datetime(2024, 6, 1, 12, 30, 45, tzinfo=timezone(timedelta(hours=2)))
    res = sfc.apply(
        batch(
            "cas-1",
            updates=[
                {"__ref": "r1", "Id": a, "Name": "checked"},
                {"__ref": "r2", "Id": b, "Name": "checked"},
            ],
            expected=[
                {
                    "__ref": "r1",
                    "__check": ["Credit__c", "Name", "Seen__c"],
                    "Credit__c": 1234.50,
                    "Name": "n",
                    "Seen__c": later,
                },
                {"__ref": "r2", "__check": ["Credit__c"], "Credit__c": 2.0},
            ],
        )
    )
    assert (res.stale, res.updated) == (("r2",), 1)
    assert human.Account.get(a)["Name"] == "checked"
