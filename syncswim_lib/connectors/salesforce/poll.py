"""Polling `SystemModstamp`: a Salesforce endpoint declared `capture: poll`
(docs/salesforce.md, "Objects without Change Data Capture"). `PolledSalesforce` is the
Salesforce connector's describe, snapshot, fetch and apply as they are, with capture by
the polling machinery of `connectors/polling/` (closed-range cursor, boundary
de-duplication, safety lag, one WatermarkPosition per endpoint) in place of Change Data
Capture; `SalesforcePollSource` is the `PollSource` that machinery asks its queries of,
in SOQL.

- Changed records: `queryAll` (the recycle bin included) of every described field with
  `SystemModstamp >= cursor`, ordered by `(SystemModstamp, Id)`, a page at a time; a
  page starts after the last `(SystemModstamp, Id)` of the one before, so a run of
  records sharing one stamp (an org stamps whole seconds, a bulk job thousands of
  records in one) is paged too.
- Deletes: a deleted record stays in the recycle bin (15 days) with `IsDeleted = true`
  and a new `SystemModstamp`, so the same query reads it. `IsDeleted` is the object's
  soft-delete column; the cursor's rule "set means deleted" is "true means deleted" here,
  so the value false is given to the poller as NULL. With `deleted: none` or
  `{keyset_every: ...}` the plain `query` is used and the recycle bin is not read.
- The poll's start time is this machine's clock (the REST API has no clock to ask):
  the safety lag covers the difference to the org's as well as late commits.
- Key-set comparison (`deleted: {keyset_every: ...}`): the linked Ids are looked up by
  sObject Collections retrieve, 2,000 a call (records purged from the recycle bin or
  never seen deleted by a poll).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from syncswim_lib.config.polling import PollSpec, poll_key
from syncswim_lib.connectors.base import ApplyBatch, ApplyResult, CaptureBatch
from syncswim_lib.connectors.checks import Finding, refuse_on_errors
from syncswim_lib.connectors.polling.capture import After, Poller
from syncswim_lib.connectors.polling.checks import poll_findings
from syncswim_lib.connectors.polling.rows import soft_deleted_filter
from syncswim_lib.connectors.salesforce.client import Api, ApiUsage
from syncswim_lib.connectors.salesforce.kind import POLLED_CAPABILITIES
from syncswim_lib.connectors.salesforce.types import soql_literal, to_canonical
from syncswim_lib.envelope import Position, WatermarkPosition
from syncswim_lib.errors import FatalError
from syncswim_lib.values import TableInfo

if TYPE_CHECKING:
    import pyarrow as pa

    from syncswim_lib.connectors.salesforce.connector import SalesforceConnector

DELETED = "IsDeleted"
# fields an org keeps current on every write and indexes, so a poll by one of them
# needs no trigger and no index of its own
MAINTAINED = frozenset({"SystemModstamp", "LastModifiedDate"})
INDEXED = ("Id", "Name", "CreatedDate", "SystemModstamp", "OwnerId", "RecordTypeId")


class SalesforcePollSource:
    """The queries polling asks of one polled Salesforce endpoint (module text)."""

    def __init__(self, conn: SalesforceConnector, polls: Mapping[str, PollSpec]) -> None:
        self.conn = conn
        self.polls = polls
        self.endpoint = conn.endpoint

    def describe(self, table: str) -> TableInfo:
        return self.conn.describe(table)

    def clock(self) -> datetime:
        return datetime.now(UTC)

    def _recycle_bin(self, table: str) -> bool:
        return soft_deleted_filter(self.polls, table) == DELETED

    def max_value(self, info: TableInfo, column: str) -> Any:
        col = info.column(column)
        assert col is not None
        soql = (
            f"SELECT {column} FROM {info.name} WHERE {column} != null "
            f"ORDER BY {column} DESC LIMIT 1"
        )
        for page in self.conn.api.query_pages(soql, f"reading the newest {column} of {info.name}"):
            for record in page:
                return to_canonical(record.get(column), col)
        return None

    def changed_rows(
        self,
        info: TableInfo,
        column: str,
        since: Any,
        after: After | None,
        key: Sequence[str],
        limit: int,
    ) -> list[dict[str, Any]]:
        col = info.column(column)
        assert col is not None and tuple(key) == ("Id",)
        where = [f"{column} != null"]
        if since is not None:
            where.append(f"{column} >= {soql_literal(since, col)}")
        if after is not None:
            at = soql_literal(after[0], col)
            id_col = info.column("Id")
            assert id_col is not None
            last = soql_literal(after[1][0], id_col)
            where.append(f"({column} > {at} OR ({column} = {at} AND Id > {last}))")
        fields = ", ".join(c.name for c in info.columns)
        soql = (
            f"SELECT {fields} FROM {info.name} WHERE {' AND '.join(where)} "
            f"ORDER BY {column} ASC, Id ASC LIMIT {int(limit)}"
        )
        recycle = self._recycle_bin(info.name)
        rows: list[dict[str, Any]] = []
        what = f"polling {info.name} by {column}"
        for page in self.conn.api.query_pages(soql, what, include_deleted=recycle):
            for record in page:
                row = {c.name: to_canonical(record.get(c.name), c) for c in info.columns}
                if DELETED in row:
                    # the poller's soft-delete rule is "not NULL means deleted"
                    row[DELETED] = True if row[DELETED] else None
                rows.append(row)
        return rows

    def existing_keys(
        self, info: TableInfo, key: Sequence[str], keys: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        return existing_ids(self.conn.api, info, keys)

    # -- what validate asks (connectors/polling/checks.py) ------------------------------

    def index_columns(self, table: str) -> list[tuple[str, ...]]:
        info = self.conn.describe_object(table)
        names = [n for n in INDEXED if info.field(n) is not None]
        names += [f.name for f in info.fields.values() if f.external_id or f.unique]
        return [(n,) for n in dict.fromkeys(names)]

    def maintained(self, table: str, column: str) -> bool | None:
        return True if column in MAINTAINED else None


def existing_ids(api: Api, info: TableInfo, keys: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Those of `keys` ({"Id": ...}) whose record is live (not deleted, not purged)."""
    ids = [str(k["Id"]) for k in keys if k.get("Id") is not None]
    found = api.retrieve(info.name, ids, ["Id"], f"comparing the Ids of {info.name}")
    return [{"Id": str(r["Id"])} for r in found]


