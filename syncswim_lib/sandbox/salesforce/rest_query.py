"""SOQL over REST with paging cursors, getUpdated/getDeleted and /limits (spec §1.4, 1.7, 1.9)."""

from __future__ import annotations

import itertools
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import ids
from .contract import DATA, ApiError, Request, Response, Router
from .org import Org
from .values import fmt_datetime, parse_datetime

if TYPE_CHECKING:
    from .rest import RestApi

_BATCH_RE = re.compile(r"batchSize\s*=\s*(\d+)", re.IGNORECASE)
MAX_IDS = 600_000


@dataclass
class Cursor:
    records: list[dict[str, Any]]
    user_id: str
    last_used: datetime


class Cursors:
    """Open query locators; snapshot semantics: a page never sees later writes."""

    def __init__(self, org: Org, api: RestApi) -> None:
        self.org, self.api = org, api
        self._open: OrderedDict[str, Cursor] = OrderedDict()
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    def open(self, records: list[dict[str, Any]], user_id: str) -> str:
        locator = ids.to18("01g5e0" + ids.base62(next(self._seq), 9))
        with self._lock:
            self._open[locator] = Cursor(records, user_id, self.org.clock.now())
            mine = [k for k, c in self._open.items() if c.user_id == user_id]
            for k in mine[: max(0, len(mine) - self.api.settings.max_cursors_per_user)]:
                del self._open[k]  # like a real org: the oldest cursor is dropped
        return locator

    def get(self, locator: str) -> Cursor:
        now = self.org.clock.now()
        idle = timedelta(seconds=self.api.settings.cursor_idle_seconds)
        with self._lock:
            cur = self._open.get(locator)
            if cur is None or now - cur.last_used > idle:
                self._open.pop(locator, None)
                raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            cur.last_used = now
            return cur

    def close(self, locator: str) -> None:
        with self._lock:
            self._open.pop(locator, None)

    def clear(self) -> None:
        with self._lock:
            self._open.clear()


