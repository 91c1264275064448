"""A small synchronous CometD (Bayeux long-polling) client for Salesforce Change Data Capture.

Speaks the protocol as Salesforce runs it: handshake, subscribe with the `replay`
extension (-1 new only, -2 everything retained, or a stored replay id), a connect loop
that yields events, reconnect/re-handshake per the server's advice (re-subscribing from
the last replay id seen on each channel, so nothing is missed), disconnect.

Built on `requests` so it runs in a plain background thread: pass a `threading.Event` as
the stop flag; the loop ends after the current long poll (ask the server for a short poll
with `poll_timeout` when the thread must stop promptly).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests

from syncswim_lib.errors import ConfigError, FatalError, RetriableError, SyncSwimError

REPLAY_NEW = -1  # only events published after the subscription
REPLAY_ALL = -2  # every event still retained, then new ones


class CometdError(SyncSwimError):
    """Base of this client's errors; `error` holds the Bayeux "NNN::text" when there is one."""

    def __init__(self, message: str, error: str | None = None) -> None:
        super().__init__(message)
        self.error = error


class CometdAuthError(CometdError, FatalError):
    """The token was refused (401/403): refresh credentials, then start again."""


class CometdTransportError(CometdError, RetriableError):
    """The server could not be reached or failed (5xx) after the allowed retries."""


class CometdSubscribeError(CometdError, ConfigError):
    """A subscription was refused, e.g. the channel does not exist or CDC is off for it."""


class ReplayIdInvalidError(CometdSubscribeError):
    """The stored replay id is outside the retention window: replay all (-2) and re-snapshot."""

    def __init__(self, channel: str, replay_id: int, error: str) -> None:
        super().__init__(f"replay id {replay_id} for {channel} is no longer valid", error)
        self.channel = channel
        self.replay_id = replay_id


@dataclass(frozen=True)
class ChangeEvent:
    channel: str
    replay_id: int
    payload: Mapping[str, Any]  # ChangeEventHeader plus the body fields
    schema: str | None = None

    @property
    def header(self) -> Mapping[str, Any]:
        header: Mapping[str, Any] = self.payload.get("ChangeEventHeader", {})
        return header

    @property
    def fields(self) -> dict[str, Any]:
        return {k: v for k, v in self.payload.items() if k != "ChangeEventHeader"}


def _code(error: str | None) -> int:
    """Bayeux errors are "code:args:message"; the leading number is the code."""
    head = (error or "").split(":", 1)[0]
    return int(head) if head.isdigit() else 0


