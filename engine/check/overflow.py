"""Derived values whose arithmetic goes beyond the range of a double for values the patient
schema allows.

A derived value is computed exactly and then held as a double (engine/evaluate/overflow.py):
beyond ±1.8e308 none holds it, and each record for which it gets there is an `eval.overflow`
error. An expression that gets there for values the schema allows (age × 1e400, weight ×
1e306 above 180 kg, a dose ÷ 1e-320) is refused here, where it is written (`kb.overflow`),
with the range it takes: its interval over its inputs' schema ranges, narrowed by the numeric
comparisons with a number that its case requires, its `when` true and the earlier cases' false
(engine/intervals.py's exact interval arithmetic, which the exact semantics uses too).

A range that is unbounded because a divisor may come as near 0 as the schema allows (a dose ÷
a weight above 0 kg; the bundled percent changes from a creatinine above 0) is not refused:
it overflows only for values no clinician records, and those records are the runtime error.
A finite range holds every value the expression takes, so every expression that overflows for
a record its case applies to is refused. The range may be wider than the values taken, and an
expression refused that never overflows: interval arithmetic takes an input read twice as two
(age × 2e306 − age × 1e306 reaches 2.4e308 so), a derived value read by another as its whole
range, and a case's condition only through the comparisons with a number it requires. Such an
expression is written another way. Linear in the size of the derived values.
"""

from __future__ import annotations

import math
from decimal import Context, Decimal
from fractions import Fraction
from typing import Any

from fsgs_kb.engine.errors import KBError, pointer_join
from fsgs_kb.engine.intervals import UNBOUNDED, Interval, exact_number, operation_range
from fsgs_kb.engine.load.conditions import expression_refs
from fsgs_kb.engine.load.fields import FieldInfo, catalogue
from fsgs_kb.engine.load.yamlsafe import Located, located_error
from fsgs_kb.engine.model import (
    AllOf,
    Compare,
    Condition,
    Const,
    Derived,
    Expression,
    KnowledgeBaseModel,
    Not,
    Op,
    ParamRef,
)

Narrowed = dict[str, Interval]  # field path -> the range a case's `when` leaves it


class Ranges:
    """The range of each numeric derived value over the values the schema allows."""

    def __init__(self, model: KnowledgeBaseModel, fields: dict[str, FieldInfo]) -> None:
        self.model = model
        self.fields = fields
        self._derived: dict[str, Interval] = {}
        self._busy: set[str] = set()  # a cycle is the cycle check's to report: unbounded here

    def cases(self, spec: Derived) -> list[tuple[str, Expression, Interval | None]]:
        """(pointer, expression, range) of each expression giving the value; None: never applies."""
        if spec.value is not None:
            return [(pointer_join(spec.pointer, "value"), spec.value, self.expression(spec.value, {}))]
        out: list[tuple[str, Expression, Interval | None]] = []
        for number, (_, expr) in enumerate(spec.cases):
            narrowed = self.narrowing(spec, number)
            found = None if narrowed is None else self.expression(expr, narrowed)
            out.append((pointer_join(spec.pointer, "cases", number, "value"), expr, found))
        return out

    def derived(self, name: str) -> Interval:
        """A derived value's range as others read it: unbounded when any of its ranges reaches
        beyond a double (that one is reported; what reads it is not reported again)."""
        found = self._derived.get(name)
        spec = self.model.derived.get(name)
        if found is None and spec is not None and spec.condition is None and name not in self._busy:
            self._busy.add(name)
            ranges = [r for _, _, r in self.cases(spec) if r is not None]
            self._busy.discard(name)
            found = self._derived[name] = _hull(ranges) if not any(beyond(r) for r in ranges) else UNBOUNDED
        return found or UNBOUNDED

    def expression(self, expr: Expression, narrowed: Narrowed) -> Interval:
        if isinstance(expr, Const):
            return _point(expr.value)
        if isinstance(expr, Op):
            a, b = (self.expression(arg, narrowed) for arg in expr.args)
            try:
                return operation_range(expr.name, a, b)
            except OverflowError:  # every end infinite: an empty operand range, nothing to report
                return UNBOUNDED
        if expr.source == "param":
            param = self.model.parameters.get(expr.name)
            return _point(param.value) if param is not None else UNBOUNDED
        if expr.source == "derived":
            return self.derived(expr.name)
        return narrowed.get(expr.name) or self.field(expr.name)

    def field(self, path: str) -> Interval:
        info = self.fields.get(path)
        if info is None or info.type != "number":
            return UNBOUNDED
        low = None if info.low is None else exact_number(info.low)
        high = None if info.high is None else exact_number(info.high)
        return Interval(low, not info.exclusive_low, high, True)

    def narrowing(self, spec: Derived, case: int) -> Narrowed | None:
        """The ranges of the numeric fields whose comparisons with a number case number `case`
        requires: its `when` true and every earlier case's false (the first true case gives
        the value; one undecided leaves it unknown). None: a range left empty, so the case
        never gives the value."""
        narrowed: Narrowed = {}
        required = [c for when, _ in spec.cases[:case] for c in _required(when, True)]
        for leaf, op in required + _required(spec.cases[case][0], False):
            bound = _point(self._threshold(leaf.operand))
            if leaf.source != "field" or op not in _SIDES or bound.lo is None:
                continue
            low, high = _SIDES[op]
            narrowed[leaf.name] = meet = _meet(narrowed.get(leaf.name) or self.field(leaf.name), bound, low, high)
            if _empty(meet):
                return None
        return narrowed

    def _threshold(self, operand: Any) -> Any:
        if isinstance(operand, ParamRef):
            param = self.model.parameters.get(operand.name)
            return param.value if param is not None else None
        return operand


