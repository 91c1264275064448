"""Run a parsed SOQL query: filter, sort, slice, project (incl. parent and child relationships)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .contract import ApiError
from .schema import STRING_TYPES, FieldDef, ObjectDef
from .soql_parse import Compare, CountItem, FieldRef, Query

if TYPE_CHECKING:
    from .soql import QueryResult, Rec, Resolved, _Compiler

MAX_OFFSET = 2000


def _candidates(c: _Compiler, obj: ObjectDef, q: Query) -> Iterable[Rec]:
    # Single-record lookups by Id are the sync tool's hot path: skip the scan.
    w = q.where
    if (
        isinstance(w, Compare)
        and w.op == "="
        and len(w.field.path) == 1
        and w.field.path[0].lower() == "id"
        and not isinstance(w.value, tuple | Query)
    ):
        rid = c.convert(obj.by_lower["id"], w.value)
        rec = c.source.get(rid) if rid else None
        return [rec] if rec is not None and rec.get("_type") == obj.name else []
    return c.source.scan(obj.name)


def _sort(c: _Compiler, obj: ObjectDef, q: Query, rows: list[Rec]) -> list[Rec]:
    for item in reversed(q.order):
        r = c.resolve(obj, item.field)
        if not r.final.sortable:
            raise c.err(
                item.field.pos,
                "INVALID_FIELD",
                f"field '{r.final.name}' can not be sorted in a query call",
            )
        key = _sort_key(r.final, c.getter(r))

        present = [x for x in rows if key(x) is not None]
        absent = [x for x in rows if key(x) is None]
        present.sort(key=key, reverse=item.desc)
        rows = present + absent if item.nulls_last else absent + present
    return rows


def _sort_key(f: FieldDef, get: Callable[[Rec], Any]) -> Callable[[Rec], Any]:
    """None stays None (the caller places nulls); text sorts case-insensitively."""
    if f.type == "picklist":
        # A real org sorts a picklist by the order its values are defined in; a value the
        # picklist does not define (an unrestricted one) sorts after all the defined ones.
        rank = {v.lower(): i for i, v in enumerate(f.picklist_values)}
        undefined = len(rank)

        def by_rank(rec: Rec) -> Any:
            v = get(rec)
            if v is None:
                return None
            low = str(v).lower()
            return (rank.get(low, undefined), low)

        return by_rank
    if f.type in STRING_TYPES:
        return lambda rec: v.lower() if isinstance(v := get(rec), str) else v
    return get


def run_query(c: _Compiler, q: Query, raw: bool, rows: Iterable[Rec] | None) -> QueryResult:
    from .soql import QueryResult

    obj = c.obj(q)
    counts = [s for s in q.select if isinstance(s, CountItem)]
    if counts and len(counts) != len(q.select):
        raise c.err(
            q.sobject_pos,
            "MALFORMED_QUERY",
            "Field must be grouped or aggregated: COUNT() cannot be mixed with fields",
        )
    pred = c.cond(obj, q.where) if q.where is not None else None
    source = rows if rows is not None else _candidates(c, obj, q)
    matched = [r for r in source if pred is None or pred(r)]
    if q.offset is not None and q.offset > MAX_OFFSET:
        raise ApiError(
            400, "NUMBER_OUTSIDE_VALID_RANGE", f"Maximum SOQL offset allowed is {MAX_OFFSET}"
        )
    if counts:
        return _aggregate(c, obj, counts, matched, q)
    if q.order:
        matched = _sort(c, obj, q, matched)
    start = q.offset or 0
    end = start + q.limit if q.limit is not None else None
    matched = matched[start:end]
    if raw:
        ref = q.select[0]
        assert isinstance(ref, FieldRef)
        get = c.getter(c.resolve(obj, ref))
        return QueryResult([get(r) for r in matched], len(matched))
    project = _projector(c, obj, q)
    return QueryResult([project(r) for r in matched], len(matched))


def _aggregate(
    c: _Compiler, obj: ObjectDef, counts: list[CountItem], matched: list[Rec], q: Query
) -> QueryResult:
    from .soql import QueryResult

    n = len(matched)
    if q.limit is not None:
        n = min(n, q.limit)
    if len(counts) == 1 and counts[0].arg is None:
        return QueryResult([], n)
    out: dict[str, Any] = {"attributes": {"type": "AggregateResult"}}
    for i, item in enumerate(counts):
        if item.arg is None:
            raise c.err(q.sobject_pos, "MALFORMED_QUERY", "COUNT() must be the only element")
        get = c.getter(c.resolve(obj, item.arg))
        out[item.alias or f"expr{i}"] = sum(1 for r in matched if get(r) is not None)
    return QueryResult([out], 1)


def _put(c: _Compiler, out: dict[str, Any], rec: Rec | None, r: Resolved, depth: int) -> None:
    if depth == len(r.hops):
        out[r.final.name] = rec.get(r.final.name) if rec else None
        return
    lookup, target = r.hops[depth]
    key = lookup.relationship_name or lookup.name
    parent_id = rec.get(lookup.name) if rec else None
    parent = c.source.get(parent_id) if parent_id else None
    if parent is None or parent.get("_type") != target.name:
        out.setdefault(key, None)
        return
    sub = out.get(key)
    if sub is None:
        sub = {"attributes": c.attrs(target, parent["Id"])}
        out[key] = sub
    _put(c, sub, parent, r, depth + 1)


def _projector(c: _Compiler, obj: ObjectDef, q: Query) -> Callable[[Rec], Rec]:
    fields: list[Resolved] = []
    subs: list[tuple[str, Query, ObjectDef, FieldDef]] = []
    for item in q.select:
        if isinstance(item, FieldRef):
            fields.append(c.resolve(obj, item))
        elif isinstance(item, Query):
            subs.append(_child_rel(c, obj, item))
    groups = [_group_children(c, sub) for sub in subs]

    def project(rec: Rec) -> Rec:
        out: Rec = {"attributes": c.attrs(obj, rec["Id"])}
        for r in fields:
            _put(c, out, rec, r, 0)
        for (rel, sub, _child, _f), grouped in zip(subs, groups, strict=True):
            kids = grouped.get(rec["Id"], [])
            if not kids:
                out[rel] = None
                continue
            res = run_query(c, sub, False, kids)
            out[rel] = {"totalSize": res.total_size, "done": True, "records": res.records}
        return out

    return project


def _child_rel(c: _Compiler, obj: ObjectDef, sub: Query) -> tuple[str, Query, ObjectDef, FieldDef]:
    for child, f in c.schema.children(obj.name):
        rel = f.child_relationship_name
        if rel and rel.lower() == sub.sobject.lower():
            return (
                rel,
                Query(
                    sub.select,
                    child.name,
                    sub.sobject_pos,
                    sub.where,
                    sub.order,
                    sub.limit,
                    sub.offset,
                ),
                child,
                f,
            )
    raise c.err(
        sub.sobject_pos,
        "INVALID_TYPE",
        f"Didn't understand relationship '{sub.sobject}' in FROM part of query call. "
        "If you are attempting to use a custom relationship, be sure to append the '__r' "
        "after the custom relationship name. Please reference your WSDL or the describe "
        "call for the appropriate names.",
    )


def _group_children(
    c: _Compiler, sub: tuple[str, Query, ObjectDef, FieldDef]
) -> dict[str, list[Rec]]:
    _rel, _q, child, f = sub
    grouped: dict[str, list[Rec]] = {}
    for rec in c.source.scan(child.name):
        pid = rec.get(f.name)
        if pid:
            grouped.setdefault(pid, []).append(rec)
    return grouped
