"""One entity's two sides as the pipeline sees them: keys, external ids, field mapping.

Sides are named by letter: "a" is the first endpoint of the sync's `between`, "b" the
second. Values are translated from one side to the other through the field mapping, the
declared per-direction transform, and the target column's stored form (`coerce`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from syncswim_lib.errors import ConfigError, RecordError
from syncswim_lib.values import ColumnInfo, TableInfo
from syncswim_lib.values.coerce import coerce, coerce_column, same_value

if TYPE_CHECKING:
    from syncswim_lib.config import Entity
    from syncswim_lib.config.models import Conflicts, Sync

FieldPair = tuple[str, str, Callable[[Any], Any] | None, Callable[[Any], Any] | None]

Letter = Literal["a", "b"]


def other(letter: Letter) -> Letter:
    return "b" if letter == "a" else "a"


@dataclass(frozen=True)
class SideView:
    letter: Letter
    endpoint: str
    info: TableInfo
    key: tuple[str, ...]
    ext_column: str | None  # SOR mode: set on the non-SOR side; external-id mode: both
    columns: tuple[str, ...]  # mapped columns, in field order
    # SOR mode, on the SOR side (`origin_id:`): the external-id column that holds the
    # other side's key of the row a record was created from; creates are matched by it
    origin_column: str | None = None

    @property
    def table(self) -> str:
        return self.info.name

    def col(self, name: str) -> ColumnInfo:
        found = self.info.column(name)
        if found is None:
            raise ConfigError(f"column {name} does not exist in {self.endpoint} {self.table}")
        return found

    def tracked(self) -> tuple[str, ...]:
        """The columns whose values the shadow keeps for this side."""
        extra = (
            (self.ext_column,) if self.ext_column and self.ext_column not in self.columns else ()
        )
        return self.columns + extra


@dataclass(frozen=True)
class RefView:
    """A reference of this entity (docs/relationships.md), resolved against the tables:
    the child's field and, per side, the parent's single key column and table."""

    pair: FieldPair  # the child's mapped field holding the reference
    parent: str
    parent_table_a: str
    parent_table_b: str
    parent_key_a: ColumnInfo
    parent_key_b: ColumnInfo
    on_delete: str = "propagate"
    forward: bool = False  # self-reference or back edge of a cycle: may need two passes

    def column(self, letter: Letter) -> str:
        return self.pair[0] if letter == "a" else self.pair[1]

    def parent_key(self, letter: Letter) -> ColumnInfo:
        return self.parent_key_a if letter == "a" else self.parent_key_b

    def parent_table(self, letter: Letter) -> str:
        return self.parent_table_a if letter == "a" else self.parent_table_b


@dataclass(frozen=True)
class ChildView:
    """A reference to this entity from a child entity (the engine clears such children
    before a parent delete)."""

    entity: str
    column_a: str
    column_b: str
    on_delete: str

    def column(self, letter: Letter) -> str:
        return self.column_a if letter == "a" else self.column_b


@dataclass(frozen=True)
class EntityMap:
    sync: str
    entity: str
    a: SideView
    b: SideView
    mode: Literal["system_of_record", "external_id"]
    sor: Letter | None
    # (column on a, column on b, transform to a, transform to b)
    fields: tuple[FieldPair, ...]
    conflicts: Conflicts | None = None  # None: the mode's defaults
    clock: dict[str, str] | None = None  # letter -> column holding the row's change time
    references: tuple[RefView, ...] = ()
    children: tuple[ChildView, ...] = ()
    # `match_on:` the fields a `full` run adopts unlinked records by, and their normaliser
    match_on: tuple[FieldPair, ...] = ()
    match_normalise: Callable[[Any], Any] | None = None

    def reference(self, column_a: str) -> RefView | None:
        return next((r for r in self.references if r.pair[0] == column_a), None)

    def merge_fields(self) -> tuple[FieldPair, ...]:
        """The fields the three-way merge decides: the mapping, plus the shared external-id
        column in external-id mode (it is data both sides may change)."""
        if self.mode == "external_id" and self.a.ext_column and self.b.ext_column:
            return (*self.fields, (self.a.ext_column, self.b.ext_column, None, None))
        return self.fields

    def convert(self, source: Letter, pair: FieldPair, value: Any) -> Any:
        """One field's value from `source` as the other side stores it."""
        col_a, col_b, to_a, to_b = pair
        src_col, dst_col, fn = (col_a, col_b, to_b) if source == "a" else (col_b, col_a, to_a)
        target = self.side(other(source))
        try:
            if fn is not None:
                value = fn(value)
            return coerce(value, target.col(dst_col))
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise RecordError(f"field {src_col} -> {target.endpoint}.{dst_col}: {exc}") from exc

    def convert_column(
        self, source: Letter, pair: FieldPair, values: list[Any]
    ) -> tuple[list[Any], list[int]]:
        """`convert` over one field's values of many rows: the converted values (None
        where it failed) and the positions `convert` would refuse with a RecordError. The
        transform, where declared, runs per value; the target column's checks run on the
        whole column (`coerce_column`)."""
        col_a, col_b, to_a, to_b = pair
        dst_col, fn = (col_b, to_b) if source == "a" else (col_a, to_a)
        target = self.side(other(source)).col(dst_col)
        failed: list[int] = []
        if fn is not None:
            made: list[Any] = []
            for i, value in enumerate(values):
                try:
                    made.append(fn(value))
                except (ValueError, TypeError, ArithmeticError):
                    made.append(None)
                    failed.append(i)
            values = made
        out, refused = coerce_column(values, target)
        if failed:
            refused = sorted(set(refused) | set(failed))
            for i in failed:
                out[i] = None
        return out, refused

    def side(self, letter: Letter) -> SideView:
        return self.a if letter == "a" else self.b

    def key_of(self, letter: Letter, row: Mapping[str, Any]) -> dict[str, Any]:
        return {k: row.get(k) for k in self.side(letter).key}

    def tracked_values(self, letter: Letter, row: Mapping[str, Any]) -> dict[str, Any]:
        return {c: row.get(c) for c in self.side(letter).tracked()}

    def ext_value(self, letter: Letter, row: Mapping[str, Any]) -> Any:
        col = self.side(letter).ext_column
        return None if col is None else row.get(col)

    def same_as_shadow(
        self, letter: Letter, row: Mapping[str, Any], shadow: Mapping[str, Any] | None
    ) -> bool:
        if not shadow or letter not in shadow:
            return False
        agreed = shadow[letter]
        return all(
            c in agreed and same_value(row.get(c), agreed[c]) for c in self.side(letter).tracked()
        )

    def translate(self, source: Letter, row: Mapping[str, Any]) -> dict[str, Any]:
        """The mapped values of a `source` row as the other side will store them."""
        target = self.side(other(source))
        out: dict[str, Any] = {}
        for col_a, col_b, to_a, to_b in self.fields:
            src_col, dst_col, fn = (col_a, col_b, to_b) if source == "a" else (col_b, col_a, to_a)
            value = row.get(src_col)
            try:
                if fn is not None:
                    value = fn(value)
                out[dst_col] = coerce(value, target.col(dst_col))
            except (ValueError, TypeError, ArithmeticError) as exc:
                raise RecordError(f"field {src_col} -> {target.endpoint}.{dst_col}: {exc}") from exc
        return out

    def sor_key_value(self, key: Mapping[str, Any]) -> Any:
        sor = self.side(self.sor or "a")
        return key[sor.key[0]]

    def key_from_ext(self, ext: Any) -> dict[str, Any]:
        """SOR mode: the SOR key an external-id column value points to."""
        sor = self.side(self.sor or "a")
        try:
            return {sor.key[0]: coerce(ext, sor.col(sor.key[0]))}
        except ValueError as exc:
            raise RecordError(
                f"external id {ext!r} is not a valid {sor.endpoint} key: {exc}"
            ) from exc

    def ext_text(self, ext: Any) -> str:
        return str(ext)


