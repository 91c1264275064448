"""The adaptive interval, on recorded decisions: it lengthens while the source is idle,
shortens under a stream of changes, backs off harder on errors, stays between min and
max; and a tick polls a side only when its decision is due (a fake clock, no waiting)."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncswim_lib.config.polling import PollCadence
from syncswim_lib.connectors.polling.interval import (
    BUSY_CHANGES,
    LOAD_SHARE,
    Decision,
    decide,
    first,
)
from syncswim_lib.connectors.polling.runner import tick
from tests.connectors.polling.harness import PolledPair

CADENCE = PollCadence(min_s=2.0, max_s=60.0)


def run_decisions(found: list[int | str]) -> list[Decision]:
    """The decisions after polls that found these many changes (text: an error)."""
    out: list[Decision] = []
    prev: Decision | None = None
    now = 0.0
    for item in found:
        if isinstance(item, str):
            prev = decide(CADENCE, prev, 0, now, error=item)
        else:
            prev = decide(CADENCE, prev, item, now)
        out.append(prev)
        now = prev.due_at
    return out


def test_idle_backs_off_to_the_maximum_and_changes_bring_it_down() -> None:
    idle = run_decisions([0] * 12)
    intervals = [d.interval_s for d in idle]
    assert intervals == sorted(intervals) and intervals[0] == 3.0
    assert intervals[-1] == 60.0 and idle[-1].reason == "idle: at the maximum"
    busy = run_decisions([0] * 12 + [5, 5, 5, 5, 5, 5, 5])
    after = [d.interval_s for d in busy[12:]]
    assert after == sorted(after, reverse=True) and after[-1] == 2.0
    assert busy[12].reason == "5 changes: polling faster"


def test_a_full_page_goes_to_the_minimum_at_once_and_errors_back_off_harder() -> None:
    decisions = run_decisions([0, 0, 0, 0, BUSY_CHANGES])
    assert decisions[-1].interval_s == CADENCE.min_s
    errors = run_decisions([0, "timeout", "timeout"])
    assert [d.interval_s for d in errors] == [3.0, 12.0, 48.0]
    assert errors[1].changes == -1 and errors[1].reason.startswith("error, backing off")
    assert decide(CADENCE, errors[-1], 0, 0.0, error="again").interval_s == 60.0  # capped


def test_a_poll_that_takes_a_large_share_of_the_interval_backs_off_for_load() -> None:
    """A source that answers slowly is loaded: however many changes the poll found, the
    next poll waits until the poll's own time is LOAD_SHARE of the interval; the reason
    says so."""
    prev = decide(CADENCE, None, 5, 0.0)  # 2 s
    fast = decide(CADENCE, prev, 5, 10.0, took_s=0.9)  # 45%: not load
    assert fast.interval_s == 2.0 and fast.reason == "5 changes: polling faster"
    slow = decide(CADENCE, prev, 5, 10.0, took_s=1.5)  # 75% of 2 s
    assert slow.interval_s == 1.5 / LOAD_SHARE == 3.0
    assert slow.reason == "load: the poll took 1.5 s, 75% of the 2 s interval: backing off"
    assert slow.took_s == 1.5 and slow.changes == 5
    # a full page is no reason to press a slow source harder
    busy = decide(CADENCE, prev, BUSY_CHANGES, 10.0, took_s=1.5)
    assert busy.interval_s == 3.0 and busy.reason.startswith("load:")
    assert decide(CADENCE, prev, 0, 10.0, took_s=100.0).interval_s == CADENCE.max_s
    # an error's backoff stays the error's
    failed = decide(CADENCE, prev, 0, 10.0, error="timeout", took_s=1.5)
    assert failed.interval_s == 8.0 and failed.reason.startswith("error")


def test_a_decision_read_from_an_older_cursor_has_no_poll_time() -> None:
    old = {"interval_s": 3.0, "reason": "idle", "due_at": 1.0, "changes": 0, "decided_at": 0.0}
    assert Decision.from_json(old).took_s == 0.0


def test_the_first_decision_is_due_at_once() -> None:
    d = first(CADENCE, 100.0)
    assert d.due_at == 100.0 and d.interval_s == 2.0
    assert Decision.from_json(d.to_json()) == d


@pytest.mark.integration
def test_ticks_poll_when_due_and_the_interval_follows_the_source(
    pg_dsn: str, tmp_path: Path
) -> None:
    pair = PolledPair(pg_dsn, tmp_path)  # interval: {min: 1s, max: 30s}
    pair.run(full=True)
    clock = {"t": 1000.0}
    decisions: dict[str, Decision] = {}
    recorded: list[Decision] = []
    with pair.runtime() as rt:
        for _ in range(6):  # idle: each poll at the moment its decision falls due
            result = tick(rt, "app_legacy", decisions, lambda: clock["t"])
            assert result.polled == ("legacy",)
            decisions = dict(result.decisions)
            recorded.append(decisions["legacy"])
            # not due yet a moment later: the streamed side is captured, SQLite is not read
            clock["t"] += 0.5
            assert tick(rt, "app_legacy", decisions, lambda: clock["t"]).polled == ()
            clock["t"] = decisions["legacy"].due_at
        idle = [d.interval_s for d in recorded]
        assert idle == sorted(idle) and idle[-1] > idle[0]
        for i in range(4):  # then a change before every poll
            pair.lite("INSERT INTO customers (name) VALUES (?)", (f"n{i}",))
            result = tick(rt, "app_legacy", decisions, lambda: clock["t"])
            decisions = dict(result.decisions)
            recorded.append(decisions["legacy"])
            assert result.captured["legacy"] == 1
            clock["t"] = decisions["legacy"].due_at
    busy = [d.interval_s for d in recorded[6:]]
    assert busy == sorted(busy, reverse=True) and busy[-1] == 1.0
    assert recorded[-1].reason == "1 changes: polling faster"


@pytest.mark.integration
def test_a_failing_poll_backs_off_harder_and_says_why(pg_dsn: str, tmp_path: Path) -> None:
    """A polled PostgreSQL table locked by someone else: the poll's statement times out
    (a retriable error), the tick records it and multiplies the interval by four."""
    import psycopg

    pair = PolledPair(
        pg_dsn,
        tmp_path,
        pg_capture=", capture: poll, statement_timeout: 0.5, read_timeout: 5",
        pg_poll="{column: updated_at, deleted: {keyset_every: 10m}}",
    )
    pair.run(full=True)
    clock = {"t": 0.0}
    with pair.runtime() as rt, psycopg.connect(pg_dsn) as locker:
        ok = tick(rt, "app_legacy", {}, lambda: clock["t"]).decisions
        assert ok["app"].reason == "idle: backing off" and ok["app"].interval_s == 1.5
        locker.execute("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
        clock["t"] = ok["app"].due_at
        failed = tick(rt, "app_legacy", ok, lambda: clock["t"])
        locker.rollback()
    assert set(failed.errors) == {"app"}
    d = failed.decisions["app"]
    assert d.interval_s == 6.0 and d.changes == -1
    assert d.reason.startswith("error, backing off:")


@pytest.mark.integration
def test_a_slow_poll_backs_off_for_load_on_a_fake_clock(pg_dsn: str, tmp_path: Path) -> None:
    """The tick times the poll by its clock: a clock that moves 1 s while SQLite is read
    (a loaded source) makes a poll take two thirds of its 1.5 s interval."""
    pair = PolledPair(pg_dsn, tmp_path)  # interval: {min: 1s, max: 30s}
    pair.run(full=True)
    clock = {"t": 0.0}

    def slow() -> float:
        clock["t"] += 1.0  # at every reading: before the poll and after it
        return clock["t"]

    with pair.runtime() as rt:
        first_poll = tick(rt, "app_legacy", {}, lambda: clock["t"]).decisions
        assert first_poll["legacy"].reason == "idle: backing off"  # took no time
        pair.lite("INSERT INTO customers (name) VALUES ('slow')")
        clock["t"] = first_poll["legacy"].due_at
        loaded = tick(rt, "app_legacy", first_poll, slow).decisions["legacy"]
    assert loaded.took_s == 1.0 and loaded.changes == 1
    assert loaded.interval_s == 2.0  # the poll's time is half the interval again
    assert loaded.reason == "load: the poll took 1 s, 67% of the 1.5 s interval: backing off"
