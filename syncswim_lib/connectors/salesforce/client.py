"""Calls to the org through simple-salesforce, with Salesforce's errors put in the
project's taxonomy (errors.py) so the pipeline's retries and parking act on them:

- lock contention (`UNABLE_TO_LOCK_ROW`), 5xx answers, timeouts and cut connections:
  RetriableError (backoff, then again);
- the API budget: the org's `REQUEST_LIMIT_EXCEEDED`, or the endpoint's own share of
  the daily allowance (`api_budget_share`) used up, as the `Sforce-Limit-Info` header of
  the last answer says: ApiBudgetExhausted (a RetriableError). Past the share no write is
  sent at all, so the run's retries cost the org nothing; the run fails naming the
  budget and a later run resumes from the journal;
- an expired or refused session that logging in again did not renew (auth.py renews it
  for the login forms), a missing permission: FatalError;
- anything else the org refuses for a whole call: SalesforceApiError (a FatalError
  carrying Salesforce's error code).

Per-record errors of a collection call are not raised: apply reports them one by one.
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import requests

from syncswim_lib.errors import FatalError, Paused, RetriableError

if TYPE_CHECKING:
    from simple_salesforce.api import Salesforce

T = TypeVar("T")

CALL_OPTIONS = "Sforce-Call-Options"
# a Bulk API 2.0 query job's state is asked after this, then at doubling intervals
QUERY_FIRST_POLL_S = 0.2
QUERY_MAX_POLL_S = 10.0
QUERY_TIMEOUT_S = 3600.0
RETRIABLE_STATUS = frozenset({500, 502, 503, 504})
# the most Ids one sObject Collections retrieve call takes (in a POST body)
RETRIEVE_IDS = 2000
# calls the org charges to its daily allowance: everything under /services/data/vNN.N/
# (the versions list, /services/data/ itself, is free), REST and Bulk API 2.0 alike
DATA_CALL = re.compile(r"/services/data/v\d+\.\d+/")
LIMIT_INFO = re.compile(r"(?:^|[^-])api-usage=(\d+)/(\d+)")


@dataclass(frozen=True)
class ApiUsage:
    """An endpoint's API calls as this process counted them, and the org's daily count
    and allowance as its last answer said (`Sforce-Limit-Info: api-usage=N/M`)."""

    calls: int
    used: int | None = None
    limit: int | None = None

    def since(self, earlier: ApiUsage) -> ApiUsage:
        return ApiUsage(self.calls - earlier.calls, self.used, self.limit)


class Meter:
    """A response hook of the client's session: every answer is counted and its
    Sforce-Limit-Info read, Bulk API 2.0 ones too (simple-salesforce reads the header
    of its REST calls only)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._usage = ApiUsage(0)

    def hook(self, response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        charged = DATA_CALL.search(urlsplit(response.url).path) is not None
        found = LIMIT_INFO.search(response.headers.get("Sforce-Limit-Info", ""))
        with self._lock:
            u = self._usage
            calls = u.calls + (1 if charged else 0)
            if found:
                self._usage = ApiUsage(calls, int(found.group(1)), int(found.group(2)))
            else:
                self._usage = ApiUsage(calls, u.used, u.limit)
        return response

    def usage(self) -> ApiUsage:
        with self._lock:
            return self._usage


def _mark(value: object) -> str:
    # json cannot write a number it does not know: a Decimal leaves the encoder as a
    # marked string and loses the quotes after it (NUL never occurs in org text)
    if isinstance(value, Decimal):
        return f"\0{value:f}\0"
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_ENCODER = json.JSONEncoder(default=_mark, allow_nan=False)
_MARKED = re.compile(r'"\\u0000(-?[0-9.]+)\\u0000"')


def json_text(payload: Any) -> str:
    """`payload` as JSON with every Decimal an exact numeric literal: a currency(18,2)
    has 18 significant digits, a float (what `json=` would send) only 15 to 17."""
    text = _ENCODER.encode(payload)
    return _MARKED.sub(r"\1", text) if "\\u0000" in text else text


class SalesforceApiError(FatalError):
    """The org refused a whole call; `code` is Salesforce's error code."""

    def __init__(self, message: str, code: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class NotFound(SalesforceApiError):
    """404: no such object, field or record."""


class ApiBudgetExhausted(Paused):
    """The org's daily API allowance, or this endpoint's share of it, is used up: no
    more writes until the org's rolling 24-hour count falls back."""

    def __init__(
        self, message: str, used: int | None, limit: int | None, endpoint: str = ""
    ) -> None:
        super().__init__(message, endpoint, "api budget")
        self.used = used
        self.limit = limit


def error_code(content: Any) -> tuple[str, str]:
    """(errorCode, message) of Salesforce's error array (or a single error object)."""
    first = content[0] if isinstance(content, list) and content else content
    if isinstance(first, dict):
        code = str(first.get("errorCode") or first.get("statusCode") or "")
        return code, str(first.get("message", ""))
    return "", str(content)[:300]


class TokenSource:
    """The current token of an endpoint's client, and its renewal: what the CometD client
    is given, so a handshake refused for an expired session logs in again once."""

    def __init__(self, api: Api) -> None:
        self._api = api

    def __call__(self) -> str:
        return self._api.token()

    def renew(self, stale: str) -> str | None:
        return self._api.renew(stale)


class Api:
    """One endpoint's client and how its calls fail."""

    def __init__(self, sf: Salesforce, endpoint: str, budget_share: float = 1.0) -> None:
        self.sf = sf
        self.endpoint = endpoint
        self.budget_share = budget_share
        found = getattr(sf.session, "meter", None)
        self.meter = found if isinstance(found, Meter) else Meter()
        if not isinstance(found, Meter):  # a session made elsewhere: count it all the same
            sf.session.hooks["response"].append(self.meter.hook)

    @property
    def instance_url(self) -> str:
        return f"https://{self.sf.sf_instance}"

    def token(self) -> str:
        """The current access token (a login form refreshes it after a 401)."""
        return str(self.sf.session_id)

    def renew(self, stale: str) -> str | None:
        """A new token after `stale` was refused (None: this endpoint's form cannot log in
        again, a session token)."""
        renew = getattr(self.sf.session, "renew", None)
        return renew(stale) if callable(renew) else None

    def usage(self) -> ApiUsage:
        return self.meter.usage()

    def check_budget(self, what: str) -> None:
        """ApiBudgetExhausted when the org's count has reached this endpoint's share of
        the allowance (checked before each write call: the count moves with every call,
        ours and other integrations')."""
        u = self.meter.usage()
        if self.budget_share >= 1 or u.used is None or not u.limit:
            return  # the whole allowance: the org itself says when it is spent
        if u.used >= self.budget_share * u.limit:
            raise ApiBudgetExhausted(
                f"{what} on Salesforce endpoint {self.endpoint}: the org's API usage "
                f"{u.used}/{u.limit} has reached this endpoint's share "
                f"(api_budget_share: {self.budget_share:g}, {int(self.budget_share * u.limit)} "
                "calls); nothing more is written and a later run resumes from the journal",
                u.used,
                u.limit,
                self.endpoint,
            )

    def budget_open(self) -> bool:
        """One cheap call (`GET limits/`, which also brings Sforce-Limit-Info): whether the
        org's count is below this endpoint's share of the allowance again. A paused sync
        asks this before it calls anything else."""
        answer = self.restful("checking the API budget", "limits/")
        daily = answer.get("DailyApiRequests") if isinstance(answer, dict) else None
        u = self.meter.usage()
        used, limit = u.used, u.limit
        if isinstance(daily, dict) and daily.get("Max"):
            limit = int(daily["Max"])
            used = limit - int(daily.get("Remaining", 0))
        if used is None or not limit:
            return True
        return used < self.budget_share * limit

    # -- calling ---------------------------------------------------------------------

    def call(self, what: str, fn: Callable[[], T]) -> T:
        from simple_salesforce.exceptions import SalesforceError, SalesforceOperationError

        try:
            return fn()
        except SalesforceError as exc:
            raise self.translate(exc, what) from None
        except SalesforceOperationError as exc:  # a Bulk API job that failed or was aborted
            raise SalesforceApiError(
                f"{what} on Salesforce endpoint {self.endpoint}: {exc}", "BULK_JOB_FAILED", 0
            ) from None
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise RetriableError(
                f"{what} on Salesforce endpoint {self.endpoint}: {type(exc).__name__} "
                "(no answer; tried again with backoff)"
            ) from None

    def translate(self, exc: Exception, what: str) -> Exception:
        from simple_salesforce.exceptions import (
            SalesforceExpiredSession,
            SalesforceResourceNotFound,
        )

        status = int(getattr(exc, "status", 0) or 0)
        code, message = error_code(getattr(exc, "content", None))
        place = f"{what} on Salesforce endpoint {self.endpoint}"
        if code == "REQUEST_LIMIT_EXCEEDED":
            u = self.usage()
            budget = f" (api-usage {u.used}/{u.limit})" if u.used is not None else ""
            return ApiBudgetExhausted(
                f"{place}: the org's API request limit is exceeded{budget}: {message}; "
                "the run pauses and a later run resumes from the journal",
                u.used,
                u.limit,
                self.endpoint,
            )
        if code == "UNABLE_TO_LOCK_ROW":
            return RetriableError(f"{place}: UNABLE_TO_LOCK_ROW: {message}")
        if status in RETRIABLE_STATUS:
            return RetriableError(f"{place}: HTTP {status} {code}: {message}".rstrip(": "))
        if isinstance(exc, SalesforceExpiredSession) or status == 401:
            return FatalError(
                f"{place}: the session was refused ({code or 'INVALID_SESSION_ID'}) and could "
                "not be renewed; a token setting needs a new token, a login form credentials "
                "the org accepts"
            )
        if isinstance(exc, SalesforceResourceNotFound) or status == 404:
            return NotFound(f"{place}: {code}: {message}", code, status)
        return SalesforceApiError(f"{place}: HTTP {status} {code}: {message}", code, status)

    def restful(
        self, what: str, path: str, method: str = "GET", origin: str | None = None, **kw: Any
    ) -> Any:
        """A REST call under /services/data/vNN.N/; `origin` tags a write with
        `Sforce-Call-Options: client=<origin>`, which its change events carry back."""
        if origin is not None:
            kw["headers"] = {**kw.get("headers", {}), CALL_OPTIONS: f"client={origin}"}
        if "json" in kw:  # the client's own Content-Type header says it is JSON
            kw["data"] = json_text(kw.pop("json")).encode("utf-8")
        return self.call(what, lambda: self.sf.restful(path, method=method, **kw))

    # -- reading ---------------------------------------------------------------------

    def describe(self, sobject: str) -> dict[str, Any]:
        result = self.restful(f"describing {sobject}", f"sobjects/{sobject}/describe/")
        assert isinstance(result, dict)
        return result

    def query_pages(
        self, soql: str, what: str, include_deleted: bool = False
    ) -> Iterator[list[dict[str, Any]]]:
        """Every page of a SOQL query, each page's records; the recycle bin left out, or
        read too with `include_deleted` (`queryAll`: its locator remembers that)."""
        page = self.call(what, lambda: self.sf.query(soql, include_deleted=include_deleted))
        while True:
            yield list(page.get("records", []))
            if page.get("done", True) or not page.get("nextRecordsUrl"):
                return
            url = str(page["nextRecordsUrl"])
            page = self.call(what, partial(self.sf.query_more, url, identifier_is_url=True))

    def retrieve(
        self, sobject: str, ids: Sequence[str], fields: Sequence[str], what: str
    ) -> list[dict[str, Any]]:
        """The live records of these Ids with these fields, by sObject Collections
        retrieve: the Ids travel in a POST body, 2,000 a call, where a SOQL `IN` list in
        a GET's URL holds about 500. Deleted, purged and unknown Ids are left out."""
        out: list[dict[str, Any]] = []
        for start in range(0, len(ids), RETRIEVE_IDS):
            body = {"ids": list(ids[start : start + RETRIEVE_IDS]), "fields": list(fields)}
            answer = self.restful(what, f"composite/sobjects/{sobject}", "POST", json=body)
            out.extend(r for r in answer or () if isinstance(r, dict))
        return out

    def count(self, sobject: str) -> int:
        page = self.call(
            f"counting {sobject}", lambda: self.sf.query(f"SELECT COUNT() FROM {sobject}")
        )
        return int(page.get("totalSize", 0))

    def bulk_query(
        self, sobject: str, soql: str, page_rows: int, what: str
    ) -> Iterator[list[dict[str, str]]]:
        """A Bulk API 2.0 query job's result pages as CSV rows (text cells, empty for
        null), in the job's (the query's) order. The job's state is asked after
        QUERY_FIRST_POLL_S, then at doubling intervals: two or three polls for a job of
        seconds, where the client's one-call helper polls about every 50 ms (each poll
        is a call the org counts)."""
        from simple_salesforce.bulk2 import Operation, SFBulk2Handler, _Bulk2Client

        handler = self.sf.bulk2
        assert isinstance(handler, SFBulk2Handler)
        client = _Bulk2Client(sobject, handler.bulk2_url, handler.headers, handler.session)
        job = self.call(what, lambda: client.create_job(Operation.query, soql))
        job_id = str(job["id"])
        delay = QUERY_FIRST_POLL_S
        waited = 0.0
        while True:
            time.sleep(delay)
            waited += delay
            info = self.call(what, lambda: client.get_job(job_id, True))
            state = info.get("state")
            if state == "JobComplete":
                break
            if state in ("Failed", "Aborted"):
                raise SalesforceApiError(
                    f"{what} on Salesforce endpoint {self.endpoint}: query job {job_id} "
                    f"{state}: {info.get('errorMessage')}",
                    "BULK_JOB_FAILED",
                    0,
                )
            if waited > QUERY_TIMEOUT_S:
                raise RetriableError(
                    f"{what} on Salesforce endpoint {self.endpoint}: query job {job_id} still "
                    f"{state} after {waited:.0f} s (tried again with backoff)"
                )
            delay = min(QUERY_MAX_POLL_S, delay * 2)
        locator = ""
        while True:
            fetch = partial(client.get_query_results, job_id, locator, max_records=page_rows)
            page = self.call(what, fetch)
            yield list(csv.DictReader(io.StringIO(str(page.get("records") or ""))))
            locator = str(page.get("locator") or "")
            if not locator:
                return
