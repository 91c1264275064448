"""Build CometD change events (spec §4.2 to 4.4) from one committed org transaction.

Pure functions: no clock, no I/O, no replay ids (the bus assigns those). Kept apart from
the bus so the event shape can be unit-tested record by record.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from syncswim_lib.sandbox.salesforce.contract import (
    CallContext,
    ChangeType,
    CommittedTransaction,
    RecordChange,
)

ALL_CHANNEL = "/data/ChangeEvents"

# Never in a change event body (spec §4.4): the id travels in recordIds, IsDeleted and
# SystemModstamp are excluded by Salesforce; view/reference dates are not data changes.
EXCLUDED_FIELDS = frozenset(
    {"Id", "IsDeleted", "SystemModstamp", "LastViewedDate", "LastReferencedDate", "attributes"}
)

_ADDRESS_PARTS = (
    "Street",
    "City",
    "State",
    "PostalCode",
    "Country",
    "StateCode",
    "CountryCode",
    "Latitude",
    "Longitude",
    "GeocodeAccuracy",
)
_ADDRESS_PREFIXES = ("Billing", "Shipping", "Mailing", "Other")
_NAME_PARTS = ("Salutation", "FirstName", "MiddleName", "LastName", "Suffix")
# Objects whose personal name is a compound `Name` in change events; their flat `Name`
# is the derived full name and is not sent.
_NAME_COMPOUND_OBJECTS = frozenset({"Contact", "Lead"})
# Objects with an un-prefixed `Address` compound (Street, City, ...).
_PLAIN_ADDRESS_OBJECTS = frozenset({"Lead"})

_DATETIME_TEXT = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:?\d{2})"
)
_OFFSET_NO_COLON = re.compile(r"[+-]\d{4}$")


@dataclass(frozen=True)
class BuiltEvent:
    """One change event before the bus gives it a replay id."""

    entity: str
    commit_ms: int
    data: dict[str, Any]  # {"schema", "payload"}; "event" is added by the bus


def channel_for(entity: str) -> str:
    """`Account` → `/data/AccountChangeEvent`; `Foo__c` → `/data/Foo__ChangeEvent`."""
    if entity.endswith("__c"):
        return f"/data/{entity[:-3]}__ChangeEvent"
    return f"/data/{entity}ChangeEvent"


def entity_for(channel: str) -> str | None:
    """Inverse of `channel_for`; None for `/data/ChangeEvents` and non-CDC channels."""
    if channel == ALL_CHANNEL or not channel.startswith("/data/"):
        return None
    name = channel[len("/data/") :]
    if name.endswith("__ChangeEvent") and len(name) > len("__ChangeEvent"):
        return name[: -len("__ChangeEvent")] + "__c"
    if name.endswith("ChangeEvent") and len(name) > len("ChangeEvent") and "/" not in name:
        return name[: -len("ChangeEvent")]
    return None


@functools.lru_cache(maxsize=1024)
def schema_id(entity: str) -> str:
    """A stable, opaque 22-char schema id per entity (real ids are opaque too)."""
    digest = hashlib.sha256(entity.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:22]


def change_origin(ctx: CallContext) -> str:
    """`com/salesforce/api/<api>/<ver>[;client=<id>]`; empty for non-API changes (§4.3)."""
    if not ctx.api:
        return ""
    origin = f"com/salesforce/api/{ctx.api}/{ctx.api_version}"
    return f"{origin};client={ctx.origin}" if ctx.origin else origin


def cometd_value(value: Any) -> Any:
    """CometD payload dates are `2024-04-09T20:26:27.000Z` (spec §3), not REST's +0000."""
    if isinstance(value, datetime):
        utc = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        # exact, as the record holds it: the CometD answer writes it as a numeric literal
        return value
    if isinstance(value, str) and _DATETIME_TEXT.fullmatch(value):
        return _cometd_datetime_text(value)
    return value


@functools.lru_cache(maxsize=256)  # a transaction stamps the same few instants everywhere
def _cometd_datetime_text(value: str) -> str:
    text = value.replace("Z", "+00:00")
    if _OFFSET_NO_COLON.search(text):
        text = f"{text[:-2]}:{text[-2:]}"
    return str(cometd_value(datetime.fromisoformat(text)))


