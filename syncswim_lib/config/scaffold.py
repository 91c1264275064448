"""`syncswim init`'s proposal: from two databases' catalogs, the entities of one sync.

Pure functions over `introspect.Database` (no connection), with the checks `validate` makes
(`convert.check_conversion`, `check_key_storage`, `live.reference_fit`), so that what init
proposes is what validate accepts once the SQL it gives is run. What a person must decide
is kept as notes, which `scaffold_render` writes as YAML comments:

- tables matched by name (case-insensitive; on PostgreSQL the first schema holding the
  name, `public` first); tables on one side only are listed, not synced;
- the mode: an existing column on one side that can hold the other side's generated key
  (`<endpoint>_id`, `<endpoint>_<entity>_id`) makes that other side the system of record;
  else a shared column unique on both sides makes an external-id entity; else the side
  whose key the database generates is the system of record and the column to store its
  key is added by SQL; else a shared `shared_id` column is added on both sides;
- fields matched by name, both directions checked: a pair that cannot convert is commented
  out with the reason, each narrowing is a comment on its field;
- a one-column foreign key to another synced table's key becomes a `references:` entry;
- where the SQL adds the external-id column (empty: records already on both sides would be
  created twice), a commented `match_on` names a natural key to adopt them by.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from syncswim_lib.config.convert import check_conversion, check_key_storage, int_bytes
from syncswim_lib.config.introspect import Database, ForeignKey, Kind
from syncswim_lib.config.live import reference_fit
from syncswim_lib.errors import ConfigError
from syncswim_lib.values import ColumnInfo, TableInfo

Letter = Literal["a", "b"]
LETTERS: tuple[Letter, Letter] = ("a", "b")
MAX_NAME = 40
SHARED_ID = "shared_id"
SHARED_ID_TYPE = "varchar(64)"
_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
# names an endpoint cannot take (keys inside an entity block, the side letters)
_RESERVED = frozenset({"mode", "fields", "conflicts", "clock", "references", "match_on", "a", "b"})
# families whose values make a usable shared identifier
_ID_FAMILIES = frozenset({"int", "text", "uuid"})


def other(letter: Letter) -> Letter:
    return "b" if letter == "a" else "a"


def name_from(text: str, fallback: str) -> str:
    """A declaration name (lowercase, digits, `_`, a letter first, at most 40) from `text`."""
    name = re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")
    if not name or not name[0].isalpha():
        name = f"{fallback}_{name}".rstrip("_")
    return name[:MAX_NAME].rstrip("_")


@dataclass(frozen=True)
class Side:
    name: str  # the endpoint's name in the declaration
    env: str  # the environment variable its DSN is read from
    db: Database

    @property
    def kind(self) -> Kind:
        return self.db.kind


@dataclass
class Field:
    a: str
    b: str
    notes: list[str] = field(default_factory=list)  # narrowings: lossy in some direction
    reference: str | None = None  # the parent entity, for a foreign key


@dataclass
class EntityPlan:
    name: str
    tables: dict[Letter, str]
    keys: dict[Letter, tuple[str, ...]]
    mode: Literal["system_of_record", "external_id"] = "external_id"
    sor: Letter | None = None
    ext: dict[Letter, str] = field(default_factory=dict)
    fields: list[Field] = field(default_factory=list)
    left_out: list[tuple[str, str, str]] = field(default_factory=list)  # a, b, why
    notes: list[str] = field(default_factory=list)  # comments above the entity
    decisions: list[str] = field(default_factory=list)  # what a person must decide
    only_on: dict[Letter, list[str]] = field(default_factory=dict)  # unmatched columns
    sql: list[tuple[Letter, str]] = field(default_factory=list)
    new_ext: bool = False  # SOR: the external-id column is added by the SQL, empty
    match_on: str | None = None  # a natural key to adopt existing records by (suggested)

    @property
    def references(self) -> dict[str, str]:
        return {f.a: f.reference for f in self.fields if f.reference is not None}


@dataclass
class Scaffold:
    sides: dict[Letter, Side]
    sync: str
    entities: list[EntityPlan]
    only_on: dict[Letter, list[str]]  # tables on one side only
    skipped: list[tuple[str, str]]  # tables matched but not proposed, and why
    warnings: list[str] = field(default_factory=list)  # about the pair itself

    def sql(self) -> list[tuple[Letter, str]]:
        return [s for e in self.entities for s in e.sql]


def endpoint_names(a: Database, b: Database) -> tuple[str, str]:
    """Endpoint names from the database names, made distinct and never reserved."""
    names = [name_from(db.database, db.kind) for db in (a, b)]
    if names[0] == names[1]:
        if a.kind != b.kind:
            names = [
                f"{n}_{'pg' if db.kind == 'postgres' else 'my'}"
                for n, db in zip(names, (a, b), strict=True)
            ]
        else:
            names = [f"{names[0]}_1", f"{names[1]}_2"]
    return tuple(f"{n}_db" if n in _RESERVED else n for n in names)  # type: ignore[return-value]


# --- SQL ---------------------------------------------------------------------------------


def quote(kind: Kind, name: str) -> str:
    if kind == "mysql":
        return "`" + name.replace("`", "``") + "`"
    if re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


def quote_table(kind: Kind, table: str) -> str:
    return ".".join(quote(kind, part) for part in table.split("."))


def key_column_type(key: ColumnInfo, kind: Kind) -> str:
    """A column type on `kind` that stores every value of the key column `key` exactly."""
    if key.family == "int":
        size, unsigned = int_bytes(key), "unsigned" in key.db_type.lower()
        if kind == "mysql":
            base = {1: "tinyint", 2: "smallint", 3: "mediumint", 4: "int"}.get(size, "bigint")
            return f"{base} unsigned" if unsigned else base
        size = size * 2 if unsigned else size  # PostgreSQL has no unsigned integers
        if size <= 2:
            return "smallint"
        if size <= 4:
            return "integer"
        return "bigint" if size <= 8 else "numeric(20,0)"
    if key.family == "uuid":
        return "uuid" if kind == "postgres" else "char(36)"
    if key.family == "text" and key.max_length is not None:
        return f"varchar({key.max_length})"
    return "text" if kind == "postgres" else "varchar(255)"


def add_column_sql(kind: Kind, table: str, column: str, type_: str) -> str:
    return (
        f"ALTER TABLE {quote_table(kind, table)} ADD COLUMN {quote(kind, column)} {type_} NULL "
        "UNIQUE;"
    )


def add_unique_sql(kind: Kind, table: str, column: str) -> str:
    return f"ALTER TABLE {quote_table(kind, table)} ADD UNIQUE ({quote(kind, column)});"


# --- the proposal ------------------------------------------------------------------------


def _unique(info: TableInfo, column: str) -> bool:
    return (column,) in info.unique or info.primary_key == (column,)


def _generated_key(info: TableInfo) -> ColumnInfo | None:
    if len(info.primary_key) != 1:
        return None
    key = info.column(info.primary_key[0])
    return key if key is not None and key.auto_generated else None


class _Planner:
    def __init__(self, sides: dict[Letter, Side]) -> None:
        self.sides = sides
        self.pairs: dict[str, dict[Letter, str]] = {}  # entity -> table per side
        self.entity_of: dict[Letter, dict[str, str]] = {"a": {}, "b": {}}

    def info(self, letter: Letter, table: str) -> TableInfo:
        return self.sides[letter].db.tables[table]

    def where(self, letter: Letter, column: ColumnInfo) -> str:
        return f"{self.sides[letter].name}.{column.name} ({column.db_type})"

    def plan(self, name: str) -> EntityPlan:
        tables = self.pairs[name]
        infos = {letter: self.info(letter, tables[letter]) for letter in LETTERS}
        plan = EntityPlan(name, tables, {letter: infos[letter].primary_key for letter in LETTERS})
        self.mode(plan, infos)
        self.fields(plan, infos)
        if plan.new_ext:
            self.adoption(plan, infos)
        return plan

    def adoption(self, plan: EntityPlan, infos: dict[Letter, TableInfo]) -> None:
        """The new external-id column is empty: records already on both sides would each be
        created again on the other side, unless linked first or adopted by `match_on`."""
        assert plan.sor is not None
        there = other(plan.sor)
        side, sor_side = self.sides[there], self.sides[plan.sor]
        column = plan.ext[there]

        def text(letter: Letter, name: str) -> bool:
            col = infos[letter].column(name)
            return col is not None and col.family == "text"

        texts = [
            f for f in plan.fields if f.reference is None and text("a", f.a) and text("b", f.b)
        ]
        unique = [f for f in texts if _unique(infos["a"], f.a) or _unique(infos["b"], f.b)]
        mails = [f for f in texts if "mail" in f.a.lower()]
        chosen = next(iter(mails or unique), None)
        how = (
            f"uncomment match_on below to pair them by {chosen.a} in that run"
            if chosen is not None
            else "declare match_on with a natural key both sides hold (docs/config-reference.md)"
        )
        plan.match_on = chosen.a if chosen is not None else None
        plan.decisions.append(
            f"records already on both sides: fill {side.name} {column} with the "
            f"{sor_side.name} key of the same record before the first `sync --full`, or {how}; "
            "otherwise each becomes two rows (docs/your-own-databases.md, preparing your "
            "tables)"
        )

    # the mode ------------------------------------------------------------------------

    def candidates(self, sor: Letter, entity: str) -> list[str]:
        endpoint = self.sides[sor].name
        singular = entity[:-1] if entity.endswith("s") and len(entity) > 1 else entity
        return list(dict.fromkeys([f"{endpoint}_id", f"{endpoint}_{singular}_id"]))

    def existing_store(
        self, plan: EntityPlan, infos: dict[Letter, TableInfo], sor: Letter, key: ColumnInfo
    ) -> str | None:
        """A column already on the other side that can hold the SOR's keys."""
        there = infos[other(sor)]
        for name in self.candidates(sor, plan.name):
            col = there.column(name)
            if col is None or col.auto_generated or name in there.primary_key:
                continue
            if check_key_storage(key, col).possible:
                return name
        return None

    def shared_identifier(self, infos: dict[Letter, TableInfo]) -> tuple[str, str] | None:
        a, b = infos["a"], infos["b"]
        by_name = {c.name.lower(): c for c in b.columns}
        for col_a in a.columns:
            col_b = by_name.get(col_a.name.lower())
            if col_b is None or col_a.name in a.primary_key or col_b.name in b.primary_key:
                continue
            if not (_unique(a, col_a.name) and _unique(b, col_b.name)):
                continue
            if col_a.family not in _ID_FAMILIES or col_b.family not in _ID_FAMILIES:
                continue
            kinds = (self.sides["a"].kind, self.sides["b"].kind)
            if (
                check_conversion(col_a, col_b, *kinds).possible
                and check_conversion(col_b, col_a, *reversed(kinds)).possible
            ):
                return col_a.name, col_b.name
        return None

    def mode(self, plan: EntityPlan, infos: dict[Letter, TableInfo]) -> None:
        keys = {letter: _generated_key(infos[letter]) for letter in LETTERS}
        generating = [letter for letter in LETTERS if keys[letter] is not None]
        for sor in generating:
            key = keys[sor]
            assert key is not None
            found = self.existing_store(plan, infos, sor, key)
            if found is not None:
                self.system_of_record(plan, infos, sor, key, found, existing=True)
                return
        shared = self.shared_identifier(infos)
        if shared is not None:
            plan.mode, plan.ext = "external_id", {"a": shared[0], "b": shared[1]}
            plan.notes.append(
                f"mode: {shared[0]} is unique on both sides: records are matched by it alone "
                "(external-id mode); a row without one waits until it has one"
            )
            if generating:
                plan.notes.append(
                    f"alternative: {self.sides[generating[0]].name} generates its keys, so it "
                    "could be the system of record instead (docs/config-reference.md, mode)"
                )
            return
        if generating:
            sor = generating[0]
            key = keys[sor]
            assert key is not None
            there = infos[other(sor)]
            name = next(
                (n for n in self.candidates(sor, plan.name) if there.column(n) is None),
                f"syncswim_{self.sides[sor].name}_id",
            )
            self.system_of_record(plan, infos, sor, key, name, existing=False)
            if len(generating) == 2:
                plan.decisions.append(
                    f"both sides generate their keys: {self.sides[sor].name} (the first DSN) "
                    "was made the system of record; swap it if the other side is the master"
                )
            return
        plan.mode, plan.ext = "external_id", {"a": SHARED_ID, "b": SHARED_ID}
        for letter in LETTERS:
            side = self.sides[letter]
            if infos[letter].column(SHARED_ID) is None:
                sql = add_column_sql(side.kind, plan.tables[letter], SHARED_ID, SHARED_ID_TYPE)
                plan.sql.append((letter, sql))
            elif not _unique(infos[letter], SHARED_ID):
                plan.sql.append((letter, add_unique_sql(side.kind, plan.tables[letter], SHARED_ID)))
        plan.decisions.append(
            "neither side's database generates a one-column key, so no side can be the "
            f"system of record: records are matched by {SHARED_ID} (added by the SQL above), "
            "which must hold the same identifier on both sides; rows without one wait"
        )

    def system_of_record(
        self,
        plan: EntityPlan,
        infos: dict[Letter, TableInfo],
        sor: Letter,
        key: ColumnInfo,
        column: str,
        existing: bool,
    ) -> None:
        there, side, sor_side = other(sor), self.sides[other(sor)], self.sides[sor]
        plan.mode, plan.sor, plan.ext = "system_of_record", sor, {there: column}
        how = "already there" if existing else "added by the SQL above"
        plan.notes.append(
            f"mode: {sor_side.name} generates the keys ({key.name} {key.db_type}): it is the "
            f"system of record, and {side.name} stores its key in {column} ({how})"
        )
        if not existing:
            type_ = key_column_type(key, side.kind)
            plan.sql.append((there, add_column_sql(side.kind, plan.tables[there], column, type_)))
            plan.new_ext = True
        elif not _unique(infos[there], column):
            plan.sql.append((there, add_unique_sql(side.kind, plan.tables[there], column)))

    # the fields ----------------------------------------------------------------------

    def fields(self, plan: EntityPlan, infos: dict[Letter, TableInfo]) -> None:
        a, b = infos["a"], infos["b"]
        taken = {
            letter: {
                *infos[letter].primary_key,
                *([plan.ext[letter]] if letter in plan.ext else []),
            }
            for letter in LETTERS
        }
        by_name = {c.name.lower(): c for c in b.columns}
        matched_b: set[str] = set()
        only_a: list[str] = []
        for col_a in a.columns:
            if col_a.name in taken["a"]:
                continue
            col_b = by_name.get(col_a.name.lower())
            if col_b is None or col_b.name in taken["b"]:
                only_a.append(self.describe_unmatched(col_a))
                continue
            matched_b.add(col_b.name)
            self.field(plan, infos, col_a, col_b)
        only_b = [
            self.describe_unmatched(c)
            for c in b.columns
            if c.name not in matched_b and c.name not in taken["b"]
        ]
        for letter, columns in (("a", only_a), ("b", only_b)):
            if columns:
                plan.only_on[letter] = columns  # type: ignore[index]

    @staticmethod
    def describe_unmatched(col: ColumnInfo) -> str:
        if not col.nullable and not col.auto_generated:
            return f"{col.name} ({col.db_type}, NOT NULL: rows the sync creates need a default)"
        return f"{col.name} ({col.db_type})"

    def field(
        self, plan: EntityPlan, infos: dict[Letter, TableInfo], col_a: ColumnInfo, col_b: ColumnInfo
    ) -> None:
        cols: dict[Letter, ColumnInfo] = {"a": col_a, "b": col_b}
        for letter in LETTERS:
            if cols[letter].auto_generated:
                plan.left_out.append(
                    (
                        col_a.name,
                        col_b.name,
                        f"{self.where(letter, cols[letter])} is generated by the database: "
                        "writes to it are refused",
                    )
                )
                return
        parent, refused = self.reference(plan, cols)
        if refused is not None:
            plan.left_out.append((col_a.name, col_b.name, refused))
            return
        if parent is not None:
            plan.fields.append(Field(col_a.name, col_b.name, reference=parent))
            return
        entry = Field(col_a.name, col_b.name)
        kinds = {letter: self.sides[letter].kind for letter in LETTERS}
        for src in LETTERS:
            dst = other(src)
            conv = check_conversion(cols[src], cols[dst], kinds[src], kinds[dst])
            where = f"{self.where(src, cols[src])} -> {self.where(dst, cols[dst])}"
            if not conv.possible:
                plan.left_out.append((col_a.name, col_b.name, f"{where}: {conv.reason}"))
                return
            entry.notes += [f"{where}: {reason}" for reason in conv.reasons]
        plan.fields.append(entry)

    def reference(
        self, plan: EntityPlan, cols: dict[Letter, ColumnInfo]
    ) -> tuple[str | None, str | None]:
        """(the parent entity, None) when the pair is a foreign key to a synced table's key;
        (None, why) when it is one that cannot be a reference; (None, None) otherwise."""
        fks: dict[Letter, ForeignKey | None] = {}
        for letter in LETTERS:
            found = self.sides[letter].db.foreign_keys.get(plan.tables[letter], ())
            fks[letter] = next((fk for fk in found if fk.column == cols[letter].name), None)
        targets = {
            letter: self.entity_of[letter].get(fk.parent)
            for letter, fk in fks.items()
            if fk is not None
        }
        if not targets:
            return None, None
        parents = set(targets.values())
        if len(parents) != 1 or None in parents:
            listed = ", ".join(
                f"{self.sides[letter].name} {fk.parent}" for letter, fk in fks.items() if fk
            )
            plan.notes.append(
                f"{cols['a'].name}: a foreign key to {listed}, which is not one synced "
                "entity: mapped as a plain value (ids will differ between the sides)"
            )
            return None, None
        parent = parents.pop()
        assert parent is not None
        for letter in LETTERS:
            parent_table = self.info(letter, self.pairs[parent][letter])
            fk = fks[letter]
            if len(parent_table.primary_key) != 1 or (
                fk is not None and fk.parent_column != parent_table.primary_key[0]
            ):
                return None, (
                    f"{cols['a'].name} refers to {parent}, whose key on "
                    f"{self.sides[letter].name} is not one column it refers to: a reference "
                    "needs the parent's one-column key; map it yourself if it is a plain value"
                )
            key = parent_table.column(parent_table.primary_key[0])
            assert key is not None
            fit = reference_fit(key, cols[letter])
            if not fit.possible:
                why = f"{self.where(letter, cols[letter])} cannot hold {parent} keys: {fit.reason}"
                return None, why
        one_sided = [self.sides[letter].name for letter, fk in fks.items() if fk is None]
        if one_sided:
            plan.notes.append(
                f"{cols['a'].name}: a foreign key to {parent} on one side only; on "
                f"{', '.join(one_sided)} the column holds {parent}'s keys too"
            )
        return parent, None


