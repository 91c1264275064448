"""The emulator's own request-line and header parser: the answers `http.server` gave."""

from __future__ import annotations

import io
import json
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from syncswim_lib.sandbox.salesforce.emulator import Emulator
from syncswim_lib.sandbox.salesforce.http_request import MAX_HEADERS, read_headers

pytestmark = pytest.mark.salesforce


@contextmanager
def tls_socket(emu: Emulator) -> Iterator[ssl.SSLSocket]:
    context = ssl.create_default_context(cafile=str(emu.ca_path))
    raw = socket.create_connection(("127.0.0.1", emu.port), timeout=10)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        yield sock


def read_response(sock: ssl.SSLSocket) -> tuple[int, dict[str, str], bytes]:
    """One response: status, lower-cased headers, body (by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed mid-response: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length]


def exchange(emu: Emulator, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with tls_socket(emu) as sock:
        sock.sendall(raw)
        return read_response(sock)


def test_header_line_too_long(sf_emulator: Emulator) -> None:
    status, _, body = exchange(
        sf_emulator, b"GET /services/data HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n"
    )
    assert status == 431
    assert b"Line too long" in body


def test_too_many_headers(sf_emulator: Emulator) -> None:
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS + 1))
    status, _, body = exchange(sf_emulator, b"GET /services/data HTTP/1.1\r\n" + many + b"\r\n")
    assert status == 431
    assert b"Too many headers" in body


@pytest.mark.parametrize(
    ("line", "status", "text"),
    [
        (b"GET /services/data HTTP/x.1", 400, b"Bad request version"),
        (b"GET /services/data HTTP/1.1.1", 400, b"Bad request version"),
        (b"GET /services/data HTTP/2.0", 505, b"Invalid HTTP version"),
        (b"GET /services/data extra HTTP/1.1", 400, b"Bad request syntax"),
        (b"POST /services/data", 400, b"Bad HTTP/0.9 request type"),
    ],
)
def test_bad_request_lines(sf_emulator: Emulator, line: bytes, status: int, text: bytes) -> None:
    # Before a version is accepted the answer is HTTP/0.9 style: no status line, just the
    # error page, then the connection closes.
    with tls_socket(sf_emulator) as sock:
        sock.sendall(line + b"\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert b"Error code: %d" % status in data
    assert text in data


def test_expect_100_continue_then_the_response(sf_emulator: Emulator) -> None:
    body = json.dumps({"Name": "continued"}).encode()
    head = (
        "POST /services/data/v62.0/sobjects/Account/ HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        f"Authorization: Bearer {sf_emulator.token()}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()
    with tls_socket(sf_emulator) as sock:
        sock.sendall(head)
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 ")
        sock.sendall(body)
        status, _, answer = read_response(sock)
    assert status == 201
    assert json.loads(answer)["success"] is True


def test_connection_close_is_honoured(sf_emulator: Emulator) -> None:
    with tls_socket(sf_emulator) as sock:
        sock.sendall(b"GET /services/data HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, headers, _ = read_response(sock)
        assert status == 200
        assert headers["connection"] == "close"
        assert sock.recv(1) == b""  # the server hung up


def test_keep_alive_serves_several_requests_on_one_connection(sf_emulator: Emulator) -> None:
    with tls_socket(sf_emulator) as sock:
        for _ in range(3):
            sock.sendall(b"GET /services/data HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, body = read_response(sock)
            assert status == 200
            assert json.loads(body)[0]["version"] == "20.0"


def test_read_headers_shapes() -> None:
    raw = (
        b"Content-Type: application/json\r\n"
        b"content-length: 5\r\n"
        b"Content-Length: 7\r\n"
        b"X-Folded: one\r\n"
        b"\ttwo\r\n"
        b"no colon here\r\n"
        b"X-Trail:   spaced  \r\n"
        b"\r\n"
        b"BODY"
    )
    stream = io.BufferedReader(io.BytesIO(raw))
    headers = read_headers(stream)
    assert headers.get("CONTENT-TYPE") == "application/json"
    assert headers["content-length"] == "7"  # a repeated header keeps its last value
    assert headers.first_length == "5"  # ... but the body length is the first, as before
    assert headers["x-folded"] == "one two"
    assert "no colon here" not in headers
    assert headers["x-trail"] == "spaced  "
    assert stream.read() == b"BODY"
