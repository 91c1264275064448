"""Health figures of a sync, judged by its `health:` thresholds (config/health.py).

Per endpoint with a change stream: how far capture is behind it (a PostgreSQL slot's
unconfirmed and retained WAL, a MariaDB/MySQL binlog's bytes and files after the stored
position). Per entity: the journal's backlog (changes captured and not applied) and how
long its oldest change has waited. Reading them changes nothing, so they can be taken as
often as a check or a person likes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from syncswim_lib.config.health import HealthSettings, Level, Threshold, format_bytes
from syncswim_lib.connectors.base import LagReporter, StreamLag
from syncswim_lib.errors import SyncSwimError

if TYPE_CHECKING:
    from syncswim_lib.pipeline.runtime import Runtime

_RANK: dict[Level, int] = {"ok": 0, "warn": 1, "error": 2}

# a stream whose figures cannot be trusted, whatever the numbers: lost or about to be
# lost means changes may be missed (the next capture reconciles), missing means nothing
# is captured there yet
_STATUS_LEVEL: dict[str, Level] = {
    "ok": "ok",
    "not started": "ok",
    "extended": "ok",  # beyond max_wal_size but within max_slot_wal_keep_size: still safe
    "unreserved": "warn",
    "missing": "warn",
    "lost": "error",
}


def worst(levels: list[Level]) -> Level:
    return max(levels, key=_RANK.__getitem__, default="ok")


@dataclass(frozen=True)
class Figure:
    """One measured figure against its threshold."""

    name: str  # the key under `health:`, e.g. "slot_lag_bytes"
    value: float | None  # None: not measured (no such stream, or unreadable)
    threshold: Threshold

    @property
    def level(self) -> Level:
        return self.threshold.level(self.value)

    def text(self) -> str:
        """`slot_lag_bytes 1.2 GiB ≥ warn 1 GiB` or `backlog 12`."""
        show = format_bytes if self.name.endswith("_bytes") else _number
        out = f"{self.name} {'unknown' if self.value is None else show(self.value)}"
        limit = {"warn": self.threshold.warn, "error": self.threshold.error}.get(self.level)
        if limit is not None:
            out += f" ≥ {self.level} {show(limit)}"
        return out


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


@dataclass(frozen=True)
class EndpointHealth:
    endpoint: str
    lag: StreamLag | None  # None: no change stream to measure, or `problem`
    figures: tuple[Figure, ...]
    problem: str | None = None  # why the figures could not be read

    @property
    def level(self) -> Level:
        levels = [f.level for f in self.figures]
        if self.lag is not None:
            levels.append(_STATUS_LEVEL.get(self.lag.status, "warn"))
        if self.problem is not None:
            levels.append("warn")  # unknown is not healthy, nor known to be broken
        return worst(levels)

    def text(self) -> str:
        if self.problem is not None:
            return f"{self.endpoint}: could not be read: {self.problem}"
        if self.lag is None:
            return f"{self.endpoint}: no change stream to measure"
        parts = [f.text() for f in self.figures]
        if self.lag.status != "ok":
            parts.insert(0, f"{self.lag.stream} {self.lag.status}")
        return f"{self.endpoint}: " + ", ".join(parts)


@dataclass(frozen=True)
class EntityHealth:
    entity: str
    backlog: int
    oldest_pending_s: float | None  # None: nothing pending
    figures: tuple[Figure, ...]

    @property
    def level(self) -> Level:
        return worst([f.level for f in self.figures])

    def text(self) -> str:
        return ", ".join(f.text() for f in self.figures)


@dataclass(frozen=True)
class SyncHealth:
    sync: str
    endpoints: tuple[EndpointHealth, ...]
    entities: tuple[EntityHealth, ...]
    taken_at: datetime

    def entity(self, name: str) -> EntityHealth:
        return next(e for e in self.entities if e.entity == name)


def entity_health(rt: Runtime, sync: str, now: datetime | None = None) -> tuple[EntityHealth, ...]:
    """Backlog and oldest pending change of every entity of `sync` (one store query)."""
    decl = rt.project.syncs[sync]
    settings = decl.health
    now = now or datetime.now(UTC)
    backlog = rt.store.backlog(sync)
    out = []
    for entity in decl.entities:
        b = backlog.get(entity)
        count = 0 if b is None else b.pending
        age = None
        if b is not None and b.oldest_detected_at is not None:
            age = max((now - b.oldest_detected_at).total_seconds(), 0.0)
        figures = (
            Figure("backlog", float(count), settings.backlog),
            Figure("oldest_pending_s", age, settings.oldest_pending_s),
        )
        out.append(EntityHealth(entity, count, age, figures))
    return tuple(out)


def endpoint_health(rt: Runtime, sync: str) -> tuple[EndpointHealth, ...]:
    """The change-stream figures of both endpoints of `sync`. An endpoint that cannot be
    asked is reported with the error, not raised: the other figures still count."""
    decl = rt.project.syncs[sync]
    return tuple(_endpoint(rt, sync, endpoint, decl.health) for endpoint in (decl.a, decl.b))


def _endpoint(rt: Runtime, sync: str, endpoint: str, settings: HealthSettings) -> EndpointHealth:
    try:
        conn = rt.connector(endpoint)
        if not isinstance(conn, LagReporter):
            return EndpointHealth(endpoint, None, ())
        lag = conn.lag(sync, rt.store.get_position(sync, endpoint))
    except SyncSwimError as exc:  # connectors' errors carry no secrets (redacted there)
        return EndpointHealth(endpoint, None, (), problem=str(exc))
    if lag.stream == "binlog":
        figures: tuple[Figure, ...] = (
            Figure("binlog_lag_bytes", _opt(lag.lag_bytes), settings.binlog_lag_bytes),
        )
    else:
        figures = (
            Figure("slot_lag_bytes", _opt(lag.lag_bytes), settings.slot_lag_bytes),
            Figure("retained_wal_bytes", _opt(lag.retained_bytes), settings.retained_wal_bytes),
        )
    return EndpointHealth(endpoint, lag, figures)


def _opt(value: int | None) -> float | None:
    return None if value is None else float(value)


def sync_health(
    rt: Runtime, sync: str, *, streams: bool = True, now: datetime | None = None
) -> SyncHealth:
    """All of `sync`'s figures; `streams=False` leaves the endpoints unasked."""
    now = now or datetime.now(UTC)
    endpoints = endpoint_health(rt, sync) if streams else ()
    return SyncHealth(sync, endpoints, entity_health(rt, sync, now), now)
