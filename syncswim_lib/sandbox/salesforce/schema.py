"""The schema registry: objects and fields, the single source for validation, SOQL and describe.

Objects are declared as JSON (see default_schema.json); system fields (Id, audit fields,
OwnerId, IsDeleted) are added here so every object carries them the way a real org does.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from typing import Any

from .contract import ApiError

STRING_TYPES = frozenset(
    {
        "string",
        "textarea",
        "picklist",
        "multipicklist",
        "combobox",
        "email",
        "phone",
        "url",
        "encryptedstring",
    }
)
NUMBER_TYPES = frozenset({"double", "currency", "percent"})
# describe `digits` of the integer types when a spec gives none (int is 32-bit, long 64-bit)
_DEFAULT_DIGITS = {"int": 9, "long": 18}
_ADDRESS_PARTS = (
    ("street", "Street", "textarea", 255),
    ("city", "City", "string", 40),
    ("state", "State", "string", 80),
    ("postalCode", "PostalCode", "string", 20),
    ("country", "Country", "string", 80),
)


@dataclass(frozen=True)
class FieldDef:
    name: str
    type: str
    label: str
    length: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    defaulted_on_create: bool = False
    default_value: Any = None
    external_id: bool = False
    unique: bool = False
    case_sensitive: bool = False
    custom: bool = False
    calculated: bool = False
    name_field: bool = False
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    child_relationship_name: str | None = None
    cascade_delete: bool = False
    picklist_values: tuple[str, ...] = ()
    restricted_picklist: bool = False
    components: tuple[tuple[str, str], ...] = ()  # compound fields: (key, component field)
    precision: int = 0
    scale: int = 0
    digits: int = 0  # int/long only: the most decimal digits a value may have

    @property
    def required_on_create(self) -> bool:
        return not self.nillable and self.createable and not self.defaulted_on_create

    @property
    def long_text(self) -> bool:
        return self.type == "textarea" and self.length > 255

    @property
    def filterable(self) -> bool:
        """Whether SOQL may filter on it (describe `filterable`): not a long text area nor a
        compound address."""
        return not (self.long_text or self.type == "address")

    @property
    def sortable(self) -> bool:
        """Whether SOQL may ORDER BY it (describe `sortable`); the SOQL docs exclude long
        text areas and multi-select picklists, and a compound address has no order."""
        return not (self.long_text or self.type in ("multipicklist", "address"))

    @property
    def id_lookup(self) -> bool:
        return self.type == "id" or self.external_id or self.name == "Username"


@dataclass(frozen=True)
class ObjectDef:
    name: str
    label: str
    label_plural: str
    key_prefix: str
    custom: bool
    fields: tuple[FieldDef, ...]
    by_lower: Mapping[str, FieldDef] = field(compare=False, repr=False)
    by_relationship: Mapping[str, FieldDef] = field(compare=False, repr=False)

    def field(self, name: str) -> FieldDef | None:
        return self.by_lower.get(name.lower())

    # Field subsets every write walks; an ObjectDef never changes (a new field makes a new
    # one), so each is worked out once instead of scanning all fields per REST call.
    @cached_property
    def blank_record(self) -> Mapping[str, Any]:
        """Field name -> its value before a create applies the body (copy before use)."""
        return {f.name: f.default_value if f.defaulted_on_create else None for f in self.fields}

    @cached_property
    def compound_fields(self) -> tuple[FieldDef, ...]:
        return tuple(f for f in self.fields if f.components)

    @cached_property
    def required_fields(self) -> tuple[FieldDef, ...]:
        """Not nillable and writable: a write must leave them set."""
        return tuple(f for f in self.fields if not f.nillable and (f.createable or f.updateable))

    @cached_property
    def indexed_fields(self) -> tuple[FieldDef, ...]:
        return tuple(f for f in self.fields if f.external_id or f.unique)

    @cached_property
    def unique_fields(self) -> tuple[FieldDef, ...]:
        return tuple(f for f in self.fields if f.unique)

    @cached_property
    def derived_names(self) -> frozenset[str]:
        """Compound wrappers and calculated fields: never in a change event."""
        return frozenset(f.name for f in self.fields if f.components or f.calculated)


def _field_from_spec(spec: Mapping[str, Any]) -> FieldDef:
    name = str(spec["name"])
    ftype = str(spec.get("type", "string"))
    required = bool(spec.get("required", False))
    length = int(spec.get("length", 255 if ftype in STRING_TYPES else 0))
    if ftype in ("id", "reference"):
        length = 18
    default = spec.get("defaultValue")
    if ftype == "boolean" and default is None:
        default = False
    return FieldDef(
        name=name,
        type=ftype,
        label=str(spec.get("label", name.removesuffix("__c"))),
        length=length,
        nillable=bool(spec.get("nillable", not required and ftype != "boolean")),
        createable=bool(spec.get("createable", True)),
        updateable=bool(spec.get("updateable", True)),
        defaulted_on_create=bool(spec.get("defaultedOnCreate", default is not None)),
        default_value=default,
        external_id=bool(spec.get("externalId", False)),
        unique=bool(spec.get("unique", False)),
        case_sensitive=bool(spec.get("caseSensitive", False)),
        custom=name.endswith("__c"),
        calculated=bool(spec.get("calculated", False)),
        name_field=bool(spec.get("nameField", False)),
        reference_to=tuple(spec.get("referenceTo", ())),
        relationship_name=spec.get("relationshipName")
        or (
            name.removesuffix("__c") + "__r"
            if ftype == "reference" and name.endswith("__c")
            else None
        ),
        child_relationship_name=spec.get("childRelationshipName"),
        cascade_delete=bool(spec.get("cascadeDelete", False)),
        picklist_values=tuple(spec.get("picklistValues", ())),
        restricted_picklist=bool(spec.get("restrictedPicklist", False)),
        components=tuple((str(k), str(v)) for k, v in spec.get("components", {}).items()),
        precision=int(spec.get("precision", 18 if ftype in NUMBER_TYPES else 0)),
        scale=int(spec.get("scale", 2 if ftype in NUMBER_TYPES else 0)),
        digits=int(spec.get("digits", _DEFAULT_DIGITS.get(ftype, 0))),
    )


def _expand(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Turn shorthand declarations (address blocks) into plain field specs."""
    out: list[dict[str, Any]] = []
    for f in spec.get("fields", []):
        if f.get("type") == "address":
            pre = str(f.get("addressPrefix", f["name"].removesuffix("Address")))
            comps = {}
            for key, suffix, ftype, length in _ADDRESS_PARTS:
                out.append({"name": pre + suffix, "type": ftype, "length": length})
                comps[key] = pre + suffix
            out.append(
                {
                    "name": f["name"],
                    "type": "address",
                    "createable": False,
                    "updateable": False,
                    "calculated": False,
                    "components": comps,
                }
            )
        else:
            out.append(dict(f))
    return out


