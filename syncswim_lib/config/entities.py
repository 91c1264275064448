"""Building one entity (`syncs.<sync>.entities.<name>`) from its YAML block."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from syncswim_lib.config.keypath import At, describe, suggest
from syncswim_lib.config.models import (
    RULE_KINDS,
    ConflictRule,
    Conflicts,
    Endpoint,
    Entity,
    FieldMap,
    FrozenDict,
    Letter,
    MatchOn,
    Mode,
    OnDelete,
    OnTruncate,
    Reference,
    RefOnDelete,
    SideSpec,
)
from syncswim_lib.config.polling import PollSpec, build_entity_poll
from syncswim_lib.config.transforms import (
    Transform,
    TransformError,
    build_transform,
    import_callable,
    python_target,
)

ENTITY_KEYS = (
    "mode",
    "fields",
    "conflicts",
    "clock",
    "references",
    "match_on",
    "on_truncate",
    "poll",
)
# keys the format reserves for behaviour that is not built: refused with the reason
NOT_SUPPORTED: dict[str, str] = {}
# rules written as a bare word; `prefer` and `rule` take an argument
NAMED_RULES = tuple(k for k in RULE_KINDS if k not in ("prefer", "rule"))
RULE_EXPECTED = (
    f"{', '.join(NAMED_RULES)}, {{prefer: <endpoint>}} or {{rule: 'package.module:function'}}"
)
RULE_ARGS = "(value_a, value_b, base, time_a, time_b)"
OWNS = ("conflicts", "all")
ON_DELETE: tuple[OnDelete, ...] = ("keep", "delete")
REFERENCE_KEYS = ("entity", "on_delete")
REF_ON_DELETE: tuple[RefOnDelete, ...] = ("propagate", "set_null", "refuse")
# rules that order values: on a reference they would compare ids of different parent rows
ORDERING_RULES = ("max", "min")


@dataclass(frozen=True)
class SyncScope:
    """What an entity block may refer to: the sync's two endpoints and its entity names."""

    sync: str
    a: Endpoint
    b: Endpoint
    all_endpoints: Collection[str]
    entity_names: Collection[str]
    search_dir: Path | None  # where `python:` transforms and rules are also looked for

    @property
    def names(self) -> tuple[str, str]:
        return (self.a.name, self.b.name)

    def letter_of(self, value: Any, at: At, what: str) -> Letter:
        """The letter of an endpoint named in the entity, with a precise error otherwise."""
        if value == self.a.name:
            return "a"
        if value == self.b.name:
            return "b"
        if isinstance(value, str) and value in self.all_endpoints:
            raise at.error(
                f"endpoint {value!r} is not part of sync {self.sync} "
                f"(between: {self.a.name}, {self.b.name})"
            )
        if isinstance(value, str):
            raise at.error(
                f"unknown endpoint {value!r} in {what} (expected {self.a.name} or "
                f"{self.b.name}{suggest(value, self.names)})"
            )
        raise at.error(f"expected an endpoint name in {what}, got {describe(value)}")


def _column(value: Any, at: At) -> str:
    return at.text(value, "a column name")


def _side(raw: Any, endpoint: Endpoint, at: At) -> SideSpec:
    block = at.mapping(raw, f"the entity's {endpoint.kind} side, e.g. {{table: ..., key: [id]}}")
    kind = endpoint.description
    place = kind.table_word
    what = f"a {endpoint.kind} side"
    at.keys(block, (place, "key"), (place, "key"), what)
    name_at = at.key(place, block)
    table = name_at.text(block[place], f"a {place} name")
    if not kind.table_pattern.fullmatch(table):
        raise name_at.error(f"expected a {place} name like {kind.table_example}, got {table!r}")
    key_at = at.key("key", block)
    raw_key = block["key"]
    items = [raw_key] if isinstance(raw_key, str) else raw_key
    if not isinstance(items, list) or not items:
        raise key_at.error(f"expected a column or a list of columns, got {describe(raw_key)}")
    key = tuple(_column(v, key_at.item(i)) for i, v in enumerate(items))
    if len(set(key)) != len(key):
        raise key_at.error(f"a key column is listed twice: {', '.join(key)}")
    return SideSpec(endpoint.name, table, key, endpoint.kind)


