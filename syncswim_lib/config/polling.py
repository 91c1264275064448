"""The declaration of polled sides (docs/polling.md): which endpoints are polled, how each
table is read (`poll:` of an entity) and how often (`poll:` of a sync).

An endpoint is polled when it has no change stream the sync may use: kind `sqlite`
always, kind `postgres` or `mysql` with `capture: poll` (a read replica or a vendor
database without replication rights). Polling is a property of the endpoint, not of one
table: the sync keeps one capture position per endpoint, so one endpoint cannot be
streamed for some of a sync's tables and polled for others.

This module imports no model (`models` imports it), so it names letters and endpoints
by plain strings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from syncswim_lib.config.keypath import At, describe
from syncswim_lib.connectors.registry import kind_of

if TYPE_CHECKING:
    from syncswim_lib.config.models import Endpoint, FrozenDict, Sync

ENTITY_POLL_KEYS = ("column", "safety_lag", "deleted", "written_by")
DELETED_KEYS = ("column", "keyset_every")
SYNC_POLL_KEYS = ("interval", "cron")
INTERVAL_KEYS = ("min", "max")
DEFAULT_SAFETY_LAG_S = 5.0
DEFAULT_MIN_S = 5.0
DEFAULT_MAX_S = 300.0

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
# five fields of digits, names and the cron operators; Dagster checks the rest
_CRON_FIELD = re.compile(r"[0-9A-Za-z*/,\-?]+")


@dataclass(frozen=True)
class DeleteDetection:
    """How deletes on a polled table are found. `column`: a soft-delete column (a row
    whose value is not NULL counts as deleted); `keyset_every_s`: the keys of the table
    are compared with the sync's links that often; neither: deletes there are not seen
    (`deleted: none`)."""

    column: str | None = None
    keyset_every_s: float | None = None

    @property
    def method(self) -> Literal["column", "keyset", "none"]:
        if self.column is not None:
            return "column"
        return "keyset" if self.keyset_every_s is not None else "none"


@dataclass(frozen=True)
class PollSpec:
    """How one polled table of one entity is read (`poll: {<endpoint>: ...}`).

    column: the modification column (a timestamp or an increasing integer version);
    safety_lag_s: the cursor never passes the poll's start time minus this, so a row
    committed late with an older modification time is still read; written_by: a column
    our writes set to the sync's name, so a row that still holds it is our own echo."""

    column: str
    deleted: DeleteDetection
    safety_lag_s: float = DEFAULT_SAFETY_LAG_S
    written_by: str | None = None


@dataclass(frozen=True)
class PollCadence:
    """How often a sync's polled endpoints are read (`poll:` of the sync): a cron schedule,
    or an adaptive interval between `min_s` and `max_s` (a polling sensor)."""

    min_s: float = DEFAULT_MIN_S
    max_s: float = DEFAULT_MAX_S
    cron: str | None = None


def duration(value: Any, at: At) -> float:
    """Seconds from `5s`, `500ms`, `10m`, `1h` or a bare number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise at.error(f"expected a duration like 5s, 10m or 500ms, got {describe(value)}")
    text = str(value)
    match = _DURATION.fullmatch(text)
    if match is None:
        raise at.error(f"expected a duration like 5s, 10m or 500ms, got {text!r}")
    seconds = float(match.group(1)) * _UNIT[match.group(2)]
    if not math.isfinite(seconds):
        raise at.error(f"expected a finite duration, got {text!r}")
    return seconds


def is_polled(endpoint: Endpoint) -> bool:
    """Read by polling: the kind's default reading (sqlite), or `capture: poll`."""
    return endpoint.reading.method == "poll"


def always_polled(kind: str) -> bool:
    return kind_of(kind).capture_methods == ("poll",)


def check_capture_setting(kind: str, settings: Mapping[str, Any], at: At) -> None:
    """`capture:` of an endpoint whose kind offers more than one way (postgres, mysql:
    stream, the default, or poll), as text."""
    if "capture" not in settings:
        return
    c_at = at.key("capture", settings)
    value = settings["capture"]
    if not isinstance(value, str):
        raise c_at.error(
            "capture is written as text (stream or poll), not read from the environment"
        )
    c_at.one_of(value, kind_of(kind).capture_methods, "capture")


