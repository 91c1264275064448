"""sObject Collections: /composite/sobjects create, update, upsert, delete, retrieve (§1.6)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import ids
from .contract import DATA, ApiError, Request, Response, Router
from .org import MultipleMatches, Org

if TYPE_CHECKING:
    from .rest import RestApi

MAX_RECORDS = 200
_ROLLED_BACK = {
    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "message": "Record rolled back because not all records were valid and the "
    "request was using AllOrNone header",
    "fields": [],
}


def _item_error(exc: ApiError) -> dict[str, Any]:
    if isinstance(exc, MultipleMatches):
        return {
            "statusCode": "DUPLICATE_EXTERNAL_ID",
            "message": f"more than one record found for external id field: {exc.ids}",
            "fields": [],
        }
    return {"statusCode": exc.error_code, "message": exc.message, "fields": exc.fields}


class Collections:
    def __init__(self, org: Org, api: RestApi) -> None:
        self.org, self.api = org, api

    def _records(self, req: Request) -> tuple[list[dict[str, Any]], bool]:
        from .rest import body_object

        body = body_object(req)
        records = body.get("records")
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ApiError(400, "JSON_PARSER_ERROR", "records must be an array of sObjects")
        if len(records) > MAX_RECORDS:
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more "
                f"than {MAX_RECORDS} records into this call",
            )
        return records, bool(body.get("allOrNone", False))

    def _run(
        self,
        req: Request,
        n: int,
        all_or_none: bool,
        op: Callable[[int], dict[str, Any]],
        known_id: Callable[[int], str | None] = lambda i: None,
    ) -> Response:
        """Run op(i) for each item in one transaction; per-item errors, optional rollback.

        Failed items carry the id only where the request named one (update, delete).
        """
        assert req.ctx is not None
        results: list[dict[str, Any]] = []
        failed = False

        def failure(i: int, error: dict[str, Any]) -> dict[str, Any]:
            rid = known_id(i)
            return {**({"id": rid} if rid else {}), "success": False, "errors": [error]}

        with self.org.transaction(req.ctx, all_or_none=False) as tx:
            for i in range(n):
                try:
                    results.append(op(i))
                except ApiError as exc:
                    failed = True
                    results.append(failure(i, _item_error(exc)))
            if failed and all_or_none:
                tx.rollback()
        if failed and all_or_none:
            results = [
                failure(i, _ROLLED_BACK) if r["success"] else r for i, r in enumerate(results)
            ]
        return Response.of_json(200, results)

    @staticmethod
    def _type(rec: dict[str, Any]) -> str:
        attrs = rec.get("attributes")
        t = attrs.get("type") if isinstance(attrs, dict) else None
        if not isinstance(t, str) or not t:
            raise ApiError(400, "INVALID_TYPE", "Must send a concrete entity type.")
        return t

    def create(self, req: Request, _m: re.Match[str]) -> Response:
        records, aon = self._records(req)
        types = [self._type(r) for r in records]
        assert req.ctx is not None
        ctx = req.ctx

        def op(i: int) -> dict[str, Any]:
            if any(k.lower() == "id" for k in records[i]):
                raise ApiError(400, "INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
            rid = self.org.create(ctx, types[i], records[i])
            return {"id": rid, "success": True, "errors": []}

        return self._run(req, len(records), aon, op)

    def update(self, req: Request, _m: re.Match[str]) -> Response:
        records, aon = self._records(req)
        types = [self._type(r) for r in records]
        assert req.ctx is not None
        ctx = req.ctx

        def op(i: int) -> dict[str, Any]:
            fields = dict(records[i])
            rid = next((fields.pop(k) for k in list(fields) if k.lower() == "id"), None)
            if not rid:
                raise ApiError(400, "MISSING_ARGUMENT", "Id not specified in an update call", [])
            self.org.update(ctx, types[i], str(rid), fields)
            return {"id": ids.normalize(str(rid)) or rid, "success": True, "errors": []}

        def known(i: int) -> str | None:
            rid = next((v for k, v in records[i].items() if k.lower() == "id"), None)
            return ids.normalize(str(rid)) if rid else None

        return self._run(req, len(records), aon, op, known)

    def upsert(self, req: Request, m: re.Match[str]) -> Response:
        records, aon = self._records(req)
        obj = self.org.schema.require(m["sobject"])
        ext = obj.field(m["field"])
        if ext is None or not ext.id_lookup:
            raise ApiError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {m['field']}",
            )
        assert req.ctx is not None
        ctx = req.ctx

        def op(i: int) -> dict[str, Any]:
            fields = dict(records[i])
            if self._type(fields).lower() != obj.name.lower():
                raise ApiError(400, "INVALID_TYPE", "all records must be of type " + obj.name)
            key = next((k for k in fields if k.lower() == ext.name.lower()), None)
            value = fields.pop(key) if key else None
            if value in (None, "") and ext.type != "id":
                raise ApiError(400, "MISSING_ARGUMENT", f"{ext.name} not specified", [ext.name])
            rid, created = self.org.upsert(ctx, obj.name, ext.name, str(value or ""), fields)
            return {"id": rid, "success": True, "errors": [], "created": created}

        return self._run(req, len(records), aon, op)

    def delete(self, req: Request, _m: re.Match[str]) -> Response:
        raw = (req.query.get("ids") or [""])[0]
        id_list = [i for i in raw.split(",") if i]
        if not id_list:
            raise ApiError(400, "MISSING_ARGUMENT", "ids parameter is required")
        if len(id_list) > MAX_RECORDS:
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more "
                f"than {MAX_RECORDS} records into this call",
            )
        aon = (req.query.get("allOrNone") or ["false"])[0].lower() == "true"
        assert req.ctx is not None
        ctx = req.ctx

        def op(i: int) -> dict[str, Any]:
            rid = ids.normalize(id_list[i])
            obj = self.org.object_of(rid) if rid else None
            if rid is None or obj is None:
                raise ApiError(400, "MALFORMED_ID", f"malformed id {id_list[i]}", [])
            self.org.delete(ctx, obj.name, rid)
            return {"id": rid, "success": True, "errors": []}

        return self._run(req, len(id_list), aon, op, lambda i: id_list[i])

    def retrieve(self, req: Request, m: re.Match[str]) -> Response:
        from .rest import body_object, version

        if req.method == "POST":
            body = body_object(req)
            id_list, fields = list(body.get("ids") or []), list(body.get("fields") or [])
        else:
            id_list = [i for i in (req.query.get("ids") or [""])[0].split(",") if i]
            fields = [f for f in (req.query.get("fields") or [""])[0].split(",") if f]
        if not fields:
            raise ApiError(400, "MISSING_ARGUMENT", "fields parameter is required")
        if len(id_list) > 2000:
            raise ApiError(400, "EXCEEDED_ID_LIMIT", "too many ids")
        obj = self.org.schema.require(m["sobject"])
        out: list[dict[str, Any] | None] = []
        for raw in id_list:
            try:
                rec = self.org.get(obj.name, raw)
            except ApiError:
                out.append(None)
                continue
            out.append(self.api.render(obj, rec, version(req), fields))
        return Response.of_json(200, out)


def register(router: Router, org: Org, api: RestApi) -> Collections:
    c = Collections(org, api)
    base = DATA + r"/composite/sobjects"
    router.add("POST", base + r"/?", c.create)
    router.add("PATCH", base + r"/?", c.update)
    router.add("DELETE", base + r"/?", c.delete)
    obj = base + r"/(?P<sobject>[A-Za-z][A-Za-z0-9_]*)"
    router.add("GET", obj + r"/?", c.retrieve)
    router.add("POST", obj + r"/?", c.retrieve)
    router.add("PATCH", obj + r"/(?P<field>[A-Za-z][A-Za-z0-9_]*)/?", c.upsert)
    return c