def _mode(raw: Any, scope: SyncScope, sides: dict[Letter, SideSpec], at: At) -> tuple[Mode, bool]:
    """The mode, and whether the system of record owns every field (`owns: all`)."""
    block = at.mapping(
        raw, "{system_of_record: <endpoint>, external_id: {...}} or {external_id: {...}}"
    )
    at.keys(
        block, ("system_of_record", "external_id", "owns", "origin_id"), ("external_id",), "mode"
    )
    owns_all = False
    if "owns" in block:
        owns_at = at.key("owns", block)
        if "system_of_record" not in block:
            raise owns_at.error(
                "owns is only valid in system-of-record mode (in external-id mode no side "
                "owns the records)"
            )
        owns_all = owns_at.one_of(block["owns"], OWNS, "owns value") == "all"
    ext_at = at.key("external_id", block)
    ext_block = ext_at.mapping(block["external_id"], "a mapping of endpoint: column")
    columns: dict[Letter, str] = {}
    for name, column in ext_block.items():
        col_at = ext_at.key(name, ext_block)
        columns[scope.letter_of(name, col_at, "external_id")] = _column(column, col_at)
    if "system_of_record" not in block:
        for letter, endpoint in zip(("a", "b"), scope.names, strict=True):
            if letter not in columns:
                raise ext_at.error(
                    f"external-id mode needs the shared column on both sides: missing key "
                    f"{endpoint!r}"
                )
        if "origin_id" in block:
            raise at.key("origin_id", block).error(
                "origin_id is only valid in system-of-record mode (in external-id mode creates "
                "are already matched by the shared external id)"
            )
        return Mode("external_id", None, columns["a"], columns["b"]), owns_all
    sor_at = at.key("system_of_record", block)
    sor = scope.letter_of(block["system_of_record"], sor_at, "system_of_record")
    other: Letter = "b" if sor == "a" else "a"
    sor_name, other_name = (scope.names[0], scope.names[1])[:: 1 if sor == "a" else -1]
    if sor in columns:
        raise ext_at.key(sor_name, ext_block).error(
            f"in system-of-record mode external_id names the column on {other_name} that "
            f"stores {sor_name}'s key, not a column on {sor_name} itself"
        )
    if other not in columns:
        raise ext_at.error(f"missing key {other_name!r} (the column that stores {sor_name}'s key)")
    if len(sides[sor].key) != 1:
        raise sor_at.error(
            f"the system of record's key must be one column (it is stored in "
            f"{other_name}.{columns[other]}), but {sor_name} declares key "
            f"[{', '.join(sides[sor].key)}]"
        )
    origin = None
    if "origin_id" in block:
        origin = _origin_id(block["origin_id"], scope, sides, sor, at.key("origin_id", block))
    return Mode("system_of_record", sor, columns.get("a"), columns.get("b"), origin), owns_all


def _origin_id(
    raw: Any, scope: SyncScope, sides: dict[Letter, SideSpec], sor: Letter, at: At
) -> str:
    """`origin_id: {<sor endpoint>: <field>}`: the SOR's external-id field that holds the
    key of the row a record was created from on the other side."""
    block = at.mapping(raw, "a mapping of the system of record's endpoint: its field")
    if len(block) != 1:
        raise at.error(
            f"expected one entry, the system of record's endpoint: field, got {len(block)}"
        )
    [(name, column)] = block.items()
    col_at = at.key(name, block)
    letter = scope.letter_of(name, col_at, "origin_id")
    sor_end, other_end = (scope.a, scope.b) if sor == "a" else (scope.b, scope.a)
    if letter != sor:
        raise col_at.error(
            f"origin_id names a field on the system of record {sor_end.name} (it holds "
            f"{other_end.name}'s key of the rows records were created from), not on "
            f"{other_end.name}"
        )
    caps = sor_end.reading.capabilities
    if caps.batch_markers or not caps.upsert_by_external_id:
        raise at.error(
            f"origin_id is for a system of record without batch markers that upserts by an "
            f"external id (Salesforce); {sor_end.kind} endpoint {sor_end.name} replays its "
            "creates by their batch marker already"
        )
    other_key = sides["b" if sor == "a" else "a"].key
    if len(other_key) != 1:
        raise at.error(
            f"origin_id stores {other_end.name}'s key in one field, but {other_end.name} "
            f"declares key [{', '.join(other_key)}]"
        )
    return _column(column, col_at)


