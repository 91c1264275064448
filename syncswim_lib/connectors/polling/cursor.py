"""The polling cursor: what one poll of a table reads, what it emits, where the next
starts (docs/polling.md, "How far back a poll looks").

Rules, per table:

- the read is a closed range, `modified >= cursor`, so rows sharing the cursor's value
  are read again by the next poll (a row committed at that value after this poll is not
  lost);
- rows read again are not emitted again: the position keeps, for every row emitted at or
  after the cursor, its key with the modification value and a digest of its values; a
  row is emitted when that pair differs (a second write within the same tick of a coarse
  clock changes the digest, so it is not lost either);
- the cursor never passes the poll's start time minus `safety_lag` (timestamps), or the
  largest version seen by a poll that started at least `safety_lag` ago (versions): a
  transaction that wrote an older value and committed after the poll read is still
  inside the next poll's range, as long as it committed within the lag.

The whole endpoint's state is one `WatermarkPosition` (the pipeline keeps one position
per endpoint): `watermark` holds the per-table cursors as JSON, `seen_keys` the rows
emitted at or after them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from syncswim_lib.envelope import WatermarkPosition
from syncswim_lib.values.codec import decode, dumps, encode, key_text

FORMAT = 1


@dataclass(frozen=True)
class Seen:
    """A row emitted at or after its table's cursor: its key text, modification value
    (canonical), digest, and when the poller first saw that version (epoch seconds)."""

    mod: Any
    digest: str
    seen_at: float


@dataclass(frozen=True)
class TableCursor:
    cursor: Any = None  # canonical modification value; None: from the first row
    seen: Mapping[str, Seen] = field(default_factory=dict)  # key text -> version seen


@dataclass(frozen=True)
class CursorState:
    tables: Mapping[str, TableCursor] = field(default_factory=dict)

    def table(self, name: str) -> TableCursor:
        return self.tables.get(name, TableCursor())

    def to_position(self) -> WatermarkPosition:
        marks = {t: encode(c.cursor) for t, c in sorted(self.tables.items())}
        seen = tuple(
            json.dumps([t, k, encode(s.mod), s.digest, s.seen_at], separators=(",", ":"))
            for t, c in sorted(self.tables.items())
            for k, s in sorted(c.seen.items())
        )
        text = json.dumps({"v": FORMAT, "cursors": marks}, sort_keys=True, separators=(",", ":"))
        return WatermarkPosition(text, seen)

    @staticmethod
    def from_position(position: WatermarkPosition | None) -> CursorState:
        if position is None or not position.watermark.startswith("{"):
            return CursorState()
        data = json.loads(position.watermark)
        seen: dict[str, dict[str, Seen]] = {}
        for item in position.seen_keys:
            table, key, mod, digest, at = json.loads(item)
            seen.setdefault(table, {})[key] = Seen(decode(mod), digest, float(at))
        tables = {
            t: TableCursor(decode(mark), seen.get(t, {})) for t, mark in data["cursors"].items()
        }
        return CursorState(tables)


def digest(row: Mapping[str, Any]) -> str:
    """A short fingerprint of a row's canonical values (order of columns ignored)."""
    return hashlib.sha256(dumps(dict(sorted(row.items()))).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Read:
    """One row a poll read: key, modification value, all its values."""

    key: dict[str, Any]
    mod: Any
    row: dict[str, Any]


@dataclass(frozen=True)
class Step:
    """What one poll of one table decided: the rows to emit and the table's next state."""

    emit: tuple[Read, ...]
    state: TableCursor
    reread: int  # rows read again and left out (the boundary)


def _cap_timestamp(mod: Any, started: datetime | None, lag: float) -> bool:
    return (
        started is not None
        and isinstance(mod, datetime)
        and mod <= started - timedelta(seconds=lag)
    )


def step(
    old: TableCursor,
    reads: Iterable[Read],
    *,
    started_clock: datetime | None,
    now: float,
    lag_s: float,
    complete: bool,
) -> Step:
    """Decide one poll of one table. `reads`: the rows with `mod >= old.cursor`, in
    (mod, key) order; `started_clock`: the source's clock when the poll started (None for
    a version column); `now`: the poller's clock (epoch seconds) at the start; `complete`:
    the reads went to the end of the range (False when a page limit stopped them)."""
    seen = dict(old.seen)
    emit: list[Read] = []
    reread = 0
    last_mod = old.cursor
    for r in reads:
        text = key_text(r.key)
        d = digest(r.row)
        prior = seen.get(text)
        if prior is not None and prior.mod == r.mod and prior.digest == d:
            reread += 1
        else:
            emit.append(r)
            seen[text] = Seen(r.mod, d, now)
        last_mod = r.mod
    # the highest value the cursor may take: no row below it can still appear
    eligible = [
        s.mod
        for s in seen.values()
        if (
            _cap_timestamp(s.mod, started_clock, lag_s)
            if started_clock is not None
            else s.seen_at <= now - lag_s
        )
    ]
    cursor = old.cursor
    if eligible:
        best = max(eligible)
        cursor = best if cursor is None or best > cursor else cursor
    if not complete and last_mod is not None and (cursor is None or cursor > last_mod):
        cursor = last_mod  # rows after the page were not read: never skip them
    kept = {k: s for k, s in seen.items() if cursor is None or s.mod >= cursor}
    return Step(tuple(emit), TableCursor(cursor, kept), reread)
