"""Checking a loaded declaration against the live tables, before anything runs.

`describe(endpoint_name, table)` is supplied by the caller (usually the connectors), so
this module opens nothing itself. Errors raise ConfigError with the key path of the
declaration that is wrong; what is only risky comes back as warnings, one for every way
a mapped field can lose or refuse values, in each direction.
"""

from __future__ import annotations

from collections.abc import Callable

from syncswim_lib.config.convert import (
    Conversion,
    check_conversion,
    check_key_storage,
    int_digits,
    int_range,
)
from syncswim_lib.config.models import Entity, Letter, Project, Reference, Sync
from syncswim_lib.connectors.registry import kind_of
from syncswim_lib.errors import ConfigError
from syncswim_lib.values import ColumnInfo, TableInfo

Describe = Callable[[str, str], TableInfo]
LETTERS: tuple[Letter, Letter] = ("a", "b")
DIRECTIONS: tuple[tuple[Letter, Letter], ...] = (("a", "b"), ("b", "a"))
CLOCK_FAMILIES = ("timestamp", "timestamptz")
UUID_TEXT_WIDTH = 36


def _key_width(key: ColumnInfo) -> int | None:
    """Characters a key takes as text; None when it has no bound."""
    if key.family == "int":
        return int_digits(key)  # generated keys are positive: no sign
    if key.family == "uuid":
        return UUID_TEXT_WIDTH
    return key.max_length if key.family == "text" else None


def reference_fit(key: ColumnInfo, column: ColumnInfo) -> Conversion:
    """Can `column` hold every value of the parent's key column `key` on the same side?

    A reference holds another row's key as it is, never converted: a family that cannot
    hold the key is an error; a narrower integer or a shorter text is a warning (the
    parent's keys may still fit today)."""
    if column.family == "int" and key.family != "int":
        return Conversion(False, (f"{key.family} keys cannot be stored in an integer column",))
    if key.family == "int" and column.family not in ("int", "text"):
        return Conversion(False, ("integer keys need an integer or text column",))
    if column.family not in (key.family, "text"):
        return Conversion(
            False, (f"{key.db_type} keys cannot be stored in a {column.db_type} column",)
        )
    if column.family == "int":
        high, needed = int_range(column)[1], int_range(key)[1]
        if high < needed:
            return Conversion(
                True,
                (
                    f"{column.db_type} holds keys up to {high}, {key.db_type} ones go up to "
                    f"{needed}: a child of a parent with a larger key will be rejected",
                ),
            )
        return Conversion(True)
    if column.family == "text" and column.max_length is not None:
        width = _key_width(key)
        if width is None or width > column.max_length:
            needs = "may be longer" if width is None else f"need up to {width}"
            return Conversion(
                True,
                (
                    f"{column.db_type} holds {column.max_length} characters, {key.db_type} "
                    f"keys {needs}: a child of a parent with a longer key will be rejected",
                ),
            )
    return Conversion(True)


