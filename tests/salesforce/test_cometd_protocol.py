"""The CometD endpoint and the product's CometD client, on a bare HTTP harness.

No emulator core here: a stub org answers token checks and the bus gets transactions by
hand, so the Bayeux details (advice, error strings, replay, long polling) are pinned
independently of the REST side.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests

from syncswim_lib.connectors.salesforce.cometd_client import (
    REPLAY_ALL,
    CometdAuthError,
    CometdClient,
    CometdSubscribeError,
    ReplayIdInvalidError,
)
from syncswim_lib.sandbox.salesforce import cometd
from syncswim_lib.sandbox.salesforce.cdc import ChangeEventBus
from syncswim_lib.sandbox.salesforce.contract import (
    CallContext,
    CommittedTransaction,
    RecordChange,
    Request,
    Router,
)
from syncswim_lib.sandbox.salesforce.schema import Schema, load_default_specs

TOKEN = "good-token"
USER = "005000000000001AAA"


class StubOrg:
    def __init__(self) -> None:
        self.tokens = {TOKEN: CallContext(USER)}
        self.schema = Schema(load_default_specs())

    def context(self, token: str, origin: str = "", version: str = "62.0") -> CallContext | None:
        return self.tokens.get(token)


class Harness:
    def __init__(self) -> None:
        self.org = StubOrg()
        self.bus = ChangeEventBus(_Clock(), None)
        self.router = Router()
        cometd.register(self.router, self.org, self.bus, self.org)  # type: ignore[arg-type]
        self.sessions = cometd.sessions(self.bus)
        self.sessions.options.long_poll_seconds = 5.0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        self._ids = itertools.count(1)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        router = self.router

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                req = Request(
                    "POST",
                    unquote(parts.path),
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                found = router.match("POST", req.path)
                assert found is not None, req.path
                route, match = found
                resp = route.handler(req, match)
                self.send_response(resp.status)
                for k, v in resp.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.body)))
                self.end_headers()
                self.wfile.write(resp.body)

        return Handler

    def create(self, name: str = "Acme") -> None:
        n = next(self._ids)
        rid = f"001{n:015d}"
        rec = {"Id": rid, "Name": name, "LastModifiedDate": "2024-04-09T20:26:27.000+0000"}
        self.bus.publish(
            CommittedTransaction(
                (RecordChange("Account", "CREATE", rid, None, rec),),
                CallContext(USER, "syncswim"),
                datetime.now(UTC),
                f"tx{n}",
                n,
            )
        )

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.stop()


def raw(
    h: Harness,
    messages: list[dict[str, Any]],
    session: requests.Session | None = None,
    token: str | None = TOKEN,
    path: str = "/cometd/62.0",
) -> tuple[int, list[Any]]:
    s = session or requests.Session()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = s.post(h.url + path, json=messages, headers=headers, timeout=30)
    return r.status_code, r.json()


def test_handshake_subscribe_connect_shapes(harness: Harness) -> None:
    s = requests.Session()
    _, [hs] = raw(
        harness,
        [
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "id": "1",
                "supportedConnectionTypes": ["websocket", "long-polling"],
            }
        ],
        s,
    )
    assert hs["successful"] and hs["id"] == "1" and hs["channel"] == "/meta/handshake"
    assert hs["supportedConnectionTypes"] == ["long-polling"]
    assert hs["ext"] == {"replay": True, "payload.format": True}
    cid = hs["clientId"]
    harness.create("before")
    _, [sub] = raw(
        harness,
        [
            {
                "channel": "/meta/subscribe",
                "clientId": cid,
                "id": "2",
                "subscription": "/data/AccountChangeEvent",
                "ext": {"replay": {"/data/AccountChangeEvent": -2}},
            }
        ],
        s,
    )
    assert sub == {
        "channel": "/meta/subscribe",
        "id": "2",
        "clientId": cid,
        "successful": True,
        "subscription": "/data/AccountChangeEvent",
    }
    _, msgs = raw(
        harness,
        [
            {
                "channel": "/meta/connect",
                "clientId": cid,
                "id": "3",
                "connectionType": "long-polling",
                "advice": {"timeout": 0},
            }
        ],
        s,
    )
    assert [m["channel"] for m in msgs] == ["/data/AccountChangeEvent", "/meta/connect"]
    assert msgs[0]["data"]["payload"]["Name"] == "before"
    assert msgs[1]["advice"] == {"interval": 0, "reconnect": "retry", "timeout": 5000}
    assert msgs[1]["successful"] is True and msgs[1]["id"] == "3"


def test_errors_use_salesforce_strings(harness: Harness) -> None:
    _, [hs] = raw(harness, [{"channel": "/meta/handshake", "id": "1"}], token="bad")
    assert hs["error"] == "403::Handshake denied"
    assert hs["ext"]["sfdc"]["failureReason"] == "401::Authentication invalid"
    assert hs["advice"] == {"reconnect": "none"}
    _, [c] = raw(harness, [{"channel": "/meta/connect", "clientId": "nope", "id": 7}])
    assert c["error"] == "403::Unknown client" and c["id"] == 7
    assert c["advice"] == {"interval": 0, "reconnect": "handshake"}
    _, [c] = raw(harness, [{"channel": "/meta/connect", "clientId": "x", "id": "8"}], token=None)
    assert c["error"] == "401::Request requires authentication"
    s = requests.Session()
    _, [hs] = raw(harness, [{"channel": "/meta/handshake", "id": "1"}], s)
    cid = hs["clientId"]
    _, [sub] = raw(
        harness,
        [
            {
                "channel": "/meta/subscribe",
                "clientId": cid,
                "id": "2",
                "subscription": "/data/NopeChangeEvent/x",
            }
        ],
        s,
    )
    assert sub["error"] == (
        "400::The channel you requested to subscribe to doesn't exist /data/NopeChangeEvent/x"
    )
    _, [sub] = raw(
        harness,
        [
            {
                "channel": "/meta/subscribe",
                "clientId": cid,
                "id": "3",
                "subscription": "/data/ChangeEvents",
                "ext": {"replay": {"/data/ChangeEvents": 999}},
            }
        ],
        s,
    )
    assert sub["error"] == (
        "400::The replayId 999 you provided was invalid. Please provide a valid ID, -2 to "
        "replay all events, or -1 to replay only new events."
    )
    _, [c] = raw(
        harness,
        [{"channel": "/meta/connect", "clientId": cid, "id": "4", "connectionType": "websocket"}],
        s,
    )
    assert c["error"] == "400::Invalid connection type websocket"
    _, [c] = raw(harness, [{"channel": "/meta/connect", "clientId": cid, "id": "5"}])
    assert c["error"] == (
        f"400::Client {cid} has established a session, but no BAYEUX_BROWSER cookie present"
    )
    harness.org.tokens.clear()
    _, [c] = raw(harness, [{"channel": "/meta/connect", "clientId": cid, "id": "6"}], s)
    assert c["error"] == "401::Authentication invalid"
    assert c["advice"]["reconnect"] == "none"
    status, [v] = raw(harness, [{"channel": "/meta/handshake"}], path="/cometd/36.0")
    assert status == 400 and v["error"].startswith("400::Unsupported API version")
    status, [v] = raw(harness, [{"channel": "/meta/handshake"}], path="/cometd")
    assert status == 400 and "URI format: '/cometd/NN.0'" in v["error"]


def test_long_poll_returns_when_an_event_arrives(harness: Harness) -> None:
    with CometdClient(harness.url, TOKEN) as client:
        client.subscribe("/data/ChangeEvents")
        assert client.poll() == []  # the first connect is answered at once
        got: list[Any] = []
        poller = threading.Thread(target=lambda: got.extend(client.poll()))
        poller.start()
        assert harness.bus.wait_until(
            lambda _latest: any(
                s.in_poll for s in map(harness.sessions.get, harness.sessions.client_ids()) if s
            ),
            timeout=10,
        )
        harness.create("live")
        poller.join(10)
        assert [e.payload["Name"] for e in got] == ["live"]


def test_client_rehandshakes_and_resumes_after_drop(harness: Harness) -> None:
    with CometdClient(harness.url, TOKEN, poll_timeout=0.2) as client:
        client.subscribe("/data/AccountChangeEvent", REPLAY_ALL)
        harness.create("one")
        [first] = client.poll()
        first_id = client.client_id
        harness.sessions.drop()
        harness.create("two")
        assert client.poll() == []  # 403::Unknown client: the next poll re-handshakes
        events = []
        for event in client.events():
            events.append(event)
            break
        assert [e.payload["Name"] for e in events] == ["two"]
        assert client.client_id != first_id
        assert events[0].replay_id > first.replay_id


def test_client_errors_are_typed(harness: Harness) -> None:
    with pytest.raises(CometdAuthError):
        CometdClient(harness.url, "bad").handshake()
    with CometdClient(harness.url, TOKEN) as client:
        with pytest.raises(ReplayIdInvalidError) as info:
            client.subscribe("/data/AccountChangeEvent", 12345)
        assert info.value.replay_id == 12345
        with pytest.raises(CometdSubscribeError):
            client.subscribe("/topic/Whatever")


def test_stop_flag_ends_the_event_loop(harness: Harness) -> None:
    stop = threading.Event()
    seen: list[str] = []
    with CometdClient(harness.url, TOKEN, poll_timeout=0.2) as client:
        client.subscribe("/data/ChangeEvents")

        def run() -> None:
            for event in client.events(stop):
                seen.append(event.payload["Name"])
                stop.set()

        worker = threading.Thread(target=run)
        worker.start()
        harness.create("x")
        worker.join(15)
        assert not worker.is_alive() and seen == ["x"]


def test_a_quiet_connect_is_held_until_the_servers_timeout(harness: Harness) -> None:
    """As an org does (110 s there, 1 s here): a connect without events is answered at the
    long-poll timeout, not before, with that timeout in its advice; a shorter `timeout`
    the client asks for is honoured; the stream's client sends none after its first."""
    harness.sessions.options.long_poll_seconds = 1.0
    try:
        with CometdClient(harness.url, TOKEN) as client:
            client.subscribe("/data/ChangeEvents")
            assert client.poll() == []  # the first connect is answered at once
            started = time.monotonic()
            assert client.poll() == []
            held = time.monotonic() - started
            assert 0.9 <= held < 5, held
        with CometdClient(harness.url, TOKEN, poll_timeout=0.2) as client:
            client.subscribe("/data/ChangeEvents")
            client.poll()
            started = time.monotonic()
            assert client.poll() == []
            assert time.monotonic() - started < 0.8
        s = requests.Session()
        _, [hs] = raw(harness, [{"channel": "/meta/handshake", "id": "1"}], s)
        connect = {"channel": "/meta/connect", "clientId": hs["clientId"], "id": "2"}
        raw(harness, [{**connect, "connectionType": "long-polling"}], s)  # the first
        _, [reply] = raw(harness, [{**connect, "id": "3", "connectionType": "long-polling"}], s)
        assert reply["advice"] == {"interval": 0, "reconnect": "retry", "timeout": 1000}
    finally:
        harness.sessions.options.long_poll_seconds = 5.0