def build_entity_map(
    entity: Entity, describe: Callable[[str, str], TableInfo], sync: Sync | None = None
) -> EntityMap:
    """Resolve an entity declaration against the live table descriptions (references
    need the sync the entity is part of)."""
    mode = entity.mode
    fields = tuple((f.a, f.b, f.to_a, f.to_b) for f in entity.fields)

    def view(letter: Letter) -> SideView:
        spec = entity.side_a if letter == "a" else entity.side_b
        info = describe(spec.endpoint, spec.table)
        ext = mode.ext_column_a if letter == "a" else mode.ext_column_b
        cols = tuple(f[0] if letter == "a" else f[1] for f in fields)
        origin = mode.origin_column if mode.sor == letter else None
        return SideView(letter, spec.endpoint, info, tuple(spec.key), ext, cols, origin)

    sor: Letter | None = mode.sor if mode.kind == "system_of_record" else None
    clock = dict(getattr(entity, "clock", None) or {})
    refs: list[RefView] = []
    children: list[ChildView] = []
    if sync is not None:
        forward = {(name, r.column) for name, r in sync.forward_references()}
        by_a = {f[0]: f for f in fields}
        for ref in entity.references.values():
            parent = sync.entities[ref.parent]
            key_a, key_b = parent.side_a.key[0], parent.side_b.key[0]
            info_a = describe(parent.side_a.endpoint, parent.side_a.table)
            info_b = describe(parent.side_b.endpoint, parent.side_b.table)
            col_a, col_b = info_a.column(key_a), info_b.column(key_b)
            if col_a is None or col_b is None:
                raise ConfigError(f"entity {ref.parent}: key column {key_a}/{key_b} not found")
            refs.append(
                RefView(
                    by_a[ref.column],
                    ref.parent,
                    info_a.name,
                    info_b.name,
                    col_a,
                    col_b,
                    ref.on_delete,
                    (entity.name, ref.column) in forward,
                )
            )
        for name in sync.children(entity.name):
            child = sync.entities[name]
            for ref in child.references.values():
                if ref.parent == entity.name:
                    f = child.field(ref.column)
                    assert f is not None
                    children.append(ChildView(name, f.a, f.b, ref.on_delete))
    return EntityMap(
        entity.sync,
        entity.name,
        view("a"),
        view("b"),
        mode.kind,
        sor,
        fields,
        entity.conflicts,
        clock,
        tuple(refs),
        tuple(children),
        tuple(f for f in fields if entity.match_on and f[0] in entity.match_on.fields),
        entity.match_on.normalise if entity.match_on else None,
    )
