"""Parse the condition and expression language of rules and derived values.

A condition is `all: [...]`, `any: [...]`, `not: {...}`, or one comparison:
`{field: cyclosporine.status, eq: current}` / `{derived: dose_mg_per_kg_day, gt: {param: max_daily_dose}}`.
The parser reports each mistake where it is, with a "did you mean", instead of the schema's
"is not valid under any of the given schemas". Conditions nest at most MAX_CONDITION_DEPTH
all/any/not deep (`rule.too_deep`): durable-rules 2.0.28 holds at most 15 all/any groups in one
pattern (its error 113), and no clinical rule needs more than a few levels.
"""

from __future__ import annotations

import re
from typing import Any

from fsgs_kb.engine.errors import KBError, pointer_join
from fsgs_kb.engine.load.yamlsafe import Located
from fsgs_kb.engine.model import (
    COMPARISON_OPS,
    AllOf,
    AnyOf,
    Compare,
    Condition,
    Const,
    Expression,
    KnowledgeBaseModel,
    Not,
    Op,
    ParamRef,
    Ref,
    Rule,
)
from fsgs_kb.engine.suggest import did_you_mean

EXPRESSION_OPS = ("divide", "multiply", "subtract", "percent_change")
OPERAND_KEYS = ("field", "derived")
LIST_OPS = ("in", "includes_any")  # the operators that take a list of values
CONDITION_KEYS = ("all", "any", "not", *OPERAND_KEYS, *COMPARISON_OPS)
MAX_CONDITION_DEPTH = 12


