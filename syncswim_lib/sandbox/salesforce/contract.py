"""Seams between the parts of the Salesforce emulator.

The emulator is one HTTPS server (`server.py`) whose routes come from several modules:
REST (`rest.py`), Bulk 2.0 (`bulk.py`), CometD (`cometd.py`), the control plane
(`control.py`). Each module exposes `register(router, org)`; the org (`org.py`) is the
single source of truth for records and publishes every committed write to the change
event bus (`cdc.py`) as a `CommittedTransaction`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class CallContext:
    """Who is calling and how: drives system fields, CDC commitUser and changeOrigin."""

    user_id: str  # 18-char User id
    origin: str = ""  # the value of `Sforce-Call-Options: client=<value>`, "" when absent
    api_version: str = "62.0"
    # Which API made the change, for CDC `changeOrigin` (com/salesforce/api/<api>/<ver>):
    # "rest", "bulkapi", ... ; "" for changes not made through an API (out-of-band
    # "human"/system edits from the control plane), which get an empty changeOrigin.
    api: str = "rest"


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # percent-decoded path without the query string
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # keys lower-cased
    body: bytes
    ctx: CallContext | None = None  # set by the server after authentication

    def json(self) -> Any:
        # Decimal, not float: an org keeps a currency(18,2) to the cent, past the 15-17
        # significant digits a double holds
        return json.loads(self.body.decode("utf-8"), parse_float=Decimal) if self.body else None


def _mark(value: Any) -> str:
    # a Decimal leaves the encoder as a marked string and becomes a bare number after it
    # (json cannot write a literal itself); NUL never occurs in org text
    if isinstance(value, Decimal):
        return f"\0{value:f}\0"
    return str(value)


# One encoder for every response: json.dumps(default=...) builds a new one per call.
_ENCODER = json.JSONEncoder(default=_mark)
_MARKED = re.compile(r'"\\u0000(-?[0-9.]+)\\u0000"')


def dumps_exact(payload: Any) -> str:
    """JSON text with Decimals written as exact numeric literals (`12345678901234567.89`)."""
    text = _ENCODER.encode(payload)
    return _MARKED.sub(r"\1", text) if "\\u0000" in text else text


def loads_exact(text: str) -> Any:
    """JSON text with non-integral numbers as Decimal (what `dumps_exact` writes)."""
    return json.loads(text, parse_float=Decimal)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def of_json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        h = {"Content-Type": "application/json;charset=UTF-8", **(headers or {})}
        return Response(status, dumps_exact(payload).encode("utf-8"), h)

    @staticmethod
    def error(
        status: int, error_code: str, message: str, fields: list[str] | None = None
    ) -> Response:
        body: dict[str, Any] = {"message": message, "errorCode": error_code}
        if fields is not None:
            body["fields"] = fields
        return Response.of_json(status, [body])


class ApiError(Exception):
    """Raised by org operations; the server turns it into the spec's error body."""

    def __init__(self, status: int, error_code: str, message: str, fields: list[str] | None = None):
        super().__init__(f"{error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message
        self.fields = fields or []

    def response(self) -> Response:
        return Response.error(self.status, self.error_code, self.message, self.fields)


Handler = Callable[[Request, "re.Match[str]"], Response]


@dataclass(frozen=True)
class Route:
    method: str  # "GET", "POST", ... or "*"
    pattern: re.Pattern[str]  # matched against Request.path with fullmatch
    handler: Handler
    auth: bool = True  # needs a valid session (Bearer token / OAuth)


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []
        # per method, the routes that can answer it, in registration order (first match wins)
        self._by_method: dict[str, list[Route]] = {}

    def add(self, method: str, pattern: str, handler: Handler, auth: bool = True) -> None:
        self.routes.append(Route(method, re.compile(pattern), handler, auth))
        self._by_method.clear()

    def match(self, method: str, path: str) -> tuple[Route, re.Match[str]] | None:
        candidates = self._by_method.get(method)
        if candidates is None:
            candidates = [r for r in self.routes if r.method in ("*", method)]
            self._by_method[method] = candidates
        for route in candidates:
            m = route.pattern.fullmatch(path)
            if m:
                return route, m
        return None


# Data-API paths look like /services/data/v62.0/...; every route module uses this prefix.
DATA = r"/services/data/v(?P<version>\d+\.\d)"


ChangeType = Literal["CREATE", "UPDATE", "DELETE", "UNDELETE"]


@dataclass(frozen=True)
class RecordChange:
    sobject: str
    change_type: ChangeType
    record_id: str
    before: Mapping[str, Any] | None  # full record before (None for CREATE)
    after: Mapping[str, Any] | None  # full record after (None for DELETE)


@dataclass(frozen=True)
class CommittedTransaction:
    """One org transaction (one REST call, one collection call, one bulk batch)."""

    changes: tuple[RecordChange, ...]
    ctx: CallContext
    commit_timestamp: datetime  # the org clock at commit (UTC)
    transaction_key: str
    commit_number: int


class ChangeSink(Protocol):
    def publish(self, tx: CommittedTransaction) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime:  # timezone-aware UTC
        ...
