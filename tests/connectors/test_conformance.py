"""The conformance suite every database connector passes, written once against the
Connector Protocol; what differs per database lives in `conformance_backends.py`.

The properties are the ones the pipeline relies on: snapshot then stream loses nothing,
apply is idempotent, deletes and origins come back, positions only grow, transactions
stay whole, the same row reads as the same canonical values everywhere, and pruning the
apply markers is invisible to capture.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from syncswim_lib.connectors.base import Connector
from syncswim_lib.connectors.memory import MemoryDatabase
from tests.connectors.conformance_apply import (
    test_a_partial_update_sets_only_the_named_columns,
    test_a_replayed_batch_returns_its_stale_refs,
    test_a_row_changed_since_the_plan_is_stale_not_overwritten,
    test_a_row_gone_is_missing_and_a_row_changed_is_stale,
    test_a_write_waiting_for_a_row_lock_sees_the_change_it_waited_for,
    test_an_update_or_delete_with_a_null_key_is_rejected,
    test_apply_twice_writes_once,
    test_concurrent_applies_of_one_batch_write_once,
    test_delete_round_trips,
    test_describe_lists_the_unique_column_sets,
    test_keys_hold_the_declared_key_when_it_is_not_the_primary_key,
    test_mixed_set_lists_in_one_batch,
)
from tests.connectors.conformance_backends import BACKENDS, Backend
from tests.connectors.conformance_markers import (
    test_capture_skips_a_prune_and_still_advances,
    test_prune_markers_before_setup_and_with_a_negative_age,
    test_prune_markers_deletes_old_markers_only,
    test_prune_markers_in_several_transactions,
    test_prune_markers_on_a_lost_connection_is_retriable,
)
from tests.connectors.conformance_stream import (
    test_a_new_primary_key_is_a_delete_and_an_insert,
    test_capture_keeps_up_with_a_writer,
    test_no_gap_at_any_of_many_positions,
    test_no_gap_between_snapshot_and_stream,
    test_origins,
    test_own_writes_left_out_on_request,
    test_positions_strictly_increase,
    test_transactions_are_never_split,
)
from tests.connectors.conformance_support import SYNC
from tests.connectors.conformance_values import (
    test_compare_and_set_compares_canonical_values,
    test_snapshot_json_text_is_the_same_everywhere,
    test_the_same_row_reads_as_the_same_canonical_values,
)

pytestmark = pytest.mark.integration

# The suite lives in the conformance_*.py modules by subject; pytest collects the tests
# imported here, where the fixtures below give each one every connector in turn.
__all__ = [
    "test_a_new_primary_key_is_a_delete_and_an_insert",
    "test_a_partial_update_sets_only_the_named_columns",
    "test_a_replayed_batch_returns_its_stale_refs",
    "test_a_row_changed_since_the_plan_is_stale_not_overwritten",
    "test_a_row_gone_is_missing_and_a_row_changed_is_stale",
    "test_a_write_waiting_for_a_row_lock_sees_the_change_it_waited_for",
    "test_an_update_or_delete_with_a_null_key_is_rejected",
    "test_apply_twice_writes_once",
    "test_capture_keeps_up_with_a_writer",
    "test_capture_skips_a_prune_and_still_advances",
    "test_compare_and_set_compares_canonical_values",
    "test_concurrent_applies_of_one_batch_write_once",
    "test_delete_round_trips",
    "test_describe_lists_the_unique_column_sets",
    "test_keys_hold_the_declared_key_when_it_is_not_the_primary_key",
    "test_mixed_set_lists_in_one_batch",
    "test_no_gap_at_any_of_many_positions",
    "test_no_gap_between_snapshot_and_stream",
    "test_origins",
    "test_own_writes_left_out_on_request",
    "test_positions_strictly_increase",
    "test_prune_markers_before_setup_and_with_a_negative_age",
    "test_prune_markers_deletes_old_markers_only",
    "test_prune_markers_in_several_transactions",
    "test_prune_markers_on_a_lost_connection_is_retriable",
    "test_snapshot_json_text_is_the_same_everywhere",
    "test_the_same_row_reads_as_the_same_canonical_values",
    "test_transactions_are_never_split",
]


@pytest.fixture
def memory_db() -> MemoryDatabase:
    """A new, empty memory database: the memory backend's server."""
    return MemoryDatabase("conformance")


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    fixture, factory = BACKENDS[request.param]
    b = factory(request.getfixturevalue(fixture))
    yield b
    b.close()


@pytest.fixture
def connector(backend: Backend) -> Iterator[Connector]:
    c = backend.connector()
    yield c
    c.close()


@pytest.fixture
def items(backend: Backend, connector: Connector) -> str:
    """The `items` table, set up for capture by sync SYNC; its name as the connector says it."""
    backend.run(backend.items_ddl())
    connector.setup(SYNC, [backend.table("items")])
    return backend.table("items")
