"""The typed, immutable model of a declaration; built by `loader.load_project`.

Sides of an entity are named by letter: "a" is the first endpoint of the sync's
`between`, "b" the second. Mappings are `FrozenDict`s: real dicts (JSON- and
pickle-friendly, declaration order kept) that refuse to change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

from syncswim_lib.config.health import HealthSettings
from syncswim_lib.config.polling import PollCadence, PollSpec, is_polled
from syncswim_lib.config.retry import RetrySettings
from syncswim_lib.config.secrets import Secret, resolve
from syncswim_lib.config.transforms import Transform
from syncswim_lib.connectors.kinds import KindDescription, Reading
from syncswim_lib.connectors.registry import KINDS, kind_of
from syncswim_lib.errors import ConfigError

K = TypeVar("K")
V = TypeVar("V")

# a kind this build has: each describes itself in its package (connectors/registry.py)
EndpointKind = str
ENDPOINT_KINDS: tuple[EndpointKind, ...] = tuple(KINDS)
# micro_batch: a sensor captures at its tick and starts a run for the entities with pending
# changes. streaming: one long-lived run per sync reads both change streams continuously
# and applies as soon as work is pending (docs/streaming.md).
RunMode = Literal["micro_batch", "streaming"]
RUN_MODES: tuple[RunMode, ...] = ("micro_batch", "streaming")
Letter = Literal["a", "b"]


class FrozenDict(dict[K, V]):
    """A dict that cannot be changed after it is built."""

    def _frozen(self, *_: Any, **__: Any) -> NoReturn:
        raise TypeError("this mapping is part of a loaded declaration and cannot change")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _frozen
    __ior__ = _frozen

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self.items()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self),))

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"


@dataclass(frozen=True)
class Endpoint:
    name: str
    kind: EndpointKind
    # connection settings; a Secret for anything read from the environment or secret-like
    settings: FrozenDict[str, Secret | str]
    # polled endpoints (docs/polling.md): "sync/table" -> how that table is polled
    polls: FrozenDict[str, PollSpec] = field(default_factory=lambda: FrozenDict[str, PollSpec]())

    def resolve_setting(self, name: str) -> str:
        """The setting's text; an unset environment variable is a ConfigError."""
        if name not in self.settings:
            raise ConfigError(
                f"endpoint {self.name} ({self.kind}) has no setting {name!r}",
                path=f"endpoints.{self.name}",
            )
        return resolve(self.settings[name], f"endpoints.{self.name}.{name}")

    @property
    def description(self) -> KindDescription:
        return kind_of(self.kind)

    @property
    def reading(self) -> Reading:
        """How its changes are read: the kind's default, or what `capture:` chose."""
        chosen = self.settings.get("capture")
        return self.description.reading(chosen if isinstance(chosen, str) else None)

    @property
    def change_stream(self) -> bool:
        return self.reading.capabilities.change_stream

    @property
    def polled(self) -> bool:
        """Read by polling (kind sqlite, or `capture: poll`) rather than a change stream."""
        return is_polled(self)


@dataclass(frozen=True)
class SideSpec:
    endpoint: str
    # a table ("public.customers") or what the kind calls one (a Salesforce "Account")
    table: str
    key: tuple[str, ...]
    kind: EndpointKind = "postgres"

    @property
    def object(self) -> str:
        """The Salesforce object name (same as `table`)."""
        return self.table


@dataclass(frozen=True)
class Mode:
    kind: Literal["system_of_record", "external_id"]
    sor: Letter | None  # the system of record's letter (SOR mode only)
    # SOR mode: the column on the non-SOR side that stores the SOR key;
    # external-id mode: the shared identifier column on each side
    ext_column_a: str | None
    ext_column_b: str | None
    # SOR mode, `origin_id:`: the external-id column on the system of record that holds
    # the key of the other side's row a record was created from. Creates in the SOR carry
    # it and go as upserts on it, so a replayed create (its answer lost, or the process
    # gone before the state was recorded) finds the record made before. For a system of
    # record without batch markers (Salesforce), whose plain creates a replay repeats.
    origin_column: str | None = None

    def ext_column(self, letter: Letter) -> str | None:
        return self.ext_column_a if letter == "a" else self.ext_column_b


@dataclass(frozen=True)
class FieldMap:
    a: str  # column on side a
    b: str  # column on side b
    to_a: Transform | None = None  # applied to values written to side a
    to_b: Transform | None = None

    def column(self, letter: Letter) -> str:
        return self.a if letter == "a" else self.b

    def transform_to(self, letter: Letter) -> Transform | None:
        return self.to_a if letter == "a" else self.to_b


RuleKind = Literal["newest", "prefer", "max", "min", "non_null", "manual", "rule"]
RULE_KINDS: tuple[RuleKind, ...] = ("newest", "prefer", "max", "min", "non_null", "manual", "rule")


