"""A pure decoder of pgoutput logical replication messages, protocol version 1.

Each row of `pg_logical_slot_peek_binary_changes(..., 'proto_version', '1', ...)` holds one
message; `decode` turns its bytes into one of the frozen dataclasses below. Column values
stay in PostgreSQL's text output form (or None / UNCHANGED); `types.py` turns them into
canonical Python values. Layouts: PostgreSQL docs, "Logical Replication Message Formats".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# PostgreSQL timestamps count microseconds from 2000-01-01 00:00 UTC.
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class _Unchanged:
    """A TOASTed value the update did not change, so the server did not send it ('u')."""

    _instance: _Unchanged | None = None

    def __new__(cls) -> _Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = _Unchanged()

# One column of a tuple: None for NULL, the text form, or UNCHANGED.
Value = str | None | _Unchanged


class DecodeError(ValueError):
    """The bytes are not a pgoutput v1 message this decoder understands."""


@dataclass(frozen=True)
class Begin:
    final_lsn: int  # the LSN of the transaction's commit record
    commit_ts: datetime
    xid: int


@dataclass(frozen=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int  # the end of the commit record: everything up to here is this transaction
    commit_ts: datetime


@dataclass(frozen=True)
class Origin:
    commit_lsn: int
    name: str


@dataclass(frozen=True)
class RelationColumn:
    name: str
    type_oid: int
    type_modifier: int
    is_key: bool  # part of the replica identity (every column under REPLICA IDENTITY FULL)


@dataclass(frozen=True)
class Relation:
    relid: int
    namespace: str
    name: str
    replica_identity: str  # 'd' default, 'n' nothing, 'f' full, 'i' index
    columns: tuple[RelationColumn, ...]

    @property
    def qualified_name(self) -> str:
        return f"{self.namespace}.{self.name}"


@dataclass(frozen=True)
class TypeMessage:
    oid: int
    namespace: str
    name: str


@dataclass(frozen=True)
class Insert:
    relid: int
    new: tuple[Value, ...]


@dataclass(frozen=True)
class Update:
    relid: int
    new: tuple[Value, ...]
    old: tuple[Value, ...] | None  # the whole old row ('O') or its key columns ('K')
    old_is_key_only: bool


@dataclass(frozen=True)
class Delete:
    relid: int
    old: tuple[Value, ...]
    old_is_key_only: bool


@dataclass(frozen=True)
class Truncate:
    options: int  # bit 1: CASCADE, bit 2: RESTART IDENTITY
    relids: tuple[int, ...]


@dataclass(frozen=True)
class LogicalMessage:
    transactional: bool
    lsn: int
    prefix: str
    content: bytes


Message = (
    Begin
    | Commit
    | Origin
    | Relation
    | TypeMessage
    | Insert
    | Update
    | Delete
    | Truncate
    | LogicalMessage
)


def pg_timestamp(micros: int) -> datetime:
    return PG_EPOCH + timedelta(microseconds=micros)


_STRUCTS = {fmt: struct.Struct(fmt) for fmt in ("!b", "!B", "!h", "!i", "!I", "!q", "!Q")}
_I16 = _STRUCTS["!h"]
_I32 = _STRUCTS["!i"]
_T, _N, _U = ord("t"), ord("n"), ord("u")


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, fmt: str) -> int:
        unpacker = _STRUCTS[fmt]
        try:
            (value,) = unpacker.unpack_from(self.data, self.pos)
        except struct.error:
            raise DecodeError(
                f"message ends early at byte {self.pos} (wanted {unpacker.size} more)"
            ) from None
        self.pos += unpacker.size
        return int(value)

    def int8(self) -> int:
        return self._take("!b")

    def byte(self) -> str:
        return chr(self._take("!B"))

    def int16(self) -> int:
        return self._take("!h")

    def int32(self) -> int:
        return self._take("!i")

    def uint32(self) -> int:
        return self._take("!I")

    def int64(self) -> int:
        return self._take("!q")

    def uint64(self) -> int:
        return self._take("!Q")

    def string(self) -> str:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise DecodeError(f"unterminated string at byte {self.pos}")
        text = self.data[self.pos : end].decode("utf-8")
        self.pos = end + 1
        return text

    def raw(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DecodeError(f"message ends early at byte {self.pos} (wanted {n} more)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def tuple_data(self) -> tuple[Value, ...]:
        # the hot loop of capture: one call per row, kept free of method calls
        data, pos, size = self.data, self.pos, len(self.data)
        values: list[Value] = []
        append, length_at = values.append, _I32.unpack_from
        try:
            (count,) = _I16.unpack_from(data, pos)
            pos += 2
            for _ in range(count):
                kind = data[pos]
                if kind == _T:
                    (length,) = length_at(data, pos + 1)
                    pos += 5
                    end = pos + length
                    if length < 0 or end > size:
                        raise DecodeError(f"message ends early at byte {pos}")
                    append(data[pos:end].decode("utf-8"))
                    pos = end
                elif kind == _N:
                    append(None)
                    pos += 1
                elif kind == _U:
                    append(UNCHANGED)
                    pos += 1
                else:
                    # 'b' (binary) only exists from protocol version 2 with binary on
                    raise DecodeError(f"unknown tuple column kind {chr(kind)!r}")
        except (struct.error, IndexError):
            raise DecodeError(f"message ends early at byte {pos}") from None
        self.pos = pos
        return tuple(values)


def _relation(r: _Reader) -> Relation:
    relid = r.uint32()
    namespace = r.string() or "pg_catalog"  # the protocol sends "" for pg_catalog
    name = r.string()
    identity = r.byte()
    columns = []
    for _ in range(r.int16()):
        flags = r.int8()
        col_name = r.string()
        type_oid = r.uint32()
        typmod = r.int32()
        columns.append(RelationColumn(col_name, type_oid, typmod, bool(flags & 1)))
    return Relation(relid, namespace, name, identity, tuple(columns))


_RELID_KIND = struct.Struct("!IB")


def _row_head(r: _Reader) -> tuple[int, str]:
    """A row message's relation id and the kind byte after it, in one unpack."""
    try:
        relid, kind = _RELID_KIND.unpack_from(r.data, r.pos)
    except struct.error:
        raise DecodeError(f"message ends early at byte {r.pos} (wanted 5 more)") from None
    r.pos += 5
    return relid, chr(kind)


