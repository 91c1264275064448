"""The merge's property test (test_merge_properties.py) with a polled side: side b is a
real SQLite file read by the polling capture, side a the memory connector.

The machine, its rules and its model of the expected end state are those of
test_merge_properties.py; what changes is side b. Its application writes the file
through its own connection, and the file keeps `updated_at` current itself (triggers
stamping the time of the test's clock, which it keeps in a table), so the sync's own
writes are stamped too and read back by the next poll, as echoes. Deletes on b are
soft (a `deleted_at` set, by the application and by the sync alike) or real DELETEs
found by the key-set comparison (run after every poll here, its interval aside); one
scenario has a `written_by` column too. Keys on b never change and are never reused
(what polling cannot see: docs/polling.md, "Keys"), so `change_key` edits side a only.

Added to the rules of the memory machine:

- a poll that journals without a run (the next edits come between that poll and the
  run that merges them);
- a late write: a transaction that stamped an older time (within the safety lag) and
  committed after a poll read newer rows, sometimes stamped exactly at the table's
  cursor; clock steps of 0 make two writes (or ours and the application's) within one
  tick of the file's clock.

After every sync, as in the memory machine: both sides hold the model's rows, the
conflicts recorded are the model's, and one more run writes nothing. The bugs it found
are pinned at the end by their smallest examples.

SYNCSWIM_POLLED_PROPERTY_EXAMPLES (default 35 per scenario) and
SYNCSWIM_POLLED_PROPERTY_STEPS (default 30) set the effort.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import rule, run_state_machine_as_test

from syncswim_lib.config.models import ConflictRule
from syncswim_lib.config.polling import DeleteDetection, PollSpec, poll_key
from syncswim_lib.connectors.base import ApplyBatch, ApplyResult
from syncswim_lib.connectors.memory import SECOND
from syncswim_lib.connectors.polling.cursor import CursorState
from syncswim_lib.connectors.polling.keyset import compare_keys
from syncswim_lib.connectors.sqlite import SqliteConnector
from syncswim_lib.envelope import WatermarkPosition
from syncswim_lib.pipeline.engine import EntityEngine
from syncswim_lib.pipeline.mapping import EntityMap, Letter
from tests.pipeline import test_merge_properties as base
from tests.pipeline.test_merge_properties import (
    ENDPOINTS,
    ENTITY,
    FIELDS,
    PREFER_A,
    SIDES,
    STEPS_S,
    SYNC,
    TABLES,
    MergeMachine,
    Scenario,
    count,
)

EXAMPLES = int(os.environ.get("SYNCSWIM_POLLED_PROPERTY_EXAMPLES", "35"))
STEPS = int(os.environ.get("SYNCSWIM_POLLED_PROPERTY_STEPS", "30"))
LAG_S = 1.0  # the polled table's safety_lag: the clock steps are 0, 0.4, 1, 1.6, 3 s
TABLE = TABLES["b"]  # "customers"
COLUMNS = ("id", "app_id", "code", "name", "email", "score")

DDL = """
CREATE TABLE app_clock (now TEXT NOT NULL);
-- AUTOINCREMENT: a key is never used twice, as the memory machine assumes (a key reused
-- between two key-set comparisons reads as an update: docs/polling.md)
CREATE TABLE customers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id INTEGER UNIQUE,
    code VARCHAR(20) UNIQUE,
    name VARCHAR(50),
    email VARCHAR(50),
    score INTEGER,
    updated_at TIMESTAMP,
    deleted_at TIMESTAMP,
    last_writer TEXT
);
CREATE INDEX customers_updated ON customers (updated_at);
-- the file keeps updated_at itself, from the test's clock, for every writer (the sync too)
CREATE TRIGGER customers_born AFTER INSERT ON customers WHEN NEW.updated_at IS NULL
BEGIN
    UPDATE customers SET updated_at = (SELECT now FROM app_clock) WHERE id = NEW.id;
END;
CREATE TRIGGER customers_touch AFTER UPDATE ON customers
WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE customers SET updated_at = (SELECT now FROM app_clock) WHERE id = NEW.id;
END;
"""


def stamp_text(when: datetime) -> str:
    """A time as SQLite's own strftime('%Y-%m-%d %H:%M:%f') writes it (milliseconds)."""
    return when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}"


@dataclass(frozen=True)
class PolledScenario:
    merge: Scenario
    deletes: str  # "soft": a deleted_at column; "keyset": real DELETEs, key-set comparison
    written_by: bool = False

    @property
    def name(self) -> str:
        return f"{self.merge.name}-{self.deletes}" + ("-written_by" if self.written_by else "")


SCENARIOS = [
    PolledScenario(Scenario("system_of_record", "system_of_record", PREFER_A, {}, SECOND), "soft"),
    # a polled row's commit time is its modification value, taken a second wide (the
    # change does not carry the column's precision: pipeline/resolve.py)
    PolledScenario(
        Scenario(
            "external_id-newest",
            "external_id",
            ConflictRule("newest"),
            {"name": ConflictRule("prefer", prefer="b")},
            SECOND,
        ),
        "keyset",
    ),
    PolledScenario(
        Scenario("external_id-prefer_a", "external_id", PREFER_A, {}, SECOND),
        "soft",
        written_by=True,
    ),
]