@functools.lru_cache(maxsize=1024)  # callers only read the maps
def _compounds(entity: str) -> tuple[dict[str, tuple[str, tuple[str, ...]]], frozenset[str]]:
    """Flat field → (compound name, sub-field) for the standard compound fields, and the
    compound names themselves."""
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for prefix in _ADDRESS_PREFIXES:
        for part in _ADDRESS_PARTS:
            out[prefix + part] = (f"{prefix}Address", (part,))
    if entity in _PLAIN_ADDRESS_OBJECTS:
        for part in _ADDRESS_PARTS:
            out[part] = ("Address", (part,))
    if entity in _NAME_COMPOUND_OBJECTS:
        for part in _NAME_PARTS:
            out[part] = ("Name", (part,))
    return out, frozenset(compound for compound, _ in out.values())


def _body(
    entity: str, fields: Mapping[str, Any], excluded: Collection[str]
) -> tuple[dict[str, Any], list[str]]:
    """Event body for these flat fields, nesting compounds; also the field names as paths."""
    # The org may also keep the compound itself (e.g. a BillingAddress dict, a derived
    # Contact Name): the event rebuilds it from the parts instead (`wrappers`).
    compounds, wrappers = _compounds(entity)
    body: dict[str, Any] = {}
    paths: list[str] = []
    for name, value in fields.items():
        if name in EXCLUDED_FIELDS or name in excluded or name in wrappers:
            continue
        if name in compounds:
            compound, (part,) = compounds[name]
            body.setdefault(compound, {})[part] = cometd_value(value)
            paths.append(f"{compound}.{part}")
        else:
            body[name] = cometd_value(value)
            paths.append(name)
    return body, paths


def _fields_for(
    change: RecordChange, excluded: Collection[str]
) -> tuple[dict[str, Any], list[str]]:
    """(body, changedFields) for one record change, per change type (spec §4.4)."""
    kind: ChangeType = change.change_type
    if kind == "DELETE":
        return {}, []
    after = dict(change.after or {})
    if kind in ("CREATE", "UNDELETE"):
        present = {k: v for k, v in after.items() if v is not None}
        body, _ = _body(change.sobject, present, excluded)
        return body, []
    before = dict(change.before or {})
    keys = list(after) + [k for k in before if k not in after]
    changed = {k: after.get(k) for k in keys if before.get(k) != after.get(k)}
    # LastModifiedDate is always in an UPDATE event, even if the clock did not move.
    if "LastModifiedDate" in after:
        changed["LastModifiedDate"] = after["LastModifiedDate"]
    body, paths = _body(change.sobject, changed, excluded)
    return body, paths


def build_events(
    tx: CommittedTransaction,
    merge: bool = True,
    excluded: Callable[[str], Collection[str]] | None = None,
) -> list[BuiltEvent]:
    """One event per record change, in commit order; with `merge`, identical changes to
    several records of one object share one event listing all `recordIds` (spec §4.3)."""
    commit_ms = int(tx.commit_timestamp.timestamp() * 1000)
    groups: list[tuple[RecordChange, dict[str, Any], list[str], list[str]]] = []
    index: dict[str, int] = {}
    # The org already folded several DML on one record into one change (spec §4.4).
    for change in tx.changes:
        skip = excluded(change.sobject) if excluded else ()
        body, changed = _fields_for(change, skip)
        if not merge or len(tx.changes) == 1:  # nothing to merge with: skip the key
            groups.append((change, body, changed, [change.record_id]))
            continue
        key = json.dumps(
            [change.sobject, change.change_type, body, changed], sort_keys=True, default=str
        )
        if key in index:
            groups[index[key]][3].append(change.record_id)
            continue
        index[key] = len(groups)
        groups.append((change, body, changed, [change.record_id]))
    events: list[BuiltEvent] = []
    for seq, (change, body, changed, ids) in enumerate(groups, start=1):
        header = {
            "entityName": change.sobject,
            "recordIds": ids,
            "changeType": change.change_type,
            "changeOrigin": change_origin(tx.ctx),
            "transactionKey": tx.transaction_key,
            "sequenceNumber": seq,
            "commitTimestamp": commit_ms,
            "commitNumber": tx.commit_number,
            "commitUser": tx.ctx.user_id,
            "changedFields": changed,
        }
        payload = {"ChangeEventHeader": header, **body}
        events.append(
            BuiltEvent(
                change.sobject, commit_ms, {"schema": schema_id(change.sobject), "payload": payload}
            )
        )
    return events
