"""fsgs-kb engine: load a knowledge base and evaluate patients.

    >>> import engine
    >>> kb = engine.load()                      # the bundled knowledge base
    >>> kb.evaluate({"id": "p1", ...})["status"]

`engine` never imports click, prints or exits; `cli.py` is the shell around it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.kb import KnowledgeBase


def load(rules_dir: Any = None) -> KnowledgeBase:
    """Load, validate and compile a knowledge base (default: the bundled one)."""
    from engine.kb import load as _load

    return _load(rules_dir)


__all__ = ["load"]
