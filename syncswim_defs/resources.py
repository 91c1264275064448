"""The one resource: where the sync declaration lives and how to open it."""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource

from syncswim_lib.config import load_project
from syncswim_lib.pipeline.runtime import Runtime


class SyncSwimResource(ConfigurableResource[Any]):
    """Opens connectors and the state store at run time; secrets come from the environment
    of the run (the YAML names the variables), so the code location loads without them."""

    project_path: str
    state_url: str | None = None

    def runtime(self) -> Runtime:
        return Runtime(load_project(self.project_path), self.state_url)