class QueryApi:
    def __init__(self, org: Org, api: RestApi) -> None:
        self.org, self.api = org, api
        self.cursors = Cursors(org, api)

    def _batch(self, req: Request) -> int:
        m = _BATCH_RE.search(req.headers.get("sforce-query-options", ""))
        size = min(2000, max(200, int(m.group(1)))) if m else 2000
        return min(size, self.api.settings.max_page)

    def _page(
        self, req: Request, locator: str | None, records: list[dict[str, Any]], start: int
    ) -> Response:
        batch = self._batch(req)
        end = start + batch
        body: dict[str, Any] = {
            "totalSize": len(records),
            "done": end >= len(records),
            "records": records[start:end],
        }
        if locator is not None and end < len(records):
            ver = req.ctx.api_version if req.ctx else "62.0"
            body["nextRecordsUrl"] = f"/services/data/v{ver}/query/{locator}-{end}"
        elif locator is not None:
            self.cursors.close(locator)
        return Response.of_json(200, body)

    def _run(self, req: Request, include_deleted: bool) -> Response:
        assert req.ctx is not None
        q = (req.query.get("q") or [""])[0]
        result = self.org.run_query(req.ctx, q, include_deleted)
        if not result.records:
            return Response.of_json(
                200, {"totalSize": result.total_size, "done": True, "records": []}
            )
        locator = None
        if len(result.records) > self._batch(req):
            locator = self.cursors.open(result.records, req.ctx.user_id)
        return self._page(req, locator, result.records, 0)

    def query(self, req: Request, _m: re.Match[str]) -> Response:
        return self._run(req, False)

    def query_all(self, req: Request, _m: re.Match[str]) -> Response:
        return self._run(req, True)

    def more(self, req: Request, m: re.Match[str]) -> Response:
        locator, offset = m["locator"], int(m["offset"])
        cur = self.cursors.get(locator)
        if offset > len(cur.records):
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(req, locator, cur.records, offset)

    # --- getUpdated / getDeleted -----------------------------------------------------------
    def _window(self, req: Request, days: int) -> tuple[str, str, datetime]:
        bounds = []
        for name in ("start", "end"):
            raw = (req.query.get(name) or [""])[0].replace(" ", "+")  # an unencoded '+'
            dt = parse_datetime(raw)
            if dt is None:
                raise ApiError(
                    400,
                    "INVALID_REPLICATION_DATE",
                    f"{name}: unable to parse '{raw}' as a dateTime with a time zone",
                )
            bounds.append(dt.replace(second=0, microsecond=0))
        start, end = bounds
        now = self.org.clock.now().replace(second=0, microsecond=0)
        end = min(end, now)
        if start >= end:
            raise ApiError(
                400, "INVALID_REPLICATION_DATE", "startDate must chronologically precede endDate"
            )
        if start < self.org.window_floor(days):
            raise ApiError(
                400, "INVALID_REPLICATION_DATE", f"startDate cannot be more than {days} days ago"
            )
        return fmt_datetime(start), fmt_datetime(end), end

    def updated(self, req: Request, m: re.Match[str]) -> Response:
        start, end, _ = self._window(req, 30)
        found = self.org.updated_ids(m["sobject"], start, end)
        if len(found) > MAX_IDS:
            raise ApiError(400, "EXCEEDED_ID_LIMIT", f"record limit reached: {MAX_IDS}")
        return Response.of_json(200, {"ids": found, "latestDateCovered": end})

    def deleted(self, req: Request, m: re.Match[str]) -> Response:
        start, end, _ = self._window(req, 15)
        purge = self.org.last_purge
        earliest = fmt_datetime(self.org.window_floor(15))
        if purge is not None:
            earliest = max(earliest, purge[:17] + "00.000+0000")
            if start < earliest:
                raise ApiError(
                    400,
                    "INVALID_REPLICATION_DATE",
                    f"startDate is before earliestDateAvailable {earliest}: the "
                    "recycle bin was emptied since",
                )
        rows = self.org.deleted_ids(m["sobject"], start, end)
        if len(rows) > MAX_IDS:
            raise ApiError(400, "EXCEEDED_ID_LIMIT", f"record limit reached: {MAX_IDS}")
        return Response.of_json(
            200,
            {
                "deletedRecords": [{"id": i, "deletedDate": d} for i, d in rows],
                "earliestDateAvailable": earliest,
                "latestDateCovered": end,
            },
        )

    def limits(self, req: Request, _m: re.Match[str]) -> Response:
        usage = self.api.settings.usage
        max_, remaining = (usage.limit, usage.remaining()) if usage else (15000, 15000)
        records = self.org.count()
        body = {
            "DailyApiRequests": {"Max": max_, "Remaining": remaining},
            "DailyAsyncApexExecutions": {"Max": 250000, "Remaining": 250000},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
            "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "DailyDurableStreamingApiEvents": {"Max": 10000, "Remaining": 10000},
            "DataStorageMB": {"Max": 5, "Remaining": max(0, 5 - records * 2 // 1024)},
            "FileStorageMB": {"Max": 20, "Remaining": 20},
            "HourlyPublishedStandardVolumePlatformEvents": {"Max": 50000, "Remaining": 50000},
            "SingleEmail": {"Max": 15, "Remaining": 15},
        }
        return Response.of_json(200, body)


def register(router: Router, org: Org, api: RestApi) -> QueryApi:
    q = QueryApi(org, api)
    router.add("GET", DATA + r"/query/?", q.query)
    router.add("GET", DATA + r"/queryAll/?", q.query_all)
    more = r"/(?P<locator>[A-Za-z0-9]+)-(?P<offset>\d+)/?"
    router.add("GET", DATA + r"/query" + more, q.more)
    router.add("GET", DATA + r"/queryAll" + more, q.more)
    router.add("GET", DATA + r"/limits/?", q.limits)
    so = DATA + r"/sobjects/(?P<sobject>[A-Za-z][A-Za-z0-9_]*)"
    router.add("GET", so + r"/updated/?", q.updated)
    router.add("GET", so + r"/deleted/?", q.deleted)
    return q
