"""Capture: peek the slot, decode pgoutput, build Change envelopes of whole transactions.

Positions. A change is `PgPosition(commit_lsn, seq)`, `seq` counting the row messages of
its transaction from 1; an update that changes the primary key is emitted as a delete and
an insert, and the insert takes the next number (later changes of that transaction move
up by one for each such split among the tables captured). A batch ends at
`PgPosition(end_lsn, 0)` of its last commit, `end_lsn` being the end of the commit record:
every change of that transaction sorts before it and every later transaction (whose
commit record starts at or after `end_lsn`) sorts after it. `confirm` advances the slot to
the position's LSN: the server drops a transaction whose commit record starts before that
LSN, so confirming a batch's end releases the whole batch, and confirming one change's
position keeps its transaction.

Origin tagging. `apply` writes its row into `syncswim.applied` first in each of its
transactions; every change of a transaction whose first row change is such an insert
carries that row's `origin`, and marker rows themselves are never emitted. With
`skip_origin`, the rows of that origin's transactions are counted per table, not decoded:
the marker comes first, so the rest of the transaction is known to be an echo before its
rows arrive (decoding our own writes was most of a capture's cost after an apply).

TRUNCATE (the publication publishes it) is reported in `CaptureBatch.truncates` with the
position it takes among its transaction's rows; what becomes of it is the entity's
`on_truncate` (pipeline/truncate.py).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from syncswim_lib.connectors.base import CaptureBatch
from syncswim_lib.connectors.postgres import pgoutput
from syncswim_lib.connectors.postgres.connection import (
    MARKER_QUALIFIED,
    qualify,
    raise_translated,
)
from syncswim_lib.connectors.postgres.types import (
    _FROM_TEXT,
    OID_FAMILY,
    _bool,
    text_converter,
)
from syncswim_lib.envelope import Change, Op, PgPosition, Position
from syncswim_lib.errors import ConfigError, FatalError, PositionLost
from syncswim_lib.values import TableInfo, TypeFamily

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

_PEEK = (
    "SELECT data FROM pg_logical_slot_peek_binary_changes("
    "%s, NULL, %s, 'proto_version', '1', 'publication_names', %s)"
)
# Rows a peek returns besides the changes themselves: BEGIN, COMMIT, RELATION, markers.
_PEEK_OVERHEAD = 64

RowMessage = pgoutput.Insert | pgoutput.Update | pgoutput.Delete


@dataclass(frozen=True)
class RelationPlan:
    """How to read the rows of one relation: its name, column families and primary key.

    `converters` turn each column's text into its canonical value (`types.text_converter`,
    which keeps the text of a value Python cannot hold); `direct` are the same functions
    without that guard, None where the text is the value, for the rows none of whose
    values fails (nearly all of them: see `_row`). `shared` marks the columns whose value
    an update's old row may take from its new row when both sent the same text (every
    family but JSON, whose values are mutable)."""

    table: str
    names: tuple[str, ...]
    families: tuple[TypeFamily, ...]
    primary_key: tuple[str, ...]
    converters: tuple[Callable[[str], Any], ...] = ()
    identity: frozenset[str] = frozenset()  # replica identity columns
    direct: tuple[Callable[[str], Any] | None, ...] = ()
    shared: tuple[bool, ...] = ()


Resolver = Callable[[pgoutput.Relation], RelationPlan]


def _direct(family: TypeFamily) -> Callable[[str], Any] | None:
    """`text_converter(family)` without its guard; None for the families read as text."""
    convert = _FROM_TEXT.get(family)
    if convert is _bool:
        return "t".__eq__  # the same answer for every text, without a Python call
    return convert


def plan_for(relation: pgoutput.Relation, info: TableInfo | None) -> RelationPlan:
    """Families by built-in OID, else by the catalog's description, else text."""
    families: list[TypeFamily] = []
    for col in relation.columns:
        family = OID_FAMILY.get(col.type_oid)
        if family is None:
            described = info.column(col.name) if info else None
            family = described.family if described else "other"
        families.append(family)
    return RelationPlan(
        relation.qualified_name,
        tuple(c.name for c in relation.columns),
        tuple(families),
        info.primary_key if info else (),
        tuple(text_converter(f) for f in families),
        frozenset(c.name for c in relation.columns if c.is_key),
        tuple(_direct(f) for f in families),
        tuple(f != "json" for f in families),
    )