def _transforms(raw: Any, scope: SyncScope, at: At) -> dict[Letter, Transform]:
    block = at.mapping(raw, "a mapping of endpoint: transform (applied when writing to it)")
    found: dict[Letter, Transform] = {}
    for name, spec in block.items():
        spec_at = at.key(name, block)
        letter = scope.letter_of(name, spec_at, "transform")
        specs = spec if isinstance(spec, list) else [spec]
        if not specs or not all(isinstance(s, str) and s.strip() for s in specs):
            raise spec_at.error(
                f"expected a transform name or a list of them, got {describe(spec)}"
            )
        try:
            found[letter] = build_transform(specs, scope.search_dir)
        except TransformError as exc:
            raise spec_at.error(str(exc)) from None
    return found


def _fields(
    raw: Any, scope: SyncScope, sides: dict[Letter, SideSpec], mode: Mode, at: At
) -> tuple[FieldMap, ...]:
    block = at.mapping(raw, "a mapping of side-a column: side-b column")
    reserved: dict[Letter, dict[str, str]] = {}
    for letter in ("a", "b"):
        side = sides[letter]
        taken = {k: f"the key of {side.endpoint}" for k in side.key}
        ext = mode.ext_column(letter)
        if ext is not None:
            taken[ext] = f"the external-id column of {side.endpoint}"
        reserved[letter] = taken
    result: list[FieldMap] = []
    mapped_b: dict[str, str] = {}
    for col_a, target in block.items():
        f_at = at.key(col_a, block)
        if not isinstance(col_a, str) or not col_a.strip():
            raise f_at.error(f"expected a column name as key, got {describe(col_a)} (quote it)")
        transforms: dict[Letter, Transform] = {}
        if isinstance(target, dict):
            long = f_at.mapping(target, "a mapping")
            f_at.keys(long, ("to", "transform"), ("to",), "a field")
            col_b = _column(long["to"], f_at.key("to", long))
            if "transform" in long:
                transforms = _transforms(long["transform"], scope, f_at.key("transform", long))
        else:
            col_b = f_at.text(
                target, f"a {scope.b.name} column name or {{to: ..., transform: ...}}"
            )
        pairs: tuple[tuple[Letter, str], ...] = (("a", col_a), ("b", col_b))
        for letter, column in pairs:
            role = reserved[letter].get(column)
            if role is not None:
                raise f_at.error(
                    f"{column!r} is {role}: keys and external ids are matched through the "
                    f"mode and written by the sync, they cannot be mapped as fields"
                )
        if col_b in mapped_b:
            raise f_at.error(
                f"{scope.b.name} column {col_b!r} is already mapped from {mapped_b[col_b]!r}"
            )
        mapped_b[col_b] = col_a
        result.append(FieldMap(col_a, col_b, transforms.get("a"), transforms.get("b")))
    return tuple(result)