@dataclass(frozen=True)
class ConflictRule:
    """How one field that both sides changed to different values is decided.

    newest: the newer source commit (a tie, when the clocks cannot order the two, goes to
    `Conflicts.tie_break`); prefer: that side; max/min: the larger/smaller value (compared
    in side-a form); non_null: the one that is not NULL (both set: newest); manual: parked
    for a person; rule: `func(a, b, base, ts_a, ts_b)` returns the value (side-a form)."""

    kind: RuleKind
    prefer: Letter | None = None  # kind "prefer": the side whose value wins
    rule: str | None = None  # kind "rule": "package.module:function"
    func: Callable[..., Any] | None = field(default=None, compare=False, repr=False)

    @property
    def label(self) -> str:
        if self.kind == "prefer":
            return f"prefer:{self.prefer}"
        if self.kind == "rule":
            return f"rule:{self.rule}"
        return self.kind


OnDelete = Literal["keep", "delete"]


@dataclass(frozen=True)
class Conflicts:
    """How concurrent changes are decided. `declared` is False when the block was left out
    and `default` is the mode's default (SOR mode: prefer the SOR; external-id mode: newest).

    tie_break: the side whose value wins when `newest` cannot order two commit times
    (default: the system of record, else side a). on_delete: one side updated a record the
    other deleted — `keep` (default: the update survives and the record is created again
    where it was deleted) or `delete` (the delete wins; the updated values are recorded).
    owns_all (SOR mode only): the system of record owns every field — a change made on the
    other side is overwritten by the SOR's values instead of flowing back."""

    default: ConflictRule
    # keyed by side-a column: mapped fields, and in external-id mode the shared column
    fields: FrozenDict[str, ConflictRule]
    declared: bool = True
    tie_break: Letter = "a"
    on_delete: OnDelete = "keep"
    owns_all: bool = False

    def rule_for(self, field_a: str) -> ConflictRule:
        return self.fields.get(field_a, self.default)


# what happens on the other side when a parent is deleted on one side while rows there
# still refer to it (docs/relationships.md)
RefOnDelete = Literal["propagate", "set_null", "refuse"]


@dataclass(frozen=True)
class Reference:
    """A foreign key (database FK, later a Salesforce lookup): the child's mapped field
    `column` (its side-a column) holds a key of `parent`'s rows, on each side in that
    side's own ids; the value is translated through the parent entity's links."""

    column: str
    parent: str  # an entity of the same sync (itself for a self-reference)
    on_delete: RefOnDelete = "propagate"


OnTruncate = Literal["refuse", "propagate"]


@dataclass(frozen=True)
class MatchOn:
    """How a `full` run adopts records that already exist on both sides (`match_on:`):
    unlinked rows whose values of these fields agree are one record. `fields` are side-a
    columns of mapped fields; side a's values are compared as the sync would write them to
    side b, after `normalise` (applied to both sides' values) when given."""

    fields: tuple[str, ...]
    normalise: Transform | None = None


@dataclass(frozen=True)
class Entity:
    name: str
    sync: str
    side_a: SideSpec
    side_b: SideSpec
    mode: Mode
    fields: tuple[FieldMap, ...]
    # side-a column -> the reference it holds
    references: FrozenDict[str, Reference]
    conflicts: Conflicts
    # letter -> a timestamp column holding the row's last-change time on that side;
    # `newest` compares it instead of the source's commit time
    clock: FrozenDict[Letter, str] = field(default_factory=lambda: FrozenDict[Letter, str]())
    match_on: MatchOn | None = None
    # a TRUNCATE captured on one side: stop the entity (refuse) or delete the other
    # side's rows of the entity through the normal apply (propagate)
    on_truncate: OnTruncate = "refuse"
    # letter -> how that side is polled, for a side on a polled endpoint (docs/polling.md)
    poll: FrozenDict[Letter, PollSpec] = field(
        default_factory=lambda: FrozenDict[Letter, PollSpec]()
    )

    def letter(self, name_or_letter: str) -> Letter:
        """The letter ("a" or "b") of a letter or of one of the two endpoint names."""
        if name_or_letter in ("a", self.side_a.endpoint):
            return "a"
        if name_or_letter in ("b", self.side_b.endpoint):
            return "b"
        raise KeyError(f"{name_or_letter!r} is not a side of entity {self.sync}.{self.name}")

    def side(self, name_or_letter: str) -> SideSpec:
        return self.side_a if self.letter(name_or_letter) == "a" else self.side_b

    def other(self, name_or_letter: str) -> SideSpec:
        return self.side_b if self.letter(name_or_letter) == "a" else self.side_a

    @property
    def sor_side(self) -> SideSpec | None:
        return None if self.mode.sor is None else self.side(self.mode.sor)

    def columns(self, name_or_letter: str) -> tuple[str, ...]:
        """The mapped columns of one side, in declaration order."""
        letter = self.letter(name_or_letter)
        return tuple(f.column(letter) for f in self.fields)

    def field(self, column_a: str) -> FieldMap | None:
        return next((f for f in self.fields if f.a == column_a), None)


