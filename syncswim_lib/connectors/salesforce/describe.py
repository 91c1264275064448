"""An object's describe as the project's TableInfo, plus what only Salesforce says about
a field (createable, updateable, external id, picklist values) for apply and validate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from syncswim_lib.connectors.salesforce.types import SKIPPED_TYPES, column_info
from syncswim_lib.values import TableInfo


@dataclass(frozen=True)
class FieldInfo:
    name: str
    sf_type: str
    createable: bool
    updateable: bool
    nillable: bool
    external_id: bool
    unique: bool
    case_sensitive: bool
    # what an insert must carry: not nillable, createable, and no default on create
    required_on_create: bool
    reference_to: tuple[str, ...]
    relationship_name: str | None
    picklist: tuple[str, ...]
    restricted_picklist: bool
    filterable: bool
    calculated: bool


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    table: TableInfo
    fields: Mapping[str, FieldInfo]

    def field(self, name: str) -> FieldInfo | None:
        return self.fields.get(name)

    @property
    def external_ids(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields.values() if f.external_id)


def object_info(describe: dict[str, Any]) -> ObjectInfo:
    """Build from a `GET sobjects/X/describe/` answer. Compound (address, location) and
    binary fields are left out: their parts are fields of their own."""
    columns = []
    fields: dict[str, FieldInfo] = {}
    unique: list[tuple[str, ...]] = [("Id",)]
    for raw in describe.get("fields", []):
        if raw.get("type") in SKIPPED_TYPES:
            continue
        name = str(raw["name"])
        columns.append(column_info(raw))
        info = FieldInfo(
            name=name,
            sf_type=str(raw["type"]),
            createable=bool(raw.get("createable")),
            updateable=bool(raw.get("updateable")),
            nillable=bool(raw.get("nillable", True)),
            external_id=bool(raw.get("externalId")),
            unique=bool(raw.get("unique")),
            case_sensitive=bool(raw.get("caseSensitive")),
            required_on_create=(
                not raw.get("nillable", True)
                and bool(raw.get("createable"))
                and not raw.get("defaultedOnCreate")
            ),
            reference_to=tuple(raw.get("referenceTo") or ()),
            relationship_name=raw.get("relationshipName"),
            picklist=tuple(
                str(p["value"]) if isinstance(p, dict) else str(p)
                for p in raw.get("picklistValues") or ()
            ),
            restricted_picklist=bool(raw.get("restrictedPicklist")),
            filterable=bool(raw.get("filterable", True)),
            calculated=bool(raw.get("calculated")),
        )
        fields[name] = info
        # the fields records can be found by: an upsert matches on an External ID field,
        # and only one the org keeps unique finds at most one record (a plain Unique
        # field is no upsert key)
        if info.unique and info.external_id and name != "Id":
            unique.append((name,))
    name = str(describe["name"])
    table = TableInfo(name, tuple(columns), ("Id",), tuple(unique))
    return ObjectInfo(name, table, MappingProxyType(fields))
