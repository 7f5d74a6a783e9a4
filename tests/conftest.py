"""Shared fixtures: the checkout's knowledge base, loaded once, and helpers for copies of it.

`pytest` in a checkout tests the checkout's rules/, whatever copy of fsgs-kb is installed (a
`pip install .` bundles a snapshot of rules/ that an editor's edits do not reach): every test,
and every command a test runs, reads $FSGS_KB_RULES, set here to ROOT/rules.

The validated-KB cache of the whole run is a temporary directory of its own ($FSGS_KB_CACHE, set
here before any test runs and inherited by every command a test starts), removed at the end: the
suite's hundreds of temporary knowledge bases never reach the user's ~/.cache/fsgs-kb. Tests of
the cache set a directory of their own.
"""

from __future__ import annotations

import atexit
import gc
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from support import ROOT, RULES, SHARED  # noqa: F401 - re-exported for older imports

import fsgs_kb
from fsgs_kb.engine.cache import CACHE_ENV
from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.load.paths import RULES_ENV

os.environ[RULES_ENV] = str(RULES)
SESSION_CACHE = tempfile.mkdtemp(prefix="fsgs-kb-test-cache-")
os.environ[CACHE_ENV] = SESSION_CACHE
atexit.register(shutil.rmtree, SESSION_CACHE, ignore_errors=True)

# In CI every property test draws the same examples run after run (derandomized): a red CI means
# a change broke something, never that a new random draw found an old bug; locally they draw anew.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_report_header() -> str:
    return f"knowledge base under test: {RULES} (${RULES_ENV})"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what collection made (the test modules, their items and parameters, hypothesis's
    strategies, the modules they imported) out of the garbage collector's way: Python's full
    collections scan every tracked object, and these ~hundreds of thousands, alive for the whole
    run, were rescanned each time a test built many objects (~4 s of the collector's ~7 s in the
    in-process evaluation tests). Objects the tests make are collected as before."""
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return fsgs_kb.load()


@pytest.fixture
def kb_copy(tmp_path: Path) -> Path:
    """A writable copy of the checkout's knowledge base at tmp_path/rules."""
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    return target
