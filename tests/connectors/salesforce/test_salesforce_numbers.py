"""Numbers at the describe's full precision and scale (18 digits: more than a double
holds) written and read back exactly: REST collections (create, upsert, update), SOQL
pages, a Bulk API 2.0 query, fetch and the change events, through the unmodified
simple-salesforce client against the emulator."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from syncswim_lib.connectors.base import ApplyBatch
from syncswim_lib.connectors.salesforce.client import json_text
from syncswim_lib.connectors.salesforce.connector import SalesforceConnector
from syncswim_lib.sandbox.salesforce.emulator import Emulator
from tests.connectors.salesforce.conftest import connector_for

pytestmark = pytest.mark.integration

SYNC = "app_crm"
NUMBERS = ["Revenue__c", "Share__c", "Units__c"]
TYPES = {
    "__ref": pa.string(),
    "Id": pa.string(),
    "Name": pa.string(),
    "Code__c": pa.string(),
    "Revenue__c": pa.decimal128(18, 2),
    "Share__c": pa.decimal128(18, 8),
    "Units__c": pa.decimal128(18, 0),
}
# every digit of each field's precision set: a double keeps 15 to 17 of them
EDGE = {
    "Revenue__c": Decimal("9876543210987654.32"),
    "Share__c": Decimal("1234567890.12345678"),
    "Units__c": Decimal("987654321098765432"),
}
NEGATIVE = {
    "Revenue__c": Decimal("-1234567890123456.79"),
    "Share__c": Decimal("-0.00000001"),
    "Units__c": Decimal("-100000000000000001"),
}
CHANGED = {
    "Revenue__c": Decimal("1111111111111111.11"),
    "Share__c": Decimal("9999999999.99999999"),
    "Units__c": Decimal("999999999999999999"),
}


def _table(
    rows: list[dict[str, Any]], names: list[str], wide: pa.DataType | None = None
) -> pa.Table:
    schema = pa.schema(
        [(n, (wide if n in NUMBERS and wide else TYPES[n])) for n in ["__ref", *names]]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def _batch(
    batch_id: str,
    inserts: list[dict[str, Any]] | None = None,
    updates: list[dict[str, Any]] | None = None,
    wide: pa.DataType | None = None,
) -> ApplyBatch:
    return ApplyBatch(
        batch_id=batch_id,
        origin=SYNC,
        table="Account",
        key_columns=("Id",),
        inserts=_table(inserts or [], ["Name", "Code__c", *NUMBERS]),
        updates=_table(updates or [], ["Id", *NUMBERS], wide),
        deletes=_table([], ["Id"]),
        insert_match=("Code__c",),
    )


def test_the_request_body_writes_decimals_as_exact_literals() -> None:
    text = json_text({"a": Decimal("9876543210987654.32"), "b": [Decimal("-0.10"), "x"]})
    assert text == '{"a": 9876543210987654.32, "b": [-0.10, "x"]}'
    assert float(Decimal("9876543210987654.32")) != Decimal("9876543210987654.32")


def _read(c: SalesforceConnector) -> dict[str, dict[str, Any]]:
    batches = c.snapshot("Account", ["Code__c", *NUMBERS], ["Id"], 100)
    return {r["Code__c"]: r for b in batches for r in b.to_pylist()}


@pytest.mark.parametrize("threshold", ["100000", "1"])  # SOQL pages / a Bulk API 2.0 job
def test_numbers_at_full_precision_round_trip_exactly(emu: Emulator, threshold: str) -> None:
    c = connector_for(emu, bulk_threshold=threshold)
    try:
        c.setup(SYNC, ["Account"])
        start = c.current_position(SYNC)
        made = c.apply(
            _batch(
                "b-ins",
                inserts=[
                    {"__ref": "e", "Name": "edge", "Code__c": "E", **EDGE},
                    {"__ref": "n", "Name": "negative", "Code__c": "N", **NEGATIVE},
                ],
            )
        )
        assert made.rejected == {} and made.inserted == 2
        ids = {ref: k["Id"] for ref, k in made.keys.items()}
        assert _read(c) == {"E": {"Code__c": "E", **EDGE}, "N": {"Code__c": "N", **NEGATIVE}}

        changed = c.apply(_batch("b-upd", updates=[{"__ref": "e", "Id": ids["e"], **CHANGED}]))
        assert changed.rejected == {} and changed.updated == 1
        # the upsert path (a replayed insert found by its external id) is exact as well
        again = c.apply(
            _batch("b-again", inserts=[{"__ref": "n2", "Name": "n", "Code__c": "N", **EDGE}])
        )
        assert again.rejected == {} and again.updated == 1
        assert _read(c) == {"E": {"Code__c": "E", **CHANGED}, "N": {"Code__c": "N", **EDGE}}

        [fetched] = c.fetch("Account", "Id", [ids["e"]])
        assert {n: fetched[n] for n in NUMBERS} == CHANGED

        events = c.capture(SYNC, ["Account"], start, 100).changes
        inserted = next(ch for ch in events if ch.key["Id"] == ids["e"])
        assert inserted.after is not None
        assert {n: inserted.after[n] for n in NUMBERS} == EDGE
        updated = [ch for ch in events if ch.key["Id"] == ids["e"]][-1]
        assert updated.after is not None
        assert {n: updated.after[n] for n in NUMBERS} == CHANGED
    finally:
        c.close()


def test_a_value_past_the_scale_is_rounded_by_the_org_and_read_back_as_stored(
    emu: Emulator, sfc: SalesforceConnector
) -> None:
    """The org rounds half up to the scale (the emulator as a real org): what comes back
    is what it stored, to the last digit; past the precision the record is refused."""
    rows = [
        {"__ref": "r", "Name": "round", "Code__c": "R", "Revenue__c": Decimal("1.00")},
    ]
    sfc.apply(_batch("b-r", inserts=rows))
    sf = emu.client()
    [rec] = sf.query_all("SELECT Id FROM Account WHERE Code__c = 'R'")["records"]
    sf.Account.update(rec["Id"], {"Share__c": "0.123456785", "Units__c": "12345678901234567"})
    assert _read(sfc)["R"] == {
        "Code__c": "R",
        "Revenue__c": Decimal("1.00"),
        "Share__c": Decimal("0.12345679"),
        "Units__c": Decimal("12345678901234567"),
    }
    too_big = {"__ref": "b", "Id": rec["Id"], "Revenue__c": Decimal("99999999999999999.00")}
    refused = sfc.apply(_batch("b-big", updates=[too_big], wide=pa.decimal128(28, 8)))
    assert "NUMBER_OUTSIDE_VALID_RANGE" in refused.rejected["b"]
