"""The Salesforce connector against the emulator, through the unmodified simple-salesforce
client and CometD: auth forms, describe, snapshot (SOQL and Bulk API 2.0), fetch,
apply (collections, per-record errors, idempotent upserts, compare-and-set, retriable
faults, the origin tag) and Change Data Capture (origins, echoes, gaps, expiry)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from simple_salesforce.api import Salesforce

from syncswim_lib.config.models import Endpoint, FrozenDict
from syncswim_lib.connectors.base import ApplyBatch, markers_of
from syncswim_lib.connectors.registry import open_connector
from syncswim_lib.connectors.salesforce.connector import SalesforceConnector
from syncswim_lib.envelope import Op, ReplayPosition
from syncswim_lib.errors import ConfigError, PositionLost, RetriableError
from syncswim_lib.sandbox.salesforce.emulator import Emulator
from tests.connectors.salesforce.conftest import connector_for

pytestmark = pytest.mark.integration

SYNC = "app_crm"
STR = pa.string()


def _table(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> pa.Table:
    types = {
        "__set": pa.list_(STR),
        "__check": pa.list_(STR),
        "Credit__c": pa.float64(),
        "Seats__c": pa.int64(),
        "Seen__c": pa.timestamp("us", tz="UTC"),
    }
    schema = pa.schema([("__ref", STR)] + [(n, types.get(n, STR)) for n in names])
    return pa.Table.from_pylist([dict(r) for r in rows], schema=schema)


def batch(
    batch_id: str,
    *,
    inserts: Sequence[dict[str, Any]] = (),
    updates: Sequence[dict[str, Any]] = (),
    deletes: Sequence[dict[str, Any]] = (),
    insert_match: tuple[str, ...] = (),
    expected: Sequence[dict[str, Any]] | None = None,
    table: str = "Account",
) -> ApplyBatch:
    def names(rows: Sequence[dict[str, Any]], default: list[str]) -> list[str]:
        return list(dict.fromkeys(c for r in rows for c in r if c != "__ref")) or default

    exp = None
    if expected is not None:
        exp = _table(expected, names(expected, ["__check"]))
    return ApplyBatch(
        batch_id=batch_id,
        origin=SYNC,
        table=table,
        key_columns=("Id",),
        inserts=_table(inserts, names(inserts, ["Name"])),
        updates=_table(updates, names(updates, ["Id"])),
        deletes=_table(deletes, ["Id"]),
        insert_match=insert_match,
        expected=exp,
    )


def accounts(sf: Salesforce) -> dict[str, dict[str, Any]]:
    rows = sf.query_all("SELECT Id, Name, Code__c, Tier__c FROM Account")["records"]
    return {r["Code__c"]: r for r in rows}


# --- auth and describe ------------------------------------------------------------------


def _pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


PEM = _pem()
JWT = {
    "username": "integration@syncswim.emulator",
    "consumer_key": "syncswim-emulator-key",
    "private_key": PEM,
}


@pytest.mark.parametrize(
    "form",
    ["session", "oauth_password", "client_credentials", "soap_password", "jwt_bearer"],
)
def test_every_auth_form_logs_in_through_simple_salesforce(emu: Emulator, form: str) -> None:
    login = {"login_url": emu.url}
    extra: dict[str, str] = {
        "session": {"token": emu.token("integration")},
        "oauth_password": {
            **login,
            "username": "integration@syncswim.emulator",
            "password": "integration-password",
            "consumer_key": "syncswim-emulator-key",
            "consumer_secret": "syncswim-emulator-secret",
        },
        "client_credentials": {
            **login,
            "domain": "syncswim.my",  # the flow needs the org's My Domain
            "consumer_key": "syncswim-emulator-key",
            "consumer_secret": "syncswim-emulator-secret",
        },
        "soap_password": {
            **login,
            "username": "integration@syncswim.emulator",
            "password": "integration-password",
            "security_token": "INTEGRATIONTOKEN",
        },
        "jwt_bearer": {**login, **JWT},
    }[form]
    c = connector_for(emu, **extra)
    try:
        assert c.describe("Account").primary_key == ("Id",)
        assert c.settings.form == form
    finally:
        c.close()


def test_refused_credentials_are_a_config_error_without_the_password(emu: Emulator) -> None:
    c = connector_for(
        emu,
        login_url=emu.url,
        username="integration@syncswim.emulator",
        password="not-the-password",
    )
    with pytest.raises(ConfigError) as info:
        c.describe("Account")
    assert "not-the-password" not in str(info.value)
    assert "endpoints.crm" in str(info.value)


def test_jwt_bearer_takes_a_key_file_or_a_pem_with_escaped_newlines(
    emu: Emulator, tmp_path: Any
) -> None:
    key_file = tmp_path / "sf.key"
    key_file.write_text(PEM)
    # a key file, and a PEM from an environment variable on one line (newlines as \\n)
    one_line = PEM.replace("\n", "\\n")
    for key in ({"private_key_file": str(key_file)}, {"private_key": one_line}):
        emu.control.policy.clear_requests()
        settings = {k: v for k, v in JWT.items() if k != "private_key"}
        c = connector_for(emu, login_url=emu.url, **settings, **key)
        try:
            assert c.settings.form == "jwt_bearer"
            assert c.describe("Account").primary_key == ("Id",)
        finally:
            c.close()
        assert len(emu.control.requests("/services/oauth2/token", "POST")) == 1


def test_jwt_bearer_refusals_name_the_setting_and_never_the_key(
    emu: Emulator, tmp_path: Any
) -> None:
    def refused(**settings: str) -> str:
        c = connector_for(emu, login_url=emu.url, **{**JWT, **settings})
        try:
            with pytest.raises(ConfigError) as info:
                c.describe("Account")
        finally:
            c.close()
        assert "PRIVATE KEY" not in str(info.value) or "expected -----BEGIN" in str(info.value)
        return str(info.value)

    assert "invalid_grant" in refused(username="nobody@syncswim.emulator")
    assert "invalid_client_id" in refused(consumer_key="not-our-app")
    text = refused(private_key="-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----")
    assert "endpoints.crm.private_key: not a PEM private key" in text
    missing = tmp_path / "absent.key"
    c = SalesforceConnector.from_settings(
        "crm",
        {
            "instance_url": emu.url,
            "ca_bundle": str(emu.ca_path),
            "login_url": emu.url,
            "username": JWT["username"],
            "consumer_key": JWT["consumer_key"],
            "private_key_file": str(missing),
        },
    )
    with pytest.raises(ConfigError, match=r"endpoints\.crm\.private_key_file: .*cannot be read"):
        c.describe("Account")
    with pytest.raises(ConfigError, match="one way to log in"):  # both kinds of key
        SalesforceConnector.from_settings(
            "crm", {"instance_url": emu.url, **JWT, "private_key_file": str(missing)}
        )


@pytest.mark.parametrize("form", ["jwt_bearer", "oauth_password"])
def test_an_expired_session_is_renewed_for_rest_bulk_and_cometd(emu: Emulator, form: str) -> None:
    login: dict[str, str] = {
        "jwt_bearer": JWT,
        "oauth_password": {
            "username": "integration@syncswim.emulator",
            "password": "integration-password",
            "consumer_key": "syncswim-emulator-key",
            "consumer_secret": "syncswim-emulator-secret",
        },
    }[form]
    _seed(emu, 3)
    c = connector_for(emu, login_url=emu.url, bulk_threshold="2", **login)
    try:
        c.setup(SYNC, ["Account"])
        start = c.current_position(SYNC)
        emu.control.seed("Account", [{"Name": "late", "Code__c": "L1"}])
        tokens = "/services/oauth2/token"
        logins = len(emu.control.requests(tokens))
        assert emu.control.revoke(user="integration") >= 1  # the session expires
        got = c.capture(SYNC, ["Account"], start, 100)  # CometD: handshake refused, renewed
        assert [ch.after["Code__c"] for ch in got.changes if ch.after] == ["L1"]
        assert len(emu.control.requests(tokens)) == logins + 1
        # a CometD call answered HTTP 401 (not a Bayeux error): renewed the same way
        emu.control.add_fault("session", method="POST", path="^/cometd/")
        before = len(emu.control.requests("^/cometd/"))
        assert c.capture(SYNC, ["Account"], got.end_position, 100).changes == ()
        statuses = [r["status"] for r in emu.control.requests("^/cometd/")][before:]
        assert statuses[0] == 401 and set(statuses[1:]) == {200}, statuses
        assert len(emu.control.requests(tokens)) == logins + 2
        # a Bulk API 2.0 query job refused as expired: renewed and sent again
        emu.control.set_page_size(2)  # a first page that is not all: the job reads them
        emu.control.add_fault("session", method="POST", path="/jobs/query$")
        rows = [
            r for b in c.snapshot("Account", ["Id", "Code__c"], ["Id"], 10) for r in b.to_pylist()
        ]
        assert len(rows) == 4
        assert [r["status"] for r in emu.control.requests("/jobs/query$", "POST")] == [401, 200]
        assert len(emu.control.requests(tokens)) == logins + 3
        emu.control.revoke(user="integration")
        assert c.describe("Contact").primary_key == ("Id",)  # a plain REST call
        assert len(emu.control.requests(tokens)) == logins + 4
    finally:
        c.close()


def test_an_expired_session_token_is_a_fatal_error_naming_the_endpoint(
    emu: Emulator,
) -> None:
    from syncswim_lib.errors import FatalError

    c = connector_for(emu)
    try:
        emu.control.revoke(user="integration")
        with pytest.raises(FatalError, match=r"endpoint crm: the session was refused"):
            c.describe("Account")
    finally:
        c.close()


def test_mixed_or_missing_auth_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="one way to log in"):
        SalesforceConnector.from_settings("crm", {"instance_url": "https://x", "password": "p"})
    with pytest.raises(ConfigError, match="one way to log in"):
        SalesforceConnector.from_settings(
            "crm", {"instance_url": "https://x", "token": "t", "username": "u", "password": "p"}
        )
    with pytest.raises(ConfigError, match="https://"):
        SalesforceConnector.from_settings("crm", {"instance_url": "http://x", "token": "t"})


def test_the_registry_opens_a_salesforce_endpoint(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from syncswim_lib.config.secrets import Secret

    monkeypatch.setenv("SF_TEST_TOKEN", emu.token("integration"))
    endpoint = Endpoint(
        "crm",
        "salesforce",
        FrozenDict(
            {
                "instance_url": emu.url,
                "token": Secret(env="SF_TEST_TOKEN"),
                "ca_bundle": str(emu.ca_path),
            }
        ),
    )
    c = open_connector(endpoint)
    try:
        assert isinstance(c, SalesforceConnector)
        assert c.describe("Contact").column("AccountId") is not None
    finally:
        c.close()


def test_describe_gives_families_lengths_and_flags(sfc: SalesforceConnector) -> None:
    info = sfc.describe("Account")
    col = info.column
    assert info.primary_key == ("Id",) and ("Code__c",) in info.unique
    assert (col("Id").family, col("Id").max_length, col("Id").auto_generated) == (  # type: ignore[union-attr]
        "text",
        18,
        True,
    )
    assert (col("Name").family, col("Name").nullable) == ("text", False)  # type: ignore[union-attr]
    credit = col("Credit__c")
    assert credit is not None and (credit.family, credit.precision, credit.scale) == (
        "decimal",
        10,
        2,
    )
    assert col("Seats__c").family == "int"  # type: ignore[union-attr]
    assert col("Active__c").family == "bool"  # type: ignore[union-attr]
    assert col("Since__c").family == "date"  # type: ignore[union-attr]
    seen = col("Seen__c")
    assert seen is not None and (seen.family, seen.precision) == ("timestamptz", 0)
    assert col("Tier__c").family == "text"  # type: ignore[union-attr]
    assert col("ParentId").db_type == "reference(Account)"  # type: ignore[union-attr]
    assert col("BillingAddress") is None and col("BillingCity") is not None  # compound: parts
    obj = sfc.describe_object("Account")
    assert obj.fields["Code__c"].external_id and obj.fields["Tier__c"].restricted_picklist
    assert obj.fields["Name"].required_on_create and not obj.fields["Id"].createable
    with pytest.raises(ConfigError, match="does not exist"):
        sfc.describe("Nothing__c")


# --- reading ----------------------------------------------------------------------------


def _seed(emu: Emulator, n: int, first: int = 0) -> list[str]:
    records = [
        {"Name": f"acct {i:04d}", "Code__c": f"C{i:04d}", "Credit__c": i + 0.5, "Seats__c": i}
        for i in range(first, first + n)
    ]
    return list(emu.control.seed("Account", records))


@pytest.mark.parametrize("threshold", ["100000", "1"])  # SOQL pages / a Bulk API 2.0 job
def test_snapshot_reads_every_record_in_id_order(emu: Emulator, threshold: str) -> None:
    _seed(emu, 45)
    # SOQL paging is exercised with fewer records; more than one page, so that a bulk
    # threshold below 45 takes a job (the whole object in the first page is read from it)
    emu.control.set_page_size(20)
    c = connector_for(emu, bulk_threshold=threshold)
    try:
        batches = list(c.snapshot("Account", ["Id", "Code__c", "Credit__c"], ["Id"], 10))
    finally:
        c.close()
    assert [b.num_rows for b in batches] == [10, 10, 10, 10, 5]
    rows = [r for b in batches for r in b.to_pylist()]
    ids = [r["Id"] for r in rows]
    assert len(set(ids)) == 45
    if threshold != "1":  # SOQL: the org's ORDER BY Id, page after page
        org = emu.client().query_all("SELECT Id FROM Account ORDER BY Id")["records"]
        assert ids == [r["Id"] for r in org]
    first = next(r for r in rows if r["Code__c"] == "C0007")
    assert first["Credit__c"] == Decimal("7.50")
    bulk = [r for r in emu.control.requests() if "/jobs/query" in r["path"]]
    assert bool(bulk) == (threshold == "1")


def test_fetch_splits_long_value_lists_and_skips_impossible_values(
    emu: Emulator, sfc: SalesforceConnector
) -> None:
    _seed(emu, 1500)
    wanted = [f"C{i:04d}" for i in range(1500)] + ["nobody", None, "x" * 50]
    before = len(emu.control.requests(path="/query"))
    rows = sfc.fetch("Account", "Code__c", wanted)
    calls = len(emu.control.requests(path="/query")) - before
    assert len(rows) == 1500 and calls >= 2  # one URL cannot carry 1500 codes
    assert {r["Seats__c"] for r in rows} == set(range(1500))
    assert sfc.fetch("Account", "Id", ["not-an-id", None]) == []


# --- writing ----------------------------------------------------------------------------


def test_apply_writes_200_a_call_and_parks_what_the_org_refuses(
    emu: Emulator, sfc: SalesforceConnector, human: Salesforce
) -> None:
    good = [{"__ref": f"i{i}", "Name": f"n{i}", "Code__c": f"K{i}"} for i in range(450)]
    bad = [
        {"__ref": "long", "Name": "x" * 300, "Code__c": "BAD1"},
        {"__ref": "pick", "Name": "p", "Code__c": "BAD2", "Tier__c": "Bronze"},
        {"__ref": "req", "Name": None, "Code__c": "BAD3"},
    ]
    before = len(emu.control.requests(path="/composite/sobjects"))
    res = sfc.apply(batch("b1", inserts=good + bad, insert_match=("Code__c",)))
    calls = emu.control.requests(path="/composite/sobjects")[before:]
    assert len(calls) == 3  # 453 records: 200 + 200 + 53
    assert all(c["headers"].get("sforce-call-options") == f"client={SYNC}" for c in calls)
    assert res.inserted == 450 and len(res.keys) == 450
    assert res.rejected["long"].startswith("STRING_TOO_LONG")
    assert res.rejected["pick"].startswith("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")
    assert res.rejected["req"].startswith("REQUIRED_FIELD_MISSING")
    assert len(accounts(human)) == 450


def test_a_replayed_insert_batch_updates_by_external_id_and_never_duplicates(
    sfc: SalesforceConnector, human: Salesforce
) -> None:
    b = batch(
        "b-replay",
        inserts=[{"__ref": "r1", "Name": "one", "Code__c": "E1"}],
        insert_match=("Code__c",),
    )
    first = sfc.apply(b)
    again = sfc.apply(b)  # the engine replays a batch after a crash
    assert (first.inserted, again.inserted, again.updated) == (1, 0, 1)
    assert first.keys == again.keys
    assert list(accounts(human)) == ["E1"]
    assert markers_of(sfc) is None  # no markers in Salesforce: the upsert made it safe


def test_updates_and_deletes_by_id_with_missing_records_reported(
    emu: Emulator, sfc: SalesforceConnector, human: Salesforce
) -> None:
    a, b, c = _seed(emu, 3)
    human.Account.delete(c)
    res = sfc.apply(
        batch(
            "b-ud",
            updates=[
                {"__ref": "u1", "Id": a, "Name": "renamed", "Tier__c": "Gold", "__set": ["Name"]},
                {"__ref": "u2", "Id": c, "Name": "in the bin", "Tier__c": None, "__set": None},
                {"__ref": "u3", "Id": None, "Name": "no key", "Tier__c": None, "__set": None},
            ],
            deletes=[{"__ref": "d1", "Id": b}, {"__ref": "d2", "Id": c}],
        )
    )
    assert (res.updated, res.deleted) == (1, 1)
    assert set(res.missing) == {"u2", "d2"} and set(res.rejected) == {"u3"}
    row = human.Account.get(a)
    assert (row["Name"], row["Tier__c"]) == ("renamed", None)  # __set: Name only


def test_compare_and_set_reads_first_and_leaves_changed_records(
    emu: Emulator, sfc: SalesforceConnector, human: Salesforce
) -> None:
    a, b = _seed(emu, 2)
    human.Account.update(b, {"Name": "changed by a person"})
    res = sfc.apply(
        batch(
            "b-cas",
            updates=[
                {"__ref": "ua", "Id": a, "Name": "ours", "__set": ["Name"]},
                {"__ref": "ub", "Id": b, "Name": "ours", "__set": ["Name"]},
            ],
            expected=[
                {"__ref": "ua", "__check": ["Name"], "Name": "acct 0000"},
                {"__ref": "ub", "__check": ["Name"], "Name": "acct 0001"},
            ],
        )
    )
    assert res.stale == ("ub",) and res.updated == 1
    assert human.Account.get(b)["Name"] == "changed by a person"
    assert human.Account.get(a)["Name"] == "ours"


@pytest.mark.parametrize(
    ("kind", "options", "text"),
    [
        ("lock", {}, "UNABLE_TO_LOCK_ROW"),
        ("limit", {}, "request limit"),
        ("error", {"status": 503, "error_code": "SERVER_UNAVAILABLE"}, "HTTP 503"),
    ],
)
def test_transient_faults_are_retriable_and_a_retry_writes_once(
    emu: Emulator,
    sfc: SalesforceConnector,
    human: Salesforce,
    kind: str,
    options: dict[str, Any],
    text: str,
) -> None:
    rows = [{"__ref": f"i{i}", "Name": f"n{i}"} for i in range(250)]  # two calls, no ext id
    # the second collection call of the batch fails; the first one was written
    emu.control.add_fault(
        kind, method="POST", path="/composite/sobjects", times=1, skip=1, **options
    )
    b = batch("b-fault", inserts=rows)
    with pytest.raises(RetriableError, match=text):
        sfc.apply(b)
    res = sfc.apply(b)  # the pipeline's retry: the answered call is not sent again
    assert res.inserted == 250
    assert human.query("SELECT COUNT() FROM Account")["totalSize"] == 250


# --- capture ----------------------------------------------------------------------------


def test_capture_converts_events_and_recognises_our_own_writes(
    emu: Emulator, sfc: SalesforceConnector, human: Salesforce
) -> None:
    sfc.setup(SYNC, ["Account"])
    start = sfc.current_position(SYNC)
    made = human.Account.create(
        {"Name": "by hand", "Code__c": "H1", "Credit__c": 12.5, "Since__c": "2024-02-03"}
    )["id"]
    human.Account.update(made, {"Seen__c": "2024-02-03T04:05:06.000Z", "Tier__c": "Gold"})
    ours = sfc.apply(
        batch("b-own", inserts=[{"__ref": "o", "Name": "ours", "Code__c": "O1"}])
    ).keys["o"]["Id"]
    human.Account.delete(made)
    got = sfc.capture(SYNC, ["Account"], start, 100)
    ops = [(c.op, c.key["Id"], c.origin) for c in got.changes]
    assert ops == [
        (Op.INSERT, made, None),
        (Op.UPDATE, made, None),
        (Op.INSERT, ours, SYNC),
        (Op.DELETE, made, None),
    ]
    ins, upd = got.changes[0], got.changes[1]
    assert ins.after is not None and ins.after["Credit__c"] == Decimal("12.50")
    assert ins.after["Since__c"] == date(2024, 2, 3) and ins.after["Tier__c"] is None
    assert upd.after is not None and upd.changed_fields is not None
    assert {"Seen__c", "Tier__c"} <= set(upd.changed_fields)
    assert isinstance(upd.after["Seen__c"], datetime) and upd.after["Seen__c"].second == 6
    assert isinstance(got.end_position, ReplayPosition)
    skipped = sfc.capture(SYNC, ["Account"], start, 100, skip_origin=SYNC)
    assert skipped.echoes == {"Account": 1} and len(skipped.changes) == 3
    assert sfc.capture(SYNC, ["Account"], got.end_position, 100).changes == ()


def test_capture_keeps_transactions_whole_past_max_changes(
    emu: Emulator, sfc: SalesforceConnector
) -> None:
    start = sfc.current_position(SYNC)
    _seed(emu, 5)  # one transaction: one event per record
    _seed(emu, 5, first=5)
    first = sfc.capture(SYNC, ["Account"], start, 3)
    assert len(first.changes) == 5
    rest = sfc.capture(SYNC, ["Account"], first.end_position, 3)
    assert len(rest.changes) == 5
    assert {c.key["Id"] for c in first.changes}.isdisjoint({c.key["Id"] for c in rest.changes})


def test_a_gap_event_and_an_expired_replay_id_are_lost_positions(
    emu: Emulator, sfc: SalesforceConnector
) -> None:
    start = sfc.current_position(SYNC)
    [a] = _seed(emu, 1)
    user = emu.users["integration"].user_id
    emu.bus.inject("Account", "GAP_OVERFLOW", [a], user)
    with pytest.raises(PositionLost, match="GAP_OVERFLOW"):
        sfc.capture(SYNC, ["Account"], start, 100)
    after = sfc.reset_position(SYNC)
    assert sfc.capture(SYNC, ["Account"], after, 100).changes == ()
    emu.control.clock_advance(timedelta(hours=73).total_seconds())
    _seed(emu, 1, first=1)  # a new event; the old ones are past the retention window
    with pytest.raises(PositionLost, match="no longer retained"):
        sfc.capture(SYNC, ["Account"], after, 100)


def test_an_object_without_change_data_capture_is_a_warning_not_a_refusal(
    emu: Emulator, sfc: SalesforceConnector
) -> None:
    """It is polled instead (test_salesforce_fallback.py)."""
    emu.bus.disable("Contact")
    sfc.setup(SYNC, ["Account", "Contact"])
    [finding] = sfc.check_server({SYNC: ["Account", "Contact"], "other": ["Account"]})
    assert (finding.severity, finding.endpoint) == ("warning", "crm")
    assert "Change Data Capture is not enabled for Contact" in finding.problem
    assert "polled by SystemModstamp" in finding.problem
    assert "select Contact" in finding.fix
    sfc.teardown(SYNC)


def test_fetch_by_text_with_quotes_backslashes_and_newlines(
    emu: Emulator, sfc: SalesforceConnector
) -> None:
    odd = ["O'Brien", 'back\\slash "quoted"', "two\nlines", "100% _like_"]
    emu.control.seed("Account", [{"Name": n} for n in [*odd, "100 plain"]])
    found = sfc.fetch("Account", "Name", odd)
    assert sorted(r["Name"] for r in found) == sorted(odd)
