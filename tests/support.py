"""Paths the tests share (a module, not conftest: two conftest.py files must never be imported by
name, since tests/ and tests/hostile/ each have one)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
RULES = ROOT / "rules"  # the checkout's knowledge base: what the tests test (conftest.py sets $FSGS_KB_RULES)
