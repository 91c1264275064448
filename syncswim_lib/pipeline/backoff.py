"""Exponential backoff with full jitter: the schedule as pure functions, and one call
retried by it.

`cap(n)` is the longest wait before try n+1: `min(max_seconds, base_seconds * 2**(n-1))`;
the wait itself is uniform in [0, cap(n)] ("full jitter": many runs that failed together
do not come back together). The random source, the clock and the sleep are parameters, so
a test checks the recorded attempt times against the bounds without sleeping.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from syncswim_lib.config.retry import RetrySettings
from syncswim_lib.errors import Paused, RetriableError
from syncswim_lib.redact import redact

T = TypeVar("T")


def cap(failures: int, base_seconds: float, max_seconds: float) -> float:
    """The longest wait after the `failures`-th failure (1 for the first)."""
    if failures < 1:
        return 0.0
    # 2**n overflows a float past n = 1023: the cap is reached long before that
    return min(max_seconds, base_seconds * 2.0 ** min(failures - 1, 1000))


def full_jitter(
    failures: int, base_seconds: float, max_seconds: float, rand: Callable[[], float]
) -> float:
    """The wait after the `failures`-th failure: `rand()` (in [0, 1)) times the cap."""
    return rand() * cap(failures, base_seconds, max_seconds)


@dataclass(frozen=True)
class Attempt:
    """One failed try: when it started and ended (the clock's seconds), its error, and the
    wait before the next try (None: it was the last)."""

    number: int
    started: float
    failed: float
    error: str
    waited: float | None


@dataclass
class Retrier:
    """Calls a function until it stops raising RetriableError or the tries run out."""

    settings: RetrySettings = field(default_factory=RetrySettings)
    rand: Callable[[], float] = random.random
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    attempts: list[Attempt] = field(default_factory=list)  # every failed try, in order

    def call(self, fn: Callable[[], T], what: str) -> T:
        s = self.settings
        for n in range(1, s.attempts + 1):
            started = self.clock()
            try:
                return fn()
            except Paused:
                raise  # waiting within the run would not help: the run pauses instead
            except RetriableError as exc:
                failed = self.clock()
                last = n == s.attempts
                wait = None if last else full_jitter(n, s.base_seconds, s.max_seconds, self.rand)
                self.attempts.append(Attempt(n, started, failed, redact(str(exc)), wait))
                if last:
                    raise RetriableError(
                        f"{what}: gave up after {n} tries (retry.attempts): {exc}"
                    ) from exc
                assert wait is not None
                self.sleep(wait)
        raise AssertionError("unreachable: attempts >= 1")  # pragma: no cover
