"""The single change envelope every source produces, and typed source positions.

Values inside `before`/`after` are canonical Python values, whatever the source:
int, float, Decimal, str, bool, datetime.date, timezone-aware datetime.datetime (UTC),
dict/list for JSON, bytes, or None. Connectors convert at their boundary so the diff
code never sees a source-specific shape.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Op(enum.StrEnum):
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"
    SNAPSHOT = "snapshot"


@dataclass(frozen=True, order=True)
class PgPosition:
    """A PostgreSQL WAL position: the commit LSN of a transaction and a row's index in it."""

    lsn: int
    seq: int = 0
    kind: str = field(default="pg", compare=False)

    @staticmethod
    def parse_lsn(text: str) -> int:
        hi, lo = text.split("/")
        return (int(hi, 16) << 32) | int(lo, 16)

    @staticmethod
    def format_lsn(lsn: int) -> str:
        return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": "pg", "lsn": self.format_lsn(self.lsn), "seq": self.seq}


@dataclass(frozen=True, order=True)
class BinlogPosition:
    """A MySQL/MariaDB binlog position: file, the end position of the event, row index in it."""

    file: str
    pos: int
    seq: int = 0
    kind: str = field(default="binlog", compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "binlog", "file": self.file, "pos": self.pos, "seq": self.seq}


@dataclass(frozen=True, order=True)
class ReplayPosition:
    """A Salesforce CDC replay id."""

    replay_id: int
    kind: str = field(default="replay", compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "replay", "replay_id": self.replay_id}


@dataclass(frozen=True, order=True)
class WatermarkPosition:
    """A polling cursor: the watermark value (ISO text or number) and the keys seen at it."""

    watermark: str
    seen_keys: tuple[str, ...] = ()
    kind: str = field(default="watermark", compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "watermark", "watermark": self.watermark, "seen_keys": list(self.seen_keys)}


Position = PgPosition | BinlogPosition | ReplayPosition | WatermarkPosition


def position_from_json(data: dict[str, Any] | str | None) -> Position | None:
    if data is None:
        return None
    if isinstance(data, str):
        data = json.loads(data)
        assert isinstance(data, dict)
    kind = data["kind"]
    if kind == "pg":
        return PgPosition(PgPosition.parse_lsn(data["lsn"]), int(data.get("seq", 0)))
    if kind == "binlog":
        return BinlogPosition(str(data["file"]), int(data["pos"]), int(data.get("seq", 0)))
    if kind == "replay":
        return ReplayPosition(int(data["replay_id"]))
    if kind == "watermark":
        return WatermarkPosition(str(data["watermark"]), tuple(data.get("seen_keys", ())))
    raise ValueError(f"unknown position kind {kind!r}")


@dataclass(frozen=True)
class Change:
    """One captured row change.

    `table` is the source table as the connector names it (e.g. `public.customers`,
    `shop.customers`). `key` holds the source primary-key columns. `origin` is the name of
    the sync whose write produced this change (recognised by origin tagging), or None for
    a change made by anyone else.
    """

    op: Op
    table: str
    key: dict[str, Any]
    after: dict[str, Any] | None
    before: dict[str, Any] | None
    position: Position
    commit_ts: datetime | None
    detected_at: datetime
    origin: str | None = None
    changed_fields: tuple[str, ...] | None = None
