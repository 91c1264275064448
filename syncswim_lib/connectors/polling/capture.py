"""Capture by polling: the `capture`/`current_position`/`confirm` part of the Connector
Protocol for a source that has no change stream, over a `PollSource` (the few queries
a SQL database answers for it). The cursor rules are in `cursor.py`.

A polled row is emitted as an update (a poll cannot tell an insert from an update; the
merge reads both sides' rows as they are now either way), or as a delete when its
soft-delete column is set. Its position is the row's version (table, modification
value, key, digest), so the journal takes each version once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from syncswim_lib.config.polling import PollSpec, find_poll
from syncswim_lib.connectors.base import CaptureBatch, without_origin
from syncswim_lib.connectors.polling.cursor import CursorState, Read, TableCursor, digest, step
from syncswim_lib.envelope import Change, Op, Position, WatermarkPosition
from syncswim_lib.errors import ConfigError
from syncswim_lib.values import TableInfo
from syncswim_lib.values.codec import encode, key_text

# rows per query: a page is ordered by (modification value, key) and the next one starts
# after the last row of the previous, so a run of rows sharing one value is paged too
PAGE_ROWS = 1000
TIME_FAMILIES = ("timestamp", "timestamptz")

After = tuple[Any, tuple[Any, ...]]


class PollSource(Protocol):
    """What polling asks of a database; values in and out are canonical."""

    endpoint: str

    def describe(self, table: str) -> TableInfo: ...

    def clock(self) -> datetime:
        """The database's clock now (aware, UTC): the poll's start time."""
        ...

    def max_value(self, info: TableInfo, column: str) -> Any:
        """The largest value of `column` (None for an empty table)."""
        ...

    def changed_rows(
        self,
        info: TableInfo,
        column: str,
        since: Any,
        after: After | None,
        key: Sequence[str],
        limit: int,
    ) -> list[dict[str, Any]]:
        """Every column of the rows with `column >= since` (every non-NULL one when
        `since` is None) and, when `after` is given, `(column, *key) > after`; ordered by
        (column, *key), at most `limit`."""
        ...

    def existing_keys(
        self, info: TableInfo, key: Sequence[str], keys: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Those of `keys` that have a row (keys only)."""
        ...


def spec_for(
    polls: Mapping[str, PollSpec], sync: str, table: str, endpoint: str
) -> tuple[str, PollSpec]:
    """(the table as declared: the name its cursor is kept under, its spec)."""
    found = find_poll(polls, sync, table)
    if found is None:
        raise ConfigError(
            f"table {table} of endpoint {endpoint} is not declared as polled in sync {sync} "
            "(poll: of its entity)"
        )
    return found