def _order(plans: list[EntityPlan]) -> list[EntityPlan]:
    """Parents before children (declaration order otherwise); a cycle keeps its order."""
    by_name = {p.name: p for p in plans}
    done: dict[str, EntityPlan] = {}
    visiting: set[str] = set()

    def visit(plan: EntityPlan) -> None:
        if plan.name in done or plan.name in visiting:
            return
        visiting.add(plan.name)
        for parent in plan.references.values():
            if parent != plan.name:
                visit(by_name[parent])
        visiting.discard(plan.name)
        done[plan.name] = plan

    for plan in plans:
        visit(plan)
    return list(done.values())


def propose(sides: dict[Letter, Side], tables: Sequence[str] = ()) -> Scaffold:
    """The sync between the two databases; `tables` limits it to those (bare) names."""
    planner = _Planner(sides)
    by_bare = {
        letter: {Database.bare(t).lower(): t for t in sides[letter].db.tables} for letter in LETTERS
    }
    for wanted in tables:
        missing = [
            f"{sides[letter].name} ({sides[letter].db.label})"
            for letter in LETTERS
            if wanted.lower() not in by_bare[letter]
        ]
        if missing:
            raise ConfigError(f"--tables: table {wanted!r} not found on {' and '.join(missing)}")
    only_on: dict[Letter, list[str]] = {"a": [], "b": []}
    skipped: list[tuple[str, str]] = []
    used: set[str] = set()
    for bare, table_a in by_bare["a"].items():
        table_b = by_bare["b"].get(bare)
        if table_b is None:
            only_on["a"].append(table_a)
            continue
        pair: dict[Letter, str] = {"a": table_a, "b": table_b}
        missing_key = [
            sides[letter].name
            for letter in LETTERS
            if not sides[letter].db.tables[pair[letter]].primary_key
        ]
        if missing_key:
            skipped.append(
                (
                    Database.bare(table_a),
                    f"no primary key on {' and '.join(missing_key)}: capture identifies rows "
                    "by it (add one, then run init again or declare the entity yourself)",
                )
            )
            continue
        name = name_from(Database.bare(table_a), "t")
        while name in used:
            name = f"{name[: MAX_NAME - 2]}_x"
        used.add(name)
        planner.pairs[name] = {"a": table_a, "b": table_b}
        planner.entity_of["a"][table_a] = name
        planner.entity_of["b"][table_b] = name
    only_on["b"] = [t for bare, t in by_bare["b"].items() if bare not in by_bare["a"]]
    plans = _order([planner.plan(name) for name in planner.pairs])
    sync = name_from(f"{sides['a'].name}_{sides['b'].name}", "sync")
    warnings = []
    server = _same_postgres_server(sides["a"].db, sides["b"].db)
    if server is not None:
        warnings.append(
            f"both endpoints are databases of the PostgreSQL server at {server}: a sync's "
            f"replication slot (syncswim_{sync}) is named for the sync and slot names are "
            "server-wide, so `syncswim setup` refuses the second side; keep the two "
            "databases on two servers"
        )
    return Scaffold(sides, sync, plans, only_on, skipped, warnings)


def _same_postgres_server(a: Database, b: Database) -> str | None:
    """host:port when both databases are on one PostgreSQL server (by their DSNs)."""
    if a.kind != "postgres" or b.kind != "postgres":
        return None
    try:
        ends = [urlsplit(db.label) for db in (a, b)]
        places = {(e.hostname or "localhost", e.port or 5432) for e in ends}
    except ValueError:
        return None
    if len(places) != 1:
        return None
    host, port = places.pop()
    return f"{host}:{port}"
