"""Conflict rules: what wins when both sides changed one field to different values.

Pure functions, no I/O. Values handed to a rule are in side-a form (side b's value is
translated first), so `max`, `min` and custom rules compare like with like.

Clocks: a source commit time is an interval, not an instant. PostgreSQL gives the commit
timestamp to the microsecond; the MariaDB/MySQL binlog gives the event time in whole
seconds; Salesforce CDC gives milliseconds. Two changes whose intervals overlap cannot be
ordered: that is a tie, settled by the declared tie-break and recorded as a tie.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from syncswim_lib.config.models import ConflictRule
from syncswim_lib.envelope import (
    BinlogPosition,
    PgPosition,
    Position,
    ReplayPosition,
    WatermarkPosition,
)
from syncswim_lib.errors import RecordError

Letter = Literal["a", "b"]
Outcome = Literal["a", "b", "value", "manual"]

MICROSECOND = timedelta(microseconds=1)
SECOND = timedelta(seconds=1)
MILLISECOND = timedelta(milliseconds=1)


@dataclass(frozen=True)
class Clock:
    """When a side's change happened: somewhere in [at, at + precision)."""

    at: datetime | None
    precision: timedelta = MICROSECOND

    @staticmethod
    def of_position(at: datetime | None, position: Position | None) -> Clock:
        """The precision the source really has, known from its position type."""
        if isinstance(position, BinlogPosition):
            return Clock(at, SECOND)
        if isinstance(position, ReplayPosition):
            return Clock(at, MILLISECOND)
        if isinstance(position, PgPosition):
            return Clock(at, MICROSECOND)
        if isinstance(position, WatermarkPosition):
            # a polled change's time is its row's modification column, whose precision the
            # change does not carry (a MySQL datetime, Salesforce's SystemModstamp: whole
            # seconds): edits closer than a second are a tie for the tie-break, not a guess
            return Clock(at, SECOND)
        return Clock(at, MICROSECOND)


def newer(a: Clock, b: Clock) -> Letter | None:
    """Which side changed later, or None when the two times cannot be ordered."""
    if a.at is None or b.at is None:
        return None
    if a.at >= b.at + b.precision:
        return "a"
    if b.at >= a.at + a.precision:
        return "b"
    return None


@dataclass(frozen=True)
class FieldConflict:
    field: str  # side-a column
    a: Any  # side a's value now
    b: Any  # side b's value now, translated into side-a form
    base: Any  # the last agreed value, side-a form (None when never agreed)
    clock_a: Clock
    clock_b: Clock


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    value: Any  # side-a form: the value both sides get (None for manual)
    rule: str
    tie: bool = False


def _by_clock(c: FieldConflict, tie_break: Letter, rule: str) -> Decision:
    winner = newer(c.clock_a, c.clock_b)
    tie = winner is None
    side = tie_break if winner is None else winner
    return Decision(side, c.a if side == "a" else c.b, rule, tie)


def _extreme(c: FieldConflict, rule: ConflictRule, tie_break: Letter) -> Decision:
    if c.a is None or c.b is None:
        side: Letter = "a" if c.b is None else "b"
        return Decision(side, c.a if side == "a" else c.b, rule.label)
    try:
        a_wins = c.a > c.b if rule.kind == "max" else c.a < c.b
    except TypeError as exc:
        raise RecordError(
            f"field {c.field}: rule {rule.kind} cannot compare {c.a!r} with {c.b!r}"
        ) from exc
    side = "a" if a_wins else "b"
    return Decision(side, c.a if a_wins else c.b, rule.label)


def _custom(c: FieldConflict, rule: ConflictRule) -> Decision:
    assert rule.func is not None
    try:
        value = rule.func(c.a, c.b, c.base, c.clock_a.at, c.clock_b.at)
    except Exception as exc:  # a user's rule: any failure parks the record, the run goes on
        raise RecordError(
            f"field {c.field}: conflict rule {rule.rule} raised {type(exc).__name__}: {exc}"
        ) from exc
    return Decision("value", value, rule.label)


def decide(rule: ConflictRule, c: FieldConflict, tie_break: Letter) -> Decision:
    """The decision for one conflicting field under `rule`."""
    if rule.kind == "prefer":
        side: Letter = rule.prefer or tie_break
        return Decision(side, c.a if side == "a" else c.b, rule.label)
    if rule.kind == "newest":
        return _by_clock(c, tie_break, rule.label)
    if rule.kind in ("max", "min"):
        return _extreme(c, rule, tie_break)
    if rule.kind == "non_null":
        if c.a is None or c.b is None:
            side = "a" if c.b is None else "b"
            return Decision(side, c.a if side == "a" else c.b, rule.label)
        return _by_clock(c, tie_break, rule.label)
    if rule.kind == "manual":
        return Decision("manual", None, rule.label)
    if rule.kind == "rule":
        return _custom(c, rule)
    raise RecordError(f"field {c.field}: unknown conflict rule {rule.kind!r}")