class CometdClient:
    def __init__(
        self,
        instance_url: str,
        token: str | Callable[[], str],
        *,
        api_version: str = "62.0",
        ca_path: str | None = None,
        poll_timeout: float | None = None,
        max_retries: int = 5,
        retry_delay: float = 0.5,
        session: requests.Session | None = None,
    ) -> None:
        self.url = f"{instance_url.rstrip('/')}/cometd/{api_version}"
        self._token = token
        # a token source that can log in again (client.TokenSource): a refused session is
        # renewed once, then the handshake is tried again
        self._renew: Callable[[str], str | None] | None = getattr(token, "renew", None)
        self._sent_with: str | None = None  # the token of the last call
        self._poll_timeout = poll_timeout
        self._max_retries = max_retries
        self._retry_delay = retry_delay
        self._session = session or requests.Session()
        self._session.trust_env = False  # a machine-wide CA bundle must not override ca_path
        if ca_path is not None:
            self._session.verify = ca_path
        self._ids = itertools.count(1)
        self._client_id: str | None = None
        self._fresh = True  # the first connect after a handshake must not be held
        self._interval = 0.0
        self.replay: dict[str, int] = {}  # channel → replay id to resume after
        self._stop_flag = threading.Event()

    # -- public API ----------------------------------------------------------------
    @property
    def client_id(self) -> str | None:
        return self._client_id

    def handshake(self, renewed: bool = False) -> str:
        msg = {
            "channel": "/meta/handshake",
            "version": "1.0",
            "minimumVersion": "1.0",
            "supportedConnectionTypes": ["long-polling"],
        }
        reply = self._meta(msg)
        if not reply.get("successful"):
            error = reply.get("error")
            reason = (reply.get("ext") or {}).get("sfdc", {}).get("failureReason")
            text = (
                f"handshake refused: {error} ({reason})"
                if reason
                else f"handshake refused: {error}"
            )
            if _code(error) in (401, 403):
                if not renewed and self._renewed():
                    return self.handshake(renewed=True)
                raise CometdAuthError(text, error)
            raise CometdError(text, error)
        self._client_id = str(reply["clientId"])
        self._fresh = True
        return self._client_id

    def subscribe(self, channel: str, replay_id: int = REPLAY_NEW) -> None:
        """Subscribe (handshaking first if needed); events after `replay_id` follow."""
        if self._client_id is None:
            self.handshake()
        self._subscribe(channel, replay_id)
        self.replay[channel] = replay_id

    def unsubscribe(self, channel: str) -> None:
        self.replay.pop(channel, None)
        if self._client_id is not None:
            self._meta(
                {
                    "channel": "/meta/unsubscribe",
                    "clientId": self._client_id,
                    "subscription": channel,
                }
            )

    def poll(self) -> list[ChangeEvent]:
        """One `/meta/connect`: the events it brought (possibly none), after following the
        server's advice (re-handshake and re-subscribe when the session was lost)."""
        if self._client_id is None:
            self._rehandshake()
        msg: dict[str, Any] = {
            "channel": "/meta/connect",
            "clientId": self._client_id,
            "connectionType": "long-polling",
        }
        if self._fresh or self._poll_timeout is not None:
            msg["advice"] = {"timeout": 0 if self._fresh else int((self._poll_timeout or 0) * 1000)}
        self._fresh = False
        replies = self._send([msg])
        events = [self._event(m) for m in replies if _is_event(m)]
        for event in events:
            self.replay[event.channel] = event.replay_id
        reply = next((m for m in replies if m.get("channel") == "/meta/connect"), {})
        advice = reply.get("advice") or {}
        self._interval = float(advice.get("interval", 0)) / 1000
        if not reply.get("successful"):
            error = reply.get("error")
            if advice.get("reconnect") == "none" or _code(error) == 401:
                if _code(error) != 401 or not self._renewed():
                    raise CometdAuthError(f"connect refused: {error}", error)
                # renewed: the next poll shakes hands again and resumes after the last event
                self._client_id = None
                return events
            # 403::Unknown client (expired, dropped, server restarted): start a new session.
            self._client_id = None
            if advice.get("reconnect") != "handshake" and _code(error) != 403:
                raise CometdError(f"connect failed: {error}", error)
        return events

    def events(self, stop: threading.Event | None = None) -> Iterator[ChangeEvent]:
        """Yield events until `stop` (or `self.stop()`) is set."""
        if stop is not None:
            self._stop_flag = stop  # retry back-offs wait on it too, so stopping is prompt
        while not self._stop_flag.is_set():
            yield from self.poll()
            if self._interval > 0:
                self._stop_flag.wait(self._interval)

    def stop(self) -> None:
        self._stop_flag.set()

    def interrupt(self) -> None:
        """From another thread: stop, and end the session so that a connect the server
        holds is answered now instead of at its timeout (up to 110 s). The disconnect
        goes over a connection of its own, with the session's cookies."""
        self._stop_flag.set()
        client_id = self._client_id
        if client_id is None:
            return
        token = self._token() if callable(self._token) else self._token
        with requests.Session() as session:
            session.trust_env = False
            session.verify = self._session.verify
            session.cookies.update(self._session.cookies)
            # best effort: a server that is gone has no connect to answer
            with contextlib.suppress(requests.RequestException):
                session.post(
                    self.url,
                    json=[{"channel": "/meta/disconnect", "clientId": client_id, "id": "stop"}],
                    timeout=(5.0, 5.0),
                    headers={"Authorization": f"Bearer {token}"},
                )

    def disconnect(self) -> None:
        if self._client_id is not None:
            client_id, self._client_id = self._client_id, None
            # Best effort: the server forgets idle clients on its own anyway.
            with contextlib.suppress(CometdError):
                self._send([{"channel": "/meta/disconnect", "clientId": client_id}])

    def close(self) -> None:
        self.disconnect()
        self._session.close()

    def __enter__(self) -> CometdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- protocol ------------------------------------------------------------------
    def _subscribe(self, channel: str, replay_id: int) -> None:
        msg = {
            "channel": "/meta/subscribe",
            "clientId": self._client_id,
            "subscription": channel,
            "ext": {"replay": {channel: replay_id}},
        }
        reply = self._meta(msg)
        if reply.get("successful"):
            return
        error = str(reply.get("error"))
        if _code(error) == 400 and "replayId" in error:
            raise ReplayIdInvalidError(channel, replay_id, error)
        if _code(error) in (401, 403):
            raise CometdAuthError(f"subscribe to {channel} refused: {error}", error)
        raise CometdSubscribeError(f"subscribe to {channel} refused: {error}", error)

    def _rehandshake(self) -> None:
        # CometD drops subscriptions with the session: resume each after its last event.
        self.handshake()
        for channel, replay_id in list(self.replay.items()):
            self._subscribe(channel, replay_id)

    def _renewed(self) -> bool:
        """Whether a new token replaced the refused one."""
        stale = self._sent_with
        if self._renew is None or stale is None:
            return False
        fresh = self._renew(stale)
        return fresh is not None and fresh != stale

    def _meta(self, msg: dict[str, Any]) -> dict[str, Any]:
        replies = self._send([msg])
        return next((m for m in replies if m.get("channel") == msg["channel"]), {})

    def _send(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for msg in messages:
            msg["id"] = str(next(self._ids))
        token = self._token() if callable(self._token) else self._token
        self._sent_with = token
        wait = 110.0 if self._poll_timeout is None else self._poll_timeout
        renewed = False  # an HTTP 401 (rather than a Bayeux error) is renewed once too
        for attempt in itertools.count():
            try:
                response = self._session.post(
                    self.url,
                    json=messages,
                    timeout=(10.0, wait + 30.0),
                    headers={"Authorization": f"Bearer {token}"},
                )
            except requests.RequestException as exc:
                failure: str = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 401 and not renewed and self._renewed():
                    renewed = True
                    token = self._token() if callable(self._token) else self._token
                    self._sent_with = token
                    continue
                if response.status_code < 500:
                    return self._decode(response)
                failure = f"HTTP {response.status_code}"
            if attempt >= self._max_retries or self._stop_flag.wait(self._retry_delay * 2**attempt):
                raise CometdTransportError(f"CometD call to {self.url} failed: {failure}")
        raise AssertionError("unreachable")

    def _decode(self, response: requests.Response) -> list[dict[str, Any]]:
        try:
            body = response.json(parse_float=Decimal)  # exact numbers, as REST reads them
        except ValueError:
            body = None
        if response.status_code in (401, 403):
            raise CometdAuthError(f"HTTP {response.status_code} from {self.url}: {body}")
        if not isinstance(body, list):
            raise CometdError(f"HTTP {response.status_code} from {self.url}: {response.text[:200]}")
        if response.status_code >= 400:
            error = next((m.get("error") for m in body if isinstance(m, dict)), None)
            raise CometdError(f"HTTP {response.status_code} from {self.url}: {error}", error)
        return [m for m in body if isinstance(m, dict)]

    @staticmethod
    def _event(msg: Mapping[str, Any]) -> ChangeEvent:
        data = msg["data"]
        return ChangeEvent(
            str(msg["channel"]),
            int(data["event"]["replayId"]),
            data.get("payload", {}),
            data.get("schema"),
        )


def _is_event(msg: Mapping[str, Any]) -> bool:
    channel = msg.get("channel")
    return isinstance(channel, str) and not channel.startswith("/meta/") and "data" in msg