def _check_rule_signature(func: Callable[..., object], target: str, at: At) -> None:
    """A custom rule is called with five values; a function that cannot take them stops the
    load instead of failing the first conflict."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # some builtins have no signature to read
        return
    try:
        signature.bind(None, None, None, None, None)
    except TypeError:
        raise at.error(
            f"conflict rule {target!r} must accept {RULE_ARGS}, but its signature is {signature}"
        ) from None


def _rule(raw: Any, scope: SyncScope, at: At) -> ConflictRule:
    if isinstance(raw, str):
        if raw in NAMED_RULES:
            return ConflictRule(raw)
        if raw in ("prefer", "rule"):
            example = "{prefer: <endpoint>}" if raw == "prefer" else "{rule: 'module:function'}"
            raise at.error(f"conflict rule {raw!r} needs an argument: write {example}")
        raise at.error(
            f"unknown conflict rule {raw!r} (expected {RULE_EXPECTED}{suggest(raw, NAMED_RULES)})"
        )
    if not isinstance(raw, dict):
        raise at.error(f"expected {RULE_EXPECTED}, got {describe(raw)}")
    block = at.mapping(raw, RULE_EXPECTED)
    at.keys(block, ("prefer", "rule"), (), "a conflict rule")
    if len(block) != 1:
        raise at.error(f"expected one of {{prefer: ...}} or {{rule: ...}}, got {describe(raw)}")
    if "prefer" in block:
        return ConflictRule(
            "prefer", prefer=scope.letter_of(block["prefer"], at.key("prefer", block), "prefer")
        )
    rule_at = at.key("rule", block)
    spec = rule_at.text(block["rule"], "'package.module:function'")
    target = python_target(spec) or spec
    try:
        func = import_callable(target, scope.search_dir)
    except TransformError as exc:
        raise rule_at.error(f"conflict rule: {exc}") from None
    _check_rule_signature(func, target, rule_at)
    return ConflictRule("rule", rule=target, func=func)


def _conflicts(
    raw: Any, scope: SyncScope, mode: Mode, owns_all: bool, mapped: Sequence[str], at: At
) -> Conflicts:
    sor_default = ConflictRule("prefer", prefer=mode.sor) if mode.sor else ConflictRule("newest")
    tie_break: Letter = mode.sor or "a"
    if raw is None:
        return Conflicts(
            sor_default, FrozenDict(), declared=False, tie_break=tie_break, owns_all=owns_all
        )
    block = at.mapping(raw, "{default: ..., fields: {...}, tie_break: ..., on_delete: ...}")
    at.keys(block, ("default", "fields", "tie_break", "on_delete"), (), "conflicts")
    if owns_all:
        for key in ("default", "fields", "tie_break"):
            if key in block:
                raise at.key(key, block).error(
                    f"{key} has no effect with mode owns: all (the system of record's values "
                    "always win; only on_delete applies)"
                )
    default = (
        _rule(block["default"], scope, at.key("default", block))
        if "default" in block
        else sor_default
    )
    # the shared external-id column is merged like a field in external-id mode
    decided = list(mapped)
    if mode.kind == "external_id" and mode.ext_column_a and mode.ext_column_a not in decided:
        decided.append(mode.ext_column_a)
    rules: dict[str, ConflictRule] = {}
    if "fields" in block:
        f_at = at.key("fields", block)
        fblock = f_at.mapping(block["fields"], "a mapping of side-a column: rule")
        for column, rule in fblock.items():
            c_at = f_at.key(column, fblock)
            if column not in decided:
                raise c_at.error(
                    f"{column!r} is not a mapped field (mapped: {', '.join(decided)}"
                    f"{suggest(str(column), decided)})"
                )
            rules[column] = _rule(rule, scope, c_at)
    if "tie_break" in block:
        tb_at = at.key("tie_break", block)
        tie_break = scope.letter_of(block["tie_break"], tb_at, "tie_break")
    on_delete: OnDelete = "keep"
    if "on_delete" in block:
        value = at.key("on_delete", block).one_of(block["on_delete"], ON_DELETE, "on_delete")
        on_delete = "delete" if value == "delete" else "keep"
    return Conflicts(
        default,
        FrozenDict(rules),
        tie_break=tie_break,
        on_delete=on_delete,
        owns_all=owns_all,
    )


def _clock(
    raw: Any,
    scope: SyncScope,
    sides: dict[Letter, SideSpec],
    mode: Mode,
    fields: Sequence[FieldMap],
    at: At,
) -> FrozenDict[Letter, str]:
    block = at.mapping(raw, "a mapping of endpoint: column (the row's last-change time)")
    if not block:
        raise at.error("expected at least one endpoint: column, got an empty mapping")
    clocks: dict[Letter, str] = {}
    for name, column in block.items():
        c_at = at.key(name, block)
        letter = scope.letter_of(name, c_at, "clock")
        col = _column(column, c_at)
        side = sides[letter]
        mapped = {f.column(letter) for f in fields}
        if col in mapped:
            raise c_at.error(
                f"{col!r} is a mapped field of {side.endpoint}: a clock column is read to "
                "order changes, never synced (leave it out of fields)"
            )
        if col in side.key:
            raise c_at.error(f"{col!r} is the key of {side.endpoint}, not a change time")
        if col == mode.ext_column(letter):
            raise c_at.error(
                f"{col!r} is the external-id column of {side.endpoint}, not a change time"
            )
        clocks[letter] = col
    return FrozenDict(clocks)


def _match_on(
    raw: Any,
    scope: SyncScope,
    fields: Sequence[FieldMap],
    references: Collection[str],
    at: At,
) -> MatchOn:
    """`match_on: email`, `[last, born]` or `{fields: [...], normalise: [strip, lower]}`."""
    normalise: Transform | None = None
    names_at = at
    if isinstance(raw, dict):
        block = at.mapping(raw, "a mapping")
        at.keys(block, ("fields", "normalise"), ("fields",), "match_on")
        names_at = at.key("fields", block)
        raw_names = block["fields"]
        if block.get("normalise") is not None:
            n_at = at.key("normalise", block)
            steps = block["normalise"]
            steps = steps if isinstance(steps, list) else [steps]
            if not steps or not all(isinstance(x, str) and x.strip() for x in steps):
                got = describe(block["normalise"])
                raise n_at.error(f"expected a transform name or a list of them, got {got}")
            try:
                normalise = build_transform(steps, scope.search_dir)
            except TransformError as exc:
                raise n_at.error(str(exc)) from None
    else:
        raw_names = raw
    names = raw_names if isinstance(raw_names, list) else [raw_names]
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise names_at.error(
            f"expected a side-a field name or a list of them, got {describe(raw_names)}"
        )
    mapped = [f.a for f in fields]
    for name in names:
        if name not in mapped:
            raise names_at.error(
                f"{name!r} is not a mapped field (a side-a column of `fields`)"
                + suggest(name, mapped)
            )
        if name in references:
            raise names_at.error(
                f"{name!r} is a reference: it holds a different key on each side, so it "
                "cannot match records"
            )
    if len(set(names)) != len(names):
        raise names_at.error("a field is named twice")
    return MatchOn(tuple(names), normalise)


def _references(
    raw: Any,
    scope: SyncScope,
    sides: dict[Letter, SideSpec],
    mode: Mode,
    fields: Sequence[FieldMap],
    at: At,
) -> FrozenDict[str, Reference]:
    block = at.mapping(
        raw, "a mapping of side-a column: parent entity (or {entity: ..., on_delete: ...})"
    )
    if not block:
        raise at.error("expected at least one column: entity, got an empty mapping")
    side = sides["a"]
    mapped = [f.a for f in fields]
    found: dict[str, Reference] = {}
    for column, target in block.items():
        r_at = at.key(column, block)
        if not isinstance(column, str) or not column.strip():
            raise r_at.error(f"expected a column name as key, got {describe(column)} (quote it)")
        # the key and the external id identify this row; a reference holds another row's key
        if column in side.key:
            raise r_at.error(
                f"{column!r} is the key of {side.endpoint}: a reference is a mapped field "
                "that holds the parent's key"
            )
        if column == mode.ext_column_a:
            raise r_at.error(
                f"{column!r} is the external-id column of {side.endpoint}: a reference is a "
                "mapped field that holds the parent's key"
            )
        field_map = next((f for f in fields if f.a == column), None)
        if field_map is None:
            raise r_at.error(
                f"{column!r} is not a mapped field (mapped: {', '.join(mapped) or 'none'}"
                f"{suggest(column, mapped)})"
            )
        if field_map.to_a is not None or field_map.to_b is not None:
            raise r_at.error(
                f"field {column!r} has a transform: a reference is translated through the "
                "parent's links; a transform on it is not supported"
            )
        on_delete: RefOnDelete = "propagate"
        if isinstance(target, dict):
            long = r_at.mapping(target, "{entity: ..., on_delete: ...}")
            r_at.keys(long, REFERENCE_KEYS, ("entity",), "a reference")
            parent_at = r_at.key("entity", long)
            parent_raw = long["entity"]
            if "on_delete" in long:
                value = r_at.key("on_delete", long).one_of(
                    long["on_delete"], REF_ON_DELETE, "on_delete"
                )
                on_delete = cast(RefOnDelete, value)
        else:
            parent_at, parent_raw = r_at, target
        parent = parent_at.text(parent_raw, "an entity name or {entity: ..., on_delete: ...}")
        if parent not in scope.entity_names:
            raise parent_at.error(
                f"unknown entity {parent!r} (entities of sync {scope.sync}: "
                f"{', '.join(scope.entity_names)}{suggest(parent, scope.entity_names)})"
            )
        found[column] = Reference(column, parent, on_delete)
    return FrozenDict(found)


def _check_reference_rules(
    raw: Any, conflicts: Conflicts, references: Mapping[str, Reference], at: At
) -> None:
    """max and min order values; a reference's values are ids of different parent rows."""
    for column, ref in references.items():
        explicit = conflicts.fields.get(column)
        rule = explicit or conflicts.default
        if rule.kind not in ORDERING_RULES:
            continue
        block = at.mapping(raw, "conflicts")
        why = f"it would compare ids of different {ref.parent} rows"
        if explicit is not None:
            f_at = at.key("fields", block)
            raise f_at.key(column, block["fields"]).error(
                f"conflict rule {rule.kind} on reference {column!r} (-> {ref.parent}): {why} "
                "(use newest, non_null, manual, {prefer: ...} or {rule: ...})"
            )
        raise at.key("default", block).error(
            f"the default rule {rule.kind} applies to reference {column!r} (-> {ref.parent}): "
            f"{why} (give {column} its own rule in conflicts.fields)"
        )


