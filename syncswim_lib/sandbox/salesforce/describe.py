"""describe and global describe bodies, derived from the schema registry alone."""

from __future__ import annotations

from typing import Any

from .schema import NUMBER_TYPES, STRING_TYPES, FieldDef, ObjectDef, Schema

_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "long": "xsd:long",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "time": "xsd:time",
    "address": "urn:address",
    "base64": "xsd:base64Binary",
    "anyType": "xsd:anyType",
}


def _soap_type(ftype: str) -> str:
    if ftype in NUMBER_TYPES:
        return "xsd:double"
    return _SOAP_TYPES.get(ftype, "xsd:string")


def describe_field(f: FieldDef) -> dict[str, Any]:
    text = f.type in STRING_TYPES
    return {
        "aggregatable": f.type not in ("textarea", "address"),
        "autoNumber": False,
        "byteLength": f.length * 3 if text or f.type in ("id", "reference") else 0,
        "calculated": f.calculated or bool(f.components and f.type != "address"),
        "calculatedFormula": None,
        "cascadeDelete": False,
        "caseSensitive": f.case_sensitive,
        "compoundFieldName": None,
        "controllerName": None,
        "createable": f.createable,
        "custom": f.custom,
        "defaultValue": f.default_value if f.type == "boolean" else None,
        "defaultValueFormula": None,
        "defaultedOnCreate": f.defaulted_on_create,
        "dependentPicklist": False,
        "deprecatedAndHidden": False,
        "digits": f.digits,
        "displayLocationInDecimal": False,
        "encrypted": False,
        "externalId": f.external_id,
        "extraTypeInfo": None,
        "filterable": f.filterable,
        "filteredLookupInfo": None,
        "groupable": f.type
        not in (
            "textarea",
            "address",
            "datetime",
            "double",
            "currency",
            "percent",
            "multipicklist",
        ),
        "highScaleNumber": False,
        "htmlFormatted": False,
        "idLookup": f.id_lookup,
        "inlineHelpText": None,
        "label": f.label,
        "length": f.length,
        "mask": None,
        "maskType": None,
        "name": f.name,
        "nameField": f.name_field,
        "namePointing": False,
        "nillable": f.nillable,
        "permissionable": f.nillable and f.createable,
        "picklistValues": [
            {
                "active": True,
                "defaultValue": v == f.default_value,
                "label": v,
                "validFor": None,
                "value": v,
            }
            for v in f.picklist_values
        ],
        "polymorphicForeignKey": False,
        "precision": f.precision,
        "queryByDistance": False,
        "referenceTargetField": None,
        "referenceTo": list(f.reference_to),
        "relationshipName": f.relationship_name,
        "relationshipOrder": None,
        "restrictedDelete": False,
        "restrictedPicklist": f.restricted_picklist,
        "scale": f.scale,
        "searchPrefilterable": False,
        "soapType": _soap_type(f.type),
        "sortable": f.sortable,
        "type": f.type,
        "unique": f.unique,
        "updateable": f.updateable,
        "writeRequiresMasterRead": False,
    }


def urls(obj: ObjectDef, version: str) -> dict[str, str]:
    base = f"/services/data/v{version}/sobjects/{obj.name}"
    return {
        "compactLayouts": base + "/describe/compactLayouts",
        "rowTemplate": base + "/{ID}",
        "approvalLayouts": base + "/describe/approvalLayouts",
        "defaultValues": base + "/defaultValues?recordTypeId&fields",
        "describe": base + "/describe",
        "quickActions": base + "/quickActions",
        "layouts": base + "/describe/layouts",
        "sobject": base,
    }


def global_entry(obj: ObjectDef, version: str) -> dict[str, Any]:
    user = obj.name == "User"
    return {
        "activateable": False,
        "associateEntityType": None,
        "associateParentEntity": None,
        "createable": True,
        "custom": obj.custom,
        "customSetting": False,
        "deepCloneable": False,
        "deletable": not user,
        "deprecatedAndHidden": False,
        "feedEnabled": not obj.custom,
        "hasSubtypes": False,
        "isInterface": False,
        "isSubtype": False,
        "keyPrefix": obj.key_prefix,
        "label": obj.label,
        "labelPlural": obj.label_plural,
        "layoutable": True,
        "mergeable": not obj.custom,
        "mruEnabled": True,
        "name": obj.name,
        "queryable": True,
        "replicateable": True,
        "retrieveable": True,
        "searchable": True,
        "triggerable": True,
        "undeletable": not user,
        "updateable": True,
        "urls": urls(obj, version),
    }


def describe_object(schema: Schema, obj: ObjectDef, version: str) -> dict[str, Any]:
    children = []
    for child, f in schema.children(obj.name):
        children.append(
            {
                "cascadeDelete": f.cascade_delete,
                "childSObject": child.name,
                "deprecatedAndHidden": False,
                "field": f.name,
                "junctionIdListNames": [],
                "junctionReferenceTo": [],
                "relationshipName": f.child_relationship_name,
                "restrictedDelete": False,
            }
        )
    out = global_entry(obj, version)
    out.update(
        {
            "actionOverrides": [],
            "childRelationships": children,
            "compactLayoutable": True,
            "defaultImplementation": None,
            "extendedBy": None,
            "extendsInterfaces": None,
            "fields": [describe_field(f) for f in obj.fields],
            "implementedBy": None,
            "implementsInterfaces": None,
            "listviewable": None,
            "lookupLayoutable": None,
            "namedLayoutInfos": [],
            "networkScopeFieldName": None,
            "recordTypeInfos": [
                {
                    "active": True,
                    "available": True,
                    "defaultRecordTypeMapping": True,
                    "developerName": "Master",
                    "master": True,
                    "name": "Master",
                    "recordTypeId": "012000000000000AAA",
                    "urls": {
                        "layout": f"/services/data/v{version}/sobjects/{obj.name}/describe/"
                        "layouts/012000000000000AAA"
                    },
                }
            ],
            "searchLayoutable": True,
            "sobjectDescribeOption": "FULL",
            "supportedScopes": [],
        }
    )
    return out


def describe_global(schema: Schema, version: str) -> dict[str, Any]:
    return {
        "encoding": "UTF-8",
        "maxBatchSize": 200,
        "sobjects": [
            global_entry(o, version) for o in sorted(schema.objects.values(), key=lambda o: o.name)
        ],
    }
