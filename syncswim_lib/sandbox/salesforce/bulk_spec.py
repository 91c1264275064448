"""Validation of Bulk API 2.0 job definitions (the POST body that creates a job)."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from syncswim_lib.sandbox.salesforce import soql_parse
from syncswim_lib.sandbox.salesforce.bulk_csv import DELIMITERS, LINE_ENDINGS
from syncswim_lib.sandbox.salesforce.bulk_jobs import JobSpec, Kind
from syncswim_lib.sandbox.salesforce.contract import ApiError, Request

if TYPE_CHECKING:
    from syncswim_lib.sandbox.salesforce.org import Org

INGEST_OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
QUERY_OPERATIONS = ("query", "queryAll")


def invalid_job(message: str) -> ApiError:
    return ApiError(400, "INVALIDJOB", f"InvalidJob : {message}")


def json_body(request: Request) -> dict[str, Any]:
    try:
        payload = request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
    return payload


def _enum(payload: Mapping[str, Any], key: str, allowed: Collection[str], default: str) -> str:
    value = payload.get(key, default)
    if value not in allowed:
        # Salesforce reports a bad enum value from its JSON deserializer, not as a job error.
        raise ApiError(
            400,
            "JSON_PARSER_ERROR",
            f"Cannot deserialize instance of {key} from VALUE_STRING value {value} "
            "or request may be missing a required field",
        )
    return str(value)


def _describe(org: Org, sobject: object) -> dict[str, Any] | None:
    if not isinstance(sobject, str) or not sobject:
        return None
    try:
        return org.describe(sobject)
    except ApiError:
        return None


def job_spec(org: Org, kind: Kind, version: str, payload: Mapping[str, Any]) -> JobSpec:
    """Turn a create-job body into a JobSpec, or raise the 400 Salesforce gives."""
    operations = INGEST_OPERATIONS if kind == "ingest" else QUERY_OPERATIONS
    if "operation" not in payload:
        raise invalid_job("Missing required field: operation")
    if payload.get("contentType", "CSV") != "CSV":
        raise invalid_job(f"Unsupported content type: {payload['contentType']}")
    spec = JobSpec(
        kind=kind,
        operation=_enum(payload, "operation", operations, ""),
        sobject="",
        api_version=version,
        column_delimiter=_enum(payload, "columnDelimiter", DELIMITERS, "COMMA"),
        line_ending=_enum(payload, "lineEnding", LINE_ENDINGS, "LF"),
        assignment_rule_id=payload.get("assignmentRuleId"),
    )
    if kind == "ingest":
        return _ingest(org, spec, payload)
    return _query(org, spec, payload)


def _ingest(org: Org, spec: JobSpec, payload: Mapping[str, Any]) -> JobSpec:
    describe = _describe(org, payload.get("object"))
    if describe is None:
        raise invalid_job(f"Invalid object: {payload.get('object')}")
    name = describe["name"]
    if spec.operation != "upsert":
        return dataclasses.replace(spec, sobject=name)
    ext = payload.get("externalIdFieldName")
    if not ext:
        raise invalid_job(
            f"External ID was blank for {name}. An External ID must be specified for upsert."
        )
    field = next(
        (
            f
            for f in describe["fields"]
            if f["name"].lower() == str(ext).lower() and (f.get("externalId") or f.get("idLookup"))
        ),
        None,
    )
    if field is None:
        raise invalid_job(
            f"Field name provided, {ext} does not match an External ID, "
            f"Salesforce Id, or indexed field for {name}"
        )
    return dataclasses.replace(spec, sobject=name, external_id_field=field["name"])


def _query(org: Org, spec: JobSpec, payload: Mapping[str, Any]) -> JobSpec:
    query = payload.get("query")
    if not isinstance(query, str) or not query.strip():
        raise invalid_job("Missing required field: query")
    parsed = soql_parse.parse(query)  # MALFORMED_QUERY etc. at creation, as Salesforce does
    describe = _describe(org, parsed.sobject)
    if describe is None:
        raise ApiError(
            400,
            "INVALID_TYPE",
            f"sObject type '{parsed.sobject}' is not supported. If you are attempting to use a "
            "custom object, be sure to append the '__c' after the entity name. Please reference "
            "your WSDL or the describe call for the appropriate names.",
        )
    columns = select_columns(parsed)
    _check_fields(describe, columns)
    return dataclasses.replace(spec, sobject=describe["name"], query=query)


def select_columns(parsed: soql_parse.Query) -> list[str]:
    """Dotted SELECT columns; Bulk API 2.0 refuses aggregates, sub-queries and OFFSET."""
    if parsed.offset is not None:
        raise ApiError(400, "API_ERROR", "FeatureNotEnabled : OFFSET is not supported by Bulk API")
    columns = []
    for item in parsed.select:
        if not isinstance(item, soql_parse.FieldRef):
            raise ApiError(
                400,
                "API_ERROR",
                "FeatureNotEnabled : Aggregate queries and sub-queries "
                "are not supported by Bulk API 2.0 query",
            )
        columns.append(".".join(item.path))
    return columns


def _check_fields(describe: Mapping[str, Any], columns: list[str]) -> None:
    """Unknown direct fields are refused at creation; parent paths are left to the query run."""
    names = {f["name"].lower() for f in describe["fields"]}
    relations = {
        f["relationshipName"].lower() for f in describe["fields"] if f.get("relationshipName")
    }
    for column in columns:
        head, dot, _ = column.partition(".")
        if (head.lower() in relations) if dot else (head.lower() in names):
            continue
        raise ApiError(
            400,
            "INVALID_FIELD",
            f"No such column '{column}' on entity '{describe['name']}'. If you are attempting "
            "to use a custom field, be sure to append the '__c' after the custom field name. "
            "Please reference your WSDL or the describe call for the appropriate names.",
        )