def _position(raw: Any, at: At, *names: str) -> At:
    """Where `raw[names[0]][names[1]]...` sits, for checks made after the entities are built."""
    for name in names:
        at = at.key(name, raw)
        raw = raw.get(name) if isinstance(raw, dict) else None
    return at


def check_references(entities: Mapping[str, Entity], raw: Any, at: At) -> None:
    """Checks that need the parent's declaration: a child may be declared before its parent,
    so they run once every entity of the sync is built. `raw` and `at` are the sync's
    `entities` block and its position."""
    for entity in entities.values():
        for column, ref in entity.references.items():
            parent = entities[ref.parent]
            for side in (parent.side_a, parent.side_b):
                if len(side.key) == 1:
                    continue
                where = _position(raw, at, entity.name, "references", column)
                raise where.error(
                    f"{ref.parent} has the key [{', '.join(side.key)}] on {side.endpoint}: "
                    "composite keys are not supported for references yet"
                )


def build_entity(name: str, raw: Any, scope: SyncScope, at: At) -> Entity:
    block = at.mapping(raw, "an entity block (one block per endpoint, mode, fields)")
    allowed = (*scope.names, *ENTITY_KEYS)
    for key in block:
        if isinstance(key, str) and key in NOT_SUPPORTED:
            raise at.key(key, block).error(f"{key} is not supported yet ({NOT_SUPPORTED[key]})")
        if isinstance(key, str) and key not in allowed and key in scope.all_endpoints:
            scope.letter_of(key, at.key(key, block), "entity")
    at.keys(block, allowed, (*scope.names, "mode", "fields"), f"entity {name}")
    sides: dict[Letter, SideSpec] = {
        "a": _side(block[scope.a.name], scope.a, at.key(scope.a.name, block)),
        "b": _side(block[scope.b.name], scope.b, at.key(scope.b.name, block)),
    }
    mode, owns_all = _mode(block["mode"], scope, sides, at.key("mode", block))
    fields = _fields(block["fields"], scope, sides, mode, at.key("fields", block))
    mapped = [f.a for f in fields]
    conflicts = _conflicts(
        block.get("conflicts"), scope, mode, owns_all, mapped, at.key("conflicts", block)
    )
    clock: FrozenDict[Letter, str] = FrozenDict()
    if block.get("clock") is not None:
        clock = _clock(block["clock"], scope, sides, mode, fields, at.key("clock", block))
    references: FrozenDict[str, Reference] = FrozenDict()
    if block.get("references") is not None:
        references = _references(
            block["references"], scope, sides, mode, fields, at.key("references", block)
        )
        _check_reference_rules(
            block.get("conflicts"), conflicts, references, at.key("conflicts", block)
        )
    match_on: MatchOn | None = None
    if block.get("match_on") is not None:
        match_on = _match_on(
            block["match_on"], scope, fields, references, at.key("match_on", block)
        )
    on_truncate = _on_truncate(block.get("on_truncate"), at.key("on_truncate", block))
    poll: FrozenDict[Letter, PollSpec] = FrozenDict()
    if block.get("poll") is not None:  # docs/polling.md; the whole project is checked later
        letters = {"a": scope.a.name, "b": scope.b.name}
        built = build_entity_poll(block["poll"], letters, scope.letter_of, at.key("poll", block))
        poll = FrozenDict(cast(dict[Letter, PollSpec], built))
    return Entity(
        name,
        scope.sync,
        sides["a"],
        sides["b"],
        mode,
        fields,
        references,
        conflicts,
        clock,
        match_on,
        on_truncate,
        poll=poll,
    )


def _on_truncate(raw: Any, at: At) -> OnTruncate:
    """`on_truncate: refuse | propagate` (default refuse: a TRUNCATE captured on one side
    stops the entity rather than empty the other side)."""
    if raw is None:
        return "refuse"
    if raw not in ("refuse", "propagate"):
        raise at.error(f"expected refuse or propagate, got {describe(raw)}")
    return "propagate" if raw == "propagate" else "refuse"
