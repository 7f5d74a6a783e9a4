"""Compiling the generated evaluator's source, and what happens when Python cannot.

The compiled evaluator writes Python for each knowledge base (compiled.py, settle.py, facts.py).
Python's parser and compiler have limits — nesting depth, recursion — that a large but valid
knowledge base can meet (this happened twice: ~100 cases of a derived value, then ~1,500; each
made every record an `eval.internal` error). The generators avoid every limit known, and this
is the net under them: source Python refuses raises `NotCompiled`, and the knowledge base then
evaluates with the interpreted reference, which gives the same results, slower (engine/kb.py).

Drill: FSGS_KB_FAULT="nocompile:NAME" makes the generated function NAME ("state", "full+json",
"standard", "verdict", "settle+json", …, or "*" for every one) be refused as Python would refuse it.
"""

from __future__ import annotations

from types import CodeType

from fsgs_kb.engine.drills import fault_plan


class NotCompiled(Exception):
    """Python could not compile the generated evaluator of this knowledge base."""


def compiled_code(source: str, name: str) -> CodeType:
    """`compile(source)` of the generated function `name`, or NotCompiled saying why."""
    planned = {target for target, kind in fault_plan().items() if kind == "nocompile"}
    try:
        if name in planned or "*" in planned:
            raise RecursionError("maximum recursion depth exceeded during compilation (drill)")
        return compile(source, f"<fsgs-kb compiled {name}>", "exec")
    except (SyntaxError, RecursionError, MemoryError, OverflowError, ValueError) as exc:
        raise NotCompiled(f"the generated {name} function: {type(exc).__name__}: {exc}") from None
