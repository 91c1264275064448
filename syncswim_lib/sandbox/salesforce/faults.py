"""Fault injection and the request log: the server's control-plane policy."""

from __future__ import annotations

import itertools
import re
import threading
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from .contract import Response
from .server import FaultAction

KINDS = ("limit", "lock", "session", "error", "latency", "drop", "drop_after", "custom")


@dataclass
class Fault:
    """Fires on requests whose method matches and whose path matches `path` (regex search).

    The first `skip` matching requests pass; then it fires `times` times (None: forever).
    """

    id: int
    kind: str
    method: str = "*"
    path: str = ""
    times: int | None = 1
    skip: int = 0
    status: int | None = None
    error_code: str | None = None
    message: str | None = None
    seconds: float = 0.0
    seen: int = 0
    fired: int = 0

    def action(self) -> FaultAction:
        k = self.kind
        if k == "latency":
            return FaultAction("latency", seconds=self.seconds)
        if k in ("drop", "drop_after"):
            return FaultAction(k)
        if k == "limit":
            resp = Response.error(
                self.status or 403,
                self.error_code or "REQUEST_LIMIT_EXCEEDED",
                self.message or "TotalRequests Limit exceeded.",
            )
        elif k == "lock":
            resp = Response.error(
                self.status or 400,
                self.error_code or "UNABLE_TO_LOCK_ROW",
                self.message or "unable to obtain exclusive access to this record or 1 records",
                [],
            )
        elif k == "session":
            resp = Response.error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        elif k == "error":
            status = self.status or 500
            code = self.error_code or (
                "SERVER_UNAVAILABLE" if status == 503 else "UNKNOWN_EXCEPTION"
            )
            resp = Response.error(status, code, self.message or "An unexpected error occurred.")
        else:
            resp = Response.error(
                self.status or 500,
                self.error_code or "UNKNOWN_EXCEPTION",
                self.message or "injected fault",
            )
        return FaultAction("respond", response=resp)


class ControlPolicy:
    def __init__(self, log_size: int = 20000) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._log: deque[dict[str, Any]] = deque(maxlen=log_size)

    # --- faults -----------------------------------------------------------------------
    def add_fault(self, kind: str, **options: Any) -> Fault:
        if kind not in KINDS:
            raise ValueError(f"fault kind must be one of {KINDS}")
        re.compile(options.get("path", ""))
        fault = Fault(id=next(self._ids), kind=kind, **options)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]

    def fault(self, method: str, path: str) -> list[FaultAction]:
        if not self._faults:
            return []
        out = []
        with self._lock:
            for f in self._faults:
                if f.method not in ("*", method) or not re.search(f.path, path):
                    continue
                f.seen += 1
                if f.seen <= f.skip or (f.times is not None and f.fired >= f.times):
                    continue
                f.fired += 1
                out.append(f.action())
        return out

    # --- request log ------------------------------------------------------------------
    def log(self, entry: dict[str, Any]) -> None:
        auth = entry["headers"].get("authorization")
        if auth:  # tokens are credentials: keep only enough to tell users apart
            scheme, _, tok = auth.partition(" ")
            entry["headers"]["authorization"] = f"{scheme} {tok[-6:]}" if tok else scheme
        self._log.append(entry)

    def requests(self, path: str | None = None, method: str | None = None) -> list[dict[str, Any]]:
        entries = list(self._log)
        return [
            e
            for e in entries
            if (path is None or re.search(path, e["path"]))
            and (method is None or e["method"] == method)
        ]

    def clear_requests(self) -> None:
        self._log.clear()
