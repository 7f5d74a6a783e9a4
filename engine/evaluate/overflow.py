"""A derived value beyond the range of a double: the record's one error, worded once for both
evaluators.

A derived value is computed exactly (fractions of the numbers as written) and then held as a
double: in the result, the explanation, the fact durable-rules is given and every derived value
that reads it. Beyond ±1.8e308 there is no such double. Such a value was clamped to the largest
double, which kept a comparison with a threshold right but showed a false value ("45 years ×
1e400 = 1.79769e+308 years") and misled what read it: the same value ÷ 1e307 came out 17.98,
not 4.5e94, and a caveat did not fire, silently, in both evaluators and in durable-rules.

validate refuses an expression whose range over the values the patient schema allows reaches
beyond (`kb.overflow`, engine/check/overflow.py). One that gets there only as a divisor nears 0
(a creatinine baseline of 1e-310 mg/dL: the schema allows any value above 0) is this error for
that record, raised while deriving, before durable-rules is asked.
"""

from __future__ import annotations

from typing import Any

from fsgs_kb.engine.errors import KBError
from fsgs_kb.engine.load.conditions import expression_refs
from fsgs_kb.engine.load.fields import FieldInfo
from fsgs_kb.engine.model import KnowledgeBaseModel

CODE = "eval.overflow"


class DerivedOverflow(ArithmeticError):
    """Derived value `name` (its `value`, or case number `case`) has no double for this record."""

    def __init__(self, name: str, case: int | None) -> None:
        super().__init__(f"derived value {name} is beyond the range of a double")
        self.name = name
        self.case = case


def overflow_error(
    model: KnowledgeBaseModel, fields: dict[str, FieldInfo], patient: dict[str, Any], exc: DerivedOverflow
) -> KBError:
    """The record's error: the derived value, the recorded inputs of the expression that gave it."""
    spec = model.derived[exc.name]
    expr = spec.value if exc.case is None else spec.cases[exc.case][1]
    assert expr is not None
    inputs: list[str] = []
    for ref in expression_refs(expr):
        if ref.source == "field":
            inputs.append(f"{fields[ref.name].pointer} = {_recorded(patient, fields[ref.name].keys)}")
        elif ref.source == "derived":
            inputs.append(f"derived value {ref.name}")
    return KBError(
        CODE,
        f"derived value {spec.name} ({spec.title}) is beyond the largest double (1.8e+308) for this record "
        f"({', '.join(dict.fromkeys(inputs))}): the result, the explanation and durable-rules could not hold it, "
        "so no rule was run",
        hint="check these values: a divisor near 0 makes a quotient huge",
    )


def _recorded(patient: dict[str, Any], keys: tuple[str, ...]) -> str:
    value: Any = patient
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return repr(value)
