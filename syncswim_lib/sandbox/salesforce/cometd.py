"""The emulator's CometD endpoint (Bayeux long polling, spec §4.6) over the CDC bus.

`POST /cometd/NN.N` (and `/cometd/NN.N/<type>`, as Java clients send) takes a JSON array of
Bayeux messages and answers an array. Given the core's token registry, routes are
registered with auth=False because CometD reports auth failures as Bayeux errors
(`403::Handshake denied`, `401::Authentication invalid`), not as the REST 401 body; the
token is then checked here on every call.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from syncswim_lib.sandbox.salesforce.cdc import ChangeEventBus, ReplayIdInvalid
from syncswim_lib.sandbox.salesforce.cometd_sessions import (
    COOKIE_NAME,
    ClientState,
    Sessions,
    StreamingOptions,
    TokenCheck,
    catalog,
    cookies_of,
    sessions,
)
from syncswim_lib.sandbox.salesforce.contract import CallContext, Request, Response, Router

if TYPE_CHECKING:
    from syncswim_lib.sandbox.salesforce.org import Org

__all__ = ["StreamingOptions", "register", "sessions"]

MAX_BODY = 32_768
MIN_VERSION = 37.0
Msg = dict[str, Any]


def register(router: Router, org: Org, bus: ChangeEventBus, auth: TokenCheck | None = None) -> None:
    """Add the CometD routes. The token is checked here with `auth` (the core's registry)
    or else `org.authenticate(token)`, so failures get Salesforce's Bayeux errors; with
    neither, the server authenticates (auth=True routes) and a bad token gets the REST
    401 body instead of `403::Handshake denied`."""
    bus.attach_catalog(*catalog(org))
    check: Callable[[str], CallContext | None] | None = getattr(org, "authenticate", None)
    if auth is not None:
        check = auth.context
    endpoint = _Endpoint(sessions(bus), check)
    router.add("POST", r"/cometd/?", endpoint.no_version, auth=check is None)
    pattern = r"/cometd/(?P<version>[^/]+)(?:/[a-z]+)?"
    router.add("POST", pattern, endpoint.handle, auth=check is None)


def _reply(msg: Msg, ok: bool, **extra: Any) -> Msg:
    out: Msg = {"channel": msg.get("channel")}
    if "id" in msg:
        out["id"] = msg["id"]
    if isinstance(msg.get("clientId"), str):
        out["clientId"] = msg["clientId"]
    return {**out, "successful": ok, **extra}


def _array(
    messages: list[Msg], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response.of_json(status, messages, headers)


class _Endpoint:
    def __init__(
        self, sessions: Sessions, check: Callable[[str], CallContext | None] | None
    ) -> None:
        self.sessions = sessions
        self.bus = sessions.bus
        self.check = check

    def no_version(self, request: Request, match: re.Match[str]) -> Response:
        error = "400::API version in the URI is mandatory. URI format: '/cometd/NN.0'"
        return _array([{"successful": False, "error": error}], 400)

    def handle(self, request: Request, match: re.Match[str]) -> Response:
        version = match.group("version")
        if not re.fullmatch(r"\d+\.\d", version) or float(version) < MIN_VERSION:
            error = (
                f"400::Unsupported API version. Only versions {MIN_VERSION} and later are supported"
            )
            return _array([{"successful": False, "error": error}], 400)
        if len(request.body) > MAX_BODY:
            return Response(413, b"Maximum Request Size Exceeded")
        try:
            parsed = json.loads(request.body or b"[]")
        except ValueError:
            return _array([{"successful": False, "error": "400::Invalid JSON"}], 400)
        messages = parsed if isinstance(parsed, list) else [parsed]
        token, ctx = self._caller(request)
        cookies = cookies_of(request)
        out: list[Msg] = []
        headers: dict[str, str] = {}
        for msg in messages:
            if not isinstance(msg, dict):
                continue
            if msg.get("channel") == "/meta/handshake":
                reply = self._handshake(msg, token, ctx)
                if reply.get("successful"):
                    cookie = self.sessions.get(reply["clientId"])
                    if cookie is not None:
                        headers["Set-Cookie"] = f"{COOKIE_NAME}={cookie.cookie}; Path=/"
                out.append(reply)
            else:
                out.extend(self._client_message(msg, token, ctx, cookies))
        return _array(out, headers=headers)

    def _caller(self, request: Request) -> tuple[str | None, CallContext | None]:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or not token.strip():
            return None, None
        if self.check is None:  # the server checked it already (auth=True routes)
            return token.strip(), request.ctx
        return token.strip(), self.check(token.strip())

    def _handshake(self, msg: Msg, token: str | None, ctx: CallContext | None) -> Msg:
        if ctx is None:
            reason = (
                "401::Authentication invalid" if token else "401::Request requires authentication"
            )
            return _reply(
                msg,
                False,
                error="403::Handshake denied",
                ext={"sfdc": {"failureReason": reason}},
                advice={"reconnect": "none"},
            )
        state = self.sessions.create(ctx.user_id)
        return {
            **_reply(msg, True),
            "clientId": state.client_id,
            "version": "1.0",
            "minimumVersion": "1.0",
            "supportedConnectionTypes": ["long-polling"],
            "ext": {"replay": True, "payload.format": True},
        }

    def _client_message(
        self, msg: Msg, token: str | None, ctx: CallContext | None, cookies: dict[str, str]
    ) -> list[Msg]:
        channel = msg.get("channel")
        if ctx is None:
            error = (
                "401::Authentication invalid" if token else "401::Request requires authentication"
            )
            return [_reply(msg, False, error=error, advice={"reconnect": "none", "interval": 0})]
        state = self.sessions.get(msg.get("clientId"))
        if state is None:
            if channel == "/meta/disconnect":
                return [_reply(msg, True)]
            return [
                _reply(
                    msg,
                    False,
                    error="403::Unknown client",
                    advice={"interval": 0, "reconnect": "handshake"},
                )
            ]
        if self.sessions.options.require_cookie and COOKIE_NAME not in cookies:
            error = (
                f"400::Client {state.client_id} has established a session, "
                f"but no {COOKIE_NAME} cookie present"
            )
            return [_reply(msg, False, error=error)]
        try:
            if channel == "/meta/connect":
                return self._connect(msg, state)
            if channel == "/meta/subscribe":
                return [self._subscribe(msg, state)]
            if channel == "/meta/unsubscribe":
                with state.lock:
                    state.subscriptions.pop(str(msg.get("subscription")), None)
                self.sessions.poke(state)
                return [_reply(msg, True, subscription=msg.get("subscription"))]
            if channel == "/meta/disconnect":
                self.sessions.remove(state.client_id)
                return [_reply(msg, True)]
            return [_reply(msg, False, error=f"403::Publish denied to {channel}")]
        finally:
            self.sessions.touch(state)

    def _subscribe(self, msg: Msg, state: ClientState) -> Msg:
        channel = msg.get("subscription")
        if not isinstance(channel, str) or not self.bus.channel_exists(channel):
            error = f"400::The channel you requested to subscribe to doesn't exist {channel}"
            return _reply(msg, False, error=error, subscription=channel)
        ext = msg.get("ext")
        replay_ext = ext.get("replay") if isinstance(ext, dict) else None
        # No replay value for the channel means -1: only new events.
        raw = replay_ext.get(channel, -1) if isinstance(replay_ext, dict) else -1
        try:
            replay = int(raw)
            cursor = self.bus.start_after(replay)
        except (TypeError, ValueError, ReplayIdInvalid):
            error = (
                f"400::The replayId {raw} you provided was invalid. Please provide a valid "
                "ID, -2 to replay all events, or -1 to replay only new events."
            )
            return _reply(msg, False, error=error, subscription=channel)
        with state.lock:
            state.subscriptions[channel] = cursor
        self.sessions.poke(state)
        return _reply(msg, True, subscription=channel)

    def _connect(self, msg: Msg, state: ClientState) -> list[Msg]:
        kind = msg.get("connectionType", "long-polling")
        if kind != "long-polling":
            return [_reply(msg, False, error=f"400::Invalid connection type {kind}")]
        options = self.sessions.options
        advice = msg.get("advice")
        advice = advice if isinstance(advice, dict) else {}
        wait = options.long_poll_seconds
        if isinstance(advice.get("timeout"), int | float):
            # CometD servers honour a shorter client timeout (0 on the first connect).
            wait = min(wait, max(0.0, advice["timeout"] / 1000))
        state.polls += 1
        if state.polls == 1:
            wait = 0.0
        # A newer connect from the same client supersedes a held one (answered at once).
        state.poll_gen += 1
        gen = state.poll_gen
        state.in_poll += 1
        self.bus.wake()  # lets observers (control plane, tests) see the poll is held
        try:
            events = self._wait_for_events(state, gen, time.monotonic() + wait)
        finally:
            state.in_poll -= 1
        if state.dropped:
            return [
                _reply(
                    msg,
                    False,
                    error="403::Unknown client",
                    advice={"interval": 0, "reconnect": "handshake"},
                )
            ]
        reply = _reply(
            msg,
            True,
            advice={
                "interval": 0,
                "reconnect": "retry",
                "timeout": int(options.long_poll_seconds * 1000),
            },
        )
        return [*events, reply]

    def _wait_for_events(self, state: ClientState, gen: int, deadline: float) -> list[Msg]:
        while True:
            seen, version = self.bus.latest_replay_id(), state.version
            events = self._drain(state)
            remaining = deadline - time.monotonic()
            if events or remaining <= 0 or state.dropped or state.poll_gen != gen:
                return events

            # Wake on a new event, a subscription change, a drop or a newer connect.
            def woke(latest: int, seen: int = seen, version: int = version) -> bool:
                return (
                    latest > seen
                    or state.version != version
                    or state.dropped
                    or state.poll_gen != gen
                )

            self.bus.wait_until(woke, remaining)

    def _drain(self, state: ClientState) -> list[Msg]:
        """Events for every subscription after its cursor; advances the cursors."""
        budget = self.sessions.options.max_events_per_connect
        out: list[Msg] = []
        with state.lock:
            for channel, cursor in list(state.subscriptions.items()):
                if budget <= 0:
                    break  # the rest waits for the next connect; cursors keep the place
                data, next_cursor = self.bus.read_batch(channel, cursor, budget)
                state.subscriptions[channel] = next_cursor
                out += [{"channel": channel, "data": d} for d in data]
                budget -= len(data)
        return out