def _update(r: _Reader) -> Update:
    relid, kind = _row_head(r)
    old: tuple[Value, ...] | None = None
    key_only = False
    if kind in ("K", "O"):
        key_only = kind == "K"
        old = r.tuple_data()
        kind = r.byte()
    if kind != "N":
        raise DecodeError(f"update message: expected 'N' before the new tuple, got {kind!r}")
    return Update(relid, r.tuple_data(), old, key_only)


def _delete(r: _Reader) -> Delete:
    relid, kind = _row_head(r)
    if kind not in ("K", "O"):
        raise DecodeError(f"delete message: expected 'K' or 'O', got {kind!r}")
    return Delete(relid, r.tuple_data(), kind == "K")


def _insert(r: _Reader) -> Insert:
    relid, kind = _row_head(r)
    if kind != "N":
        raise DecodeError(f"insert message: expected 'N', got {kind!r}")
    return Insert(relid, r.tuple_data())


def decode(data: bytes) -> Message:
    """One pgoutput v1 message from its bytes; DecodeError on anything else."""
    if not data:
        raise DecodeError("empty message")
    r = _Reader(bytes(data))
    tag = chr(r.data[0])
    r.pos = 1
    msg: Message
    # row messages first: they are most of a stream
    if tag == "U":
        msg = _update(r)
    elif tag == "I":
        msg = _insert(r)
    elif tag == "D":
        msg = _delete(r)
    elif tag == "B":
        msg = Begin(r.uint64(), pg_timestamp(r.int64()), r.uint32())
    elif tag == "C":
        msg = Commit(r.int8(), r.uint64(), r.uint64(), pg_timestamp(r.int64()))
    elif tag == "O":
        msg = Origin(r.uint64(), r.string())
    elif tag == "R":
        msg = _relation(r)
    elif tag == "Y":
        msg = TypeMessage(r.uint32(), r.string() or "pg_catalog", r.string())
    elif tag == "T":
        count = r.int32()
        options = r.int8()
        msg = Truncate(options, tuple(r.uint32() for _ in range(count)))
    elif tag == "M":
        transactional = bool(r.int8())
        lsn = r.uint64()
        prefix = r.string()
        msg = LogicalMessage(transactional, lsn, prefix, r.raw(r.int32()))
    else:
        raise DecodeError(f"unknown pgoutput message tag {tag!r}")
    if r.pos != len(r.data):
        raise DecodeError(f"{len(r.data) - r.pos} trailing bytes after a {tag!r} message")
    return msg
