"""Helpers of the conformance suite: apply batches on `items`, a concurrent writer,
draining capture as the pipeline does, and replaying changes onto rows."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from syncswim_lib.connectors.base import ApplyBatch, CaptureBatch, Connector
from syncswim_lib.envelope import Change, Op, Position
from syncswim_lib.values.arrow import REF
from tests.connectors.conformance_backends import Backend, Statement

SYNC = "conf"
ITEM_COLUMNS = ("id", "ext", "name", "n")
INSERT = "INSERT INTO items (id, ext, name, n) VALUES (%s, %s, %s, %s)"


def order(position: Position | None) -> tuple[Any, ...]:
    """A position as a sortable tuple (the Position union does not compare across kinds)."""
    assert position is not None
    return (type(position).__name__, *dataclasses.astuple(position))


def drain(
    connector: Connector,
    tables: Sequence[str],
    since: Position,
    max_changes: int = 1000,
    confirm: bool = True,
) -> list[CaptureBatch]:
    """Capture until the stream is empty, as the pipeline does; every non-empty batch."""
    batches: list[CaptureBatch] = []
    position = since
    for _ in range(10_000):
        batch = connector.capture(SYNC, tables, position, max_changes)
        if not batch.changes:
            assert batch.end_position is None or order(batch.end_position) >= order(position)
            return batches
        batches.append(batch)
        assert batch.end_position is not None
        position = batch.end_position
        if confirm:
            connector.confirm(SYNC, position)
    raise AssertionError("capture never ran dry")


def changes_of(batches: Sequence[CaptureBatch]) -> list[Change]:
    return [c for b in batches for c in b.changes]


def item_rows(backend: Backend) -> dict[int, dict[str, Any]]:
    rows = backend.rows("SELECT id, ext, name, n FROM items")
    return {r[0]: dict(zip(ITEM_COLUMNS, r, strict=True)) for r in rows}


def replay(base: dict[int, dict[str, Any]], changes: Sequence[Change]) -> dict[int, dict[str, Any]]:
    """The rows after applying `changes` (full images, by key) on top of `base`."""
    state = dict(base)
    for c in changes:
        if c.op == Op.DELETE:
            state.pop(c.key["id"], None)
        else:
            assert c.after is not None
            state[c.key["id"]] = {k: c.after.get(k) for k in ITEM_COLUMNS}
    return state


def assert_same_rows(got: dict[int, dict[str, Any]], want: dict[int, dict[str, Any]]) -> None:
    lost = sorted(set(want) - set(got))
    ghosts = sorted(set(got) - set(want))
    stale = sorted(k for k in set(got) & set(want) if got[k] != want[k])
    assert (lost, ghosts, stale) == ([], [], []), "(lost, not deleted, stale values)"


# --- apply batches ------------------------------------------------------------------------

ITEM_TYPES = {"id": pa.int64(), "ext": pa.string(), "name": pa.string(), "n": pa.int64()}


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> pa.Table:
    schema = pa.schema([(REF, pa.string())] + [(c, ITEM_TYPES[c]) for c in columns])
    return pa.Table.from_pylist([dict(r) for r in rows], schema=schema)


def items_batch(
    backend: Backend,
    batch_id: str,
    origin: str,
    *,
    inserts: Sequence[dict[str, Any]] = (),
    updates: Sequence[dict[str, Any]] = (),
    deletes: Sequence[dict[str, Any]] = (),
    insert_match: tuple[str, ...] = (),
) -> ApplyBatch:
    """An ApplyBatch on `items`; rows are dicts with `__ref` and item columns."""

    def columns(rows: Sequence[dict[str, Any]], default: Sequence[str]) -> list[str]:
        names = dict.fromkeys(c for r in rows for c in r if c != REF)
        return list(names) or list(default)

    return ApplyBatch(
        batch_id=batch_id,
        origin=origin,
        table=backend.table("items"),
        key_columns=("id",),
        inserts=_table(inserts, columns(inserts, ["name"])),
        updates=_table(updates, columns(updates, ["id"])),
        deletes=_table(deletes, ["id"]),
        insert_match=insert_match,
    )


def wait_until(what: str, condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.01)


class Writer(threading.Thread):
    """Another application writing `items` on its own connection until told to stop.

    Transactions of one to three statements (inserts, updates of recent rows, deletes);
    `done` counts committed transactions, `inserted` the ids of committed inserts.
    """

    def __init__(self, backend: Backend, first_id: int) -> None:
        super().__init__(daemon=True)
        self.backend = backend
        self.next_id = first_id
        self.done = 0
        self.inserted: list[int] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.progress = threading.Condition()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self._one()
        except BaseException as exc:  # reported by the test thread, which owns the assert
            self.error = exc
            with self.progress:
                self.progress.notify_all()
        finally:
            self.backend.close()

    def _one(self) -> None:
        i = self.next_id
        statements: list[Statement] = [
            ("INSERT INTO items (id, name, n) VALUES (%s, %s, %s)", [i, f"w{i}", 0])
        ]
        if i % 3 == 0:
            statements.append(("UPDATE items SET n = n + 1 WHERE id = %s", [i - 2]))
        if i % 7 == 0:
            statements.append(("DELETE FROM items WHERE id = %s", [i - 5]))
        if i % 11 == 0:
            statements.append(("UPDATE items SET name = %s WHERE id = %s", [f"x{i}", i - 1]))
        self.backend.transaction(statements)
        self.next_id += 1
        with self.progress:
            self.inserted.append(i)
            self.done += 1
            self.progress.notify_all()

    def deleted(self) -> set[int]:
        """The ids the writer's own transactions deleted (a row may go before any read)."""
        return {i - 5 for i in self.inserted if i % 7 == 0}

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        """Block until `count` transactions have committed (or the writer failed)."""
        with self.progress:
            ok = self.progress.wait_for(lambda: self.done >= count or self.error, timeout)
        if self.error is not None:
            raise AssertionError(f"the writer failed: {self.error!r}") from self.error
        assert ok, f"the writer committed {self.done} transactions, not {count}, in {timeout}s"

    def finish(self, timeout: float = 30.0) -> None:
        self.stop.set()
        self.join(timeout)
        assert not self.is_alive(), "the writer did not stop"
        if self.error is not None:
            raise AssertionError(f"the writer failed: {self.error!r}") from self.error
