"""REST routes for sObjects: describe, CRUD, upsert and get by external id (spec §1.1-1.3)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import rest_collections, rest_query
from .contract import DATA, ApiError, Request, Response, Router
from .org import MultipleMatches, Org, public
from .schema import ObjectDef

if TYPE_CHECKING:
    from .auth import ApiUsage

_OBJ = r"(?P<sobject>[A-Za-z][A-Za-z0-9_]*)"


@dataclass
class RestSettings:
    """Knobs the control plane turns: page-size chaos and the like."""

    max_page: int = 2000  # real orgs return smaller pages for wide rows; lower to exercise paging
    cursor_idle_seconds: int = 15 * 60
    max_cursors_per_user: int = 10
    usage: ApiUsage | None = None


def body_json(req: Request) -> Any:
    try:
        return req.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(
            400, "JSON_PARSER_ERROR", f"Unexpected character: {str(exc)[:120]}"
        ) from None


def body_object(req: Request) -> dict[str, Any]:
    data = body_json(req)
    if not isinstance(data, dict):
        raise ApiError(
            400,
            "JSON_PARSER_ERROR",
            "Cannot deserialize instance of SObject from a non-object value",
        )
    return data


def version(req: Request) -> str:
    return req.ctx.api_version if req.ctx else "62.0"


def _label(v: float) -> str:
    n = int(v) - 20  # 20.0 was Winter '11; three releases a year
    return f"{('Winter', 'Spring', 'Summer')[n % 3]} '{11 + n // 3:02d}"


def versions(_req: Request, _m: re.Match[str]) -> Response:
    out = [
        {"label": _label(float(v)), "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
        for v in range(20, 65)
    ]
    return Response.of_json(200, out)


class RestApi:
    def __init__(self, org: Org, settings: RestSettings) -> None:
        self.org, self.settings = org, settings

    def render(
        self, obj: ObjectDef, rec: dict[str, Any], ver: str, fields: list[str] | None = None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attributes": {
                "type": obj.name,
                "url": f"/services/data/v{ver}/sobjects/{obj.name}/{rec['Id']}",
            }
        }
        if fields is None:
            out.update(public(rec))
            return out
        for name in fields:
            f = obj.field(name)
            if f is None:
                raise ApiError(
                    400,
                    "INVALID_FIELD",
                    f"No such column '{name}' on entity '{obj.name}'. If you are "
                    "attempting to use a custom field, be sure to append the '__c' "
                    "after the custom field name. Please reference your WSDL or the "
                    "describe call for the appropriate names.",
                )
            out[f.name] = rec.get(f.name)
        return out

    def resources(self, req: Request, _m: re.Match[str]) -> Response:
        base = f"/services/data/v{version(req)}"
        names = ["sobjects", "query", "queryAll", "limits", "composite", "jobs"]
        return Response.of_json(200, {n: f"{base}/{n}" for n in names})

    def describe_global(self, req: Request, _m: re.Match[str]) -> Response:
        return Response.of_json(200, self.org.describe_global(version(req)))

    def basic_info(self, req: Request, m: re.Match[str]) -> Response:
        d = self.org.describe(m["sobject"], version(req))
        entry = {
            k: v
            for k, v in d.items()
            if k
            not in (
                "fields",
                "childRelationships",
                "recordTypeInfos",
                "actionOverrides",
                "namedLayoutInfos",
                "supportedScopes",
            )
        }
        return Response.of_json(200, {"objectDescribe": entry, "recentItems": []})

    def describe(self, req: Request, m: re.Match[str]) -> Response:
        return Response.of_json(200, self.org.describe(m["sobject"], version(req)))

    def create(self, req: Request, m: re.Match[str]) -> Response:
        assert req.ctx is not None
        rid = self.org.create(req.ctx, m["sobject"], body_object(req))
        return Response.of_json(201, {"id": rid, "success": True, "errors": []})

    def create_by_id_field(self, req: Request, m: re.Match[str]) -> Response:
        assert req.ctx is not None
        rid = self.org.create(req.ctx, m["sobject"], body_object(req))
        return Response.of_json(201, {"id": rid, "success": True, "errors": [], "created": True})

    def get(self, req: Request, m: re.Match[str]) -> Response:
        obj = self.org.schema.require(m["sobject"])
        rec = self.org.get(obj.name, m["id"])
        fields = req.query.get("fields")
        names = [f.strip() for f in fields[0].split(",") if f.strip()] if fields else None
        return Response.of_json(200, self.render(obj, rec, version(req), names))

    def update(self, req: Request, m: re.Match[str]) -> Response:
        assert req.ctx is not None
        self.org.update(req.ctx, m["sobject"], m["id"], body_object(req))
        return Response(204)

    def delete(self, req: Request, m: re.Match[str]) -> Response:
        assert req.ctx is not None
        self.org.delete(req.ctx, m["sobject"], m["id"])
        return Response(204)

    def _ext_match(self, obj: ObjectDef, field_name: str, value: str) -> str:
        f = obj.field(field_name)
        if f is None or not f.id_lookup:
            raise ApiError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {field_name}",
            )
        if f.type == "id":
            return str(self.org.get(obj.name, value)["Id"])
        found = self.org.find_ext(obj.name, f.name, value)
        if len(found) > 1:
            raise MultipleMatches(obj.name, found)
        if not found:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return found[0]

    def get_by_ext(self, req: Request, m: re.Match[str]) -> Response:
        obj = self.org.schema.require(m["sobject"])
        try:
            rid = self._ext_match(obj, m["field"], m["value"])
        except MultipleMatches as exc:
            return self.multiple(req, exc)
        return Response.of_json(200, self.render(obj, self.org.get(obj.name, rid), version(req)))

    def upsert(self, req: Request, m: re.Match[str]) -> Response:
        assert req.ctx is not None
        update_only = (req.query.get("updateOnly") or ["false"])[0].lower() == "true"
        try:
            rid, created = self.org.upsert(
                req.ctx,
                m["sobject"],
                m["field"],
                m["value"],
                body_object(req),
                update_only=update_only,
            )
        except MultipleMatches as exc:
            return self.multiple(req, exc)
        new_api = float(version(req)) >= 46.0
        body: dict[str, Any] = {"id": rid, "success": True, "errors": []}
        if new_api:
            body["created"] = created
        if created:
            return Response.of_json(201, body)
        return Response.of_json(200, body) if new_api else Response(204)

    def delete_by_ext(self, req: Request, m: re.Match[str]) -> Response:
        assert req.ctx is not None
        obj = self.org.schema.require(m["sobject"])
        try:
            rid = self._ext_match(obj, m["field"], m["value"])
        except MultipleMatches as exc:
            return self.multiple(req, exc)
        self.org.delete(req.ctx, obj.name, rid)
        return Response(204)

    def multiple(self, req: Request, exc: MultipleMatches) -> Response:
        urls = [f"/services/data/v{version(req)}/sobjects/{exc.sobject}/{i}" for i in exc.ids]
        return Response(
            300, json.dumps(urls).encode(), {"Content-Type": "application/json;charset=UTF-8"}
        )


def register(router: Router, org: Org, settings: RestSettings | None = None) -> RestApi:
    api = RestApi(org, settings or RestSettings())
    so = DATA + r"/sobjects/" + _OBJ
    router.add("GET", r"/services/data/?", versions, auth=False)
    router.add("GET", DATA + r"/?", api.resources)
    router.add("GET", DATA + r"/sobjects/?", api.describe_global)
    router.add("GET", so + r"/?", api.basic_info)
    router.add("POST", so + r"/?", api.create)
    router.add("GET", so + r"/describe/?", api.describe)
    rest_query.register(router, org, api)
    rest_collections.register(router, org, api)
    router.add("POST", so + r"/Id/?", api.create_by_id_field)
    router.add("GET", so + r"/(?P<id>[^/]+)/?", api.get)
    router.add("PATCH", so + r"/(?P<id>[^/]+)/?", api.update)
    router.add("DELETE", so + r"/(?P<id>[^/]+)/?", api.delete)
    ext = so + r"/(?P<field>[A-Za-z][A-Za-z0-9_]*)/(?P<value>.+?)/?"
    router.add("GET", ext, api.get_by_ext)
    router.add("PATCH", ext, api.upsert)
    router.add("DELETE", ext, api.delete_by_ext)
    return api
