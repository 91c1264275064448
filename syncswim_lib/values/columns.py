"""What a column and a table are, in every system: the type families values are
converted by, and a table's columns, key and unique column sets as a connector describes
them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

# The families a column type is reduced to; conversion rules are written per family.
TypeFamily = Literal[
    "int",
    "float",
    "decimal",
    "text",
    "bool",
    "date",
    "timestamp",
    "timestamptz",
    "time",
    "json",
    "bytes",
    "uuid",
    "other",
]


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    family: TypeFamily
    db_type: str  # the database's own spelling, e.g. "numeric(12,2)", "tinyint(1)"
    nullable: bool = True
    precision: int | None = None  # numeric precision, or fractional-second digits for times
    scale: int | None = None
    max_length: int | None = None
    auto_generated: bool = False  # serial/identity/auto_increment: the database makes it
    # a text column's character set where the database keeps one per column (MariaDB/
    # MySQL: "latin1", "utf8mb3", "utf8mb4"); None where every value is UTF-8 (PostgreSQL)
    charset: str | None = None


@dataclass(frozen=True)
class TableInfo:
    name: str  # as the connector names it: "public.customers" / "shop.customers"
    columns: tuple[ColumnInfo, ...]
    primary_key: tuple[str, ...]
    # column sets with a unique index or constraint (the primary key included)
    unique: tuple[tuple[str, ...], ...] = ()

    @cached_property
    def _by_name(self) -> dict[str, ColumnInfo]:
        return {c.name: c for c in self.columns}

    def column(self, name: str) -> ColumnInfo | None:
        return self._by_name.get(name)