def spec_findings(
    endpoint: str, polls: Mapping[str, PollSpec], syncs: Mapping[str, Sequence[str]]
) -> list[Finding]:
    """What a Salesforce side's `poll:` may not say (the generic checks are in
    connectors/polling/checks.py)."""
    out: list[Finding] = []
    for sync, tables in syncs.items():
        for table in tables:
            spec = polls.get(poll_key(sync, table))
            if spec is None:
                continue
            if spec.written_by is not None:
                out.append(
                    Finding(
                        "error",
                        endpoint,
                        f"poll.{endpoint}.written_by of {table} is not supported yet on a "
                        "Salesforce object (our writes are recognised by shadow comparison)",
                        "remove written_by",
                    )
                )
            if spec.deleted.column not in (None, DELETED):
                out.append(
                    Finding(
                        "error",
                        endpoint,
                        f"poll.{endpoint}.deleted of {table} names {spec.deleted.column}: a "
                        "Salesforce object's deletes are its recycle bin (IsDeleted)",
                        "deleted: {column: IsDeleted}, {keyset_every: 1h} or none",
                    )
                )
    return out


class PolledSalesforce:
    """A Salesforce endpoint with `capture: poll` (module text)."""

    capabilities = POLLED_CAPABILITIES  # declared with the kind (kind.py)

    def __init__(
        self,
        inner: SalesforceConnector,
        polls: Mapping[str, PollSpec],
        now: Callable[[], float] = time.time,
    ) -> None:
        self.inner = inner
        self.endpoint = inner.endpoint
        self.polls = polls
        self.source = SalesforcePollSource(inner, polls)
        self.poller = Poller(self.source, polls, now)

    # -- the Salesforce connector as it is -------------------------------------------

    def describe(self, table: str) -> TableInfo:
        return self.inner.describe(table)

    def fetch(self, table: str, column: str, values: Sequence[Any]) -> list[dict[str, Any]]:
        return self.inner.fetch(table, column, values)

    def snapshot(
        self, table: str, columns: Sequence[str], order_by: Sequence[str], batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        return self.inner.snapshot(table, columns, order_by, batch_rows)

    def apply(self, batch: ApplyBatch) -> ApplyResult:
        return self.inner.apply(batch)

    def usage(self) -> ApiUsage:
        return self.inner.usage()

    def budget_open(self) -> bool:
        return self.inner.budget_open()

    def close(self) -> None:
        self.inner.close()

    def teardown(self, sync: str) -> None:
        """Nothing: setup created nothing in the org."""

    # -- setup and validate ------------------------------------------------------------

    def check_server(self, syncs: Mapping[str, Sequence[str]]) -> list[Finding]:
        """The polled objects' modification fields (no Change Data Capture needed)."""
        return [
            *spec_findings(self.endpoint, self.polls, syncs),
            *poll_findings(self.source, self.polls, syncs),
        ]

    def setup(self, sync: str, tables: Sequence[str]) -> None:
        """Changes nothing in the org: checks the objects and their poll: declarations."""
        for name in tables:
            self.inner.describe_object(name)
        refuse_on_errors(
            self.check_server({sync: list(tables)}),
            f"setup of sync {sync} in endpoint {self.endpoint}",
        )

    # -- capture by polling ------------------------------------------------------------

    def current_position(self, sync: str) -> Position:
        return self.poller.current_position(sync)

    def capture(
        self,
        sync: str,
        tables: Sequence[str],
        since: Position | None,
        max_changes: int,
        skip_origin: str | None = None,
    ) -> CaptureBatch:
        return self.poller.capture(sync, tables, since, max_changes, skip_origin)

    def confirm(self, sync: str, position: Position) -> None:
        """Nothing to release: the org keeps no changes for us."""
        if not isinstance(position, WatermarkPosition):
            raise FatalError(f"a polled Salesforce endpoint has no {position.kind} position")

    def existing_keys(
        self, info: TableInfo, key: Sequence[str], keys: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """For the key-set comparison (`deleted: {keyset_every: ...}`)."""
        return self.source.existing_keys(info, key, keys)
