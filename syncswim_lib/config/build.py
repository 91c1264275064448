"""Building the Project from the parsed YAML tree: top level, endpoints, syncs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from syncswim_lib.config.entities import (
    ENTITY_KEYS,
    NOT_SUPPORTED,
    SyncScope,
    build_entity,
    check_references,
)
from syncswim_lib.config.health import build_health
from syncswim_lib.config.keypath import At, describe, suggest
from syncswim_lib.config.models import (
    ENDPOINT_KINDS,
    RUN_MODES,
    Endpoint,
    Entity,
    FrozenDict,
    Project,
    RunMode,
    StreamingSettings,
    Sync,
)
from syncswim_lib.config.polling import build_sync_poll, check_capture_setting, finish_polling
from syncswim_lib.config.retry import build_retry
from syncswim_lib.config.secrets import Secret
from syncswim_lib.connectors.registry import KINDS, kind_of
from syncswim_lib.errors import ConfigError

TOP_KEYS = ("version", "state", "endpoints", "syncs")
ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
STATE_RE = re.compile(r"(sqlite|postgres|postgresql)(\+\w+)?://.*")
# sync names end up in replication slot names, which PostgreSQL limits to 63 characters
MAX_SYNC_NAME = 40

# an endpoint named like an entity key, or like a side letter, would be ambiguous
RESERVED_ENDPOINT_NAMES = frozenset({*ENTITY_KEYS, *NOT_SUPPORTED, "a", "b"})


def _setting(raw: Any, secret: bool, at: At) -> Secret | str:
    if isinstance(raw, dict):
        block = at.mapping(raw, "{env: VARIABLE}")
        at.keys(block, ("env",), ("env",), "a setting")
        env_at = at.key("env", block)
        env = env_at.text(block["env"], "an environment variable name")
        if not ENV_RE.fullmatch(env):
            raise env_at.error(f"expected an environment variable name, got {env!r}")
        return Secret(env=env, path=at.dotted, file=at.file)
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise at.error(f"expected text or {{env: VARIABLE}}, got {describe(raw)}")
    text = str(raw)
    return Secret(value=text, path=at.dotted, file=at.file) if secret else text


def _endpoint(name: Any, raw: Any, at: At) -> Endpoint:
    at.name(name, "an endpoint name")
    if name in RESERVED_ENDPOINT_NAMES:
        raise at.error(f"endpoint name {name!r} is reserved (it is a key inside entity blocks)")
    block = at.mapping(raw, "an endpoint, e.g. {kind: postgres, dsn: {env: APP_DB_DSN}}")
    if "kind" not in block:
        raise at.error(f"missing key 'kind' (one of: {', '.join(ENDPOINT_KINDS)})")
    kind = at.key("kind", block).one_of(block["kind"], ENDPOINT_KINDS, "endpoint kind")
    # the kind's own description (connectors/<kind>/kind.py) says what it takes
    described = kind_of(kind).settings
    at.keys(block, ("kind", *described.keys), described.required, f"a {kind} endpoint")
    settings = {
        key: _setting(value, key in described.secret, at.key(key, block))
        for key, value in block.items()
        if key != "kind"
    }
    try:  # bad literal values refused at load, not at the first connect
        kind_of(kind).check(settings, at.dotted)
    except ConfigError as e:
        if e.path == at.dotted:  # about the block as a whole: name its line
            raise at.error(str(e).removeprefix(f"{e.path}: ")) from None
        raise ConfigError(str(e), file=at.file) from None
    check_capture_setting(kind, settings, at)  # capture: stream | poll
    return Endpoint(name, kind, FrozenDict(settings))


def _state(raw: Any, at: At) -> Secret | str | None:
    if raw is None:
        return None
    if isinstance(raw, dict):
        return _setting(raw, True, at)
    text = at.text(raw, "a state store URL (sqlite:///... or postgresql://...) or {env: ...}")
    if not STATE_RE.fullmatch(text):
        raise at.error(f"expected a sqlite:///... or postgresql://... URL, got {text!r}")
    # a PostgreSQL URL may carry a password: keep it out of every repr
    return text if text.startswith("sqlite") else Secret(value=text, path="state", file=at.file)


def _between(raw: Any, endpoints: FrozenDict[str, Endpoint], at: At) -> tuple[Endpoint, Endpoint]:
    if not isinstance(raw, list) or len(raw) != 2:
        raise at.error(f"expected a list of two endpoint names, got {describe(raw)}")
    found: list[Endpoint] = []
    for index, name in enumerate(raw):
        item_at = at.item(index)
        if not isinstance(name, str) or name not in endpoints:
            shown = name if isinstance(name, str) else describe(name)
            raise item_at.error(
                f"unknown endpoint {shown!r} (declared: {', '.join(endpoints) or 'none'}"
                f"{suggest(name, endpoints) if isinstance(name, str) else ''})"
            )
        found.append(endpoints[name])
    if found[0].name == found[1].name:
        raise at.error(f"a sync is between two different endpoints, got {found[0].name} twice")
    return found[0], found[1]


def _check_tables(entities: dict[str, Entity], at: At) -> None:
    """One table per side per sync: capture could not tell two entities' changes apart."""
    seen: dict[tuple[str, str], str] = {}
    for entity in entities.values():
        for side in (entity.side_a, entity.side_b):
            owner = seen.setdefault((side.endpoint, side.table), entity.name)
            if owner != entity.name:
                place = kind_of(side.kind).table_word
                where = at.key(entity.name).key(side.endpoint).key(place)
                raise where.error(
                    f"{side.endpoint} {side.table} is already used by entity {owner} in this sync"
                )