def _deleted(raw: Any, at: At) -> DeleteDetection:
    if raw == "none":
        return DeleteDetection()
    block = at.mapping(raw, "{column: <soft-delete column>}, {keyset_every: 10m} or none")
    at.keys(block, DELETED_KEYS, (), "deleted")
    if len(block) != 1:
        raise at.error("deleted takes one method: {column: ...} or {keyset_every: ...}")
    if "column" in block:
        return DeleteDetection(column=at.key("column", block).text(block["column"], "a column"))
    e_at = at.key("keyset_every", block)
    every = duration(block["keyset_every"], e_at)
    if every < 1:
        raise e_at.error(f"keyset_every is at least 1s, got {block['keyset_every']!r}")
    return DeleteDetection(keyset_every_s=every)


def _one_spec(raw: Any, endpoint: str, at: At) -> PollSpec:
    block = at.mapping(
        raw, "{column: updated_at, deleted: {column: deleted_at} | {keyset_every: 10m} | none}"
    )
    at.keys(block, ENTITY_POLL_KEYS, ("column", "deleted"), f"poll of {endpoint}")
    column = at.key("column", block).text(block["column"], "the modification column")
    deleted = _deleted(block["deleted"], at.key("deleted", block))
    lag = DEFAULT_SAFETY_LAG_S
    if "safety_lag" in block:
        lag = duration(block["safety_lag"], at.key("safety_lag", block))
    written_by = None
    if "written_by" in block:
        w_at = at.key("written_by", block)
        written_by = w_at.text(block["written_by"], "a column name")
        if written_by == column:
            raise w_at.error("written_by must be another column than the modification column")
    if deleted.column is not None and deleted.column in (column, written_by):
        raise at.key("deleted", block).error(
            f"the soft-delete column {deleted.column!r} must be a column of its own"
        )
    return PollSpec(column, deleted, lag, written_by)


def build_entity_poll(
    raw: Any, endpoints: Mapping[str, str], letter_of: Callable[[Any, At, str], str], at: At
) -> dict[str, PollSpec]:
    """`poll:` of an entity: letter -> spec. `endpoints`: letter -> endpoint name;
    `letter_of` names an endpoint's letter or raises the precise error."""
    block = at.mapping(raw, "a mapping of polled endpoint: {column: ..., deleted: ...}")
    if not block:
        raise at.error("expected at least one polled endpoint, got an empty mapping")
    out: dict[str, PollSpec] = {}
    for name, spec in block.items():
        s_at = at.key(name, block)
        letter = letter_of(name, s_at, "poll")
        out[letter] = _one_spec(spec, endpoints[letter], s_at)
    return out


def build_sync_poll(raw: Any, at: At) -> PollCadence:
    block = at.mapping(raw, "{interval: {min: 5s, max: 5m}} or {cron: '*/5 * * * *'}")
    at.keys(block, SYNC_POLL_KEYS, (), "poll")
    if "interval" in block and "cron" in block:
        raise at.error("poll takes interval (a polling sensor) or cron (a schedule), not both")
    if "cron" in block:
        c_at = at.key("cron", block)
        cron = c_at.text(block["cron"], "a cron expression like '*/5 * * * *'")
        fields = cron.split()
        if len(fields) != 5 or not all(_CRON_FIELD.fullmatch(f) for f in fields):
            raise c_at.error(f"expected a cron expression of five fields, got {cron!r}")
        return PollCadence(cron=cron)
    if "interval" not in block:
        return PollCadence()
    i_at = at.key("interval", block)
    interval = i_at.mapping(block["interval"], "{min: 5s, max: 5m}")
    i_at.keys(interval, INTERVAL_KEYS, (), "interval")
    low = DEFAULT_MIN_S
    high = DEFAULT_MAX_S
    if "min" in interval:
        low = duration(interval["min"], i_at.key("min", interval))
        if low < 1:
            raise i_at.key("min", interval).error("min is at least 1s (a sensor's tick)")
    if "max" in interval:
        high = duration(interval["max"], i_at.key("max", interval))
    if high < low:
        raise i_at.error(f"max ({high:g} s) must not be below min ({low:g} s)")
    return PollCadence(min_s=low, max_s=high)


