"""What the property machines (test_merge_properties.py, test_relation_properties.py) need
of one side's database, and a Salesforce org standing in for it.

A machine makes a person's edits on a side and reads its rows back in its own column
names (`id`, `code`, `app_id`, its data columns). A MemoryDatabase is such a side as it
is. `SalesforceSide` is the emulator's org seen the same way: edits go through the
control plane as a person's edits in the UI (the human user, no client origin, so the
sync takes them as real changes), reads through the unmodified simple-salesforce client
(`parse_float=Decimal`, as the connector reads: a currency is an exact decimal).

The org's clock is set to the machine's clock (frozen) before each edit, so the commit
time of the change event is the time the machine's model gives the edit, at the
millisecond precision a replay-id position carries. `Id` is made by the org: it cannot be
set or changed, which the machines ask about through `ids_change`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from syncswim_lib.connectors.base import ApplyBatch
from syncswim_lib.connectors.memory import ManualClock
from syncswim_lib.connectors.memory.database import EPOCH

if TYPE_CHECKING:
    from syncswim_lib.sandbox.salesforce.emulator import Emulator

MILLISECOND = timedelta(milliseconds=1)
ApplyHook = Callable[[ApplyBatch], None]


class Side(Protocol):
    """A side's database as a machine edits and reads it (a MemoryDatabase is one)."""

    apply_hook: ApplyHook | None  # called inside an apply there (None: not offered)

    def insert(self, table: str, row: Mapping[str, Any]) -> dict[str, Any]: ...

    def update(self, table: str, key: Any, values: Mapping[str, Any]) -> dict[str, Any] | None: ...

    def delete(self, table: str, key: Any) -> dict[str, Any] | None: ...

    def rows(self, table: str) -> list[dict[str, Any]]: ...

    def truncate(self, when: datetime) -> datetime: ...


def _int_or_none(value: Any) -> int | None:
    """An external-id text field holding the other side's integer key."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None  # a garbled key: equal to no record's


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Field:
    """A machine column and the Salesforce field that holds it."""

    name: str  # the Salesforce field
    to_sf: Callable[[Any], Any] = lambda v: v
    from_sf: Callable[[Any], Any] = lambda v: v


def int_key(name: str) -> Field:
    """A text field (an external id) holding an integer key of the other side."""
    return Field(name, _text_or_none, _int_or_none)


@dataclass(frozen=True)
class ObjectMap:
    """A machine table as a Salesforce object: its columns (other than `id`, which is
    the record's `Id`) and the fields holding them."""

    sobject: str
    columns: Mapping[str, Field] = field(default_factory=dict)


class SalesforceSide:
    """The emulator's org as a machine's side (see the module docstring)."""

    precision = MILLISECOND
    # the connector reads a record before it writes it (compare-and-set) and writes in
    # the next call: an edit "during the apply" has no place to go between the two that
    # a test could reach without hooking the server, so none is offered
    apply_hook: ApplyHook | None = None

    def __init__(self, emu: Emulator, clock: ManualClock, tables: Mapping[str, ObjectMap]) -> None:
        self.emu = emu
        self.clock = clock
        from simple_salesforce.api import Salesforce

        self.tables = dict(tables)
        self.reader = Salesforce(
            instance_url=emu.url,
            session_id=emu.token("human"),
            session=emu.session(),
            parse_float=Decimal,
        )

    def close(self) -> None:
        self.reader.session.close()

    def truncate(self, when: datetime) -> datetime:
        return when - (when - EPOCH) % MILLISECOND

    def _now(self) -> None:
        """The org's clock at the machine's: the edit's change event carries that time."""
        self.emu.clock.set(self.clock.now, frozen=True)

    def _fields(self, table: str, row: Mapping[str, Any]) -> dict[str, Any]:
        m = self.tables[table]
        if "id" in row:
            raise ValueError(f"{m.sobject}.Id is made by the org: it cannot be set or changed")
        return {m.columns[c].name: m.columns[c].to_sf(v) for c, v in row.items()}

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        found = [r for r in self._query(table, f"WHERE Id = '{key}'")]
        return found[0] if found else None

    def insert(self, table: str, row: Mapping[str, Any]) -> dict[str, Any]:
        self._now()
        fields = {k: v for k, v in self._fields(table, row).items() if v is not None}
        made = self.emu.control.human_create(self.tables[table].sobject, fields)
        got = self.get(table, made)
        assert got is not None, f"{made} is not there after its create"
        return got

    def update(self, table: str, key: Any, values: Mapping[str, Any]) -> dict[str, Any] | None:
        self._now()
        self.emu.control.human_update(
            self.tables[table].sobject, str(key), self._fields(table, values)
        )
        return self.get(table, str(key))

    def delete(self, table: str, key: Any) -> dict[str, Any] | None:
        """The record, and what the org's cascades take with it."""
        before = self.get(table, str(key))
        if before is not None:
            self._now()
            self.emu.control.human_delete(self.tables[table].sobject, str(key))
        return before

    def rows(self, table: str) -> list[dict[str, Any]]:
        return self._query(table, "")

    def _query(self, table: str, where: str) -> list[dict[str, Any]]:
        m = self.tables[table]
        names = ", ".join(["Id", *(f.name for f in m.columns.values())])
        found = self.reader.query_all(f"SELECT {names} FROM {m.sobject} {where}".strip())
        return [
            {"id": r["Id"], **{c: f.from_sf(r[f.name]) for c, f in m.columns.items()}}
            for r in found["records"]
        ]
