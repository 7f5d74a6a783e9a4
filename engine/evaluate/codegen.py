"""Compiling the generated evaluator's source, and what happens when Python cannot.

The compiled evaluator writes Python for each knowledge base (compiled.py, settle.py, facts.py).
Python's parser and compiler have limits — nesting depth, recursion — that a large but valid
knowledge base can meet (this happened twice: ~100 cases of a derived value, then ~1,500; each
made every record an `eval.internal` error). The generators avoid every limit known, and this
is the net under them: source Python refuses raises `NotCompiled`, and the knowledge base then
evaluates with the interpreted reference, which gives the same results, slower (engine/kb.py).

Drill: FSGS_KB_FAULT="nocompile:NAME" makes the generated function NAME ("state", "full+json",
"standard", "verdict", "settle+json", …, or "*" for every one) be refused as Python would refuse it.

`fsgs-kb validate` compiles every one of them and warns of each Python refuses (compile.fallback,
engine/evaluate/fallback.py); batch says so on stderr when its run is affected.
"""

from __future__ import annotations

from types import CodeType

from fsgs_kb.engine.drills import planned


class NotCompiled(Exception):
    """Python could not compile the generated evaluator of this knowledge base: `function`, the
    generated function it refused, and `reason`, Python's error in one line."""

    def __init__(self, function: str, reason: str) -> None:
        super().__init__(function, reason)  # both in args: it pickles as itself
        self.function = function
        self.reason = reason

    def __str__(self) -> str:
        return f"the generated {self.function} function: {self.reason}"


def compiled_code(source: str, name: str) -> CodeType:
    """`compile(source)` of the generated function `name`, or NotCompiled saying why."""
    refused = planned("nocompile")
    try:
        if name in refused or "*" in refused:
            raise RecursionError("maximum recursion depth exceeded during compilation (drill)")
        return compile(source, f"<fsgs-kb compiled {name}>", "exec")
    except (SyntaxError, RecursionError, MemoryError, OverflowError, ValueError) as exc:
        raise NotCompiled(name, " ".join(f"{type(exc).__name__}: {exc}".split())) from None
