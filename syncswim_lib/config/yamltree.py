"""Reading YAML into plain values that remember their line numbers and duplicate keys.

PyYAML silently keeps the last of two equal keys in a mapping; a declaration where
`email:` appears twice under `fields` must be an error instead, so mappings are built
here, recording every key's line and every repeated key.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node


@dataclass(frozen=True)
class Duplicate:
    key: Any
    line: int
    first_line: int


class LineDict(dict[Any, Any]):
    """A mapping from the YAML file: its own line, each key's line, keys given twice."""

    line: int | None  # None when built in code rather than read from a file
    key_lines: dict[Any, int]
    duplicates: list[Duplicate]


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    def construct_line_mapping(self, node: Node) -> LineDict:
        if not isinstance(node, MappingNode):
            raise ConstructorError(None, None, "expected a mapping node", node.start_mark)
        first: dict[Any, int] = {}
        duplicates: list[Duplicate] = []
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue  # merged keys may be overridden on purpose
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found an unhashable key",
                    key_node.start_mark,
                ) from None
            line = key_node.start_mark.line + 1
            if key in first:
                duplicates.append(Duplicate(key, line, first[key]))
            else:
                first[key] = line
        self.flatten_mapping(node)
        mapping = LineDict()
        mapping.line = node.start_mark.line + 1
        mapping.key_lines = {}
        mapping.duplicates = duplicates
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            mapping[key] = self.construct_object(value_node, deep=True)
            mapping.key_lines.setdefault(key, key_node.start_mark.line + 1)
            if key in first:
                # an explicit key wins over a merged one: report the explicit line
                mapping.key_lines[key] = first[key]
        return mapping


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_line_mapping)


def parse(text: str) -> Any:
    """The document as LineDict/list/scalars; raises yaml.YAMLError on bad syntax."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


def duplicates(
    tree: Any, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Duplicate]]:
    """Every repeated key in the tree, with the key path of the repeated key."""
    if isinstance(tree, LineDict):
        for dup in tree.duplicates:
            yield (*path, str(dup.key)), dup
        for key, value in tree.items():
            yield from duplicates(value, (*path, str(key)))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from duplicates(value, (*path[:-1], f"{path[-1] if path else ''}[{index}]"))
