"""SalesforceConnector: the Connector protocol over simple-salesforce (REST, Bulk API 2.0)
and Change Data Capture over CometD.

The internals are split by role so each can move on its own: `settings` and `auth`
(logging in), `client` (calls and their errors), `describe`/`types` (what an object
is), `snapshot` (reading), `apply` (writing), `capture` (the change stream and its
replay-id position).

What Salesforce does not have, and what stands in for it:

- no transactions and no marker table: it does not declare batch markers
  (`Capabilities.batch_markers`), so the pipeline never asks it for a batch's recorded
  result nor prunes anything; apply is idempotent by external-id upserts (apply.py);
- no slot to create: `setup` checks that Change Data Capture is enabled for each object
  and changes nothing in the org, `teardown` has nothing to drop, `confirm` nothing to
  release (the org keeps events for 72 hours whatever a subscriber has read).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from syncswim_lib.connectors.base import ApplyBatch, ApplyResult, CaptureBatch
from syncswim_lib.connectors.checks import Finding, refuse_on_errors
from syncswim_lib.connectors.salesforce.apply import Progress, apply_batch
from syncswim_lib.connectors.salesforce.auth import open_client
from syncswim_lib.connectors.salesforce.capture import CdcReader
from syncswim_lib.connectors.salesforce.client import Api, ApiUsage, NotFound, TokenSource
from syncswim_lib.connectors.salesforce.describe import ObjectInfo, object_info
from syncswim_lib.connectors.salesforce.fallback import Fallback, Mixed
from syncswim_lib.connectors.salesforce.kind import CAPABILITIES
from syncswim_lib.connectors.salesforce.settings import SalesforceSettings
from syncswim_lib.connectors.salesforce.snapshot import fetch_rows, snapshot_rows
from syncswim_lib.envelope import Position
from syncswim_lib.errors import ConfigError
from syncswim_lib.values import TableInfo

if TYPE_CHECKING:
    import pyarrow as pa


class SalesforceConnector:
    capabilities = CAPABILITIES  # declared with the kind (kind.py)

    def __init__(self, settings: SalesforceSettings) -> None:
        self.settings = settings
        self.endpoint = settings.endpoint
        self._api: Api | None = None
        self._objects: dict[str, ObjectInfo] = {}
        self._progress = Progress()
        self._calls_before = 0
        # objects without Change Data Capture, polled by SystemModstamp (fallback.py)
        self.fallback = Fallback(self, self._reader)
        self._checked: dict[str, list[str]] = {}  # sync -> its objects, as check_server saw

    @staticmethod
    def from_settings(endpoint: str, values: Mapping[str, str]) -> SalesforceConnector:
        return SalesforceConnector(SalesforceSettings.from_resolved(endpoint, values))

    @property
    def api(self) -> Api:
        """Logged in at the first call that needs the org (describe, read, write)."""
        if self._api is None:
            self._api = Api(
                open_client(self.settings), self.endpoint, self.settings.api_budget_share
            )
        return self._api

    def _reader(self) -> CdcReader:
        api = self.api
        return CdcReader(
            lambda: api.instance_url,
            TokenSource(api),  # renews an expired session for a login form
            self.settings.api_version,
            self.settings.ca_bundle,
            self.endpoint,
        )

    def usage(self) -> ApiUsage:
        """The API calls this connector made (REST and Bulk API 2.0) and the org's daily
        count and allowance as its last answer gave them; for the run's report."""
        if self._api is None:
            return ApiUsage(self._calls_before)
        u = self._api.usage()
        return ApiUsage(self._calls_before + u.calls, u.used, u.limit)

    def budget_open(self) -> bool:
        """Whether this endpoint may call the org again after a pause on its API budget:
        one `limits` call (pipeline/pausing.py asks it before anything else)."""
        return self.api.budget_open()

    def close(self) -> None:
        if self._api is not None:
            self._calls_before += self._api.usage().calls  # a later login counts on
            self._api.sf.session.close()
            self._api = None

    # -- description -----------------------------------------------------------------

    def describe_object(self, sobject: str) -> ObjectInfo:
        if sobject not in self._objects:
            try:
                raw = self.api.describe(sobject)
            except NotFound:
                raise ConfigError(
                    f"object {sobject} does not exist in Salesforce endpoint {self.endpoint} "
                    "(or the integration user cannot see it)"
                ) from None
            self._objects[sobject] = object_info(raw)
        return self._objects[sobject]

    def describe(self, table: str) -> TableInfo:
        return self.describe_object(table).table

    # -- setup -----------------------------------------------------------------------

    def check_server(self, syncs: Mapping[str, Sequence[str]]) -> list[Finding]:
        """What `syncswim doctor` and live `validate` report: objects whose changes the
        org does not publish, which capture polls by SystemModstamp instead (a warning:
        they cost API calls and are seen seconds to minutes later)."""
        objects = sorted({name for tables in syncs.values() for name in tables})
        self._checked.update({sync: list(tables) for sync, tables in syncs.items()})
        return [
            Finding(
                "warning",
                self.endpoint,
                f"Change Data Capture is not enabled for {name}: it is polled by "
                "SystemModstamp instead (every 5 s to 5 min, one API call a poll)",
                f"in Setup → Change Data Capture, select {name}",
            )
            for name in self.fallback.disabled(objects)
        ]

    def check_streaming(self, syncs: Sequence[str]) -> list[Finding]:
        """Live `validate` for syncs in `run: streaming` (after check_server): an object
        without change events cannot be streamed, which is an error (kind.py)."""
        from syncswim_lib.connectors.salesforce.kind import STREAMING_FIX, streaming_refusal

        findings = []
        for sync in syncs:
            off = self.fallback.disabled(self._checked.get(sync, []))
            if off:
                findings.append(
                    Finding(
                        "error",
                        self.endpoint,
                        f"sync {sync}: {streaming_refusal(self.endpoint, off)}",
                        STREAMING_FIX,
                    )
                )
        return findings

    def setup(self, sync: str, tables: Sequence[str]) -> None:
        """Changes nothing in the org: checks that the objects exist and notes those whose
        change events are not published (polled instead, fallback.py)."""
        for name in tables:
            self.describe_object(name)
        self.fallback.note(sync, list(tables))
        refuse_on_errors(
            self.check_server({sync: list(tables)}),
            f"setup of sync {sync} in endpoint {self.endpoint}",
        )

    def teardown(self, sync: str) -> None:
        """Nothing: setup created nothing in the org."""

    # -- change stream ---------------------------------------------------------------

    def current_position(self, sync: str) -> Position:
        """The newest replay id; with polled objects, their cursors as well."""
        return self.fallback.start(sync, self._reader().latest().replay_id)

    def reset_position(self, sync: str) -> Position:
        """After PositionLost: capture goes on from the newest retained event."""
        return self.current_position(sync)

    def capture(
        self,
        sync: str,
        tables: Sequence[str],
        since: Position | None,
        max_changes: int,
        skip_origin: str | None = None,
    ) -> CaptureBatch:
        objects = {name: self.describe_object(name) for name in tables}
        return self.fallback.capture(sync, objects, since, max(max_changes, 1), skip_origin)

    def confirm(self, sync: str, position: Position) -> None:
        """Nothing to release: the org keeps events for its retention window anyway."""
        Mixed.decode(position)  # a replay id, with polled objects' cursors or without

    # -- reading and writing records -------------------------------------------------

    def snapshot(
        self, table: str, columns: Sequence[str], order_by: Sequence[str], batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        info = self.describe_object(table)
        return snapshot_rows(
            self.api, info, columns, order_by, batch_rows, self.settings.bulk_threshold
        )

    def fetch(self, table: str, column: str, values: Sequence[Any]) -> list[dict[str, Any]]:
        return fetch_rows(self.api, self.describe_object(table), column, values)

    def apply(self, batch: ApplyBatch) -> ApplyResult:
        return apply_batch(
            self.api,
            self.describe_object(batch.table),
            batch,
            self._progress,
            self.settings.bulk_write_threshold,
        )
