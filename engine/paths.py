"""Where the bundled knowledge base and schemas live, installed or in a checkout.

The wheel ships `rules/` and `schema/` as the data packages `fsgs_kb_rules` and
`fsgs_kb_schema` (see pyproject.toml), so the installed command finds them from any working
directory; in an editable install they resolve to the checkout's own folders.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

RULES_ENV = "FSGS_KB_RULES"


def _package_dir(name: str, fallback: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / fallback


def bundled_rules_dir() -> Path:
    return _package_dir("fsgs_kb_rules", "rules")


def schema_dir() -> Path:
    return _package_dir("fsgs_kb_schema", "schema")


def resolve_rules_dir(rules_dir: str | os.PathLike[str] | None) -> Path:
    """An explicit directory wins, then $FSGS_KB_RULES, then the bundled knowledge base."""
    if rules_dir:
        return Path(rules_dir)
    env = os.environ.get(RULES_ENV)
    return Path(env) if env else bundled_rules_dir()
