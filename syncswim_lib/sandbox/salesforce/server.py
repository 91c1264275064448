"""The HTTPS front door: parse, authenticate, apply faults and the API budget, route.

A threading HTTP/1.1 server with keep-alive. Each response goes out in one write with
TCP_NODELAY, because a header write followed by a body write stalls ~40 ms on delayed ACKs.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, cast
from urllib.parse import parse_qs, unquote

from .contract import ApiError, CallContext, Request, Response, Router
from .http_request import Headers, parse_request

_VERSION_RE = re.compile(r"/services/(?:data|async)/v(\d+\.\d)")
_CLIENT_RE = re.compile(r"(?:^|[,;\s])client=([^,;\s]+)")
_REASONS = {s.value: s.phrase for s in HTTPStatus}


class Authenticator(Protocol):
    def context(self, token: str, origin: str, version: str) -> CallContext | None: ...


class Usage(Protocol):
    def charge(self) -> bool: ...  # False when the daily budget is spent

    def header(self) -> str: ...


@dataclass(frozen=True)
class FaultAction:
    kind: str  # "respond" | "latency" | "drop" | "drop_after"
    response: Response | None = None
    seconds: float = 0.0


class Policy(Protocol):
    """Control-plane hooks the server consults on every request."""

    def fault(self, method: str, path: str) -> list[FaultAction]: ...

    def log(self, entry: dict[str, Any]) -> None: ...


def origin_of(headers: Mapping[str, str]) -> str:
    m = _CLIENT_RE.search(headers.get("sforce-call-options", ""))
    return m.group(1) if m else ""


def token_of(headers: Mapping[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() in ("bearer", "oauth") and token.strip():
        return token.strip()
    return None


def is_data_call(path: str) -> bool:
    return path.startswith("/services/data/v")


class Dispatcher:
    def __init__(self, router: Router, auth: Authenticator, usage: Usage, policy: Policy) -> None:
        self.router, self.auth, self.usage, self.policy = router, auth, usage, policy

    def route(self, method: str, path: str) -> tuple[Any, re.Match[str] | None]:
        found = self.router.match(method, path)
        if found is not None:
            return found
        allowed = sorted({r.method for r in self.router.routes if r.pattern.fullmatch(path)})
        if allowed:
            return Response.error(
                405,
                "METHOD_NOT_ALLOWED",
                f"HTTP Method '{method}' not allowed. Allowed are {','.join(allowed)}",
            ), None
        return Response.error(404, "NOT_FOUND", "The requested resource does not exist"), None

    def dispatch(self, req: Request) -> tuple[Response | None, bool]:
        """The response (None: drop the connection) and whether to drop after sending."""
        route, match = self.route(req.method, req.path)
        if match is None:
            return route, False
        actions = (
            self.policy.fault(req.method, req.path) if not req.path.startswith("/__emu__") else []
        )
        drop_after = False
        for act in actions:
            if act.kind == "latency":
                time.sleep(act.seconds)
            elif act.kind == "drop":
                return None, True
            elif act.kind == "drop_after":
                drop_after = True
        if route.auth:
            token = token_of(req.headers)
            m = _VERSION_RE.match(req.path)
            ctx = (
                self.auth.context(token, origin_of(req.headers), m.group(1) if m else "62.0")
                if token
                else None
            )
            if ctx is None:
                return Response.error(
                    401, "INVALID_SESSION_ID", "Session expired or invalid"
                ), False
            req = Request(req.method, req.path, req.query, req.headers, req.body, ctx)
        for act in actions:
            if act.kind == "respond" and act.response is not None:
                return act.response, drop_after
        if route.auth and is_data_call(req.path) and not self.usage.charge():
            return Response.error(
                403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."
            ), drop_after
        try:
            resp = route.handler(req, match)
        except ApiError as exc:
            resp = exc.response()
        except Exception:
            err = str(uuid.uuid4().int)[:10]
            traceback.print_exc()
            resp = Response.error(
                500,
                "UNKNOWN_EXCEPTION",
                "An unexpected error occurred. Please include this ErrorId if "
                f"you contact support: {err}-0 (-{err})",
            )
        return resp, drop_after


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 300  # idle keep-alive connections go away eventually
    server: EmulatorHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def parse_request(self) -> bool:
        return parse_request(self)

    def _serve(self) -> None:
        parsed = cast(Headers, self.headers)
        length = int(parsed.first_length or 0)
        body = self.rfile.read(length) if length else b""
        raw_path, _, qs = self.path.partition("?")
        if "+" in raw_path and is_data_call(raw_path):
            # simple-salesforce's get_by_custom_id encodes with quote_plus: '+' means a space
            raw_path = raw_path.replace("+", " ")
        headers = dict(parsed)
        query = parse_qs(qs, keep_blank_values=True) if qs else {}
        req = Request(self.command, unquote(raw_path), query, headers, body)
        started = time.monotonic()
        resp, drop_after = self.server.dispatcher.dispatch(req)
        entry = {
            "time": time.time(),
            "method": self.command,
            "path": req.path,
            "query": {k: v for k, v in req.query.items()},
            "headers": headers,
            "status": resp.status if resp else None,
            "ms": round((time.monotonic() - started) * 1000, 3),
        }
        self.server.dispatcher.policy.log(entry)
        if resp is None:
            self._drop()
            return
        if drop_after:  # the request took effect but its response is lost
            self._drop()
            return
        if is_data_call(req.path) and resp.status != 401:
            resp.headers.setdefault("Sforce-Limit-Info", self.server.dispatcher.usage.header())
        self._write(resp)

    def _write(self, resp: Response) -> None:
        lines = [f"HTTP/1.1 {resp.status} {_REASONS.get(resp.status, 'Unknown')}"]
        lines += [f"{k}: {v}" for k, v in resp.headers.items()]
        body = b"" if self.command == "HEAD" else resp.body
        if resp.status not in (204, 304):
            lines.append(f"Content-Length: {len(resp.body)}")
        else:
            body = b""
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _serve


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, port: int, dispatcher: Dispatcher, tls: ssl.SSLContext | None) -> None:
        self.dispatcher = dispatcher
        self.tls = tls
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        if self.tls is not None:
            # the handshake runs lazily in the worker thread, not in the accept loop
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self._conns_lock:
            self._conns.add(sock)
        return sock, addr

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # clients hanging up mid-request are normal here

    def close_all(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)


def serve_in_thread(server: EmulatorHTTPServer) -> Callable[[], None]:
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="sf-emulator", daemon=True
    )
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.close_all()
        server.server_close()
        thread.join(timeout=5)

    return stop
