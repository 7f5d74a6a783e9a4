"""The FHIR package needs nothing beyond the standard library, PyYAML, jsonschema and the package
itself (no FHIR model library on the core path), and every module and public function says why."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "engine" / "fhir"
ALLOWED = {"yaml", "jsonschema", "fsgs_kb"} | set(sys.stdlib_module_names)


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text())) for p in sorted(PACKAGE.glob("*.py"))]


def test_imports_are_relative_or_allowed() -> None:
    for path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module and node.module.split(".")[0] in ALLOWED, f"{path.name}: from {node.module}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] in ALLOWED, f"{path.name}: import {alias.name}"


def test_docstrings_say_why() -> None:
    for path, tree in _modules():
        assert ast.get_docstring(tree), path.name
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                assert ast.get_docstring(node), f"{path.name}: {node.name}"


def test_modules_stay_small() -> None:
    for path, _ in _modules():
        assert len(path.read_text().splitlines()) <= 250, path.name
