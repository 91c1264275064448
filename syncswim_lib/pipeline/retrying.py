"""A connector whose writes and lookups are retried with backoff (`retry:` of the sync).

Only calls that are safe to repeat are retried: `apply` (idempotent: with batch markers
each batch commits with its marker, so a batch that committed before the connection
dropped is answered from the marker, not written twice; without, by external-id
upserts), `fetch` and `applied_result` (reads; only for a connector that declares batch
markers, whose `capabilities` the wrapper carries on). A snapshot is a stream
consumed as it comes: a failure in the middle fails the step, and Dagster's retry runs it
again. Everything else is passed through unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import pyarrow as pa

from syncswim_lib.connectors.base import (
    ApplyBatch,
    ApplyResult,
    BatchMarkers,
    CaptureBatch,
    Connector,
    markers_of,
)
from syncswim_lib.envelope import Position
from syncswim_lib.pipeline.backoff import Retrier
from syncswim_lib.values import TableInfo


class RetryingConnector:
    def __init__(self, inner: Connector, retrier: Retrier, endpoint: str) -> None:
        self.inner = inner
        self.retrier = retrier
        self.endpoint = endpoint
        self.capabilities = inner.capabilities

    def apply(self, batch: ApplyBatch) -> ApplyResult:
        return self.retrier.call(
            lambda: self.inner.apply(batch), f"apply of batch {batch.batch_id} to {self.endpoint}"
        )

    def fetch(self, table: str, column: str, values: Sequence[Any]) -> list[dict[str, Any]]:
        return self.retrier.call(
            lambda: self.inner.fetch(table, column, values), f"read of {table} on {self.endpoint}"
        )

    def applied_result(self, sync: str, batch_id: str) -> ApplyResult | None:
        markers = self._markers()
        return self.retrier.call(
            lambda: markers.applied_result(sync, batch_id),
            f"marker read of {batch_id} on {self.endpoint}",
        )

    def _markers(self) -> BatchMarkers:
        """The inner connector's markers; asked for only when it declares them (the
        wrapper has the methods either way, its `capabilities` say whether to call)."""
        markers = markers_of(self.inner)
        if markers is None:
            raise TypeError(f"endpoint {self.endpoint} keeps no batch markers")
        return markers

    def describe(self, table: str) -> TableInfo:
        return self.inner.describe(table)

    def setup(self, sync: str, tables: Sequence[str]) -> None:
        self.inner.setup(sync, tables)

    def teardown(self, sync: str) -> None:
        self.inner.teardown(sync)

    def current_position(self, sync: str) -> Position:
        return self.inner.current_position(sync)

    def capture(
        self,
        sync: str,
        tables: Sequence[str],
        since: Position | None,
        max_changes: int,
        skip_origin: str | None = None,
    ) -> CaptureBatch:
        return self.inner.capture(sync, tables, since, max_changes, skip_origin)

    def confirm(self, sync: str, position: Position) -> None:
        self.inner.confirm(sync, position)

    def snapshot(
        self, table: str, columns: Sequence[str], order_by: Sequence[str], batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        return self.inner.snapshot(table, columns, order_by, batch_rows)

    def prune_markers(self, older_than: timedelta) -> int:
        return self._markers().prune_markers(older_than)

    def close(self) -> None:
        self.inner.close()
