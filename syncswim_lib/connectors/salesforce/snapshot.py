"""Reading records: whole objects (snapshot) and records by the values of one field
(fetch), as canonical values.

A snapshot asks the SOQL query's first page first: its `totalSize` says how many records
the object has, so an empty or small object costs that one call (no count query). Up to
the endpoint's `bulk_threshold` it goes on paging through SOQL (2,000 records a call);
above it one Bulk API 2.0 query job reads it as CSV (a handful of calls whatever the
size), and the first page has cost what a count would have. Both read the live records only (the
recycle bin is not part of the data) in the order asked, `NULLS FIRST` as the Connector
protocol says; text sorts the way the org sorts it (case-insensitively).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any
from urllib.parse import quote_plus

import pyarrow as pa

from syncswim_lib.connectors.salesforce.client import Api
from syncswim_lib.connectors.salesforce.describe import ObjectInfo
from syncswim_lib.connectors.salesforce.types import (
    ID_RE,
    record_batch,
    soql_literal,
    to_canonical,
)
from syncswim_lib.errors import ConfigError
from syncswim_lib.values import ColumnInfo
from syncswim_lib.values.coerce import coerce

# A query travels in the URL of a GET: real orgs refuse URLs past about 16,000
# characters (414), so one fetch's query stays below that once URL-encoded, with room
# for the path and the client's other parameters.
MAX_QUERY_URL_CHARS = 15_000
# A Bulk API 2.0 query job carries its SOQL in a POST body, up to the 100,000 characters a
# SOQL statement may have: a lookup by more values than about five GET calls hold goes
# through one (a job costs three to five calls: create, a state poll or two, results)
MAX_BULK_SOQL_CHARS = 90_000
BULK_LOOKUP_CALLS = 5
BULK_PAGE_ROWS = 50_000


def columns_of(info: ObjectInfo, names: Sequence[str], endpoint: str) -> list[ColumnInfo]:
    out = []
    for name in names:
        col = info.table.column(name)
        if col is None:
            known = ", ".join(c.name for c in info.table.columns)
            raise ConfigError(
                f"field {name!r} does not exist on {info.name} in endpoint {endpoint} "
                f"(fields: {known})"
            )
        out.append(col)
    return out


def snapshot_rows(
    api: Api,
    info: ObjectInfo,
    columns: Sequence[str],
    order_by: Sequence[str],
    batch_rows: int,
    bulk_threshold: int,
) -> Iterator[pa.RecordBatch]:
    if batch_rows < 1:
        raise ConfigError(f"batch_rows must be at least 1, not {batch_rows}")
    cols = columns_of(info, columns, api.endpoint)
    columns_of(info, order_by, api.endpoint)
    select = ", ".join(dict.fromkeys([*columns, *order_by]))
    soql = f"SELECT {select} FROM {info.name}"
    if order_by:
        soql += " ORDER BY " + ", ".join(f"{c} ASC NULLS FIRST" for c in order_by)
    what = f"reading {info.name}"
    first = api.call(what, lambda: api.sf.query(soql))
    done = bool(first.get("done", True)) or not first.get("nextRecordsUrl")
    if not done and int(first.get("totalSize") or 0) > bulk_threshold:
        pages: Iterator[list[dict[str, Any]]] = iter(
            api.bulk_query(info.name, soql, BULK_PAGE_ROWS, what)
        )
    else:
        pages = _soql_pages(api, first, what)
    buffer: list[dict[str, Any]] = []
    for page in pages:
        for record in page:
            buffer.append({c.name: to_canonical(record.get(c.name), c) for c in cols})
            if len(buffer) >= batch_rows:
                yield record_batch(buffer, cols)
                buffer = []
    if buffer:
        yield record_batch(buffer, cols)


def _soql_pages(api: Api, page: dict[str, Any], what: str) -> Iterator[list[dict[str, Any]]]:
    """The records of a SOQL answer's first page and of every page after it."""
    while True:
        yield list(page.get("records", []))
        if page.get("done", True) or not page.get("nextRecordsUrl"):
            return
        url = str(page["nextRecordsUrl"])
        page = api.call(what, partial(api.sf.query_more, url, identifier_is_url=True))


