"""`retry:` of a sync: how a run retries what failed, with the defaults and their checks.

Two kinds of failure, two limits:

- a *retriable* error of one apply call (a network drop, a timeout, a deadlock or lock
  wait, a lost connection) is tried again inside the run, up to `attempts` tries in all,
  waiting a random time between 0 and `min(max_seconds, base_seconds * 2**(n-1))` before
  try n+1 (exponential backoff with full jitter); after the last try the run fails, and
  Dagster's retry policy on the asset runs the step again;
- a *record* the target rejected (a constraint, a value too long, a row too big for an
  index) is journaled `failed` and tried again by later runs, the n-th time no sooner than
  `min(records.max_seconds, records.base_seconds * 2**(n-1))` after the last; after
  `records.attempts` tries in all it is `parked` and left alone until `syncswim retry` or
  a manual materialisation of its asset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from syncswim_lib.config.keypath import At, describe


@dataclass(frozen=True)
class RecordRetry:
    attempts: int = 8
    base_seconds: float = 30.0
    max_seconds: float = 3600.0


@dataclass(frozen=True)
class RetrySettings:
    attempts: int = 5
    base_seconds: float = 0.5
    max_seconds: float = 30.0
    records: RecordRetry = field(default_factory=RecordRetry)


_KEYS = ("attempts", "base_seconds", "max_seconds")


def build_retry(raw: Any, at: At) -> RetrySettings:
    """`retry:` read and checked; every error names the key path."""
    if raw is None:
        return RetrySettings()
    block = at.mapping(raw, "a mapping like {attempts: 5, base_seconds: 0.5, max_seconds: 30}")
    at.keys(block, (*_KEYS, "records"), (), "retry")
    given = _limits(block, at, RetrySettings())
    records = RecordRetry()
    if block.get("records") is not None:
        r_at = at.key("records", block)
        r_block = r_at.mapping(
            block["records"], "a mapping like {attempts: 8, base_seconds: 30, max_seconds: 3600}"
        )
        r_at.keys(r_block, _KEYS, (), "retry.records")
        records = RecordRetry(**_limits(r_block, r_at, records))
    return RetrySettings(**given, records=records)


def _limits(block: Any, at: At, defaults: RetrySettings | RecordRetry) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "attempts" in block:
        value = block["attempts"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise at.key("attempts", block).error(
                f"expected a whole number of tries of at least 1, got {describe(value)}"
            )
        out["attempts"] = value
    for key in ("base_seconds", "max_seconds"):
        if key not in block:
            continue
        value = block[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise at.key(key, block).error(
                f"expected a positive number of seconds, got {describe(value)}"
            )
        out[key] = float(value)
    base = out.get("base_seconds", defaults.base_seconds)
    top = out.get("max_seconds", defaults.max_seconds)
    if top < base:
        where = "max_seconds" if "max_seconds" in out else "base_seconds"
        raise at.key(where, block).error(
            f"max_seconds ({top:g}) must be at least base_seconds ({base:g})"
        )
    return out
