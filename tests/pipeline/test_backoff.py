"""The backoff schedule, checked on recorded attempt times with a fake clock and sleep,
never by sleeping: each wait lies in [0, min(max, base * 2**(n-1))] (full jitter), the
tries stop at `attempts`, only retriable errors are retried."""

from __future__ import annotations

import random

import pytest

from syncswim_lib.config.retry import RetrySettings
from syncswim_lib.errors import FatalError, Paused, RetriableError
from syncswim_lib.pipeline.backoff import Retrier, cap, full_jitter


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_cap_doubles_up_to_the_maximum() -> None:
    assert [cap(n, 0.5, 5.0) for n in range(0, 7)] == [0.0, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert cap(5000, 0.5, 5.0) == 5.0  # no float overflow far past the cap


def test_full_jitter_spans_zero_to_the_cap() -> None:
    assert full_jitter(3, 1.0, 60.0, lambda: 0.0) == 0.0
    assert full_jitter(3, 1.0, 60.0, lambda: 0.999) == pytest.approx(3.996)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_recorded_attempts_follow_the_bounds(seed: int) -> None:
    t = FakeTime()
    settings = RetrySettings(attempts=6, base_seconds=0.5, max_seconds=3.0)
    calls: list[float] = []

    def flaky() -> str:
        calls.append(t.now)
        t.now += 0.25  # each try takes a while before it fails
        if len(calls) < 6:
            raise RetriableError(f"connection lost (try {len(calls)})")
        return "done"

    r = Retrier(settings, rand=random.Random(seed).random, clock=t.clock, sleep=t.sleep)
    assert r.call(flaky, "apply") == "done"
    assert [a.number for a in r.attempts] == [1, 2, 3, 4, 5]
    for a, next_start in zip(r.attempts, calls[1:], strict=True):
        assert a.failed - a.started == pytest.approx(0.25)
        assert a.waited is not None and 0 <= a.waited <= cap(a.number, 0.5, 3.0)
        # the next try started exactly after that wait: the schedule is what ran
        assert next_start == pytest.approx(a.failed + a.waited)
    assert t.slept == [a.waited for a in r.attempts]
    # jitter: the waits are not the caps themselves
    assert any(a.waited != cap(a.number, 0.5, 3.0) for a in r.attempts)


def test_gives_up_after_the_last_try_naming_it() -> None:
    t = FakeTime()
    r = Retrier(RetrySettings(attempts=3), rand=lambda: 0.5, clock=t.clock, sleep=t.sleep)

    def down() -> None:
        raise RetriableError("server closed the connection password=secret")

    with pytest.raises(RetriableError, match=r"apply: gave up after 3 tries \(retry.attempts\)"):
        r.call(down, "apply")
    assert [a.waited for a in r.attempts] == [0.25, 0.5, None]
    assert all("secret" not in a.error for a in r.attempts)


def test_other_errors_are_not_retried() -> None:
    t = FakeTime()
    r = Retrier(RetrySettings(attempts=5), clock=t.clock, sleep=t.sleep)

    def denied() -> None:
        raise FatalError("permission denied")

    with pytest.raises(FatalError):
        r.call(denied, "apply")
    assert r.attempts == [] and t.slept == []


def test_a_pause_is_not_retried_within_the_run() -> None:
    t = FakeTime()
    r = Retrier(RetrySettings(attempts=5), clock=t.clock, sleep=t.sleep)

    def spent() -> None:
        raise Paused("the API budget is spent", "crm")

    with pytest.raises(Paused) as info:
        r.call(spent, "apply")
    assert info.value.endpoint == "crm" and r.attempts == [] and t.slept == []
