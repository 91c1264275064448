"""Request-line and header parsing for the emulator's HTTP handler.

The standard library runs every request's headers through the `email` package parser,
which was about a sixth of the emulator's CPU per REST call. HTTP/1.1 headers need far
less: this reads them into a dict keyed by lower-cased name, with the same limits and
error answers as `http.server` (line length, header count, version checks).
"""

from __future__ import annotations

from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Protocol

MAX_LINE = 65536  # http.client._MAXLINE
MAX_HEADERS = 100  # http.client._MAXHEADERS
_END = (b"\r\n", b"\n", b"")


class LineReader(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...


class HeaderError(Exception):
    def __init__(self, explain: str, message: str) -> None:
        super().__init__(explain)
        self.explain, self.message = explain, message


class Headers(dict[str, str]):
    """Header values by lower-cased name; a repeated header keeps its last value.

    `get` ignores case, so the standard handler code that asks for `Connection` or
    `Expect` works unchanged. `first_length` is the first Content-Length, which is the
    one `http.server` would have used.
    """

    first_length: str | None = None

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return dict.get(self, key.lower(), default)


def read_headers(rfile: LineReader) -> Headers:
    headers = Headers()
    last: str | None = None
    count = 0
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise HeaderError("header line", "Line too long")
        if line in _END:
            return headers
        count += 1
        if count > MAX_HEADERS:
            raise HeaderError(f"got more than {MAX_HEADERS} headers", "Too many headers")
        text = line.decode("iso-8859-1").rstrip("\r\n")
        if text[:1] in (" ", "\t"):  # obsolete line folding continues the previous value
            if last is not None:
                headers[last] = f"{headers[last]} {text.strip()}".strip()
            continue
        name, sep, value = text.partition(":")
        if not sep:
            continue
        last = name.strip().lower()
        value = value.lstrip(" \t")  # as the email parser: trailing blanks stay
        headers[last] = value
        if last == "content-length" and headers.first_length is None:
            headers.first_length = value


def parse_request(handler: BaseHTTPRequestHandler) -> bool:
    """`BaseHTTPRequestHandler.parse_request` (Python 3.11) with `read_headers`."""
    handler.command = None  # type: ignore[assignment]  # set in case of error on line one
    handler.request_version = version = handler.default_request_version
    handler.close_connection = True
    raw: bytes = handler.raw_requestline  # type: ignore[attr-defined]  # not in typeshed
    requestline = str(raw, "iso-8859-1").rstrip("\r\n")
    handler.requestline = requestline
    words = requestline.split()
    if not words:
        return False
    if len(words) >= 3:  # enough to determine the protocol version
        version = words[-1]
        try:
            if not version.startswith("HTTP/"):
                raise ValueError
            numbers = version.split("/", 1)[1].split(".")
            if len(numbers) != 2 or not all(n.isdigit() and len(n) <= 10 for n in numbers):
                raise ValueError
            version_number = int(numbers[0]), int(numbers[1])
        except (ValueError, IndexError):
            handler.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
            return False
        if version_number >= (1, 1) and handler.protocol_version >= "HTTP/1.1":
            handler.close_connection = False
        if version_number >= (2, 0):
            handler.send_error(
                HTTPStatus.HTTP_VERSION_NOT_SUPPORTED,
                f"Invalid HTTP version ({version.split('/', 1)[1]})",
            )
            return False
        handler.request_version = version
    if not 2 <= len(words) <= 3:
        handler.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({requestline!r})")
        return False
    command, path = words[:2]
    if len(words) == 2:
        handler.close_connection = True
        if command != "GET":
            handler.send_error(HTTPStatus.BAD_REQUEST, f"Bad HTTP/0.9 request type ({command!r})")
            return False
    if path.startswith("//"):  # gh-87389: no open redirects through //host paths
        path = "/" + path.lstrip("/")
    handler.command, handler.path = command, path
    try:
        headers = read_headers(handler.rfile)
    except HeaderError as err:
        handler.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, err.message, err.explain)
        return False
    handler.headers = headers  # type: ignore[assignment]
    conntype = (headers.get("connection") or "").lower()
    if conntype == "close":
        handler.close_connection = True
    elif conntype == "keep-alive" and handler.protocol_version >= "HTTP/1.1":
        handler.close_connection = False
    expect = (headers.get("expect") or "").lower()
    if (
        expect == "100-continue"
        and handler.protocol_version >= "HTTP/1.1"
        and handler.request_version >= "HTTP/1.1"
    ):
        return handler.handle_expect_100()
    return True
