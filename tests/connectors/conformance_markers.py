"""Conformance, apply markers: pruning them is invisible to capture.

Collected by test_conformance.py, which holds the fixtures."""

from __future__ import annotations

from datetime import timedelta

import pytest

from syncswim_lib.connectors.base import Connector
from syncswim_lib.envelope import Op
from syncswim_lib.errors import ConfigError, RetriableError
from syncswim_lib.values.arrow import REF
from tests.connectors.conformance_backends import Backend
from tests.connectors.conformance_support import (
    INSERT,
    SYNC,
    changes_of,
    drain,
    items_batch,
    order,
    wait_until,
)


def test_prune_markers_deletes_old_markers_only(
    backend: Backend, connector: Connector, items: str
) -> None:
    ids = [f"m-{i}" for i in range(5)]
    results = {}
    for i, batch_id in enumerate(ids):
        rows = [{REF: "r", "ext": f"M{i}", "name": "m"}]
        results[batch_id] = connector.apply(items_batch(backend, batch_id, SYNC, inserts=rows))
    backend.age_markers(ids[:3], timedelta(days=3))
    backend.age_markers(ids[3:4], timedelta(hours=1))
    since = connector.current_position(SYNC)
    backend.run(INSERT, 900, None, "before", 0)

    assert connector.prune_markers(timedelta(days=2)) == 3
    assert backend.marker_ids() == set(ids[3:])
    assert connector.applied_result(SYNC, ids[0]) is None
    assert connector.applied_result(SYNC, ids[4]) == results[ids[4]]
    assert connector.prune_markers(timedelta(days=2)) == 0

    backend.run(INSERT, 901, None, "after", 0)
    # the marker deletes emit nothing and tag nothing; the position moves past them
    batches = drain(connector, [items], since)
    got = [(c.op, c.key["id"], c.origin) for c in changes_of(batches)]
    assert got == [(Op.INSERT, 900, None), (Op.INSERT, 901, None)]
    assert connector.prune_markers(timedelta(0)) == 2
    assert backend.marker_ids() == set()


def test_capture_skips_a_prune_and_still_advances(
    backend: Backend, connector: Connector, items: str
) -> None:
    ids = [f"p-{i}" for i in range(7)]
    for i, batch_id in enumerate(ids):
        rows = [{REF: "r", "ext": f"P{i}", "name": "p"}]
        connector.apply(items_batch(backend, batch_id, SYNC, inserts=rows))
    backend.age_markers(ids, timedelta(days=1))
    since = connector.current_position(SYNC)
    assert connector.prune_markers(timedelta(hours=1)) == 7
    batch = connector.capture(SYNC, [items], since, 1)
    assert batch.changes == ()
    assert order(batch.end_position) > order(since)
    assert connector.capture(SYNC, [items], batch.end_position, 1).changes == ()


def test_prune_markers_in_several_transactions(
    backend: Backend, connector: Connector, items: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backend.marker_module(), "PRUNE_CHUNK", 2)
    for i in range(5):
        rows = [{REF: "r", "ext": f"C{i}", "name": "c"}]
        connector.apply(items_batch(backend, f"c-{i}", SYNC, inserts=rows))
    since = connector.current_position(SYNC)
    assert connector.prune_markers(timedelta(0)) == 5
    assert backend.marker_ids() == set()
    assert drain(connector, [items], since) == []


def test_prune_markers_on_a_lost_connection_is_retriable(
    backend: Backend, connector: Connector, items: str
) -> None:
    connector.apply(items_batch(backend, "lost-1", SYNC, inserts=[{REF: "r", "ext": "L"}]))
    backend.age_markers(["lost-1"], timedelta(days=1))
    wait_until(
        "the server to end the connector's session", lambda: not backend.kill_other_sessions()
    )
    with pytest.raises(RetriableError):
        connector.prune_markers(timedelta(hours=1))
    assert connector.prune_markers(timedelta(hours=1)) == 1  # a new connection


def test_prune_markers_before_setup_and_with_a_negative_age(
    backend: Backend, connector: Connector
) -> None:
    assert connector.prune_markers(timedelta(days=1)) == 0  # no marker table yet
    with pytest.raises(ConfigError, match="older_than"):
        connector.prune_markers(timedelta(seconds=-1))