_UNCHANGED = pgoutput.UNCHANGED


def _row(plan: RelationPlan, values: tuple[pgoutput.Value, ...]) -> dict[str, Any]:
    """A tuple's values by column name; an UNCHANGED (TOASTed, not resent) value is left
    out. The unguarded converters first: a text one of them cannot read (`infinity`, a
    BC date) makes the row go again through the guarded ones, which keep such a text."""
    try:
        return {
            name: value if value is None or convert is None else convert(value)  # type: ignore[arg-type]
            for name, convert, value in zip(plan.names, plan.direct, values, strict=False)
            if value is not _UNCHANGED
        }
    except (ValueError, ArithmeticError):
        return _guarded_row(plan, values)


def _guarded_row(plan: RelationPlan, values: tuple[pgoutput.Value, ...]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, convert, value in zip(plan.names, plan.converters, values, strict=False):
        if value is None:
            row[name] = None
        elif isinstance(value, str):
            row[name] = convert(value)
        # else UNCHANGED: a TOASTed value the server did not resend
    return row


def _old_row_of_update(
    plan: RelationPlan,
    old: tuple[pgoutput.Value, ...],
    new: tuple[pgoutput.Value, ...],
    after: dict[str, Any],
) -> dict[str, Any]:
    """The whole old row of an update, as `_row` reads it: a value whose text is the new
    row's text is the new row's value (the same conversion of the same text), so only the
    columns the update changed are converted again."""
    row: dict[str, Any] = {}
    try:
        for name, convert, value, then, share in zip(
            plan.names, plan.direct, old, new, plan.shared, strict=False
        ):
            if value is None:
                row[name] = None
            elif value is _UNCHANGED:
                continue
            elif share and value == then and name in after:
                row[name] = after[name]
            else:
                row[name] = value if convert is None else convert(value)  # type: ignore[arg-type]
    except (ValueError, ArithmeticError):
        return _guarded_row(plan, old)
    return row


@dataclass
class _Txn:
    commit_lsn: int
    rows: list[tuple[int, RelationPlan, RowMessage]]
    skip: bool  # every change is at or before `since`: do not decode its tuples
    count: int = 0
    echo: bool = False  # a transaction of `skip_origin`: rows counted, not decoded
    truncates: list[tuple[str, int]] = field(default_factory=list)  # (table, seq)
    echoes: dict[int, int] = field(default_factory=dict)  # relid -> rows


class _Assembler:
    def __init__(
        self,
        since: PgPosition | None,
        tables: frozenset[str],
        max_changes: int,
        resolve: Resolver,
        skip_origin: str | None = None,
    ) -> None:
        self.since = since
        self.tables = tables
        self.max_changes = max_changes
        self.resolve = resolve
        self.skip_origin = skip_origin
        self.relations: dict[int, RelationPlan] = {}
        self.changes: list[Change] = []
        self.echoes: dict[str, int] = {}
        self.truncates: list[tuple[str, Position]] = []
        self.end: PgPosition | None = since
        self.full = False
        self.detected_at = datetime.now(UTC)

    def feed(self, messages: Iterable[bytes]) -> None:
        txn: _Txn | None = None
        for data in messages:
            tag = data[:1]
            if txn is not None and (txn.skip or txn.echo) and tag in (b"I", b"U", b"D"):
                if txn.echo:
                    relid = _RELID.unpack_from(data, 1)[0]
                    txn.echoes[relid] = txn.echoes.get(relid, 0) + 1
                continue
            msg = pgoutput.decode(data)
            if isinstance(msg, pgoutput.Begin):
                skip = self.since is not None and msg.final_lsn < self.since.lsn
                txn = _Txn(msg.final_lsn, [], skip)
            elif isinstance(msg, pgoutput.Relation):
                self.relations[msg.relid] = self.resolve(msg)
            elif isinstance(msg, pgoutput.Insert | pgoutput.Update | pgoutput.Delete):
                if txn is None:
                    raise pgoutput.DecodeError("row change outside a transaction")
                txn.count += 1
                plan = self.relations[msg.relid]
                txn.rows.append((txn.count, plan, msg))
                if txn.count == 1 and self.skip_origin is not None:
                    txn.echo = _origin(plan, msg) == self.skip_origin
            elif isinstance(msg, pgoutput.Truncate):
                self._truncate(msg, txn)
            elif isinstance(msg, pgoutput.Commit):
                if txn is not None:
                    self._commit(txn, msg)
                txn = None
                if len(self.changes) + sum(self.echoes.values()) >= self.max_changes:
                    self.full = True
                    return

    def _truncate(self, msg: pgoutput.Truncate, txn: _Txn | None) -> None:
        if txn is None or txn.skip:
            return
        for relid in msg.relids:
            plan = self.relations.get(relid)
            if plan is not None and plan.table in self.tables:
                # a place among the transaction's rows: those before it were removed by
                # it, those after it were written after it
                txn.count += 1
                txn.truncates.append((plan.table, txn.count))

    def _commit(self, txn: _Txn, commit: pgoutput.Commit) -> None:
        end = PgPosition(commit.end_lsn, 0)
        if self.since is not None and end <= self.since:
            return
        self.end = end
        for table, seq in txn.truncates:
            self.truncates.append((table, PgPosition(txn.commit_lsn, seq)))
        if txn.echo:
            for relid, n in txn.echoes.items():
                table = self.relations[relid].table
                if table in self.tables and table != MARKER_QUALIFIED:
                    self.echoes[table] = self.echoes.get(table, 0) + n
            return
        origin = _origin(*txn.rows[0][1:]) if txn.rows else None
        shift = 0  # one more for every update split in two so far
        for seq, plan, msg in txn.rows:
            if plan.table not in self.tables or plan.table == MARKER_QUALIFIED:
                continue
            position = PgPosition(txn.commit_lsn, seq + shift)
            change = self._change(plan, msg, position, commit.commit_ts, origin)
            parts = _split_new_key(change, plan.primary_key)
            shift += len(parts) - 1
            for part in parts:
                assert isinstance(part.position, PgPosition)
                if self.since is None or part.position > self.since:
                    self.changes.append(part)

    @staticmethod
    def _old_row(
        plan: RelationPlan, values: tuple[pgoutput.Value, ...], key_only: bool
    ) -> dict[str, Any]:
        row = _row(plan, values)
        # without REPLICA IDENTITY FULL the other columns come as NULLs that mean "unknown"
        return {k: v for k, v in row.items() if k in plan.identity} if key_only else row

    def _change(
        self,
        plan: RelationPlan,
        msg: RowMessage,
        position: PgPosition,
        commit_ts: datetime,
        origin: str | None,
    ) -> Change:
        before: dict[str, Any] | None = None
        after: dict[str, Any] | None = None
        changed: tuple[str, ...] | None = None
        if isinstance(msg, pgoutput.Insert):
            op, after = Op.INSERT, _row(plan, msg.new)
        elif isinstance(msg, pgoutput.Update):
            op, after = Op.UPDATE, _row(plan, msg.new)
            if msg.old is not None:
                if msg.old_is_key_only:
                    before = self._old_row(plan, msg.old, True)
                else:
                    before = _old_row_of_update(plan, msg.old, msg.new, after)
                # an unchanged TOASTed value is not resent: the old row has it
                if _UNCHANGED in msg.new:
                    for name, value in zip(plan.names, msg.new, strict=False):
                        if value is _UNCHANGED and name in before:
                            after[name] = before[name]
                if not msg.old_is_key_only:
                    changed = tuple(
                        [n for n in plan.names if n in after and before.get(n) != after[n]]
                    )
        else:
            op, before = Op.DELETE, self._old_row(plan, msg.old, msg.old_is_key_only)
        row = after if after is not None else before or {}
        return Change(
            op=op,
            table=plan.table,
            key={k: row.get(k) for k in plan.primary_key},
            after=after,
            before=before,
            position=position,
            commit_ts=commit_ts,
            detected_at=self.detected_at,
            origin=origin,
            changed_fields=changed,
        )


_RELID = struct.Struct("!I")  # a row message's relation id, after its tag byte


def _origin(plan: RelationPlan, msg: RowMessage) -> str | None:
    """The origin a transaction's first row tags it with (an insert of a marker row)."""
    if plan.table == MARKER_QUALIFIED and isinstance(msg, pgoutput.Insert):
        origin = _row(plan, msg.new).get("origin")
        return None if origin is None else str(origin)
    return None


def _split_new_key(change: Change, primary_key: tuple[str, ...]) -> list[Change]:
    """An update that gives the row another primary key is, to whoever follows records by
    key, the old record gone and a new one: a delete and an insert (as the binlog
    connector reports it). The insert takes the next `seq`."""
    before, after = change.before, change.after
    if change.op != Op.UPDATE or before is None or after is None or not primary_key:
        return [change]
    if all(before.get(k) == after.get(k) for k in primary_key):
        return [change]
    assert isinstance(change.position, PgPosition)
    later = PgPosition(change.position.lsn, change.position.seq + 1)
    return [
        replace(change, op=Op.DELETE, key={k: before.get(k) for k in primary_key}, after=None,
                changed_fields=None),
        replace(change, op=Op.INSERT, before=None, position=later, changed_fields=None),
    ]  # fmt: skip


def assemble(
    messages: Iterable[bytes],
    since: PgPosition | None,
    tables: Sequence[str],
    max_changes: int,
    resolve: Resolver,
    skip_origin: str | None = None,
) -> tuple[CaptureBatch, bool]:
    """Changes of the whole transactions in `messages`; True when `max_changes` was reached
    (the echoes of `skip_origin` count towards it)."""
    tables_ = frozenset(qualify(t) for t in tables)
    asm = _Assembler(since, tables_, max_changes, resolve, skip_origin)
    asm.feed(messages)
    batch = CaptureBatch(tuple(asm.changes), asm.end, asm.echoes, tuple(asm.truncates))
    return batch, asm.full


PlanCache = dict[tuple[pgoutput.Relation, bool], RelationPlan]


def capture_changes(
    conn: psycopg.Connection,
    slot: str,
    tables: Sequence[str],
    since: Position | None,
    max_changes: int,
    describe: Callable[[str], TableInfo],
    endpoint: str,
    plans: PlanCache | None = None,
    skip_origin: str | None = None,
) -> CaptureBatch:
    """`plans` keeps the plans of relations across calls: a peek resends every relation,
    and describing it again each time would cost more than the peek. A relation whose
    columns change arrives as a new Relation message and is described again."""
    import psycopg

    if since is not None and not isinstance(since, PgPosition):
        raise ConfigError(f"a PostgreSQL capture cannot resume from a {since.kind} position")
    wanted = {qualify(t) for t in tables}
    cache: PlanCache = {} if plans is None else plans

    def resolve(relation: pgoutput.Relation) -> RelationPlan:
        name = relation.qualified_name
        key = (relation, name in wanted)
        if key not in cache:
            info = None
            if name in wanted:
                try:
                    info = describe(name)
                except ConfigError as exc:
                    raise FatalError(
                        f"slot {slot} in endpoint {endpoint} holds changes of {name}, "
                        f"which can no longer be described: {exc}"
                    ) from exc
            if len(cache) > 1000:
                cache.clear()
            cache[key] = plan_for(relation, info)
        return cache[key]

    limit = max(max_changes, 1) + _PEEK_OVERHEAD
    while True:
        try:
            rows = conn.execute(_PEEK, (slot, limit, slot)).fetchall()
        except psycopg.errors.ObjectNotInPrerequisiteState as exc:
            if "invalidated" not in str(exc):
                raise_translated(exc, f"peeking replication slot {slot} in endpoint {endpoint}")
            # the server dropped WAL the slot still needed (max_slot_wal_keep_size)
            raise PositionLost(
                f"replication slot {slot} in endpoint {endpoint} was invalidated by the "
                f"server: changes made since it fell behind may not be captured ({exc})"
            ) from exc
        except psycopg.errors.UndefinedObject as exc:
            # a missing slot or publication: setup was not run, or someone dropped it
            raise FatalError(
                f"replication slot {slot} (or publication {slot}) does not exist in "
                f"endpoint {endpoint}: {exc}; run the sync's setup again and reconcile"
            ) from exc
        except psycopg.Error as exc:
            raise_translated(exc, f"peeking replication slot {slot} in endpoint {endpoint}")
        batch, full = assemble(
            (bytes(r[0]) for r in rows), since, tables, max(max_changes, 1), resolve, skip_origin
        )
        # fewer rows than asked: the slot had nothing more; else the old transactions
        # before `since` (not yet confirmed) may have used the limit up: ask for more
        if full or len(rows) < limit:
            return batch
        limit *= 4