def poll_key(sync: str, table: str) -> str:
    """The key of a table's spec in `Endpoint.polls`."""
    return f"{sync}/{table}"


def find_poll(polls: Mapping[str, PollSpec], sync: str, table: str) -> tuple[str, PollSpec] | None:
    """(the table as declared, its spec) for `table` as a connector names it: declared
    `customers` may come back qualified by its database (`shop.customers`)."""
    spec = polls.get(poll_key(sync, table))
    if spec is not None:
        return table, spec
    bare = table.rsplit(".", 1)[-1]
    prefix = f"{sync}/"
    for key, found in polls.items():
        declared = key[len(prefix) :]
        if key.startswith(prefix) and declared.rsplit(".", 1)[-1] == bare:
            return declared, found
    return None


def finish_polling(
    endpoints: FrozenDict[str, Endpoint],
    syncs: Mapping[str, Sync],
    raw_syncs: Any,
    at: At,
    search_dir: Path | None,
) -> FrozenDict[str, Endpoint]:
    """Checks that need the whole project, and the endpoints with what their connectors
    need to poll: each polled endpoint carries the spec of every table polled there
    (`Endpoint.polls`, by `poll_key`), and a relative SQLite path is taken from the
    declaration's folder. `raw_syncs`/`at`: the `syncs` block and its position."""
    from syncswim_lib.config.models import FrozenDict

    specs: dict[str, dict[str, PollSpec]] = {name: {} for name in endpoints}
    for sync in syncs.values():
        s_at = at.key(sync.name, raw_syncs)
        raw_sync = raw_syncs[sync.name]
        polled = [e for e in (sync.a, sync.b) if is_polled(endpoints[e])]
        if sync.poll is not None and not polled:
            raise s_at.key("poll", raw_sync).error(
                f"sync {sync.name} polls nothing: neither {sync.a} nor {sync.b} is polled "
                "(kind sqlite, or capture: poll)"
            )
        e_at = s_at.key("entities", raw_sync)
        raw_entities = raw_sync["entities"]
        for entity in sync.entities.values():
            ent_at = e_at.key(entity.name, raw_entities)
            for letter in ("a", "b"):
                side = entity.side(letter)
                endpoint = endpoints[side.endpoint]
                spec = entity.poll.get(letter)
                if spec is None and is_polled(endpoint):
                    why = (
                        f"kind {endpoint.kind}" if always_polled(endpoint.kind) else "capture: poll"
                    )
                    raise ent_at.error(
                        f"{side.endpoint} is polled ({why}): the entity needs "
                        f"poll: {{{side.endpoint}: {{column: <modification column>, "
                        "deleted: ...}}"
                    )
                if spec is not None and not is_polled(endpoint):
                    p_at = ent_at.key("poll", raw_entities[entity.name])
                    raise p_at.key(side.endpoint).error(
                        f"{side.endpoint} has a change stream; to poll it instead, declare "
                        f"capture: poll on endpoint {side.endpoint}"
                    )
                if spec is not None:
                    specs[side.endpoint][poll_key(sync.name, side.table)] = spec
    out: dict[str, Endpoint] = {}
    for name, endpoint in endpoints.items():
        settings = dict(endpoint.settings)
        for key in kind_of(endpoint.kind).settings.paths:
            path = settings.get(key)
            relative = isinstance(path, str) and not Path(path).is_absolute()
            if relative and search_dir is not None:
                settings[key] = str(search_dir / str(path))
        out[name] = replace(endpoint, settings=FrozenDict(settings), polls=FrozenDict(specs[name]))
    return FrozenDict(out)