class PolledFile:
    """Side b's application: it writes the SQLite file through its own connection, each
    write stamped by the file's triggers at the time kept in `app_clock`: the test's
    clock, or `late` (an older time: a transaction that stamped it and commits now)."""

    def __init__(self, path: Path, now: Callable[[], datetime], scenario: PolledScenario) -> None:
        self.path = path
        self.now = now
        self.soft = scenario.deletes == "soft"
        self.writer = "app" if scenario.written_by else None
        self.late: datetime | None = None
        self.apply_hook: Callable[[ApplyBatch], None] | None = None
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.executescript(DDL)
        self.conn.execute("INSERT INTO app_clock VALUES (?)", (stamp_text(now()),))

    def close(self) -> None:
        self.conn.close()

    def truncate(self, when: datetime) -> datetime:
        """`when` as the file's clock keeps it (milliseconds)."""
        return when - timedelta(microseconds=when.microsecond % 1000)

    def set_clock(self, when: datetime | None = None) -> None:
        self.conn.execute("UPDATE app_clock SET now = ?", (stamp_text(when or self.now()),))

    def _write(self, sql: str, args: list[Any]) -> None:
        if self.late is not None:
            self.set_clock(self.late)
        try:
            self.conn.execute(sql, args)
        finally:
            if self.late is not None:
                self.set_clock()

    def _get(self, key: Any) -> dict[str, Any] | None:
        cur = self.conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM customers WHERE id = ? AND deleted_at IS NULL",
            (key,),
        )
        row = cur.fetchone()
        return None if row is None else dict(zip(COLUMNS, row, strict=True))

    def updated_at(self, key: Any) -> datetime:
        cur = self.conn.execute("SELECT updated_at FROM customers WHERE id = ?", (key,))
        (text,) = cur.fetchone()
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    def insert(self, table: str, row: Mapping[str, Any]) -> dict[str, Any]:
        values = dict(row)
        if self.writer is not None:
            values["last_writer"] = self.writer
        names, marks = ", ".join(values), ", ".join("?" for _ in values)
        self._write(f"INSERT INTO customers ({names}) VALUES ({marks})", list(values.values()))
        (key,) = self.conn.execute("SELECT last_insert_rowid()").fetchone()
        got = self._get(key)
        assert got is not None
        return got

    def update(self, table: str, key: Any, values: Mapping[str, Any]) -> dict[str, Any] | None:
        if self._get(key) is None:
            return None
        changes = dict(values)
        if self.writer is not None:
            changes["last_writer"] = self.writer
        sets = ", ".join(f"{n} = ?" for n in changes)
        self._write(f"UPDATE customers SET {sets} WHERE id = ?", [*changes.values(), key])
        return self._get(changes.get("id", key))

    def delete(self, table: str, key: Any) -> dict[str, Any] | None:
        row = self._get(key)
        if row is None:
            return None
        if self.soft:
            who = ", last_writer = 'app'" if self.writer is not None else ""
            self._write(
                f"UPDATE customers SET deleted_at = (SELECT now FROM app_clock){who} WHERE id = ?",
                [key],
            )
        else:
            self._write("DELETE FROM customers WHERE id = ?", [key])
        return row

    def rows(self, table: str) -> list[dict[str, Any]]:
        """The live rows (a soft-deleted row is a deleted record), by key."""
        cur = self.conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM customers WHERE deleted_at IS NULL ORDER BY id"
        )
        return [dict(zip(COLUMNS, r, strict=True)) for r in cur.fetchall()]


