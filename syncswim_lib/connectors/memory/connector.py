"""MemoryConnector: the Connector Protocol over a `MemoryDatabase`, for planner and merge
tests without servers.

It behaves as the SQL connectors do where the pipeline can tell: whole transactions in
order, full `before` images, a primary-key change as a delete and an insert of the same
commit at consecutive positions, origin tagging, idempotent apply with a marker and
compare-and-set, rows refused one by one, snapshots ordered as Python orders values.
A session ended by `MemoryDatabase.kill_sessions` fails the next call with
RetriableError; the call after that opens a new session.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from syncswim_lib.connectors.base import (
    ApplyBatch,
    ApplyResult,
    Capabilities,
    CaptureBatch,
    without_origin,
)
from syncswim_lib.connectors.memory import markers
from syncswim_lib.connectors.memory.apply import apply_batch
from syncswim_lib.connectors.memory.database import (
    MemoryDatabase,
    RowEvent,
    Slot,
    position_order,
)
from syncswim_lib.connectors.memory.values import (
    IntegrityError,
    copy_row,
    hashable,
    record_batch,
    sort_key,
    stored,
)
from syncswim_lib.envelope import Change, Op, Position
from syncswim_lib.errors import ConfigError, FatalError, RetriableError
from syncswim_lib.values import TableInfo


class MemoryConnector:
    capabilities = Capabilities(
        change_stream=True,
        hard_deletes=True,
        upsert_by_external_id=True,
        origin_tagging=True,
        batch_markers=True,
        max_batch_rows=5000,
    )

    def __init__(
        self,
        database: MemoryDatabase,
        endpoint: str = "memory",
        capabilities: Capabilities | None = None,
    ) -> None:
        self.db = database
        self.endpoint = endpoint
        if capabilities is not None:  # a test's target with other limits (max_batch_rows)
            self.capabilities = capabilities
        self._session: int | None = None

    def _connected(self) -> MemoryDatabase:
        if self._session is None:
            self._session = self.db._open_session()
        elif not self.db._session_alive(self._session):
            self.db._close_session(self._session)
            self._session = None
            raise RetriableError(
                f"the session of endpoint {self.endpoint} was ended by the memory database "
                f"{self.db.name}; the next call reconnects"
            )
        return self.db

    def close(self) -> None:
        if self._session is not None:
            self.db._close_session(self._session)
            self._session = None

    # -- description and setup -------------------------------------------------------------
    def describe(self, table: str) -> TableInfo:
        return self._connected().describe(table)

    def setup(self, sync: str, tables: Sequence[str]) -> None:
        db = self._connected()
        with db._cond:
            infos = [db.describe(t) for t in tables]
            for info in infos:
                if not info.primary_key:
                    raise ConfigError(
                        f"table {info.name} in endpoint {self.endpoint} has no primary key: "
                        "capture identifies rows by it"
                    )
            if db._markers is None:
                db._markers = {}
            slot = db._slots.get(sync)
            names = frozenset(i.name for i in infos)
            if slot is None:
                db._slots[sync] = Slot(names, db.current_position())
            else:
                slot.tables = names

    def teardown(self, sync: str) -> None:
        db = self._connected()
        with db._cond:
            db._slots.pop(sync, None)
            if not db._slots:
                db._markers = None  # the last sync's teardown drops the marker store
            db._trim()

    # -- change stream ---------------------------------------------------------------------
    def current_position(self, sync: str) -> Position:
        return self._connected().current_position()

    def _slot(self, sync: str) -> Slot:
        slot = self.db._slots.get(sync)
        if slot is None:
            raise FatalError(
                f"memory database {self.db.name} (endpoint {self.endpoint}) has no slot for "
                f"sync {sync}: run its setup"
            )
        return slot

    def capture(
        self,
        sync: str,
        tables: Sequence[str],
        since: Position | None,
        max_changes: int,
        skip_origin: str | None = None,
    ) -> CaptureBatch:
        db = self._connected()
        if since is not None:
            db.check_position(since, "resume capture from")
        wanted = frozenset(tables)
        limit = max(max_changes, 1)
        detected = datetime.now(UTC)
        with db._cond:
            slot = self._slot(sync)
            wanted &= slot.tables
            released = position_order(slot.confirmed)
            after = None if since is None else position_order(since)
            changes: list[Change] = []
            end = since
            for commit in db._log:
                commit_end = db.end_position(commit.number)
                if position_order(commit_end) <= released:
                    continue
                if after is not None and position_order(commit_end) <= after:
                    continue
                for seq, event in enumerate(commit.events, start=1):
                    position = db.change_position(commit.number, seq)
                    if event.table not in wanted:
                        continue
                    if after is not None and position_order(position) <= after:
                        continue
                    changes.append(
                        _change(event, position, commit.commit_ts, detected, commit.origin)
                    )
                end = commit_end
                if len(changes) >= limit:
                    break
        return without_origin(CaptureBatch(tuple(changes), end), skip_origin)

    def confirm(self, sync: str, position: Position) -> None:
        db = self._connected()
        db.check_position(position, "confirm")
        with db._cond:
            slot = self._slot(sync)
            if position_order(position) > position_order(slot.confirmed):
                slot.confirmed = position
            db._trim()

    # -- reading rows ----------------------------------------------------------------------
    def snapshot(
        self, table: str, columns: Sequence[str], order_by: Sequence[str], batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        db = self._connected()
        if batch_rows < 1:
            raise ConfigError(f"batch_rows must be at least 1, not {batch_rows}")
        with db._cond:
            t = db._table(table)
            cols = [t.column(c) for c in columns]
            order = [t.column(c) for c in order_by]
            for col in order:
                if col.family == "json":
                    raise ConfigError(f"cannot order a snapshot by JSON column {col.name}")
            rows = [copy_row(r) for r in t.rows.values()]
        rows.sort(key=lambda r: tuple(sort_key(r.get(c.name), c) for c in order))
        return self._batches(rows, cols, batch_rows)

    @staticmethod
    def _batches(
        rows: list[dict[str, Any]], cols: list[Any], batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        for start in range(0, len(rows), batch_rows):
            yield record_batch(rows[start : start + batch_rows], cols)

    def fetch(self, table: str, column: str, values: Sequence[Any]) -> list[dict[str, Any]]:
        db = self._connected()
        with db._cond:
            t = db._table(table)
            col = t.column(column)
            wanted = set()
            for value in values:
                try:
                    v = stored(value, col)
                except IntegrityError:
                    continue  # a value the column cannot hold matches no row
                if v is not None:  # NULL equals nothing
                    wanted.add(hashable(v))
            if not wanted:
                return []
            return [
                copy_row(row)
                for _, row in db._matching(t, {})
                if hashable(row.get(column)) in wanted
            ]

    # -- writing rows ----------------------------------------------------------------------
    def apply(self, batch: ApplyBatch) -> ApplyResult:
        return apply_batch(self._connected(), batch)

    def applied_result(self, sync: str, batch_id: str) -> ApplyResult | None:
        return markers.applied_result(self._connected(), sync, batch_id)

    def prune_markers(self, older_than: timedelta) -> int:
        return markers.prune(self._connected(), older_than)


def _change(
    event: RowEvent,
    position: Position,
    commit_ts: datetime,
    detected: datetime,
    origin: str | None,
) -> Change:
    before = None if event.before is None else copy_row(event.before)
    after = None if event.after is None else copy_row(event.after)
    changed = None
    if event.op == Op.UPDATE and before is not None and after is not None:
        changed = tuple(c for c in after if before.get(c) != after[c])
    return Change(
        op=event.op,
        table=event.table,
        key=copy_row(event.key),
        after=after,
        before=before,
        position=position,
        commit_ts=commit_ts,
        detected_at=detected,
        origin=origin,
        changed_fields=changed,
    )
