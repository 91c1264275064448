"""CometD client sessions of the emulator: who is handshaken, subscribed where, from where.

Kept apart from the HTTP handling so the control plane can drop clients (→ `403::Unknown
client`) and tests can tune timeouts without touching the protocol code.
"""

from __future__ import annotations

import secrets
import string
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from syncswim_lib.sandbox.salesforce.cdc import ChangeEventBus
from syncswim_lib.sandbox.salesforce.contract import CallContext, Request

if TYPE_CHECKING:
    from syncswim_lib.sandbox.salesforce.org import Org

COOKIE_NAME = "BAYEUX_BROWSER"  # the cookie Salesforce sets on handshake [OBS]
_ALPHABET = string.ascii_lowercase + string.digits


@dataclass
class StreamingOptions:
    """Knobs with Salesforce's values as defaults (spec §4.6)."""

    long_poll_seconds: float = 110.0  # a quiet connect is answered after this long
    reconnect_window_seconds: float = 40.0  # a client silent longer than this is expired
    require_cookie: bool = True  # later calls must carry the handshake's cookie
    max_events_per_connect: int = 200


@dataclass
class ClientState:
    client_id: str
    user_id: str
    cookie: str
    subscriptions: dict[str, int] = field(default_factory=dict)  # channel → cursor
    version: int = 0  # bumped when subscriptions change: a held long poll re-reads
    polls: int = 0  # connects seen; the first one is answered at once
    poll_gen: int = 0  # the newest connect; older held connects give way to it
    in_poll: int = 0  # connects being held right now (the client is not idle)
    dropped: bool = False
    last_active: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Sessions:
    def __init__(self, bus: ChangeEventBus, options: StreamingOptions | None = None) -> None:
        self.bus = bus
        self.options = options or StreamingOptions()
        self._clients: dict[str, ClientState] = {}
        self._lock = threading.Lock()

    def create(self, user_id: str) -> ClientState:
        client_id = "".join(secrets.choice(_ALPHABET) for _ in range(28))
        state = ClientState(client_id, user_id, secrets.token_hex(12))
        with self._lock:
            self._expire_idle_locked()
            self._clients[client_id] = state
        return state

    def get(self, client_id: Any) -> ClientState | None:
        """The live client, or None when unknown, dropped or silent too long."""
        with self._lock:
            self._expire_idle_locked()
            return self._clients.get(client_id) if isinstance(client_id, str) else None

    def remove(self, client_id: str) -> None:
        with self._lock:
            state = self._clients.pop(client_id, None)
        if state is not None:
            self._poke(state, dropped=True)

    def drop(self, client_id: str | None = None) -> int:
        """Control hook: forget one client (or all); their next call gets 403::Unknown client."""
        with self._lock:
            ids = [client_id] if client_id else list(self._clients)
            gone = [self._clients.pop(i) for i in ids if i in self._clients]
        for state in gone:
            self._poke(state, dropped=True)
        return len(gone)

    def client_ids(self) -> list[str]:
        with self._lock:
            return list(self._clients)

    def touch(self, state: ClientState) -> None:
        state.last_active = time.monotonic()

    def poke(self, state: ClientState) -> None:
        """Wake a held long poll of this client so it re-reads its subscriptions."""
        self._poke(state, dropped=False)

    def _poke(self, state: ClientState, dropped: bool) -> None:
        state.dropped = state.dropped or dropped
        state.version += 1
        self.bus.wake()

    def _expire_idle_locked(self) -> None:
        limit = time.monotonic() - self.options.reconnect_window_seconds
        for cid, state in list(self._clients.items()):
            if not state.in_poll and state.last_active < limit:
                del self._clients[cid]
                state.dropped = True


class TokenCheck(Protocol):
    """The core's token registry (auth.Auth): the caller behind a token, None if invalid."""

    def context(
        self, token: str, origin: str = "", version: str = "62.0"
    ) -> CallContext | None: ...


_SESSIONS: weakref.WeakKeyDictionary[ChangeEventBus, Sessions] = weakref.WeakKeyDictionary()


def sessions(bus: ChangeEventBus) -> Sessions:
    """The CometD sessions serving this bus (control hooks: drop clients, tune timeouts)."""
    if bus not in _SESSIONS:
        _SESSIONS[bus] = Sessions(bus)
    return _SESSIONS[bus]


def catalog(org: Org) -> tuple[Callable[[], list[str]], Callable[[str], set[str]]]:
    """Object names, and per object the fields a change event never carries: formula
    fields and compound wrappers (the event nests the parts itself)."""

    def objects() -> list[str]:
        return [o.name for o in list(org.schema.objects.values())]

    def excluded(name: str) -> set[str]:
        obj = org.schema.get(name)
        return set(obj.derived_names) if obj else set()

    return objects, excluded


def cookies_of(request: Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in request.headers.get("cookie", "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            out[name] = value
    return out