def _system_fields(owned: bool) -> list[dict[str, Any]]:
    audit = {"createable": False, "updateable": False, "nillable": False, "defaultedOnCreate": True}
    fields: list[dict[str, Any]] = [
        {"name": "Id", "type": "id", **audit},
        {"name": "IsDeleted", "type": "boolean", **audit},
    ]
    if owned:
        fields.append(
            {
                "name": "OwnerId",
                "type": "reference",
                "referenceTo": ["User"],
                "relationshipName": "Owner",
                "nillable": False,
                "defaultedOnCreate": True,
            }
        )
    fields += [
        {"name": "CreatedDate", "type": "datetime", **audit},
        {
            "name": "CreatedById",
            "type": "reference",
            "referenceTo": ["User"],
            "relationshipName": "CreatedBy",
            **audit,
        },
        {"name": "LastModifiedDate", "type": "datetime", **audit},
        {
            "name": "LastModifiedById",
            "type": "reference",
            "referenceTo": ["User"],
            "relationshipName": "LastModifiedBy",
            **audit,
        },
        {"name": "SystemModstamp", "type": "datetime", **audit},
    ]
    return fields


_READ_ONLY_TAIL = [
    {"name": "LastViewedDate", "type": "datetime", "createable": False, "updateable": False},
    {"name": "LastReferencedDate", "type": "datetime", "createable": False, "updateable": False},
]


