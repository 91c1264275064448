"""The continuous reader of a Salesforce endpoint for `run: streaming`: one CometD session
held by a thread, its change events buffered until capture takes them.

- The thread handshakes, subscribes to `/data/ChangeEvents` after the journal's replay id
  and long-polls `/meta/connect`: the org holds each connect until events arrive or its
  timeout (110 s), so an event is in the buffer a round trip after it is published.
- `capture` turns the buffered events after the stored replay id into the CaptureBatch
  the micro-batch capture makes (capture.py's `Collector`: the same echo counting by
  `changeOrigin`, whole transactions by `transactionKey`, a gap event raising
  PositionLost so the entities are reconciled); `confirm` (after the journal committed)
  drops what the journal now holds from the buffer.
- Errors: the org's advice is followed by the client (`403::Unknown client`: handshake
  again and subscribe after the last event seen). Anything else (the org unreachable,
  a 5xx) ends the session; a new one, after a backoff, subscribes after the replay id
  last journaled with the buffer emptied, so nothing is missed and what comes twice is
  left out by replay id. A token the org refuses (`401::`, `403::Handshake denied`) is
  replaced by logging in again, once; refused again, capture raises it (the run fails
  and is relaunched). A stored replay id the org no longer retains makes capture raise
  PositionLost once; the session starts again from the position capture goes on from.
- Objects without Change Data Capture cannot be streamed (kind.py refuses the stream for
  them, docs/streaming.md).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from syncswim_lib.connectors.base import CaptureBatch
from syncswim_lib.connectors.salesforce.capture import (
    ALL_CHANNEL,
    Collector,
    lost_replay,
    replay_of,
)
from syncswim_lib.connectors.salesforce.cometd_client import (
    REPLAY_ALL,
    ChangeEvent,
    CometdAuthError,
    CometdClient,
    CometdSubscribeError,
    ReplayIdInvalidError,
)
from syncswim_lib.connectors.salesforce.fallback import Mixed
from syncswim_lib.envelope import Position, ReplayPosition
from syncswim_lib.errors import FatalError, PositionLost

if TYPE_CHECKING:
    from simple_salesforce.api import Salesforce

    from syncswim_lib.connectors.salesforce.connector import SalesforceConnector

log = logging.getLogger(__name__)

BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
JOIN_S = 5.0  # how long close waits for the thread (its connect is answered at once)


class EventBuffer:
    """The events the thread received, with their arrival times, in stream order."""

    def __init__(self) -> None:
        self.events: deque[tuple[ChangeEvent, datetime]] = deque()
        self.lock = threading.Lock()
        # set on every arrival (and failure): the streaming loop waits on one event
        self.wake: threading.Event | None = None

    def signal(self) -> None:
        if self.wake is not None:
            self.wake.set()

    def __len__(self) -> int:
        with self.lock:
            return len(self.events)

    def changes(self) -> int:
        """The records the events held name (a batch closes on a count of changes);
        events of objects the sync does not read and our own echoes included."""
        with self.lock:
            return sum(len(e.header.get("recordIds") or ()) or 1 for e, _ in self.events)


class SalesforceStream:
    """`start()` the thread, `capture()`/`confirm()` as the connector would, `close()`."""

    def __init__(
        self,
        conn: SalesforceConnector,
        sync: str,
        tables: Sequence[str],
        since: Position | None,
    ) -> None:
        self.conn, self.sync, self.endpoint = conn, sync, conn.endpoint
        self.tables = tuple(tables)
        self.buffer = EventBuffer()
        start = Mixed.decode(since).replay
        self._journaled = REPLAY_ALL if start is None else start  # resume a session here
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: CometdClient | None = None
        self._error: BaseException | None = None  # the thread's fatal error
        self._lost: PositionLost | None = None  # the journaled replay id expired
        self._resume = threading.Event()  # capture moved on after a lost position
        self._login: Salesforce | None = None  # our own login after a refused token
        self._relogged = False  # since the last connect the org answered
        self.sessions = 0  # CometD sessions subscribed (a reconnect shows as more)
        self.connected = threading.Event()

    # -- the connector's side -----------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._main, name=f"sf-cometd-{self.endpoint}-{self.sync}", daemon=True
        )
        self._thread.start()

    def capture(
        self,
        sync: str,
        tables: Sequence[str],
        since: Position | None,
        max_changes: int,
        skip_origin: str | None = None,
    ) -> CaptureBatch:
        old = Mixed.decode(since)
        if old.cursors is not None:
            # objects polled before this run: read once more by the micro-batch capture,
            # which then stores the plain replay id (fallback.py); the buffer holds
            # the same events and leaves them out by replay id
            objects = {name: self.conn.describe_object(name) for name in tables}
            return self.conn.fallback.capture(sync, objects, since, max_changes, skip_origin)
        start = replay_of(None if old.replay is None else ReplayPosition(old.replay))
        objects = {name: self.conn.describe_object(name) for name in tables}
        with self.buffer.lock:
            if self._error is not None:
                raise self._error
            if self._lost is not None:
                lost, self._lost = self._lost, None
                raise lost
            if self._awaiting:
                # capture goes on from `since` (the org's newest event): so does the session
                self._journaled = start
                self.buffer.events.clear()
                self._awaiting = False
                self._resume.set()
            # `since` is the journal's position: what it covers is journaled (or, after a
            # lost position, will be reconciled)
            while self.buffer.events and self.buffer.events[0][0].replay_id <= start:
                self.buffer.events.popleft()
            events = list(self.buffer.events)
        collector = Collector(objects, max(max_changes, 1), skip_origin)
        for event, arrived in events:
            if not collector.take(event, arrived):
                break
        return collector.batch(since)

    def confirm(self, sync: str, position: Position) -> None:
        """The journal holds everything up to `position`: forget those events."""
        replay = Mixed.decode(position).replay
        if replay is None:
            return
        with self.buffer.lock:
            self._journaled = max(self._journaled, replay)
            while self.buffer.events and self.buffer.events[0][0].replay_id <= replay:
                self.buffer.events.popleft()

    def close(self) -> None:
        self._stop.set()
        self._resume.set()
        client = self._client
        if client is not None:
            client.interrupt()  # the held connect is answered now
        if self._thread is not None:
            self._thread.join(timeout=JOIN_S)
        if self._login is not None:
            self._login.session.close()

    # -- the thread -----------------------------------------------------------------------

    _awaiting = False  # PositionLost raised: waiting for capture's new position

    def _main(self) -> None:
        failures = 0
        while not self._stop.is_set():
            if self._awaiting:
                self._resume.wait()
                continue
            try:
                self._session()
                failures = 0
            except ReplayIdInvalidError as exc:
                with self.buffer.lock:
                    self._lost = lost_replay(self._journaled, self.endpoint, exc)
                    self._awaiting = True
                    self._resume.clear()
                self.buffer.signal()
            except CometdAuthError as exc:
                if self._stop.is_set():
                    return
                problem = "after a new login" if self._relogged else self._relogin()
                if problem is not None:
                    self._fail(
                        FatalError(
                            f"Salesforce endpoint {self.endpoint} refused the change stream's "
                            f"token ({problem}): {exc}"
                        )
                    )
                    return
            except CometdSubscribeError as exc:
                self._fail(
                    FatalError(f"Salesforce endpoint {self.endpoint} refused {ALL_CHANNEL}: {exc}")
                )
                return
            except Exception as exc:  # the org unreachable, a 5xx, a dropped connection
                if self._stop.is_set():
                    return
                wait = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                failures += 1
                log.warning(
                    "change stream of Salesforce endpoint %s (sync %s): %s; reconnecting in %s s",
                    self.endpoint,
                    self.sync,
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                    wait,
                )
                self._stop.wait(wait)

    def _session(self) -> None:
        """One CometD session, from the replay id last journaled, until stopped."""
        url, token = self._credentials()
        client = CometdClient(
            url,
            token,
            api_version=self.conn.settings.api_version,
            ca_path=self.conn.settings.ca_bundle,
            poll_timeout=None,  # the org holds each connect up to its timeout
            max_retries=0,  # a failed call ends the session: _main backs off
        )
        self._client = client
        try:
            with self.buffer.lock:
                self.buffer.events.clear()  # what was not journaled comes again
                start = self._journaled
            if self._stop.is_set():
                return
            client.subscribe(ALL_CHANNEL, start)
            self.sessions += 1
            while not self._stop.is_set():
                events = client.poll()
                self.connected.set()
                self._relogged = False
                if not events:
                    continue
                arrived = datetime.now(UTC)
                with self.buffer.lock:
                    last = self.buffer.events[-1][0].replay_id if self.buffer.events else start
                    for event in events:
                        if event.replay_id > last:
                            self.buffer.events.append((event, arrived))
                            last = event.replay_id
                self.buffer.signal()
        finally:
            self.connected.clear()
            self._client = None
            client.close()

    def _credentials(self) -> tuple[str, Callable[[], str]]:
        if self._login is not None:
            login = self._login
            return f"https://{login.sf_instance}", lambda: str(login.session_id)
        api = self.conn.api  # the connector's login (its REST calls may refresh the token)
        return api.instance_url, api.token

    def _relogin(self) -> str | None:
        """A new login of our own (the connector's client belongs to the run's other
        thread); what went wrong, or None."""
        from syncswim_lib.connectors.salesforce.auth import open_client

        self._relogged = True
        try:
            login = open_client(self.conn.settings)
        except Exception as exc:
            return f"logging in again failed: {exc}"
        if self._login is not None:
            self._login.session.close()
        self._login = login
        log.warning(
            "change stream of Salesforce endpoint %s: token refused, logged in again",
            self.endpoint,
        )
        return None

    def _fail(self, error: BaseException) -> None:
        with self.buffer.lock:
            self._error = error
        self.buffer.signal()
