"""Read the map YAML strictly, remembering where every value is.

Sites edit the map by hand, and PyYAML accepts, without a word, things that change what a map says:
a duplicate key keeps only the last entry (a code silently dropped), `no` becomes False
(`verified: no`), an unquoted 2024-01-02 becomes a date, and aliases copy blocks invisibly.
Each is an error here, located by line and column; every value's position is kept by JSON pointer
so that schema errors point into the YAML too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fsgs_kb.engine.fhir.errors import FhirMapError, Problem, pointer_join
from fsgs_kb.engine.load.controls import HINT as CONTROL_HINT
from fsgs_kb.engine.load.controls import control_strings
from fsgs_kb.engine.load.yamlsafe import (
    MAX_DEPTH,
    TooDeep,
    character_problem,
    collection_tag_problem,
    compose_yaml,
    is_alias,
    read_scalar,
)

MAX_MAP_BYTES = 2 * 1024 * 1024
KEY = "~key"  # positions[POINTER + KEY] is where the key of POINTER is ("~k" is no valid pointer escape)


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    """Turn a composed node tree into plain data, recording positions and collecting traps."""

    def __init__(self) -> None:
        self.positions: dict[str, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self._seen: set[int] = set()

    def fail(self, message: str, node: yaml.Node, pointer: str) -> None:
        line, col = _pos(node)
        self.problems.append(Problem(message, pointer, line, col))

    def build(self, node: yaml.Node, pointer: str) -> Any:
        if is_alias(node) or id(node) in self._seen:
            self.fail("aliases (*name) are not allowed: write the value out", node, pointer)
            return None
        self._seen.add(id(node))
        self.positions[pointer] = _pos(node)
        problem = collection_tag_problem(node)
        if problem is not None:
            self.fail(f"{problem[1]}: {problem[2]}", node, pointer)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, pointer)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, pointer_join(pointer, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        return self._scalar(node, pointer)

    def _mapping(self, node: yaml.MappingNode, pointer: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._scalar(key_node, pointer) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str) or key_node.tag == "tag:yaml.org,2002:merge":
                self.fail("mapping keys must be plain words (quote numbers; no merge keys)", key_node, pointer)
                continue
            child = pointer_join(pointer, key)
            if key in out:
                self.fail(f"duplicate key '{key}': YAML would silently keep only the last", key_node, child)
                continue
            self.positions[child + KEY] = _pos(key_node)
            out[key] = self.build(value_node, child)
        return out

    def _scalar(self, node: yaml.ScalarNode, pointer: str) -> Any:
        value, problems = read_scalar(node)  # the knowledge base's reading: `no`, dates, `0110` refused alike
        for _code, message, hint in problems:
            self.fail(f"{message}: {hint}", node, pointer)
        return value


def load_yaml(path: Path, raw: bytes | None = None) -> tuple[Any, dict[str, tuple[int, int]]]:
    """Parse one YAML file (or its bytes, already read safely by the caller); raise FhirMapError
    with located problems when it cannot be trusted."""
    if raw is None:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise FhirMapError([Problem(f"cannot read the map: {exc.strerror}")], str(path)) from None
    if len(raw) > MAX_MAP_BYTES:
        raise FhirMapError([Problem(f"map is {len(raw)} bytes; the limit is {MAX_MAP_BYTES}")], str(path))
    try:
        text = raw.decode("utf-8")
        node = compose_yaml(text)  # the knowledge base's composer: libyaml where it can, nesting bounded
    except UnicodeDecodeError as exc:
        raise FhirMapError([Problem(f"not UTF-8 at byte {exc.start}")], str(path)) from None
    except TooDeep as exc:
        where = (exc.mark.line + 1, exc.mark.column + 1)
        raise FhirMapError([Problem(f"nested more than {MAX_DEPTH} levels deep", "", *where)], str(path)) from None
    except yaml.reader.ReaderError as exc:
        message, hint, where = character_problem(exc, text)
        raise FhirMapError([Problem(f"{message}: {hint}", "", *where)], str(path)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise FhirMapError([Problem(f"invalid YAML: {exc.problem}", "", line, col)], str(path)) from None
    if node is None:
        raise FhirMapError([Problem("the map is empty")], str(path))
    builder = _Builder()
    data = builder.build(node, "")
    for pointer, key, problem in control_strings(data):
        line, col = builder.positions.get(pointer + KEY if key else pointer, (None, None))
        builder.problems.append(Problem(f"{problem}: {CONTROL_HINT}", pointer, line, col))
    if builder.problems:
        raise FhirMapError(builder.problems, str(path))
    return data, builder.positions