def build_object(spec: Mapping[str, Any], key_prefix: str) -> ObjectDef:
    name = str(spec["name"])
    custom = name.endswith("__c")
    declared = _expand(spec)
    if custom and not any(f["name"] == "Name" for f in declared):
        declared.insert(
            0, {"name": "Name", "type": "string", "length": 80, "nillable": True, "nameField": True}
        )
    specs = _system_fields(bool(spec.get("owned", True))) + declared
    if spec.get("trackViews", True):
        specs += _READ_ONLY_TAIL
    fields: list[FieldDef] = []
    seen: set[str] = set()
    for f in specs:
        fd = _field_from_spec(f)
        if fd.name.lower() in seen:
            raise ApiError(400, "DUPLICATE_DEVELOPER_NAME", f"duplicate field {fd.name} on {name}")
        seen.add(fd.name.lower())
        fields.append(fd)
    label = str(spec.get("label", name.removesuffix("__c").replace("_", " ")))
    return ObjectDef(
        name=name,
        label=label,
        label_plural=str(spec.get("labelPlural", label + "s")),
        key_prefix=key_prefix,
        custom=custom,
        fields=tuple(fields),
        by_lower={f.name.lower(): f for f in fields},
        by_relationship={f.relationship_name.lower(): f for f in fields if f.relationship_name},
    )


def _custom_prefixes() -> Iterable[str]:
    for second in string.digits + string.ascii_uppercase:
        for third in string.digits + string.ascii_uppercase:
            yield "a" + second + third


class Schema:
    """Mutable registry; callers hold the org lock while changing it."""

    def __init__(self, specs: Iterable[Mapping[str, Any]] = ()) -> None:
        self.specs: list[dict[str, Any]] = []
        self.objects: dict[str, ObjectDef] = {}
        self.by_prefix: dict[str, ObjectDef] = {}
        for spec in specs:
            self.add_object(spec)

    def copy(self) -> Schema:
        return Schema(self.specs)

    def get(self, name: str) -> ObjectDef | None:
        return self.objects.get(name.lower())

    def require(self, name: str) -> ObjectDef:
        obj = self.objects.get(name.lower())
        if obj is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return obj

    def _next_prefix(self) -> str:
        for p in _custom_prefixes():
            if p not in self.by_prefix:
                return p
        raise ApiError(400, "LIMIT_EXCEEDED", "too many custom objects")

    def add_object(self, spec: Mapping[str, Any]) -> ObjectDef:
        """Add an object, or merge new fields into an existing one (same name)."""
        existing = self.get(str(spec["name"]))
        if existing is not None:
            for f in spec.get("fields", []):
                if existing.field(str(f["name"])) is None:
                    self.add_field(existing.name, f)
            return self.objects[existing.name.lower()]
        own: dict[str, Any] = json.loads(json.dumps(spec))  # detach from the caller
        prefix = str(own.get("keyPrefix") or self._next_prefix())
        own["keyPrefix"] = prefix
        obj = build_object(own, prefix)
        self.specs.append(own)
        self.objects[obj.name.lower()] = obj
        self.by_prefix[prefix] = obj
        return obj

    def add_field(self, sobject: str, fspec: Mapping[str, Any]) -> ObjectDef:
        obj = self.get(sobject)
        if obj is None:
            raise ApiError(404, "NOT_FOUND", f"no such object {sobject}")
        spec = next(s for s in self.specs if s["name"] == obj.name)
        spec.setdefault("fields", []).append(json.loads(json.dumps(fspec)))
        new = build_object(spec, obj.key_prefix)
        self.objects[obj.name.lower()] = new
        self.by_prefix[obj.key_prefix] = new
        return new

    def children(self, parent: str) -> list[tuple[ObjectDef, FieldDef]]:
        """Every lookup pointing at `parent`, as (child object, lookup field)."""
        out = []
        for obj in self.objects.values():
            for f in obj.fields:
                if f.type == "reference" and parent in f.reference_to:
                    out.append((obj, f))
        return out


def load_default_specs() -> list[dict[str, Any]]:
    text = resources.files(__package__).joinpath("default_schema.json").read_text("utf-8")
    return list(json.loads(text)["objects"])


def load_specs_file(text: str) -> list[dict[str, Any]]:
    data = json.loads(text)
    return list(data["objects"] if isinstance(data, dict) else data)