class ConditionParser:
    """Collects errors while parsing, so one bad comparison does not hide the next."""

    def __init__(self, doc: Located, rule_id: str | None = None) -> None:
        self.doc = doc
        self.rule_id = rule_id
        self.errors: list[KBError] = []

    def _fail(self, code: str, message: str, pointer: str, hint: str | None = None, key: bool = False) -> None:
        self.errors.append(self.doc.error(code, message, pointer, hint, key=key, rule_id=self.rule_id))

    def condition(self, data: Any, pointer: str, depth: int = 0) -> Condition | None:
        if not isinstance(data, dict) or not data:
            self._fail(
                "rule.condition",
                "a condition must be a mapping such as {field: NAME, eq: VALUE} or {all: [...]}",
                pointer,
                "write one comparison, e.g. {field: cyclosporine.status, eq: current}, or combine several "
                "with all: [...], any: [...] or not: {...}",
            )
            return None
        unknown = [k for k in data if k not in CONDITION_KEYS]
        for key in unknown:
            self._fail(
                "rule.unknown_operator",
                f"unknown word '{key}' in a condition",
                pointer_join(pointer, key),
                did_you_mean(key, set(CONDITION_KEYS)) or f"use one of {', '.join(CONDITION_KEYS)}",
                key=True,
            )
        if unknown:
            return None
        for combinator in ("all", "any", "not"):
            if combinator in data:
                if depth >= MAX_CONDITION_DEPTH:
                    self._fail(
                        "rule.too_deep",
                        f"conditions nest more than {MAX_CONDITION_DEPTH} all/any/not deep here",
                        pointer,
                        "flatten it: an all inside an all (or an any inside an any) can be one list, "
                        "and not(not x) is x",
                    )
                    return None
                return self._combinator(combinator, data, pointer, depth + 1)
        return self._comparison(data, pointer)

    def _combinator(self, word: str, data: dict[str, Any], pointer: str, depth: int) -> Condition | None:
        if len(data) != 1:
            self._fail(
                "rule.condition",
                f"'{word}' must stand alone in its mapping; put the other keys in a separate item",
                pointer,
                f"move the other keys into an item of the list, e.g. {word}: [{{field: A, eq: 1}}, {{field: B, eq: 2}}]"
                if word != "not"
                else "wrap the comparisons in all: [...] and negate that: not: {all: [...]}",
            )
            return None
        child = pointer_join(pointer, word)
        if word == "not":
            inner = self.condition(data["not"], child, depth)
            return Not(inner, pointer) if inner is not None else None
        items = data[word]
        if not isinstance(items, list) or not items:
            self._fail(
                "rule.condition",
                f"'{word}' takes a non-empty list of conditions",
                child,
                f"write {word}: [{{field: NAME, eq: VALUE}}, ...] with at least one item (one item per line "
                "starting with '- ' also works)",
            )
            return None
        parsed = [self.condition(item, pointer_join(child, i), depth) for i, item in enumerate(items)]
        if any(p is None for p in parsed):
            return None
        cls = AllOf if word == "all" else AnyOf
        return cls(tuple(p for p in parsed if p is not None), pointer)

    def _comparison(self, data: dict[str, Any], pointer: str) -> Condition | None:
        sources = [k for k in OPERAND_KEYS if k in data]
        ops = [k for k in COMPARISON_OPS if k in data]
        if len(sources) != 1:
            self._fail(
                "rule.condition",
                "a comparison names exactly one 'field' or 'derived' value",
                pointer,
                "e.g. {field: cyclosporine.status, eq: current}",
            )
            return None
        if len(ops) != 1:
            found = ", ".join(ops) or "none"
            self._fail(
                "rule.condition",
                f"a comparison has exactly one operator (found: {found})",
                pointer,
                f"use one of {', '.join(COMPARISON_OPS)}",
            )
            return None
        source, op = sources[0], ops[0]
        name = data[source]
        if not isinstance(name, str) or not name:
            self._fail(
                "rule.condition",
                f"'{source}' must name a value",
                pointer_join(pointer, source),
                f"write {source}: NAME, e.g. "
                + (
                    "field: cyclosporine.status (a field of the patient schema)"
                    if source == "field"
                    else "derived: dose_mg_per_kg_day (a name from derived.yaml)"
                ),
            )
            return None
        reported = len(self.errors)
        operand = self._operand(op, data[op], pointer_join(pointer, op))
        if operand is None and len(self.errors) > reported:  # a threshold that is no value: already said
            return None
        return Compare(source, name, op, operand, pointer)

    def _operand(self, op: str, raw: Any, pointer: str) -> Any:
        if op in ("present", "absent"):
            if raw is not True:
                self._fail("rule.condition", f"'{op}' takes the value true", pointer, f"write {op}: true")
            return True
        if isinstance(raw, dict):
            if set(raw) != {"param"} or not isinstance(raw["param"], str):
                self._fail(
                    "rule.condition",
                    "a named threshold is written {param: NAME}",
                    pointer,
                    "write {param: NAME} with a parameter of parameters.yaml, e.g. {param: max_daily_dose}, "
                    "or the value itself",
                )
                return None
            return ParamRef(raw["param"])
        if isinstance(raw, list) != (op in LIST_OPS):
            message, hint = operand_shape(op, raw)
            self._fail("rule.operator_type", message, pointer, hint)
        if isinstance(raw, list):
            return tuple(raw)
        return raw

    def expression(self, data: Any, pointer: str, operand: bool = False) -> Expression | None:
        """`operand`: an operand of an arithmetic operation (a constant there is a number)."""
        if not isinstance(data, dict):
            problem = constant_problem(data, operand)
            if problem is not None:
                self._fail("derived.expression", problem[0], pointer, problem[1])
                return None
            return Const(data)
        if len(data) != 1:
            self._fail(
                "derived.expression",
                "an expression is one of {field: ...}, {derived: ...}, "
                "{param: ...}, {divide: [A, B]}, {percent_change: {from: A, to: B}}",
                pointer,
                "keep one key in this mapping; an operation's operands go in its list, e.g. "
                "divide: [{field: cyclosporine.daily_dose.value}, {field: weight_kg}]",
            )
            return None
        key, value = next(iter(data.items()))
        child = pointer_join(pointer, key)
        if key in ("field", "derived", "param"):
            return Ref(key, str(value), child)
        if key == "percent_change":
            if not isinstance(value, dict) or set(value) != {"from", "to"}:
                self._fail(
                    "derived.expression",
                    "percent_change takes {from: A, to: B}",
                    child,
                    "write percent_change: {from: {field: serum_creatinine.baseline}, to: "
                    "{field: serum_creatinine.current}}",
                )
                return None
            args = (
                self.expression(value["from"], pointer_join(child, "from"), operand=True),
                self.expression(value["to"], pointer_join(child, "to"), operand=True),
            )
        elif key in EXPRESSION_OPS:
            if not isinstance(value, list) or len(value) != 2:
                self._fail(
                    "derived.expression",
                    f"{key} takes a list of two expressions",
                    child,
                    f"write {key}: [A, B] with two operands, e.g. {key}: [{{field: cyclosporine.daily_dose.value}}, "
                    "{field: weight_kg}]",
                )
                return None
            args = (
                self.expression(value[0], pointer_join(child, 0), operand=True),
                self.expression(value[1], pointer_join(child, 1), operand=True),
            )
        else:
            self._fail(
                "derived.expression",
                f"unknown expression '{key}'",
                child,
                did_you_mean(key, {"field", "derived", "param", *EXPRESSION_OPS})
                or f"use one of field, derived, param, {', '.join(EXPRESSION_OPS)}",
                key=True,
            )
            return None
        if any(a is None for a in args):
            return None
        return Op(key, tuple(a for a in args if a is not None), child)


