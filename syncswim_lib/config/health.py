"""`health:` of a sync: the thresholds its health figures are judged by.

Each figure has a `warn` and an `error` level; a figure at or above a level fails the
sync's health asset check with that severity. Either level may be `null` (never that
severity); `error` must not be below `warn`. Byte figures take a whole number of bytes or
a size such as `512MiB` or `2GB`; the others take plain numbers.

The figures (computed by `pipeline/health.py`):

- `slot_lag_bytes`: WAL a PostgreSQL slot has not confirmed yet (written since the last
  change the journal holds);
- `retained_wal_bytes`: WAL the server keeps for the slot (from its restart LSN): disk
  the sync costs the database;
- `binlog_lag_bytes`: binlog written on a MariaDB/MySQL endpoint after the stored position;
- `backlog`: changes journaled and not applied yet, per entity;
- `oldest_pending_s`: seconds since the oldest of those was detected, per entity.

`check_every` (a duration, default 60 s, at least 5 s; `null` for never) is how often the
sync's health sensor takes the figures and records them as the checks' results, so they
stay current between runs (a streaming run materialises no asset, so nothing else would).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from syncswim_lib.config.keypath import At, describe
from syncswim_lib.config.polling import duration

KIB, MIB, GIB = 1024, 1024**2, 1024**3

Level = Literal["ok", "warn", "error"]


@dataclass(frozen=True)
class Threshold:
    warn: float | None
    error: float | None

    def level(self, value: float | None) -> Level:
        """The level a measured value reaches (None, not measured: ok)."""
        if value is None:
            return "ok"
        if self.error is not None and value >= self.error:
            return "error"
        if self.warn is not None and value >= self.warn:
            return "warn"
        return "ok"


DEFAULT_CHECK_EVERY_S = 60.0
# the sensor daemon evaluates a sensor at most about every 5 s: a shorter period would
# read as a promise it cannot keep
MIN_CHECK_EVERY_S = 5.0


# The defaults: a slot holding a few GiB of WAL is worth a look long before it fills a
# disk or meets max_slot_wal_keep_size; a change waiting 15 minutes is far beyond what
# either run mode should take, an hour means changes are not being applied.
@dataclass(frozen=True)
class HealthSettings:
    slot_lag_bytes: Threshold = field(default_factory=lambda: Threshold(1 * GIB, 16 * GIB))
    retained_wal_bytes: Threshold = field(default_factory=lambda: Threshold(2 * GIB, 32 * GIB))
    binlog_lag_bytes: Threshold = field(default_factory=lambda: Threshold(1 * GIB, 16 * GIB))
    backlog: Threshold = field(default_factory=lambda: Threshold(10_000, 100_000))
    oldest_pending_s: Threshold = field(default_factory=lambda: Threshold(900, 3600))
    # seconds between two evaluations by the health sensor; None: no sensor
    check_every: float | None = DEFAULT_CHECK_EVERY_S


_BYTES = ("slot_lag_bytes", "retained_wal_bytes", "binlog_lag_bytes")
_COUNTS = ("backlog",)
_SECONDS = ("oldest_pending_s",)
KEYS = (*_BYTES, *_COUNTS, *_SECONDS)

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": KIB,
    "mib": MIB,
    "gib": GIB,
    "tib": 1024**4,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


def build_health(raw: Any, at: At) -> HealthSettings:
    """`health:` read and checked; every error names the key path."""
    defaults = HealthSettings()
    if raw is None:
        return defaults
    block = at.mapping(raw, "a mapping like {backlog: {warn: 10000, error: 100000}}")
    at.keys(block, (*KEYS, "check_every"), (), "health")
    given: dict[str, Threshold] = {}
    for key in KEYS:
        if key in block:
            given[key] = _threshold(block[key], at.key(key, block), key, getattr(defaults, key))
    every = defaults.check_every
    if "check_every" in block:
        every = _check_every(block["check_every"], at.key("check_every", block))
    return HealthSettings(**given, check_every=every)


def _check_every(raw: Any, at: At) -> float | None:
    if raw is None:  # no health sensor: the checks run with a run or when asked
        return None
    seconds = duration(raw, at)
    if seconds < MIN_CHECK_EVERY_S:
        raise at.error(
            f"expected at least {MIN_CHECK_EVERY_S:g}s (the sensor daemon evaluates a "
            f"sensor about every 5 s), got {raw!r}"
        )
    return seconds


def _threshold(raw: Any, at: At, key: str, default: Threshold) -> Threshold:
    example = "{warn: 1GiB, error: 16GiB}" if key in _BYTES else "{warn: 900, error: 3600}"
    block = at.mapping(raw, f"a mapping like {example}")
    at.keys(block, ("warn", "error"), (), f"health.{key}")
    levels = {"warn": default.warn, "error": default.error}
    for level in ("warn", "error"):
        if level in block:
            levels[level] = _value(block[level], at.key(level, block), key)
    warn, error = levels["warn"], levels["error"]
    if warn is not None and error is not None and error < warn:
        where = "error" if "error" in block else "warn"
        raise at.key(where, block).error(
            f"error ({_show(error, key)}) must be at least warn ({_show(warn, key)})"
        )
    return Threshold(warn, error)


def _value(value: Any, at: At, key: str) -> float | None:
    if value is None:  # this severity is never raised for the figure
        return None
    if key in _BYTES and isinstance(value, str):
        return float(_size(value, at))
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        expected = {
            "bytes": "a number of bytes or a size like 512MiB",
            "count": "a whole number of changes",
            "seconds": "a number of seconds",
        }[_unit(key)]
        raise at.error(f"expected {expected} (or null), got {describe(value)}")
    if value < 0:
        raise at.error(f"expected a value of at least 0, got {describe(value)}")
    if key in _COUNTS and not isinstance(value, int):
        raise at.error(f"expected a whole number of changes, got {describe(value)}")
    return float(value)


def _size(text: str, at: At) -> int:
    match = _SIZE.fullmatch(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise at.error(
            f"expected a size like 512MiB, 1GiB or 2GB (units B, kB, MB, GB, TB, KiB, MiB, "
            f"GiB, TiB), got {describe(text)}"
        )
    return int(float(match.group(1)) * _UNITS[unit])


def _unit(key: str) -> str:
    return "bytes" if key in _BYTES else "count" if key in _COUNTS else "seconds"


def _show(value: float, key: str) -> str:
    if key in _BYTES:
        return format_bytes(value)
    return f"{value:g}"


def format_bytes(value: float) -> str:
    """A byte count as a person reads it: 1.5 GiB, 512 MiB, 300 B."""
    for unit, size in (("TiB", 1024**4), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if abs(value) >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:g} B"