@dataclass(frozen=True)
class StreamingSettings:
    """`streaming:` of a sync (run: streaming). A batch closes when `batch_changes` changes
    are journaled, when no new transaction came for `idle_gap_ms`, or `max_batch_ms` after
    its first change (under a steady stream the idle gap never comes); the long-lived run
    ends itself after `rotate_every_s` at a batch boundary and its sensor starts the next.
    Each entity's batches are reported to Dagster at most once every `report_every_ms`: the
    batches that closed meanwhile go into one materialisation (0: one per batch)."""

    batch_changes: int = 1000
    idle_gap_ms: int = 20
    rotate_every_s: int = 3600
    max_batch_ms: int = 100
    report_every_ms: int = 1000


@dataclass(frozen=True)
class Sync:
    name: str
    a: str  # endpoint name of side a
    b: str
    run: RunMode
    batch_size: int | None
    entities: FrozenDict[str, Entity]  # declaration order
    streaming: StreamingSettings = field(default_factory=StreamingSettings)
    retry: RetrySettings = field(default_factory=RetrySettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    # how often its polled endpoints are read; None: declared nowhere (defaults apply)
    poll: PollCadence | None = None

    def parents(self, name: str) -> tuple[str, ...]:
        """The entities `name` refers to (itself included for a self-reference)."""
        return tuple(dict.fromkeys(r.parent for r in self.entities[name].references.values()))

    def children(self, name: str) -> tuple[str, ...]:
        return tuple(e for e in self.entities if name in self.parents(e))

    def cycles(self) -> tuple[tuple[str, ...], ...]:
        """The groups of entities that refer to each other in a circle (a self-reference is
        a group of one), each in apply order."""
        order = self.apply_order()
        groups = _strong_components(list(self.entities), lambda n: [p for p in self.parents(n)])
        out = []
        for g in groups:
            if len(g) > 1 or g[0] in self.parents(g[0]):
                out.append(tuple(sorted(g, key=order.index)))
        return tuple(sorted(out, key=lambda g: order.index(g[0])))

    def apply_order(self) -> tuple[str, ...]:
        """Entity names, parents before children: the one order the CLI, Dagster and `full`
        runs apply in (deletes go children first inside it, see docs/relationships.md).
        Entities in a cycle keep their declaration order among themselves; the references
        that point forward in it are set in a second pass."""
        names = list(self.entities)
        groups = _strong_components(names, lambda n: [p for p in self.parents(n)])
        # a group is ready when every parent outside it is placed; among ready groups the
        # one declared first goes first, so the order is stable under unrelated edits
        placed: list[str] = []
        left = [sorted(g, key=names.index) for g in groups]
        while left:
            for g in sorted(left, key=lambda g: names.index(g[0])):
                outside = {p for n in g for p in self.parents(n)} - set(g)
                if outside <= set(placed):
                    placed.extend(g)
                    left.remove(g)
                    break
        return tuple(placed)

    def forward_references(self) -> tuple[tuple[str, Reference], ...]:
        """(child, reference) pairs whose parent is not before the child in apply order:
        self-references and the back edges of cycles. A child row whose parent is new in
        the same run is inserted without such a reference first, then updated."""
        order = self.apply_order()
        return tuple(
            (name, ref)
            for name in order
            for ref in self.entities[name].references.values()
            if order.index(ref.parent) >= order.index(name)
        )

    def ancestors(self, name: str) -> tuple[str, ...]:
        """Every entity `name` depends on through references, in apply order."""
        seen: set[str] = set()
        todo = [p for p in self.parents(name) if p != name]
        while todo:
            n = todo.pop()
            if n in seen or n == name:
                continue
            seen.add(n)
            todo.extend(self.parents(n))
        return tuple(n for n in self.apply_order() if n in seen)

    def descendants(self, name: str) -> tuple[str, ...]:
        """Every entity that depends on `name` through references, in apply order."""
        return tuple(n for n in self.apply_order() if n != name and name in self.ancestors(n))


def _strong_components(names: list[str], edges: Callable[[str], Iterable[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of a small graph (entities of one sync)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            out.append(group)

    for n in names:
        if n not in index:
            visit(n)
    return out


@dataclass(frozen=True)
class Project:
    endpoints: FrozenDict[str, Endpoint]
    syncs: FrozenDict[str, Sync]
    state: Secret | str | None  # state store URL; None: SQLite under $DAGSTER_HOME
    source_path: Path | None  # absolute path of the file, None when parsed from text
    version: int = 1
    source_name: str | None = None  # the file as the user named it: errors show this

    def entities(self) -> Iterable[Entity]:
        for sync in self.syncs.values():
            yield from sync.entities.values()

    def endpoint_of(self, entity: Entity, name_or_letter: str) -> Endpoint:
        return self.endpoints[entity.side(name_or_letter).endpoint]

    def resolve_state(self) -> str | None:
        return None if self.state is None else resolve(self.state, "state")