def mod_column(info: TableInfo, spec: PollSpec, endpoint: str) -> str:
    column = info.column(spec.column)
    if column is None:
        raise ConfigError(
            f"the modification column {spec.column} does not exist in {info.name} of "
            f"endpoint {endpoint}"
        )
    if column.family not in (*TIME_FAMILIES, "int"):
        raise ConfigError(
            f"the modification column {spec.column} of {info.name} in endpoint {endpoint} is "
            f"{column.db_type}: expected a timestamp or an integer version"
        )
    return column.family


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Poller:
    """The capture role over a PollSource. `polls`: the endpoint's `Endpoint.polls`;
    `now`: the poller's clock in epoch seconds (a test's fake clock)."""

    def __init__(
        self,
        source: PollSource,
        polls: Mapping[str, PollSpec],
        now: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.polls = polls
        self.now = now

    def tables(self, sync: str) -> list[str]:
        prefix = f"{sync}/"
        return sorted(k[len(prefix) :] for k in self.polls if k.startswith(prefix))

    def current_position(self, sync: str) -> Position:
        """Where the first poll starts, for a snapshot taken next: a timestamp column
        from the clock minus the safety lag (a transaction that wrote an older time and
        commits after the snapshot is still read), a version column from its largest
        value now."""
        clock = self.source.clock()
        tables: dict[str, TableCursor] = {}
        for table in self.tables(sync):
            _, spec = spec_for(self.polls, sync, table, self.source.endpoint)
            info = self.source.describe(table)
            if mod_column(info, spec, self.source.endpoint) in TIME_FAMILIES:
                start: Any = clock - timedelta(seconds=spec.safety_lag_s)
            else:
                start = self.source.max_value(info, spec.column)
            tables[table] = TableCursor(start)
        return CursorState(tables).to_position()

    def capture(
        self,
        sync: str,
        tables: Sequence[str],
        since: Position | None,
        max_changes: int,
        skip_origin: str | None = None,
    ) -> CaptureBatch:
        if since is not None and not isinstance(since, WatermarkPosition):
            raise ConfigError(f"a polled endpoint cannot start from a {since.kind} position")
        state = CursorState.from_position(since)
        # the poll's own start, read before any row: the cursor may not pass it - lag
        clock = self.source.clock()
        now = self.now()
        detected = _utcnow()
        changes: list[Change] = []
        new_tables = dict(state.tables)
        for table in sorted(tables):
            if len(changes) >= max_changes:
                break
            declared, spec = spec_for(self.polls, sync, table, self.source.endpoint)
            info = self.source.describe(table)
            family = mod_column(info, spec, self.source.endpoint)
            old = state.table(declared)
            reads, complete = self._read(info, spec, old, max_changes - len(changes))
            decided = step(
                old,
                reads,
                started_clock=clock if family in TIME_FAMILIES else None,
                now=now,
                lag_s=spec.safety_lag_s,
                complete=complete,
            )
            new_tables[declared] = decided.state
            timed = family in TIME_FAMILIES
            changes.extend(_change(table, r, spec, sync, timed, detected) for r in decided.emit)
        end = CursorState(new_tables).to_position()
        return without_origin(CaptureBatch(tuple(changes), end), skip_origin)

    def _read(
        self, info: TableInfo, spec: PollSpec, old: TableCursor, budget: int
    ) -> tuple[list[Read], bool]:
        """The rows from the cursor on, page by page, until the end of the range or until
        `budget` rows not seen before are read; (rows, whether the end was reached)."""
        key = info.primary_key
        if not key:
            raise ConfigError(
                f"table {info.name} in endpoint {self.source.endpoint} has no primary key: "
                "polling identifies rows by it"
            )
        reads: list[Read] = []
        fresh = 0
        after: After | None = None
        while True:
            rows = self.source.changed_rows(info, spec.column, old.cursor, after, key, PAGE_ROWS)
            for row in rows:
                r = Read({k: row[k] for k in key}, row[spec.column], row)
                reads.append(r)
                prior = old.seen.get(key_text(r.key))
                if prior is None or prior.mod != r.mod or prior.digest != digest(row):
                    fresh += 1
            if len(rows) < PAGE_ROWS:
                return reads, True
            if fresh >= budget:
                return reads, False
            last = rows[-1]
            after = (last[spec.column], tuple(last[k] for k in key))

    def confirm(self, sync: str, position: Position) -> None:
        """Nothing to release: a polled source keeps no changes for us."""


def _change(
    table: str, r: Read, spec: PollSpec, sync: str, timed: bool, detected: datetime
) -> Change:
    deleted = spec.deleted.column is not None and r.row.get(spec.deleted.column) is not None
    mine = spec.written_by is not None and r.row.get(spec.written_by) == sync
    mark = json.dumps({"t": table, "m": encode(r.mod)}, sort_keys=True, separators=(",", ":"))
    return Change(
        op=Op.DELETE if deleted else Op.UPDATE,
        table=table,
        key=dict(r.key),
        after=None if deleted else dict(r.row),
        before=dict(r.row) if deleted else None,
        position=WatermarkPosition(mark, (key_text(r.key), digest(r.row))),
        commit_ts=r.mod if timed and isinstance(r.mod, datetime) else None,
        detected_at=detected,
        # a row still holding our sync's name in its written_by column is our own write
        origin=sync if mine else None,
    )