# which ends of a comparison's bound a field's range takes: (lower end, upper end), each
# None (kept) or whether the bound is attained
_SIDES: dict[str, tuple[bool | None, bool | None]] = {
    "lt": (None, False),
    "le": (None, True),
    "gt": (False, None),
    "ge": (True, None),
    "eq": (True, True),
}


_NEGATED = {"lt": "ge", "le": "gt", "gt": "le", "ge": "lt"}


def _required(cond: Condition, false: bool) -> list[tuple[Compare, str]]:
    """The comparisons (with the operator that holds) a condition requires to be true, or with
    `false` to be false: those of an `all` that is true or an `any` that is false, however
    nested, each negated under a `not` or a falsehood (`not lt` is `ge`)."""
    if isinstance(cond, Compare):
        op = _NEGATED.get(cond.op, "") if false else cond.op
        return [(cond, op)] if op else []
    if isinstance(cond, Not):
        return _required(cond.item, not false)
    if isinstance(cond, AllOf) != false:  # a true all, a false any: every item is
        return [pair for item in cond.items for pair in _required(item, false)]
    return []


def _meet(current: Interval, bound: Interval, low: bool | None, high: bool | None) -> Interval:
    lo, lo_closed, hi, hi_closed = current.lo, current.lo_closed, current.hi, current.hi_closed
    value = bound.lo
    assert value is not None
    if low is not None and (lo is None or value > lo or (value == lo and not low)):
        lo, lo_closed = value, low and (lo is None or value != lo or lo_closed)
    if high is not None and (hi is None or value < hi or (value == hi and not high)):
        hi, hi_closed = value, high and (hi is None or value != hi or hi_closed)
    return Interval(lo, lo_closed, hi, hi_closed)


def _empty(interval: Interval) -> bool:
    lo, hi = interval.lo, interval.hi
    if lo is None or hi is None:
        return False
    return lo > hi or (lo == hi and not (interval.lo_closed and interval.hi_closed))


def _point(value: Any) -> Interval:
    """A constant's range: itself when it is a finite number (anything else is reported elsewhere)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return UNBOUNDED
    if isinstance(value, float) and not math.isfinite(value):
        return UNBOUNDED
    return Interval.point(exact_number(value))


def _hull(ranges: list[Interval]) -> Interval:
    if not ranges or any(r.lo is None or r.hi is None for r in ranges):
        return UNBOUNDED
    lo = min(r.lo for r in ranges if r.lo is not None)
    hi = max(r.hi for r in ranges if r.hi is not None)
    return Interval(lo, True, hi, True)  # closedness does not matter to what reads it here


def _no_double(bound: Fraction | None) -> bool:
    """Beyond the range of a double: float() of it overflows (as the evaluators' would)."""
    if bound is None:
        return False
    try:
        float(bound)
    except OverflowError:
        return True
    return False


def beyond(interval: Interval) -> bool:
    """A finite range with an end no double holds."""
    return _no_double(interval.lo) or _no_double(interval.hi)


def _text(bound: Fraction) -> str:
    """A bound beyond a double, as 1.2e+402 (Decimal: float() cannot, str() of a 400-digit
    integer is slow and limited)."""
    context = Context(prec=2)
    return f"{context.divide(Decimal(bound.numerator), Decimal(bound.denominator)):e}"


def _inputs(ranges: Ranges, expr: Expression, narrowed: Narrowed) -> str:
    out = []
    for ref in expression_refs(expr):
        if ref.source == "field" and ref.name in ranges.fields:
            r = narrowed.get(ref.name) or ranges.field(ref.name)
            low = "" if r.lo is None else f"{'from' if r.lo_closed else 'above'} {_plain(r.lo)}"
            high = "" if r.hi is None else f"{'up to' if r.hi_closed else 'below'} {_plain(r.hi)}"
            out.append(f"{ref.name} {low} {high}".strip())
    return ", ".join(dict.fromkeys(out))


def _plain(number: Fraction) -> str:
    return str(number.numerator) if number.denominator == 1 else f"{float(number):g}"


def overflow_problems(model: KnowledgeBaseModel, docs: dict[str, Located]) -> list[KBError]:
    """An error at each derived value's expression whose range reaches beyond a double."""
    ranges = Ranges(model, catalogue())
    out: list[KBError] = []
    for spec in model.derived.values():
        if spec.condition is not None:
            continue
        for number, (pointer, expr, found) in enumerate(ranges.cases(spec)):
            if found is None or not beyond(found):
                continue
            end = found.hi if _no_double(found.hi) else found.lo
            assert end is not None
            narrowed = (ranges.narrowing(spec, number) if spec.cases else None) or {}
            inputs = _inputs(ranges, expr, narrowed)
            message = (
                f"derived value {spec.name} can reach {_text(end)}"
                + (f" for values the patient schema allows ({inputs})" if inputs else "")
                + ", beyond the largest double (1.8e+308): the result, the explanation and durable-rules "
                "could not hold it, and every such record would be an eval.overflow error"
            )
            hint = "scale the constants, or use a unit in which the value stays within ±1.8e+308"
            out.append(located_error(docs, spec.file, "kb.overflow", message, pointer, hint))
    return out
