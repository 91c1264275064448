"""The optional capabilities are used only where they are declared (connectors/base.py):
the declaration decides, for a connector and for the retrying wrapper around it."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from syncswim_lib.config.retry import RetrySettings
from syncswim_lib.connectors.base import Capabilities, markers_of
from syncswim_lib.connectors.memory import MemoryConnector, MemoryDatabase
from syncswim_lib.pipeline.backoff import Retrier
from syncswim_lib.pipeline.retrying import RetryingConnector


def test_markers_are_used_only_where_declared() -> None:
    db = MemoryDatabase("m")
    marked = MemoryConnector(db, "m")
    unmarked = MemoryConnector(db, "m", replace(MemoryConnector.capabilities, batch_markers=False))
    assert markers_of(marked) is marked
    # the methods are there, but the declaration says not to call them
    assert markers_of(unmarked) is None
    retrier = Retrier(RetrySettings())
    assert markers_of(RetryingConnector(marked, retrier, "m")) is not None
    wrapped = RetryingConnector(unmarked, retrier, "m")
    assert wrapped.capabilities == unmarked.capabilities
    assert markers_of(wrapped) is None
    with pytest.raises(TypeError, match="keeps no batch markers"):
        wrapped.prune_markers(timedelta(days=1))


class _DeclaresMarkersOnly:
    """A declaration without the methods it promises (a programming error)."""

    capabilities = Capabilities(
        change_stream=False,
        hard_deletes=False,
        upsert_by_external_id=False,
        origin_tagging=False,
        batch_markers=True,
    )


def test_a_declaration_without_the_methods_is_refused() -> None:
    with pytest.raises(TypeError, match="declares batch_markers"):
        markers_of(_DeclaresMarkersOnly())  # type: ignore[arg-type]


def test_a_batch_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_batch_rows"):
        replace(MemoryConnector.capabilities, max_batch_rows=0)
