"""The change event bus on disk: an append-only JSON-lines log plus a small settings file.

Lines are `{"t": "e", ...}` (one event) or `{"t": "h", "horizon": H, "latest": L}` (events
up to H are gone; ids handed out reach L). Appends are cheap; the file is rewritten only
when dead (expired) lines outnumber live ones, so restarts stay fast.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncswim_lib.sandbox.salesforce.contract import dumps_exact, loads_exact

LOG_NAME = "cdc_events.jsonl"
SETTINGS_NAME = "cdc_settings.json"


@dataclass(frozen=True)
class StoredEvent:
    replay_id: int
    entity: str
    channel: str
    commit_ms: int
    data: dict[str, Any]  # {"schema", "payload", "event": {"replayId"}}

    def line(self) -> dict[str, Any]:
        return {
            "t": "e",
            "replayId": self.replay_id,
            "entity": self.entity,
            "channel": self.channel,
            "ms": self.commit_ms,
            "data": self.data,
        }


@dataclass
class LoadedLog:
    events: list[StoredEvent] = field(default_factory=list)
    horizon: int = 0
    latest: int = 0
    settings: dict[str, Any] | None = None


class EventLog:
    """Not thread-safe by itself: the bus calls it under its own lock."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self._lines = 0

    def load(self) -> LoadedLog:
        out = LoadedLog()
        settings = self.dir / SETTINGS_NAME
        if settings.exists():
            out.settings = json.loads(settings.read_text(encoding="utf-8"))
        log = self.dir / LOG_NAME
        if not log.exists():
            return out
        for raw in log.read_text(encoding="utf-8").splitlines():
            try:
                line = loads_exact(raw)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash mid-append: never acknowledged
            self._lines += 1
            if line["t"] == "h":
                out.horizon = max(out.horizon, int(line["horizon"]))
                out.latest = max(out.latest, int(line["latest"]))
                out.events = [e for e in out.events if e.replay_id > out.horizon]
            elif int(line["replayId"]) > max(out.horizon, out.latest):
                ev = StoredEvent(
                    int(line["replayId"]),
                    line["entity"],
                    line["channel"],
                    int(line["ms"]),
                    line["data"],
                )
                out.events.append(ev)
                out.latest = ev.replay_id
        return out

    def append(self, line: dict[str, Any]) -> None:
        with (self.dir / LOG_NAME).open("a", encoding="utf-8") as f:
            f.write(dumps_exact(line) + "\n")
        self._lines += 1

    def horizon(self, horizon: int, latest: int, live: list[StoredEvent]) -> None:
        self.append({"t": "h", "horizon": horizon, "latest": latest})
        # Expired events stay in the file until it is mostly dead lines, then rewrite it.
        if self._lines > 2 * len(live) + 1000:
            self.compact(horizon, latest, live)

    def compact(self, horizon: int, latest: int, live: list[StoredEvent]) -> None:
        tmp = self.dir / (LOG_NAME + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            f.write(json.dumps({"t": "h", "horizon": horizon, "latest": latest}) + "\n")
            for e in live:
                f.write(dumps_exact(e.line()) + "\n")
        os.replace(tmp, self.dir / LOG_NAME)
        self._lines = len(live) + 1

    def save_settings(self, settings: dict[str, Any]) -> None:
        tmp = self.dir / (SETTINGS_NAME + ".tmp")
        tmp.write_text(json.dumps(settings), encoding="utf-8")
        os.replace(tmp, self.dir / SETTINGS_NAME)
