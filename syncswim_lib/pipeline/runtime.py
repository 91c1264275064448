"""Live handles for one project: connectors per endpoint, the state store, entity maps."""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncswim_lib.connectors.base import Connector
from syncswim_lib.connectors.ownership import OwnedStream, StreamOwner
from syncswim_lib.connectors.registry import open_connector
from syncswim_lib.pipeline.backoff import Retrier
from syncswim_lib.pipeline.mapping import EntityMap, Letter, build_entity_map
from syncswim_lib.pipeline.owner import check_free, claim, store_identity
from syncswim_lib.pipeline.retrying import RetryingConnector
from syncswim_lib.pipeline.statehome import announce, state_url_for
from syncswim_lib.state import open_store
from syncswim_lib.state.base import StateStore
from syncswim_lib.values import TableInfo

if TYPE_CHECKING:
    from syncswim_lib.config import Project


class Runtime:
    # the Dagster run (or `cli:<pid>`) recorded with each outcome; set by whoever runs
    run_id: str | None = None

    def __init__(self, project: Project, state_url: str | None = None) -> None:
        self.project = project
        # one rule for the CLI, Dagster and the demo (statehome.py); a caller's URL (the
        # Dagster resource's `state_url`, tests, benchmarks) wins over it
        self.state_url = state_url or state_url_for(project)
        announce(self.state_url, project, given=state_url is not None)
        self.store: StateStore = open_store(self.state_url)
        self._connectors: dict[str, Connector] = {}
        self._tables: dict[tuple[str, str], TableInfo] = {}
        self._maps: dict[tuple[str, str], EntityMap] = {}
        self._identity: StreamOwner | None = None
        self._claimed: set[tuple[str, str]] = set()
        self._retriers: dict[str, Retrier] = {}
        # warnings already given by this runtime (pipeline/drift.py): a long-lived
        # streaming run says each once, not at every batch
        self.notes_given: set[str] = set()

    def identity(self) -> StreamOwner:
        if self._identity is None:
            self._identity = store_identity(self.store, self.state_url)
        return self._identity

    def check_free(self, sync: str, endpoint: str) -> None:
        """Refuse before setup when another state store owns `sync`'s stream here."""
        conn = self.connector(endpoint)
        if isinstance(conn, OwnedStream):
            check_free(conn, sync, endpoint, self.identity())

    def claim(self, sync: str, endpoint: str, *, adopt: bool) -> None:
        """Check (once per runtime: a capture loop asks every round) that this store owns
        `sync`'s stream on `endpoint`; `adopt`: record it where no owner is recorded."""
        conn = self.connector(endpoint)
        # the role first: a stream nobody can own needs none of this runtime's ownership
        # state (which a runtime over memory databases in the tests does not set up)
        if not isinstance(conn, OwnedStream) or (sync, endpoint) in self._claimed:
            return
        claim(conn, sync, endpoint, self.identity(), adopt=adopt)
        self._claimed.add((sync, endpoint))

    def connector(self, endpoint: str) -> Connector:
        if endpoint not in self._connectors:
            self._connectors[endpoint] = open_connector(self.project.endpoints[endpoint])
        return self._connectors[endpoint]

    def describe(self, endpoint: str, table: str) -> TableInfo:
        if (endpoint, table) not in self._tables:
            self._tables[(endpoint, table)] = self.connector(endpoint).describe(table)
        return self._tables[(endpoint, table)]

    def forget_table(self, endpoint: str, table: str) -> None:
        """The table changed: describe it again when next asked, and build the entity
        maps again (any of them may use it, as its own table or a parent's)."""
        self._tables.pop((endpoint, table), None)
        self._maps.clear()

    def entity_map(self, sync: str, entity: str) -> EntityMap:
        if (sync, entity) not in self._maps:
            decl = self.project.syncs[sync]
            self._maps[(sync, entity)] = build_entity_map(
                decl.entities[entity], self.describe, decl
            )
        return self._maps[(sync, entity)]

    def retrier(self, sync: str) -> Retrier:
        """The sync's backoff for retriable errors (`retry:`); its `attempts` list every
        failed try of this runtime, which the run reports."""
        if sync not in self._retriers:
            self._retriers[sync] = Retrier(self.project.syncs[sync].retry)
        return self._retriers[sync]

    def side_connectors(self, emap: EntityMap) -> dict[Letter, Connector]:
        """The entity's two connectors, their writes and lookups retried with backoff."""
        retrier = self.retrier(emap.sync)
        a, b = emap.a.endpoint, emap.b.endpoint
        return {
            "a": RetryingConnector(self.connector(a), retrier, a),
            "b": RetryingConnector(self.connector(b), retrier, b),
        }

    def close(self) -> None:
        for c in self._connectors.values():
            c.close()
        self._connectors.clear()
        self.store.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
