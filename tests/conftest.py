"""Shared fixtures: the real bundled knowledge base, loaded once, and helpers for copies of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support import ROOT, SHARED  # noqa: F401 - re-exported for older imports

import fsgs_kb
from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.load.paths import bundled_rules_dir


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return fsgs_kb.load()


@pytest.fixture
def kb_copy(tmp_path: Path) -> Path:
    """A writable copy of the bundled knowledge base at tmp_path/rules."""
    target = tmp_path / "rules"
    shutil.copytree(bundled_rules_dir(), target)
    return target
