"""The declarations the documents show load as they say (the docs describe what the code does)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncswim_lib.config import load_project

ROOT = Path(__file__).resolve().parents[2]
YAML_BLOCK = re.compile(r"```yaml\n(.*?)```", re.DOTALL)


def yaml_blocks(doc: str) -> list[str]:
    return YAML_BLOCK.findall((ROOT / doc).read_text())


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """A folder with the custom conflict rule the reference's example names."""
    (tmp_path / "my_rules.py").write_text(
        "def concat(a, b, base, time_a, time_b):\n    return f'{a} / {b}'\n"
    )
    yield tmp_path
    sys.modules.pop("my_rules", None)


def load(folder: Path, text: str) -> None:
    path = folder / "sync.yaml"
    path.write_text(text)
    load_project(path)


def test_the_reference_example_loads(folder: Path) -> None:
    example = yaml_blocks("docs/config-reference.md")[0]
    assert "conflicts:" in example and "clock:" in example and "owns: all" in example
    assert "references:" in example
    load(folder, example)


def test_the_readme_example_loads_with_its_conflicts_block(folder: Path) -> None:
    blocks = yaml_blocks("README.md")
    declaration = next(b for b in blocks if b.startswith("endpoints:"))
    load(folder, declaration)
    snippet = next(b for b in blocks if "conflicts:" in b)
    extra = "".join(line + "\n" for line in snippet.splitlines()[1:])
    anchor = "        fields: {name: title, price: price}\n"
    assert anchor in declaration
    load(folder, declaration.replace(anchor, anchor + extra))