def _sync(
    name: Any,
    raw: Any,
    project_endpoints: FrozenDict[str, Endpoint],
    at: At,
    search_dir: Path | None,
) -> Sync:
    at.name(name, "a sync name")
    if len(name) > MAX_SYNC_NAME:
        raise at.error(f"a sync name has at most {MAX_SYNC_NAME} characters (it names slots)")
    block = at.mapping(raw, "a sync, e.g. {between: [a, b], entities: {...}}")
    at.keys(
        block,
        ("between", "run", "streaming", "batch_size", "retry", "health", "poll", "entities"),
        ("between", "entities"),
        f"sync {name}",
    )
    a, b = _between(block["between"], project_endpoints, at.key("between", block))
    run, streaming = _run_mode(block, (a, b), at)
    batch_size = block.get("batch_size")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise at.key("batch_size", block).error(
            f"expected a whole number of at least 1, got {describe(batch_size)}"
        )
    e_at = at.key("entities", block)
    raw_entities = e_at.mapping(block["entities"], "a mapping of entity name: entity")
    if not raw_entities:
        raise e_at.error("a sync needs at least one entity")
    scope = SyncScope(
        name, a, b, tuple(project_endpoints), tuple(map(str, raw_entities)), search_dir
    )
    entities: dict[str, Entity] = {}
    for entity_name, entity_raw in raw_entities.items():
        ent_at = e_at.key(entity_name, raw_entities)
        ent_at.name(entity_name, "an entity name")
        entities[entity_name] = build_entity(entity_name, entity_raw, scope, ent_at)
    _check_tables(entities, e_at)
    check_references(entities, raw_entities, e_at)
    retry = build_retry(block.get("retry"), at.key("retry", block))
    health = build_health(block.get("health"), at.key("health", block))
    poll = None
    if block.get("poll") is not None:
        poll = build_sync_poll(block["poll"], at.key("poll", block))
    return Sync(
        name, a.name, b.name, run, batch_size, FrozenDict(entities), streaming, retry, health, poll
    )


_STREAMING_KEYS = {
    "batch_changes": 1,
    "idle_gap_ms": 0,
    "max_batch_ms": 1,
    "rotate_every_s": 60,
    "report_every_ms": 0,
}


def _run_mode(
    block: Any, ends: tuple[Endpoint, Endpoint], at: At
) -> tuple[RunMode, StreamingSettings]:
    """`run:` (streaming by default when both endpoints have a continuous reader) and the
    `streaming:` settings."""
    # a polled endpoint has no continuous reader, whatever its kind
    streamable = all(e.reading.continuous for e in ends)
    run: RunMode = "streaming" if streamable else "micro_batch"
    if block.get("run") is not None:
        run_at = at.key("run", block)
        given = run_at.one_of(block["run"], RUN_MODES, "run mode")
        if given == "streaming" and not streamable:
            other = next(e for e in ends if not e.reading.continuous)
            readers = ", ".join(k for k in KINDS if kind_of(k).readings[0].continuous)
            raise run_at.error(
                f"run mode 'streaming' is not supported yet for "
                f"{'polled' if other.polled else other.kind} endpoints (it needs "
                f"a continuous reader on both sides: {readers}); use micro_batch"
            )
        run = "streaming" if given == "streaming" else "micro_batch"
    raw = block.get("streaming")
    if raw is None:
        return run, StreamingSettings()
    s_at = at.key("streaming", block)
    if run != "streaming":
        raise s_at.error("streaming settings apply to run: streaming only")
    settings = s_at.mapping(raw, "a mapping of streaming settings")
    s_at.keys(settings, tuple(_STREAMING_KEYS), (), "streaming")
    values: dict[str, int] = {}
    for key, least in _STREAMING_KEYS.items():
        if key not in settings:
            continue
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise s_at.key(key, settings).error(
                f"expected a whole number of at least {least}, got {describe(value)}"
            )
        values[key] = value
    return run, StreamingSettings(**values)


def build_project(tree: Any, file: str, source_path: Path | None) -> Project:
    top = At(file)
    if tree is None:
        raise top.error("the file is empty (expected a mapping with endpoints and syncs)")
    root = top.mapping(tree, "a mapping with endpoints and syncs at the top level")
    top.keys(root, TOP_KEYS, ("endpoints", "syncs"))
    version = root.get("version", 1)
    if version != 1 or isinstance(version, bool):
        raise top.key("version", root).error(f"unsupported version {version!r} (expected 1)")
    state = _state(root.get("state"), top.key("state", root))
    ep_at = top.key("endpoints", root)
    raw_endpoints = ep_at.mapping(root["endpoints"], "a mapping of endpoint name: endpoint")
    endpoints = FrozenDict(
        {
            name: _endpoint(name, raw, ep_at.key(name, raw_endpoints))
            for name, raw in raw_endpoints.items()
        }
    )
    sy_at = top.key("syncs", root)
    raw_syncs = sy_at.mapping(root["syncs"], "a mapping of sync name: sync")
    if not raw_syncs:
        raise sy_at.error("no syncs declared")
    search_dir = source_path.parent if source_path is not None else None
    syncs = FrozenDict(
        {
            name: _sync(name, raw, endpoints, sy_at.key(name, raw_syncs), search_dir)
            for name, raw in raw_syncs.items()
        }
    )
    # polled endpoints carry their tables' poll specs (config/polling.py)
    endpoints = finish_polling(endpoints, syncs, raw_syncs, sy_at, search_dir)
    return Project(endpoints, syncs, state, source_path, version, file)
