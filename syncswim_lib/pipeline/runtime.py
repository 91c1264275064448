"""Live handles for one project: connectors per endpoint, the state store, entity maps."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from syncswim_lib.connectors.base import Connector, TableInfo
from syncswim_lib.connectors.registry import open_connector
from syncswim_lib.pipeline.mapping import EntityMap, Letter, build_entity_map
from syncswim_lib.state import open_store
from syncswim_lib.state.base import StateStore

if TYPE_CHECKING:
    from syncswim_lib.config import Project


def default_state_url() -> str:
    """The embedded default: a SQLite file beside Dagster's own storage."""
    home = os.environ.get("DAGSTER_HOME") or os.path.join(os.getcwd(), ".syncswim")
    Path(home).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{os.path.join(os.path.abspath(home), 'syncswim_state.db')}"


class Runtime:
    def __init__(self, project: Project, state_url: str | None = None) -> None:
        self.project = project
        url = state_url
        if url is None and project.state is not None:
            state = project.state
            url = state if isinstance(state, str) else state.resolve("state")
        self.store: StateStore = open_store(url or default_state_url())
        self._connectors: dict[str, Connector] = {}
        self._tables: dict[tuple[str, str], TableInfo] = {}
        self._maps: dict[tuple[str, str], EntityMap] = {}

    def connector(self, endpoint: str) -> Connector:
        if endpoint not in self._connectors:
            self._connectors[endpoint] = open_connector(self.project.endpoints[endpoint])
        return self._connectors[endpoint]

    def describe(self, endpoint: str, table: str) -> TableInfo:
        if (endpoint, table) not in self._tables:
            self._tables[(endpoint, table)] = self.connector(endpoint).describe(table)
        return self._tables[(endpoint, table)]

    def entity_map(self, sync: str, entity: str) -> EntityMap:
        if (sync, entity) not in self._maps:
            decl = self.project.syncs[sync]
            self._maps[(sync, entity)] = build_entity_map(
                decl.entities[entity], self.describe, decl
            )
        return self._maps[(sync, entity)]

    def side_connectors(self, emap: EntityMap) -> dict[Letter, Connector]:
        return {"a": self.connector(emap.a.endpoint), "b": self.connector(emap.b.endpoint)}

    def close(self) -> None:
        for c in self._connectors.values():
            c.close()
        self._connectors.clear()
        self.store.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
