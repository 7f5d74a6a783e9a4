"""fsgs-kb: cyclosporine in idiopathic FSGS as a rules-as-data knowledge base.

    >>> import fsgs_kb
    >>> kb = fsgs_kb.load()                     # the knowledge base resolved as the CLI does
    >>> kb.evaluate({"id": "p1", ...})["status"]

The engine never imports click, prints or exits; `fsgs_kb.cli` is the shell around it.
"""

from __future__ import annotations

import fsgs_kb.ctrl_c  # noqa: F401  first: Ctrl-C while the command starts is noted, not a traceback

# isort: split
from fsgs_kb.engine.errors import KBError, KBErrors
from fsgs_kb.engine.kb import KnowledgeBase, load
from fsgs_kb.engine.version import __version__

__all__ = ["KBError", "KBErrors", "KnowledgeBase", "__version__", "load"]
