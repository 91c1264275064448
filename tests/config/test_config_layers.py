"""The layers import downwards only: config reads the value model, never a connector."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# every config module a loaded project needs, and those that describe tables
CONFIG_MODULES = (
    "syncswim_lib.config",
    "syncswim_lib.config.build",
    "syncswim_lib.config.entities",
    "syncswim_lib.config.models",
    "syncswim_lib.config.live",
    "syncswim_lib.config.convert",
    "syncswim_lib.config.scaffold",
    "syncswim_lib.config.introspect",
)


def _loaded_after(statement: str) -> list[str]:
    code = (
        f"import sys\n{statement}\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('syncswim_lib.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return out.split()


# what config may import of connectors/: the registry and the kind descriptions, which
# import only light modules (connectors/kinds.py)
DESCRIPTIONS = {"syncswim_lib.connectors", "syncswim_lib.connectors.registry"}
DESCRIPTIONS |= {"syncswim_lib.connectors.kinds"}


@pytest.mark.parametrize("module", CONFIG_MODULES)
def test_config_imports_no_connector(module: str) -> None:
    loaded = _loaded_after(f"import {module}")
    assert module in loaded
    connectors = [m for m in loaded if m.startswith("syncswim_lib.connectors")]
    assert set(connectors) <= DESCRIPTIONS, connectors


def test_value_model_imports_nothing_above_it() -> None:
    loaded = _loaded_after(
        "import syncswim_lib.values, syncswim_lib.values.arrow, "
        "syncswim_lib.values.codec, syncswim_lib.values.coerce"
    )
    above = ("syncswim_lib.config", "syncswim_lib.connectors", "syncswim_lib.state")
    assert [m for m in loaded if m.startswith(above) or m.startswith("syncswim_lib.pipeline")] == []


def test_a_project_loads_without_a_connector() -> None:
    """Loading a project (PostgreSQL, MySQL and Salesforce endpoints) reads each kind's
    description, not its connector: no driver, no client library, no Arrow."""
    fixture = Path(__file__).parent / "fixtures" / "full_external_id.yaml"
    loaded = _loaded_after(
        "from pathlib import Path\n"
        "from syncswim_lib.config import load_project\n"
        f"load_project(Path({str(fixture)!r}))\n"
        "for lib in ('psycopg', 'pymysql', 'simple_salesforce', 'pyarrow'):\n"
        "    assert lib not in sys.modules, lib"
    )
    pure = DESCRIPTIONS | {
        f"syncswim_lib.connectors.{package}{module}"
        for package in ("postgres", "mysql", "salesforce", "polling")
        for module in ("", ".kind")
    }
    pure.add("syncswim_lib.connectors.salesforce.settings")
    connectors = [m for m in loaded if m.startswith("syncswim_lib.connectors")]
    assert "syncswim_lib.connectors.salesforce.kind" in connectors
    assert [m for m in connectors if m not in pure] == []


def test_each_kind_description_imports_no_connector() -> None:
    """A kind's description is read by the loader: it must not pull its connector in."""
    from syncswim_lib.connectors.registry import KINDS

    for name, module in KINDS.items():
        loaded = _loaded_after(
            f"import {module}\n"
            "for lib in ('psycopg', 'pymysql', 'simple_salesforce', 'pyarrow'):\n"
            "    assert lib not in sys.modules, lib"
        )
        assert f"syncswim_lib.connectors.{name}.connector" not in loaded
        assert "syncswim_lib.connectors.base" not in loaded
