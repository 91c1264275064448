"""Change Data Capture over CometD (cometd_client.py) as envelope Changes.

One channel per endpoint, `/data/ChangeEvents` (every CDC-enabled object), so one replay
id is the whole position (ReplayPosition) and events of related objects keep the org's
commit order; events of objects the sync does not read are passed over.

In micro-batch runs each `capture` call is a short CometD session: handshake, subscribe
after the stored replay id, connects that ask the server not to hold them (`timeout` 0)
until one brings nothing, disconnect. Nothing is kept between calls, so a process that
restarts resumes from the journal's replay id alone. A streaming run reads one long-lived
session instead (stream.py); both turn events into batches with `Collector`.

- A change event names one or more records (`recordIds`: Salesforce merges the same
  change to several records of one transaction): one Change per record, at the event's
  replay id (the journal tells them apart by key).
- CREATE and UNDELETE carry the record's non-empty fields (an insert), UPDATE the
  changed ones (an update: `after` holds those, `changed_fields` names them), DELETE the
  header only. Compound fields (`Name` of a Contact, `BillingAddress`) are flattened
  into their parts (`FirstName`, `BillingCity`).
- `origin`: the `client=` of `changeOrigin`, which the org copies from the
  `Sforce-Call-Options` header of the write (apply sends the sync's name there).
- A gap event (GAP_*, GAP_OVERFLOW: changes the org could not describe) and a stored
  replay id outside the retention window raise PositionLost: the pipeline reconciles
  the objects from a snapshot and captures again from the current position.
- Transactions stay whole: past `max_changes` the events of the last transaction are
  still taken (its `transactionKey`), the next capture resumes after them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from syncswim_lib.connectors.base import CaptureBatch
from syncswim_lib.connectors.salesforce.cometd_client import (
    REPLAY_ALL,
    REPLAY_NEW,
    ChangeEvent,
    CometdClient,
    CometdSubscribeError,
    ReplayIdInvalidError,
)
from syncswim_lib.connectors.salesforce.describe import ObjectInfo
from syncswim_lib.connectors.salesforce.types import to_canonical
from syncswim_lib.envelope import Change, Op, Position, ReplayPosition
from syncswim_lib.errors import ConfigError, PositionLost

ALL_CHANNEL = "/data/ChangeEvents"
OPS = {"CREATE": Op.INSERT, "UNDELETE": Op.INSERT, "UPDATE": Op.UPDATE, "DELETE": Op.DELETE}
# fields a change event never carries (Salesforce leaves them out of every event): an
# insert's image does not claim they are null
NOT_IN_EVENTS = frozenset(
    {"Id", "IsDeleted", "SystemModstamp", "LastViewedDate", "LastReferencedDate"}
)


def channel_for(sobject: str) -> str:
    """`Account` → `/data/AccountChangeEvent`; `Foo__c` → `/data/Foo__ChangeEvent`."""
    if sobject.endswith("__c"):
        return f"/data/{sobject[:-3]}__ChangeEvent"
    return f"/data/{sobject}ChangeEvent"


def replay_of(position: Position | None) -> int:
    """The replay id to subscribe after; no position yet: everything retained."""
    if position is None:
        return REPLAY_ALL
    if not isinstance(position, ReplayPosition):
        raise ConfigError(
            f"a Salesforce change stream cannot resume from a {position.kind} position"
        )
    return position.replay_id


def origin_of(change_origin: str | None) -> str | None:
    """`com/salesforce/api/rest/62.0;client=app_crm` → `app_crm` (None without one)."""
    for part in (change_origin or "").split(";")[1:]:
        for option in part.split(","):
            name, _, value = option.strip().partition("=")
            if name == "client" and value:
                return value
    return None


def flatten(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Compound values as their parts: `{"Name": {"FirstName": "A"}}` → FirstName,
    `{"BillingAddress": {"City": "X"}}` → BillingCity, a Lead's `Address` → City."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, dict):
            prefix = name[: -len("Address")] if name.endswith("Address") else ""
            for part, v in value.items():
                out[f"{prefix}{part}"] = v
        else:
            out[name] = value
    return out


def _changed(header: Mapping[str, Any]) -> tuple[str, ...]:
    names = []
    for name in header.get("changedFields") or ():
        head, dot, part = str(name).partition(".")
        if dot:  # BillingAddress.City → BillingCity, Name.FirstName → FirstName
            head = head[: -len("Address")] if head.endswith("Address") else ""
            names.append(head + part)
        else:
            names.append(head)
    return tuple(dict.fromkeys(names))


def to_changes(
    event: ChangeEvent, objects: Mapping[str, ObjectInfo], detected: datetime
) -> list[Change]:
    """The Changes of one event for the objects read (none for other objects)."""
    header = event.header
    entity = str(header.get("entityName", ""))
    info = objects.get(entity)
    if info is None:
        return []
    kind = str(header.get("changeType", ""))
    if kind.startswith("GAP_"):
        raise PositionLost(
            f"Salesforce sent a {kind} event for {entity} (replay id {event.replay_id}): "
            "changes to those records were not described"
        )
    op = OPS.get(kind)
    if op is None:
        return []  # SNAPSHOT and types Salesforce may add: nothing to apply
    commit_ms = header.get("commitTimestamp")
    commit_ts = None if commit_ms is None else datetime.fromtimestamp(int(commit_ms) / 1000, UTC)
    values: dict[str, Any] = {}
    for name, raw in flatten(event.fields).items():
        col = info.table.column(name)
        if col is not None:
            values[name] = to_canonical(raw, col)
    changed = _changed(header) if op == Op.UPDATE else None
    out = []
    for record_id in header.get("recordIds") or ():
        key = {"Id": str(record_id)}
        if op == Op.DELETE:
            after = None
            before: dict[str, Any] | None = dict(key)
        else:
            after = {**values, **key}
            if op == Op.INSERT:
                # a create names only its non-empty fields: the others are null
                empty = {c.name: None for c in info.table.columns if c.name not in NOT_IN_EVENTS}
                after = empty | after
            before = None
        out.append(
            Change(
                op=op,
                table=entity,
                key=key,
                after=after,
                before=before,
                position=ReplayPosition(event.replay_id),
                commit_ts=commit_ts,
                detected_at=detected,
                origin=origin_of(header.get("changeOrigin")),
                changed_fields=changed,
            )
        )
    return out


class CdcReader:
    """Short CometD sessions against one org (see the module's text)."""

    def __init__(
        self,
        instance_url: Callable[[], str],
        token: Callable[[], str],
        api_version: str,
        ca_path: str | None,
        endpoint: str,
    ) -> None:
        self._url = instance_url
        self._token = token
        self._version = api_version
        self._ca = ca_path
        self.endpoint = endpoint

    def _client(self) -> CometdClient:
        # poll_timeout 0: a connect is answered at once with what is there, so a capture
        # never waits for changes that are not coming
        return CometdClient(
            self._url(),
            self._token,
            api_version=self._version,
            ca_path=self._ca,
            poll_timeout=0.0,
            max_retries=2,
            retry_delay=0.2,
        )

    def disabled(self, objects: Sequence[str]) -> list[str]:
        """The objects whose change events the org does not publish (not selected for
        Change Data Capture: their channel refuses a subscription)."""
        off = []
        with self._client() as client:
            for name in objects:
                try:
                    client.subscribe(channel_for(name), REPLAY_NEW)
                except CometdSubscribeError:
                    off.append(name)
                    continue
                client.unsubscribe(channel_for(name))
        return off

    def latest(self) -> ReplayPosition:
        """The newest replay id the org still keeps (every retained event read once,
        values not decoded): a capture from it sees only what is published later.
        With nothing retained, "everything retained" (-2) is the same point."""
        last = REPLAY_ALL
        with self._client() as client:
            client.subscribe(ALL_CHANNEL, REPLAY_ALL)
            while batch := client.poll():
                last = max(last, max(e.replay_id for e in batch))
        return ReplayPosition(last)

    def read(
        self,
        since: Position | None,
        objects: Mapping[str, ObjectInfo],
        max_changes: int,
        skip_origin: str | None,
    ) -> CaptureBatch:
        start = replay_of(since)
        collector = Collector(objects, max_changes, skip_origin)
        detected = datetime.now(UTC)
        with self._client() as client:
            try:
                client.subscribe(ALL_CHANNEL, start)
            except ReplayIdInvalidError as exc:
                raise lost_replay(start, self.endpoint, exc) from None
            while events := client.poll():
                if not all(collector.take(event, detected) for event in events):
                    break
        return collector.batch(since)


def lost_replay(start: int, endpoint: str, exc: ReplayIdInvalidError) -> PositionLost:
    return PositionLost(
        f"the stored replay id {start} of endpoint {endpoint} is no longer "
        f"retained by the org ({exc.error})"
    )


class Collector:
    """Change events in stream order into one CaptureBatch: the objects read, our own
    writes counted as echoes, whole transactions (past `max_changes` the rest of the
    last transaction is still taken). Shared by the short sessions above and the
    streaming reader (stream.py), so both produce the same batches."""

    def __init__(
        self, objects: Mapping[str, ObjectInfo], max_changes: int, skip_origin: str | None
    ) -> None:
        self.objects = objects
        self.max_changes = max_changes
        self.skip_origin = skip_origin
        self.changes: list[Change] = []
        self.echoes: dict[str, int] = {}
        self.end: int | None = None
        self._closing: str | None = None  # past max_changes: the transaction being read

    def take(self, event: ChangeEvent, detected: datetime) -> bool:
        """Add `event`; False (not added) once the batch is full and its last
        transaction has ended. A gap event raises PositionLost (to_changes)."""
        tx = str(event.header.get("transactionKey", ""))
        if self._closing is not None and tx != self._closing:
            return False
        for change in to_changes(event, self.objects, detected):
            if self.skip_origin is not None and change.origin == self.skip_origin:
                self.echoes[change.table] = self.echoes.get(change.table, 0) + 1
            else:
                self.changes.append(change)
        self.end = event.replay_id
        if self._closing is None and len(self.changes) + sum(self.echoes.values()) >= (
            self.max_changes
        ):
            self._closing = tx
        return True

    def batch(self, since: Position | None) -> CaptureBatch:
        if self.end is None:
            return CaptureBatch((), since)
        return CaptureBatch(tuple(self.changes), ReplayPosition(self.end), self.echoes)
