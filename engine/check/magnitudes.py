"""Thresholds durable-rules can compare exactly.

durable-rules reads a number as a 64-bit integer or a double. A threshold beyond ±2^53 (or an
integral one past 64 bits) is not compared as written: the engine's exact semantics and the
durable-rules verdict then disagree and every affected record is an `eval.disagreement` error
(9,223,372,036,854,775,807, 2^64 and 1e20 as a maximum dose did; hostile sweep of session 10). No
clinical threshold comes near; such a value is refused where it is written. So is NaN (YAML
`.nan`), which no comparison can decide and which has no exact value (it failed the compiler's
exact form with a ValueError; hostile sweep): the one place for numbers the engine cannot compare.
"""

from __future__ import annotations

import math
from typing import Any

from fsgs_kb.engine.errors import KBError, pointer_join
from fsgs_kb.engine.load.conditions import walk
from fsgs_kb.engine.load.yamlsafe import Located, located_error
from fsgs_kb.engine.model import Condition, KnowledgeBaseModel

EXACT_LIMIT = 2**53  # the largest magnitude at which every integer is a double


def _too_large(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) > EXACT_LIMIT


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def magnitude_problems(model: KnowledgeBaseModel, docs: dict[str, Located]) -> list[KBError]:
    """An error at each parameter value and literal threshold beyond ±2^53, or not a number."""
    hint = f"use a threshold within ±{EXACT_LIMIT:,}, or a unit in which the value is smaller"
    out: list[KBError] = []

    def refuse(file: str, pointer: str, what: str, value: Any) -> None:
        message = (
            f"{what} {value!r} is beyond ±2^53 ({EXACT_LIMIT:,}): durable-rules, which decides every rule, "
            "cannot compare it exactly, so its verdict and the explanation would disagree"
        )
        if any(_nan(v) for v in (value if isinstance(value, (list, tuple)) else [value])):
            message = f"{what} is NaN (not a number): no comparison with it can be decided"
            out.append(located_error(docs, file, "kb.not_a_number", message, pointer, "write the number itself"))
            return
        out.append(located_error(docs, file, "kb.number_too_large", message, pointer, hint))

    for param in model.parameters.values():
        values = param.value if isinstance(param.value, list) else [param.value]
        if any(_too_large(v) or _nan(v) for v in values):
            refuse(param.file, pointer_join(param.pointer, "value"), f"parameter {param.name}'s value", param.value)
    conditions: list[tuple[str, Condition]] = [(rule.file, rule.when) for rule in model.rules.values()]
    for spec in model.derived.values():
        if spec.condition is not None:
            conditions.append((spec.file, spec.condition))
        conditions += [(spec.file, when) for when, _ in spec.cases]
    for file, cond in conditions:
        for leaf in walk(cond):
            operands = leaf.operand if isinstance(leaf.operand, list) else [leaf.operand]
            if any(_too_large(v) or _nan(v) for v in operands):
                refuse(file, leaf.pointer, "the threshold", leaf.operand)
    return out
