"""Where the bundled knowledge base and schemas live, installed or in a checkout.

The package `fsgs_kb` is the checkout's top level (see pyproject.toml), so `rules/` and
`schema/` sit beside `engine/` both in the wheel and in an editable install, where they are the
checkout's own folders.
"""

from __future__ import annotations

import os
from pathlib import Path

RULES_ENV = "FSGS_KB_RULES"
PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent


def bundled_rules_dir() -> Path:
    return PACKAGE_ROOT / "rules"


def schema_dir() -> Path:
    return PACKAGE_ROOT / "schema"


def resolve_rules_dir(rules_dir: str | os.PathLike[str] | None) -> Path:
    """An explicit directory wins, then $FSGS_KB_RULES, then the bundled knowledge base."""
    if rules_dir:
        return Path(rules_dir)
    env = os.environ.get(RULES_ENV)
    return Path(env) if env else bundled_rules_dir()
