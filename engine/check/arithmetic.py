"""The operands of a derived value's arithmetic: numbers, and a divisor that cannot be 0.

The evaluators compute `divide`, `multiply`, `subtract` and `percent_change` on exact numbers.
An operand that is not a number (a list parameter, a category, a text or true/false) stopped
validate with a TypeError (exit 3; hostile sweep). A divisor that is 0 (a literal 0, a parameter
whose value is 0, a patient field the schema allows to be 0) left the value unknown with nothing
missing, so every rule reading it asked for an input that was recorded (the daily dose, when
weight_kg was replaced by 0). Both are refused where they are written. A derived value used as a
divisor may still be 0 for some records; its range is not judged here.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fsgs_kb.engine.errors import KBError, pointer_join
from fsgs_kb.engine.load.fields import FieldInfo
from fsgs_kb.engine.load.yamlsafe import Located, located_error
from fsgs_kb.engine.model import Const, Derived, Expression, KnowledgeBaseModel, Op, Ref

NUMBER = "a number"


def operand_problems(
    model: KnowledgeBaseModel, fields: dict[str, FieldInfo], docs: dict[str, Located]
) -> list[KBError]:
    """An error at each operand of an arithmetic expression that is not a number, and at each
    divisor that is or may be 0. Names that do not resolve are reported elsewhere: skipped here."""
    out: list[KBError] = []
    for derived in model.derived.values():
        expressions = [derived.value] if derived.value is not None else []
        for expr in expressions + [expr for _, expr in derived.cases]:
            for op in _ops(expr):
                out += _op_problems(model, fields, docs, derived, op)
    return out


def _ops(expr: Expression) -> list[Op]:
    if not isinstance(expr, Op):
        return []
    return [expr] + [op for arg in expr.args for op in _ops(arg)]


def _op_problems(
    model: KnowledgeBaseModel, fields: dict[str, FieldInfo], docs: dict[str, Located], derived: Derived, op: Op
) -> list[KBError]:
    out = []
    names = ("from", "to") if op.name == "percent_change" else (0, 1)
    for arg, name in zip(op.args, names, strict=True):
        pointer = pointer_join(op.pointer, name)
        kind = _kind(model, fields, arg, set())
        if kind is not None and kind != NUMBER:
            out.append(
                located_error(
                    docs,
                    derived.file,
                    "derived.operand_type",
                    f"{op.name} computes with numbers, but {_describe(arg)} is {kind}",
                    pointer,
                    "use a number: a numeric field, a parameter whose value is one number, a numeric derived value",
                )
            )
    divisor = op.args[0 if op.name == "percent_change" else 1]
    why = _zero(model, fields, divisor)
    if why is not None:
        where = pointer_join(op.pointer, names[0 if op.name == "percent_change" else 1])
        out.append(
            located_error(
                docs,
                derived.file,
                "derived.divide_by_zero",
                f"{op.name} divides by {_describe(divisor)}{why}: a division by 0 has no value, so "
                f"'{derived.name}' would be unknown for records whose every input is recorded",
                where,
                "divide by a value that cannot be 0 (a field whose schema has exclusiveMinimum: 0, "
                "or a parameter other than 0)",
            )
        )
    return out


def _describe(expr: Expression) -> str:
    if isinstance(expr, Ref):
        return f"{ {'param': 'parameter', 'derived': 'derived value'}.get(expr.source, expr.source) } '{expr.name}'"
    if isinstance(expr, Const):
        return f"the literal {json.dumps(expr.value)}"
    return f"a {expr.name}"


def _kind_of_value(value: Any) -> str:
    if isinstance(value, bool):
        return "a true/false value"
    if isinstance(value, (int, float)):
        return NUMBER if math.isfinite(value) or math.isinf(value) else "NaN"
    if isinstance(value, (list, tuple)):
        return "a list"
    if value is None:
        return "null"
    return "a text" if isinstance(value, str) else "not a number"


def _kind(model: KnowledgeBaseModel, fields: dict[str, FieldInfo], expr: Expression, seen: set[str]) -> str | None:
    """What an expression gives: NUMBER, or words for what it gives instead (None: unknown
    name or a cycle, reported by other checks)."""
    if isinstance(expr, Op):
        return NUMBER
    if isinstance(expr, Const):
        return _kind_of_value(expr.value)
    if expr.source == "param":
        param = model.parameters.get(expr.name)
        return None if param is None else _kind_of_value(param.value)
    if expr.source == "field":
        info = fields.get(expr.name)
        if info is None:
            return None
        if info.type in ("number", "integer"):
            return NUMBER
        return {"boolean": "a true/false field", "array": "a list field"}.get(info.type, "a text field")
    derived = model.derived.get(expr.name)
    if derived is None or expr.name in seen:
        return None
    if derived.is_boolean:
        return "true or false (a condition)"
    values = [derived.value] if derived.value is not None else [value for _, value in derived.cases]
    kinds = {kind for value in values if (kind := _kind(model, fields, value, seen | {expr.name})) is not None}
    if not kinds or kinds == {NUMBER}:
        return NUMBER if kinds else None
    return "a category" if "a text" in kinds else sorted(kinds - {NUMBER})[0]


def _zero(model: KnowledgeBaseModel, fields: dict[str, FieldInfo], divisor: Expression) -> str | None:
    """Why a divisor is or may be 0 (words to follow its description), or None."""
    if isinstance(divisor, Const):
        value = divisor.value
        if _kind_of_value(value) == NUMBER and value == 0:
            return ""
    elif isinstance(divisor, Ref) and divisor.source == "param":
        param = model.parameters.get(divisor.name)
        if param is not None and _kind_of_value(param.value) == NUMBER and param.value == 0:
            return ", whose value is 0"
    elif isinstance(divisor, Ref) and divisor.source == "field":
        info = fields.get(divisor.name)
        if info is not None and info.type in ("number", "integer"):
            above = info.low is not None and (info.low > 0 or (info.low == 0 and info.exclusive_low))
            below = info.high is not None and info.high < 0
            if not above and not below:
                low = "-∞" if info.low is None else f"{info.low:g}"
                high = "∞" if info.high is None else f"{info.high:g}"
                return f", which the patient schema allows to be 0 (its range is {low}..{high})"
    return None
