"""The warning that a knowledge base is evaluated by the interpreted reference, and why.

When Python refuses a generated function of the compiled evaluator (engine/evaluate/codegen.py),
the knowledge base falls back on the interpreted reference: the same results, byte for byte,
about five times slower. Nothing is wrong with the answers, so it is a warning
(`compile.fallback`), not an error: `fsgs-kb validate` lists one for each function Python refuses,
and batch prints the first that affects its run on stderr, so that a slow run has a reason.
It is placed at the manifest (kb.yaml): the generated code is the whole knowledge base's.
"""

from __future__ import annotations

from fsgs_kb.engine.errors import KBError
from fsgs_kb.engine.evaluate.codegen import NotCompiled
from fsgs_kb.engine.load.loader import LoadResult
from fsgs_kb.engine.load.paths import MANIFEST
from fsgs_kb.engine.load.yamlsafe import located_error

CODE = "compile.fallback"
HINT = (
    "the results are the same, byte for byte, only about 5 times slower; for compiled speed again, "
    "simplify what that code is generated from: split a derived value of very many cases, or a very "
    "long condition, into smaller ones"
)


def used_for(function: str) -> str:
    """Which results the generated function `function` makes (its names: codegen.py)."""
    if function in ("full", "settle"):
        return "full results as dicts (evaluate, explain)"
    if function in ("full+json", "settle+json"):
        return "full results written at once as JSON (batch)"
    for detail in ("standard", "minimal"):
        if function in (detail, f"settle+{detail}"):
            return f"results at {detail} detail"
    return "every result"  # state, facts level N, verdict


def fallback_warning(refused: NotCompiled, load: LoadResult) -> KBError:
    """The warning for one generated function Python refused, at the knowledge base's manifest."""
    manifest = next((shown for shown, inside in load.relative.items() if inside == MANIFEST), load.model.root)
    message = (
        f"Python cannot compile the generated '{refused.function}' function, which makes "
        f"{used_for(refused.function)}: {refused.reason}; these results come from the interpreted "
        "reference evaluator instead"
    )
    return located_error(load.docs, manifest, CODE, message, "", HINT, severity="warning")
