"""Turn a REST/bulk field dict into validated stored values for one object."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import ids
from .contract import ApiError
from .schema import FieldDef, ObjectDef, Schema
from .values import coerce, compound_value

Rec = dict[str, Any]
_FLS = (
    "Please check the security settings of this field and verify that it is read/write "
    "for your profile or permission set."
)


@dataclass
class LookupErrors:
    """Which errorCode a bad lookup produces; the spec marks these [UNVERIFIED]."""

    wrong_type: str = "FIELD_INTEGRITY_EXCEPTION"
    missing: str = "INVALID_CROSS_REFERENCE_KEY"


@dataclass
class Validator:
    schema: Schema
    get: Callable[[str], Rec | None]  # live (not deleted) record by id
    find_ext: Callable[[str, str, Any], list[str]]  # (sobject, field, value) -> live ids
    lookup_errors: LookupErrors = field(default_factory=LookupErrors)

    def apply(
        self,
        obj: ObjectDef,
        rec: Rec,
        fields: Mapping[str, Any],
        creating: bool,
        allow_system: bool = False,
    ) -> list[str]:
        """Write `fields` into `rec` (in place); returns the canonical names given."""
        resolved: list[tuple[FieldDef, Any]] = []
        bad: list[str] = []
        for key, value in fields.items():
            if key == "attributes":
                continue
            f = obj.field(key)
            if f is None:
                lookup = obj.by_relationship.get(key.lower())
                if lookup is None or not isinstance(value, Mapping):
                    raise ApiError(
                        400,
                        "INVALID_FIELD",
                        f"No such column '{key}' on sobject of type {obj.name}",
                    )
                f, value = lookup, self._by_parent_ext(lookup, value)
            writable = f.createable if creating else f.updateable
            if not writable and not allow_system:
                bad.append(f.name)
            resolved.append((f, value))
        if bad:
            raise ApiError(
                400,
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(bad)}. {_FLS}",
                bad,
            )
        names = []
        for f, value in resolved:
            stored = coerce(obj.name, f, value)
            if f.type == "reference" and stored is not None:
                self._check_lookup(f, stored)
            rec[f.name] = stored
            names.append(f.name)
        for f in obj.compound_fields:
            rec[f.name] = compound_value(f, rec)
        missing = [
            f.name
            for f in obj.required_fields
            if rec.get(f.name) is None and (creating or f.name in names)
        ]
        if missing:
            raise ApiError(
                400,
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )
        return names

    def _by_parent_ext(self, lookup: FieldDef, value: Mapping[str, Any]) -> str:
        target = self.schema.get(lookup.reference_to[0]) if lookup.reference_to else None
        items = [(k, v) for k, v in value.items() if k != "attributes"]
        if target is None or len(items) != 1:
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"Relationship {lookup.relationship_name} needs exactly one external id field",
            )
        key, ext = items[0]
        f = target.field(key)
        if f is None or not f.id_lookup:
            raise ApiError(
                400, "INVALID_FIELD", f"Field {key} is not an external id field on {target.name}"
            )
        if f.type == "id":
            rid = ids.normalize(str(ext))
            found = [rid] if rid and self.get(rid) else []
        else:
            found = self.find_ext(target.name, f.name, ext)
        if not found:
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"Foreign key external ID: {ext} not found for field {f.name} in "
                f"entity {target.name}",
                [lookup.name],
            )
        if len(found) > 1:
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"Foreign key external ID: {ext} matches more than one record for "
                f"field {f.name} in entity {target.name}",
                [lookup.name],
            )
        return found[0]

    def _check_lookup(self, f: FieldDef, rid: str) -> None:
        targets = [self.schema.get(t) for t in f.reference_to]
        prefixes = {t.key_prefix for t in targets if t is not None}
        if ids.prefix(rid) not in prefixes:
            raise ApiError(
                400,
                self.lookup_errors.wrong_type,
                f"field integrity exception: {f.name} (id value of incorrect type: {rid})",
                [f.name],
            )
        if self.get(rid) is None:
            raise ApiError(
                400, self.lookup_errors.missing, f"invalid cross reference id: {rid}", [f.name]
            )


def ext_key(f: FieldDef, value: Any) -> str:
    """The form a value is matched and de-duplicated by. Salesforce matches "ABC" with
    "abc" only on a Unique field declared case-insensitive; every other field (a
    non-unique external id included) compares exactly."""
    s = str(value)
    return s.lower() if f.unique and not f.case_sensitive else s