def constant_problem(value: Any, operand: bool) -> tuple[str, str] | None:
    """(message, hint) for a constant an operation cannot compute with: anything but a number
    ('abc' failed every record, true counted as 1, and a quoted '1e200' was parsed as a number, as
    '1e999999999' would have been, digit by digit). Infinity and NaN never get here
    (yaml.not_finite, engine/load/yamlsafe.py)."""
    if operand and (isinstance(value, bool) or not isinstance(value, (int, float))):
        hint = "write a number, or {field: ...}, {param: ...}, {derived: ...} or an operation"
        if isinstance(value, str) and NUMBER_TEXT.fullmatch(value.strip()):
            hint = f"write {value.strip()} without quotes: quoted, it is text"
        return f"an operand of an operation is a number; {_as_written(value)} is not", hint
    return None


def _as_written(value: Any) -> str:
    """A constant as YAML writes it (true, null, 'text')."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return repr(value)


NUMBER_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")  # a number, quoted


def operand_shape(op: str, value: Any, param: str | None = None) -> tuple[str, str]:
    """(message, hint) for a value of the wrong shape for its operator: in and includes_any take a
    list, the others one value (`param`: the parameter that gives the value)."""
    given = f"parameter '{param}' is {value!r}" if param is not None else f"it is given {value!r}"
    if op in LIST_OPS:
        return f"'{op}' takes a list of values, but {given}", f"write {op}: [A, B], or eq: for one value"
    return f"'{op}' takes one value, but {given}", "write in: [A, B] for any of several values"


def walk(condition: Condition) -> list[Compare]:
    """Every comparison of a condition tree, in reading order."""
    if isinstance(condition, Compare):
        return [condition]
    if isinstance(condition, Not):
        return walk(condition.item)
    return [leaf for item in condition.items for leaf in walk(item)]


def expression_refs(expr: Expression) -> list[Ref]:
    """Every field, derived or param reference of an expression."""
    if isinstance(expr, Ref):
        return [expr]
    if isinstance(expr, Op):
        return [ref for arg in expr.args for ref in expression_refs(arg)]
    return []


def reach(model: KnowledgeBaseModel, rule: Rule) -> tuple[list[str], list[str]]:
    """(parameters, derived values) a rule's condition reaches, directly or through derived values."""
    names = [leaf.operand.name for leaf in walk(rule.when) if isinstance(leaf.operand, ParamRef)]
    todo = [leaf.name for leaf in walk(rule.when) if leaf.source == "derived"]
    seen: list[str] = []
    while todo:
        name = todo.pop(0)
        if name in seen or name not in model.derived:
            continue
        seen.append(name)
        spec = model.derived[name]
        conds = ([spec.condition] if spec.condition else []) + [w for w, _ in spec.cases]
        for leaf in (leaf for c in conds for leaf in walk(c)):
            if isinstance(leaf.operand, ParamRef):
                names.append(leaf.operand.name)
            if leaf.source == "derived":
                todo.append(leaf.name)
        exprs = ([spec.value] if spec.value else []) + [e for _, e in spec.cases]
        for ref in (r for e in exprs for r in expression_refs(e)):
            if ref.source == "param":
                names.append(ref.name)
            elif ref.source == "derived":
                todo.append(ref.name)
    return list(dict.fromkeys(names)), seen