class HookedSqlite(SqliteConnector):
    """The SQLite connector; the application's `apply_hook` writes first (an edit made
    while the run applies, before its compare-and-set), as the memory database's does."""

    def __init__(self, app: PolledFile, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = app

    def apply(self, batch: ApplyBatch) -> ApplyResult:
        hook = self.app.apply_hook
        if hook is not None:
            hook(batch)
        return super().apply(batch)


class PolledMergeMachine(MergeMachine):
    """The memory machine with side b replaced by the polled SQLite file."""

    polled: PolledScenario

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="polled-merge-"))
        self.lite: HookedSqlite | None = None
        super().__init__()  # both sides in memory; b is replaced next
        s = self.polled
        app = PolledFile(self.folder / "legacy.db", lambda: self.clock.now, s)
        deleted = (
            DeleteDetection(column="deleted_at")
            if s.deletes == "soft"
            else DeleteDetection(keyset_every_s=600.0)
        )
        spec = PollSpec(
            "updated_at",
            deleted,
            safety_lag_s=LAG_S,
            written_by="last_writer" if s.written_by else None,
        )
        self.lite = HookedSqlite(
            app,
            str(app.path),
            ENDPOINTS["b"],
            {poll_key(SYNC, TABLE): spec},
            clock=lambda: self.clock.now,
            now=lambda: self.clock.now.timestamp(),
        )
        self.lite.setup(SYNC, [TABLE])
        self.conns["b"].close()
        self.app = app
        self.dbs["b"] = app  # type: ignore[assignment]
        self.conns["b"] = self.lite  # type: ignore[assignment]
        self.store.set_position(SYNC, ENDPOINTS["b"], self.lite.current_position(SYNC))
        self.emap = self._entity_map()
        self.engine = EntityEngine(self.emap, self.store, {"a": self.conns["a"], "b": self.lite})

    def _entity_map(self) -> EntityMap:
        m = super()._entity_map()
        if self.lite is None:
            return m
        return replace(m, b=replace(m.b, info=self.lite.describe(TABLE)))

    def teardown(self) -> None:
        try:
            super().teardown()
            self.app.close()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    # -- side b ------------------------------------------------------------------------------
    def now(self, letter: Letter) -> datetime:
        if letter == "b" and self.app.late is not None:
            return self.app.late
        return super().now(letter)

    def tick(self, seconds: float) -> None:
        super().tick(seconds)
        if self.lite is not None:
            self.app.set_clock()

    def cursor(self) -> Any:
        pos = self.store.get_position(SYNC, ENDPOINTS["b"])
        assert isinstance(pos, WatermarkPosition)
        return CursorState.from_position(pos).table(TABLE).cursor

    def capture(self) -> int:
        n = super().capture()
        if self.polled.deletes == "keyset":
            assert self.lite is not None
            found = compare_keys(
                self.store,
                self.lite,
                SYNC,
                ENTITY,
                "b",
                ENDPOINTS["b"],
                TABLE,
                ("id",),
                self.clock.now,
            )
            if found.gone:
                count("key-set comparison found deletes")
            n += found.gone
        return n

    @rule(letter=SIDES, dt=STEPS_S, data=st.data())
    def change_key(self, letter: Letter, dt: float, data: st.DataObject) -> None:
        """Key changes on side a only: a poll reads a row under its new key with nothing
        that names the old one (docs/polling.md, what a poll cannot see)."""
        if letter == "a":
            super().change_key(letter, dt, data)

    @rule(dt=STEPS_S)
    def poll(self, dt: float) -> None:
        """A poll (and the other side's capture) without a run: what is edited next comes
        between this poll and the run that merges it."""
        self.tick(dt)
        self.capture()

    @rule(data=st.data(), insert=st.booleans(), which=st.integers(0, 2))
    def late_write(self, data: st.DataObject, insert: bool, which: int) -> None:
        """A transaction on b that stamped an older time and commits now, after polls read
        newer rows: stamped within the safety lag, at the table's cursor when the cursor
        is that recent, and never older than the row's own last stamp (writes of one row
        are serialised by its lock)."""
        now = self.app.truncate(self.clock.now)
        oldest = now - timedelta(seconds=LAG_S)
        cursor = self.cursor()
        choices = [oldest, now - timedelta(seconds=LAG_S / 2)]
        if isinstance(cursor, datetime) and cursor >= oldest:
            choices.append(cursor)
        stamp = choices[which % len(choices)]
        try:
            if insert or not self.has("b"):
                values = {n: data.draw(base.VALUES[n], label=n) for n in FIELDS}
                if self.scenario.mode == "external_id":
                    values["code"] = self.new_code()
                self.app.late = stamp
                self.do_insert("b", values)
            else:
                rec = self.pick(data, "b")
                stamp = max(stamp, self.app.updated_at(self.key_of(rec, "b")))
                self.app.late = stamp
                self.do_update(rec, "b", self.some_values(data))
        finally:
            self.app.late = None
        count("late write at the cursor" if stamp == cursor else "late write within the lag")


def machine_for(polled: PolledScenario) -> type[PolledMergeMachine]:
    return type(
        f"PolledMerge_{polled.name}".replace("-", "_"),
        (PolledMergeMachine,),
        {"scenario": polled.merge, "polled": polled},
    )


@pytest.mark.parametrize("polled", SCENARIOS, ids=lambda s: s.name)
def test_polled_merge_properties(polled: PolledScenario) -> None:
    run_state_machine_as_test(
        machine_for(polled),
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        ),
    )


# --- the bugs the machine found, by their smallest examples -----------------------------


def machine(name: str) -> PolledMergeMachine:
    return machine_for(next(s for s in SCENARIOS if s.name == name))()


def test_a_record_kept_against_a_soft_delete_is_live_again() -> None:
    """Deleted on the soft-delete side, updated on the other while the run deletes it
    there: the update survives and the record is created again where it was deleted,
    whose row (found by the SOR key it still holds) is live again, not left deleted."""
    m = machine("system_of_record-soft")
    rec = m.do_insert("a", {"name": "ann", "email": None, "score": None})
    m.run_sync()
    m.do_delete(rec, "b")
    m.edit_during_next_run(rec, "a", {"name": "cy"})
    m.run_sync()
    assert [r["name"] for r in m.dbs["b"].rows(TABLES["b"])] == ["cy"]