class _Checker:
    def __init__(self, project: Project, describe: Describe) -> None:
        self.project = project
        self.describe = describe
        self.file = project.source_name
        self.tables: dict[tuple[str, str], TableInfo] = {}
        self.warnings: list[str] = []

    def error(self, path: str, message: str) -> ConfigError:
        return ConfigError(message, file=self.file, path=path)

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(f"{path}: {message}")

    def table(self, entity: Entity, letter: Letter, base: str) -> TableInfo:
        side = entity.side(letter)
        cache_key = (side.endpoint, side.table)
        if cache_key not in self.tables:
            place = kind_of(side.kind).table_word
            try:
                self.tables[cache_key] = self.describe(side.endpoint, side.table)
            except ConfigError as exc:
                if exc.path is not None:  # already placed (e.g. the endpoint is unreachable)
                    raise
                raise self.error(
                    f"{base}.{side.endpoint}.{place}",
                    f"{place} {side.table!r} not found on {side.endpoint}: {exc}",
                ) from None
        return self.tables[cache_key]

    def kinds(self, entity: Entity, src: Letter, dst: Letter) -> tuple[str, str]:
        return (entity.side(src).kind, entity.side(dst).kind)

    def column(self, info: TableInfo, endpoint: str, name: str, path: str) -> ColumnInfo:
        found = info.column(name)
        if found is None:
            names = ", ".join(c.name for c in info.columns)
            raise self.error(
                path,
                f"column {name!r} does not exist in {endpoint} {info.name} (columns: {names})",
            )
        return found

    def entity(self, entity: Entity) -> None:
        base = f"syncs.{entity.sync}.entities.{entity.name}"
        infos = {letter: self.table(entity, letter, base) for letter in LETTERS}
        keys: dict[Letter, list[ColumnInfo]] = {}
        for letter, info in infos.items():
            side = entity.side(letter)
            key_path = f"{base}.{side.endpoint}.key"
            keys[letter] = [self.column(info, side.endpoint, k, key_path) for k in side.key]
            if info.primary_key and tuple(side.key) != info.primary_key:
                self.warn(
                    key_path,
                    f"declared key [{', '.join(side.key)}] is not the primary key "
                    f"[{', '.join(info.primary_key)}] of {info.name}: it must be unique",
                )
            elif not info.primary_key:
                self.warn(key_path, f"{info.name} has no primary key: the key must be unique")
        self.mode(entity, infos, keys, base)
        self.fields(entity, infos, base)
        self.clocks(entity, infos, base)

    def unique(
        self, entity: Entity, letter: Letter, info: TableInfo, column: str, path: str
    ) -> None:
        """Rows are found by their external id: two rows with one id would be one record."""
        if (column,) in info.unique or info.primary_key == (column,):
            return
        side = entity.side(letter)
        raise self.error(
            path,
            f"column {column} on {side.endpoint} {side.table} needs a unique index: rows are "
            "matched by it",
        )

    def clocks(self, entity: Entity, infos: dict[Letter, TableInfo], base: str) -> None:
        for letter, name in entity.clock.items():
            side = entity.side(letter)
            path = f"{base}.clock.{side.endpoint}"
            col = self.column(infos[letter], side.endpoint, name, path)
            if col.family not in CLOCK_FAMILIES:
                raise self.error(
                    path,
                    f"clock column {name!r} of {side.endpoint} {side.table} is {col.db_type}: a "
                    "clock is a timestamp column (timestamp/timestamptz, DATETIME/TIMESTAMP)",
                )
            digits = 6 if col.precision is None else col.precision
            if digits < 6:
                self.warn(
                    path,
                    f"{name} ({col.db_type}) keeps {digits} fractional-second digits, but clock "
                    "values are compared as exact to the microsecond: two changes within the "
                    "same second can be ordered wrongly (use a 6-digit type, e.g. DATETIME(6))",
                )

    def mode(
        self,
        entity: Entity,
        infos: dict[Letter, TableInfo],
        keys: dict[Letter, list[ColumnInfo]],
        base: str,
    ) -> None:
        mode = entity.mode
        ext: dict[Letter, ColumnInfo] = {}
        for letter in LETTERS:
            name = mode.ext_column_a if letter == "a" else mode.ext_column_b
            endpoint = entity.side(letter).endpoint
            if name is not None:
                path = f"{base}.mode.external_id.{endpoint}"
                ext[letter] = self.column(infos[letter], endpoint, name, path)
                self.unique(entity, letter, infos[letter], name, path)
        if mode.kind == "system_of_record":
            sor = mode.sor or "a"
            other: Letter = "b" if sor == "a" else "a"
            sor_side, other_side = entity.side(sor), entity.side(other)
            key = keys[sor][0]
            if not key.auto_generated:
                raise self.error(
                    f"{base}.{sor_side.endpoint}.key",
                    f"the key {key.name!r} of {sor_side.endpoint} {infos[sor].name} "
                    f"({key.db_type}) is not generated by the database, but the system of "
                    f"record must create keys for records created on {other_side.endpoint} "
                    "(make it an identity/serial/auto_increment column, or use external-id mode)",
                )
            path = f"{base}.mode.external_id.{other_side.endpoint}"
            fits = check_key_storage(key, ext[other])
            if not fits.possible:
                raise self.error(
                    path,
                    f"{other_side.endpoint} column {ext[other].name!r} cannot store the keys of "
                    f"{sor_side.endpoint}: {fits.reason}",
                )
            for reason in fits.reasons:
                self.warn(path, reason)
            if not ext[other].nullable:
                self.warn(
                    path,
                    f"{ext[other].name} is NOT NULL: records created on {other_side.endpoint} "
                    f"cannot exist before {sor_side.endpoint} has given them a key",
                )
            self.generated_key(entity, other, keys[other], ext[other], base)
            self.origin(entity, infos, keys, base)
            return
        for src, dst in DIRECTIONS:
            conv = check_conversion(ext[src], ext[dst], *self.kinds(entity, src, dst))
            path = f"{base}.mode.external_id.{entity.side(dst).endpoint}"
            if not conv.possible:
                raise self.error(
                    path,
                    f"external-id columns do not match: {entity.side(src).endpoint}."
                    f"{ext[src].name} ({ext[src].db_type}) -> {entity.side(dst).endpoint}."
                    f"{ext[dst].name} ({ext[dst].db_type}): {conv.reason}",
                )
            for reason in conv.reasons:
                self.warn(path, f"from {entity.side(src).endpoint}: {reason}")
        for letter in LETTERS:
            self.generated_key(entity, letter, keys[letter], ext[letter], base)

    def origin(
        self,
        entity: Entity,
        infos: dict[Letter, TableInfo],
        keys: dict[Letter, list[ColumnInfo]],
        base: str,
    ) -> None:
        """SOR mode, a system of record without batch markers (Salesforce): a record born
        on the other side is created in it by a call whose lost answer a replay repeats,
        unless `origin_id` names a field that matches the create (pipeline/origin_ids.py)."""
        mode = entity.mode
        sor: Letter = mode.sor or "a"
        other: Letter = "b" if sor == "a" else "a"
        sor_side, other_side = entity.side(sor), entity.side(other)
        caps = self.project.endpoints[sor_side.endpoint].reading.capabilities
        if caps.batch_markers:
            return  # the create commits with the batch's marker: a replay finds it
        key = keys[other][0]
        name = mode.origin_column
        if name is None:
            self.warn(
                f"{base}.mode",
                f"records created on {other_side.endpoint} are created in {sor_side.table} by "
                f"calls {sor_side.endpoint} keeps no marker of: if the answer of one is lost "
                "(a timeout, a crash before the state is recorded), the replay creates them "
                f"again. Declare origin_id: {{{sor_side.endpoint}: <field>}}, a unique "
                f"External ID text field of {sor_side.table} that holds "
                f"{other_side.endpoint}'s key {key.name}",
            )
            return
        path = f"{base}.mode.origin_id.{sor_side.endpoint}"
        col = self.column(infos[sor], sor_side.endpoint, name, path)
        if (name,) not in infos[sor].unique:
            raise self.error(
                path,
                f"field {name} of {sor_side.table} is not a unique External ID field: creates "
                "are upserted on it, which needs External ID and Unique set on the field",
            )
        fits = check_key_storage(key, col)
        if not fits.possible:
            raise self.error(
                path,
                f"field {name} of {sor_side.table} cannot store the keys of "
                f"{other_side.endpoint} {other_side.table}: {fits.reason}",
            )
        for reason in fits.reasons:
            self.warn(path, reason)

    def generated_key(
        self, entity: Entity, letter: Letter, key: list[ColumnInfo], ext: ColumnInfo, base: str
    ) -> None:
        """Records created by the sync on this side need a key the database makes."""
        if any(c.auto_generated or c.name == ext.name for c in key):
            return
        side = entity.side(letter)
        self.warn(
            f"{base}.{side.endpoint}.key",
            f"the key of {side.endpoint} {side.table} is not generated by the database: "
            "records the sync creates there need a default for it",
        )

    def fields(self, entity: Entity, infos: dict[Letter, TableInfo], base: str) -> None:
        for f in entity.fields:
            path = f"{base}.fields.{f.a}"
            cols = {
                letter: self.column(
                    infos[letter], entity.side(letter).endpoint, f.column(letter), path
                )
                for letter in LETTERS
            }
            for src, dst in DIRECTIONS:
                target = entity.side(dst).endpoint
                if cols[dst].auto_generated:
                    self.warn(
                        path,
                        f"{target} column {cols[dst].name!r} is generated by the database; "
                        "writes to it will be rejected",
                    )
                if f.transform_to(dst) is not None:
                    continue  # the user said how: trust the transform
                if f.a in entity.references:
                    continue  # not converted but translated: `references` checks the keys
                conv = check_conversion(cols[src], cols[dst], *self.kinds(entity, src, dst))
                where = (
                    f"{entity.side(src).endpoint}.{cols[src].name} ({cols[src].db_type}) -> "
                    f"{target}.{cols[dst].name} ({cols[dst].db_type})"
                )
                if not conv.possible:
                    raise self.error(path, f"cannot convert {where}: {conv.reason}")
                for reason in conv.reasons:
                    self.warn(path, f"{where}: {reason}")

    def references(self, sync: Sync) -> None:
        """Each side's foreign-key column holds the parent's key on that side."""
        forward = {(child, ref.column) for child, ref in sync.forward_references()}
        for entity in sync.entities.values():
            for ref in entity.references.values():
                self.reference(sync, entity, ref, (entity.name, ref.column) in forward)

    def reference(self, sync: Sync, entity: Entity, ref: Reference, forward: bool) -> None:
        base = f"syncs.{sync.name}.entities.{entity.name}"
        parent = sync.entities[ref.parent]
        parent_base = f"syncs.{sync.name}.entities.{parent.name}"
        field_map = entity.field(ref.column)
        path = f"{base}.references.{ref.column}"
        if field_map is None:  # the loader refuses it; a model built in code may not
            raise self.error(path, f"{ref.column!r} is not a mapped field")
        for letter in LETTERS:
            side, parent_side = entity.side(letter), parent.side(letter)
            column = self.column(
                self.table(entity, letter, base),
                side.endpoint,
                field_map.column(letter),
                f"{base}.fields.{ref.column}",
            )
            key = self.column(
                self.table(parent, letter, parent_base),
                parent_side.endpoint,
                parent_side.key[0],
                f"{parent_base}.{parent_side.endpoint}.key",
            )
            fit = reference_fit(key, column)
            where = (
                f"{side.endpoint} column {column.name!r} ({column.db_type}) "
                f"{'holds' if fit.possible else 'cannot hold'} the keys of {parent.name} on "
                f"{side.endpoint} ({parent_side.table}.{key.name}, {key.db_type})"
            )
            if not fit.possible:
                raise self.error(path, f"{where}: {fit.reason}")
            for reason in fit.reasons:
                self.warn(path, f"{where}: {reason}")
            if forward and not column.nullable:
                self.warn(
                    path,
                    f"{side.endpoint} column {column.name!r} is NOT NULL, but "
                    f"{ref.column} -> {ref.parent} is a forward reference: rows that refer to "
                    f"each other in a circle cannot be inserted in two passes on "
                    f"{side.endpoint} (first without {column.name}) and will wait",
                )


def validate_live(project: Project, describe: Describe) -> list[str]:
    """Check every entity's tables, columns and types; returns warnings, raises ConfigError."""
    checker = _Checker(project, describe)
    for sync in project.syncs.values():
        for entity in sync.entities.values():
            checker.entity(entity)
        # after every entity of the sync: a parent may be declared after its children
        checker.references(sync)
    return checker.warnings