def fetch_rows(
    api: Api, info: ObjectInfo, column: str, values: Sequence[Any]
) -> list[dict[str, Any]]:
    """Records whose `column` holds one of `values`, every described field of each; a
    value the field cannot hold matches nothing, as NULL does."""
    [col] = columns_of(info, [column], api.endpoint)
    field = info.field(column)
    if field is not None and not field.filterable:
        raise ConfigError(
            f"field {column} of {info.name} ({col.db_type}) cannot be filtered on in SOQL: "
            "records cannot be looked up by it"
        )
    wanted = list(dict.fromkeys(_wanted(values, col)))
    if not wanted:
        return []
    everything = list(info.table.columns)
    if column == "Id":
        # by sObject Collections retrieve: the Ids in a POST body, 2,000 a call, where an
        # IN list in a GET's URL holds about 500 (the compare-and-set reads of apply and
        # the pipeline's lookups of linked records are all by Id)
        ids = [str(v) for v in wanted]
        found = api.retrieve(
            info.name, ids, [c.name for c in everything], f"reading {info.name} by Id"
        )
        # a record asked for by its 15- and its 18-character Id comes back once
        unique = {str(r["Id"]): r for r in found}
        return [
            {c.name: to_canonical(r.get(c.name), c) for c in everything} for r in unique.values()
        ]
    literals = [soql_literal(value, col) for value in wanted]
    head = f"SELECT {', '.join(c.name for c in everything)} FROM {info.name} WHERE {column} IN ("
    budget = MAX_QUERY_URL_CHARS - len(quote_plus(head)) - len(quote_plus(")"))
    if budget < 200:
        raise ConfigError(f"{info.name} has too many fields to look records up by {column}")
    what = f"reading {info.name} by {column}"
    rows: list[dict[str, Any]] = []
    chunks = list(_chunks(literals, budget, _url_cost))
    if len(chunks) > BULK_LOOKUP_CALLS:
        # CSV cells (text; empty for null), converted as a bulk snapshot's are
        for chunk in _chunks(literals, MAX_BULK_SOQL_CHARS - len(head) - 1, _text_cost):
            soql = head + ", ".join(chunk) + ")"
            for csv_page in api.bulk_query(info.name, soql, BULK_PAGE_ROWS, what):
                rows.extend(
                    {c.name: to_canonical(r.get(c.name), c) for c in everything} for r in csv_page
                )
        return rows
    for chunk in chunks:
        soql = head + ", ".join(chunk) + ")"
        for page in api.query_pages(soql, what):
            for record in page:
                rows.append({c.name: to_canonical(record.get(c.name), c) for c in everything})
    return rows


def _wanted(values: Sequence[Any], col: ColumnInfo) -> Iterator[Any]:
    for value in values:
        try:
            v = coerce(value, col)
        except (ValueError, TypeError, ArithmeticError):
            continue
        if v is None:
            continue
        if col.db_type.startswith(("id", "reference")) and not ID_RE.fullmatch(str(v)):
            continue  # not an id at all: the org would refuse the whole query
        yield v


def _url_cost(literal: str) -> int:
    return len(quote_plus(literal)) + len(quote_plus(", "))


def _text_cost(literal: str) -> int:
    return len(literal) + 2


def _chunks(literals: list[str], budget: int, cost_of: Callable[[str], int]) -> Iterator[list[str]]:
    chunk: list[str] = []
    used = 0
    for lit in literals:
        cost = cost_of(lit)
        if chunk and used + cost > budget:
            yield chunk
            chunk, used = [], 0
        chunk.append(lit)
        used += cost
    if chunk:
        yield chunk
