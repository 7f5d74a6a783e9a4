"""Evaluate conditions and derived values in Python, with Kleene's three-valued logic.

This is the explaining half of the engine: for every comparison it records the actual value,
the threshold and where the threshold comes from, and whether the result was true, false or
unknown. durable-rules makes the decision (engine.durable_engine); this evaluation must agree
with it for every rule and every patient, and the explanation is built from it.

A missing value is unknown, not false: `all` is false as soon as one item is false, `any` is
true as soon as one item is true, and otherwise unknown items make the result unknown. The
missing inputs reported are those of the unknown items that could still change the result.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, NamedTuple

from fsgs_kb.engine.evaluate.overflow import DerivedOverflow
from fsgs_kb.engine.load.conditions import expression_refs, walk
from fsgs_kb.engine.load.fields import FieldInfo, catalogue
from fsgs_kb.engine.load.templating import float_text
from fsgs_kb.engine.model import (
    OP_SYMBOL,
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
    Ref,
)

Truth = bool | None
Memo = dict[tuple[Any, ...], tuple[Truth, dict[str, Any], list[str]]]


class DerivedValue(NamedTuple):
    """A derived value for one patient (immutable; a named tuple, as ten are made per record)."""

    name: str
    value: Any
    unit: str
    missing: tuple[str, ...]
    how: str


def _exact(number: Any) -> Fraction:
    """The decimal number as written (1.17 is 117/100, not the nearest binary fraction)."""
    return Fraction(repr(number)) if isinstance(number, float) else Fraction(number)


def _plain(number: Fraction) -> float | int:
    """An exact result as int or float (the float nearest it); beyond float range (a creatinine
    baseline of 5e-324 gives a 10^326 % rise) OverflowError: no double holds it
    (engine/evaluate/overflow.py)."""
    if number.denominator == 1 and abs(number) < 2**53:
        return int(number)
    return float(number)


def how_of(condition: Condition, leaves: list[tuple[str, bool | None]]) -> str:
    """How a boolean derived value came out, from its comparisons' texts and truths (in `walk`
    order). A plain `all` of comparisons: the decided ones joined by "and" (what is unknown is
    listed as missing). A condition with groups keeps them, each in brackets with its own truth
    ("[adult … false and systolic … false]: false or [child … true and percentile … true]:
    true"): joined flat by "and" it read as false for a value that is true (review 5)."""
    if is_flat(condition):
        return " and ".join(text for text, result in leaves if result is not None) or "unknown"
    return _group_how(condition, iter(leaves), True)[0]


def is_flat(condition: Condition) -> bool:
    """A comparison, or an `all` of comparisons: worded as one "and" chain."""
    return isinstance(condition, Compare) or (
        isinstance(condition, AllOf) and all(isinstance(item, Compare) for item in condition.items)
    )


TRUTH_WORD = {True: "true", False: "false", None: "unknown"}


def _group_how(condition: Condition, leaves: Iterator[tuple[str, bool | None]], top: bool) -> tuple[str, bool | None]:
    if isinstance(condition, Compare):
        return next(leaves)
    if isinstance(condition, Not):
        inner, truth = _group_how(condition.item, leaves, False)
        result = None if truth is None else not truth
        text = f"not {inner}"
    else:
        parts = [_group_how(item, leaves, False) for item in condition.items]
        truths = [truth for _, truth in parts]
        result = kleene_all(truths) if isinstance(condition, AllOf) else kleene_any(truths)
        text = (" and " if isinstance(condition, AllOf) else " or ").join(part for part, _ in parts)
    return (text if top else f"[{text}]: {TRUTH_WORD[result]}"), result


def fmt(value: Any) -> str:
    """Numbers as a clinician writes them: 5 not 5.0, 5.1 not 5.1000000000000005."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return float_text(value)
    if isinstance(value, (list, tuple)):
        if all(type(v) is str for v in value):  # as fmt writes each: the string itself
            return "[" + ", ".join(value) + "]"
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return str(value)


def compare(op: str, actual: Any, threshold: Any) -> bool:
    if op == "eq":
        return bool(actual == threshold)
    if op == "ne":
        return bool(actual != threshold)
    if op == "lt":
        return bool(actual < threshold)
    if op == "le":
        return bool(actual <= threshold)
    if op == "gt":
        return bool(actual > threshold)
    if op == "ge":
        return bool(actual >= threshold)
    if op == "in":
        return actual in threshold
    if op == "includes_any":
        return bool(set(actual) & set(threshold))
    raise ValueError(op)


def kleene_all(results: list[Truth]) -> Truth:
    if any(r is False for r in results):
        return False
    return True if all(r is True for r in results) else None


def kleene_any(results: list[Truth]) -> Truth:
    if any(r is True for r in results):
        return True
    return False if all(r is False for r in results) else None


@dataclass
class Outcome:
    """A condition's value with the comparisons that explain it and the inputs that would decide it."""

    result: Truth
    leaves: list[dict[str, Any]]
    missing: list[str]
    derived: list[str]


def policy_notes(model: KnowledgeBaseModel, definitions: bool = True) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The local choices that shape each field or derived value: parameters that declare it in
    `shapes`, and (with `definitions`) local-policy parameters used in a derived value's own
    definition."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def add(key: tuple[str, str], name: str) -> None:
        notes = out.setdefault(key, [])
        if all(n["parameter"] != name for n in notes):
            notes.append(policy_entry(model, name))

    for param in model.parameters.values():
        for ref in param.shapes:
            add(ref, param.name)
    for derived in model.derived.values() if definitions else ():
        conds = ([derived.condition] if derived.condition is not None else []) + [w for w, _ in derived.cases]
        names = [leaf.operand.name for c in conds for leaf in walk(c) if isinstance(leaf.operand, ParamRef)]
        exprs = ([derived.value] if derived.value is not None else []) + [e for _, e in derived.cases]
        names += [r.name for e in exprs for r in expression_refs(e) if r.source == "param"]
        for name in dict.fromkeys(names):
            if model.parameters[name].provenance_kind == "local":
                add(("derived", derived.name), name)
    return out


def policy_entry(model: KnowledgeBaseModel, name: str) -> dict[str, Any]:
    param = model.parameters[name]
    return {
        "parameter": name,
        "title": param.title,
        "value": list(param.value) if isinstance(param.value, (list, tuple)) else param.value,
        "unit": None if param.unit == "none" else param.unit,
        "provenance": _provenance_summary(param.provenance_kind, param.provenance),
    }


def copy_policy(notes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A fresh copy for one result (results share nothing mutable)."""
    return [
        {
            **n,
            "provenance": dict(n["provenance"]),
            "value": list(n["value"]) if isinstance(n["value"], list) else n["value"],
        }
        for n in notes
    ]


class Evaluator:
    def __init__(self, model: KnowledgeBaseModel) -> None:
        self.model = model
        self.fields: dict[str, FieldInfo] = catalogue()
        self.policy = policy_notes(model)  # for derived entries
        self.shaped = policy_notes(model, definitions=False)  # for comparisons
        self._plans: dict[int, _LeafPlan] = {}  # by id(): conditions live as long as the model
        self._shared: dict[tuple[Any, ...], _LeafPlan] = {}

    # ---- thresholds ---------------------------------------------------------------------------
    def threshold(self, operand: Any) -> Any:
        if isinstance(operand, ParamRef):
            return self.model.parameters[operand.name].value
        return operand

    # ---- derived values -----------------------------------------------------------------------
    def derive(self, values: dict[str, Any], memo: Memo | None = None) -> dict[str, DerivedValue]:
        """Every derived value, in dependency order. `memo` shares comparisons already made for
        this patient (the same comparison appears in many rules)."""
        memo = {} if memo is None else memo
        out: dict[str, DerivedValue] = {}
        for name in self.model.derived_order:
            out[name] = self._derive_one(self.model.derived[name], values, out, memo)
        return out

    def _derive_one(
        self, spec: Derived, values: dict[str, Any], known: dict[str, DerivedValue], memo: Memo
    ) -> DerivedValue:
        if spec.condition is not None:
            outcome = self.condition(spec.condition, values, known, memo)
            how = how_of(spec.condition, [(leaf["text"], leaf["result"]) for leaf in outcome.leaves])
            return DerivedValue(spec.name, outcome.result, spec.unit, tuple(outcome.missing), how)
        if spec.value is not None:
            return self._expression_value(spec, spec.value, values, known, "", None)
        missing: list[str] = []
        for number, (when, expr) in enumerate(spec.cases):
            case = self.condition(when, values, known, memo)
            if case.result is True:
                reason = "; ".join(leaf["text"] for leaf in case.leaves)
                return self._expression_value(spec, expr, values, known, f" (because {reason})", number)
            if case.result is None:
                missing.extend(m for m in case.missing if m not in missing)
                return DerivedValue(spec.name, None, spec.unit, tuple(missing), "unknown: needs " + ", ".join(missing))
        return DerivedValue(spec.name, None, spec.unit, (), "no case applies")

    def _expression_value(
        self,
        spec: Derived,
        expr: Expression,
        values: dict[str, Any],
        known: dict[str, DerivedValue],
        reason: str,
        case: int | None,
    ) -> DerivedValue:
        """`case`: the number of the case whose value `expr` is (None: the derived value's `value`)."""
        value, text, missing = self.expression(expr, values, known)
        if value is None:
            return DerivedValue(spec.name, None, spec.unit, tuple(missing), "unknown: needs " + ", ".join(missing))
        try:
            plain = _plain(value) if isinstance(value, Fraction) else value
        except OverflowError:
            raise DerivedOverflow(spec.name, case) from None
        how = (
            f"{text} = {fmt(plain)} {spec.unit}".rstrip()
            if isinstance(value, Fraction) and not isinstance(expr, Ref)
            else f"{text}"
        )
        return DerivedValue(spec.name, plain, spec.unit, (), how + reason)

    def expression(
        self, expr: Expression, values: dict[str, Any], known: dict[str, DerivedValue]
    ) -> tuple[Any, str, list[str]]:
        """(value, how it was computed, missing inputs); numbers come back as exact Fractions."""
        if isinstance(expr, Const):
            return expr.value, fmt(expr.value), []
        if isinstance(expr, Ref):
            return self._ref(expr, values, known)
        assert isinstance(expr, Op)
        parts = [self.expression(arg, values, known) for arg in expr.args]
        missing = [m for part in parts for m in part[2]]
        if missing or any(p[0] is None for p in parts):
            return None, "", missing
        a, b = (_exact(p[0]) for p in parts)
        ta, tb = parts[0][1], parts[1][1]
        if expr.name == "divide":
            return (a / b if b else None), f"{ta} ÷ {tb}", []
        if expr.name == "multiply":
            return a * b, f"{ta} × {tb}", []
        if expr.name == "subtract":
            return a - b, f"{ta} − {tb}", []
        return ((b - a) / a * 100 if a else None), f"({tb} − {ta}) ÷ {ta} × 100", []

    def _ref(self, ref: Ref, values: dict[str, Any], known: dict[str, DerivedValue]) -> tuple[Any, str, list[str]]:
        if ref.source == "param":
            param = self.model.parameters[ref.name]
            return _exact(param.value), f"{fmt(param.value)} {param.unit}", []
        if ref.source == "derived":
            dv = known[ref.name]
            value = (
                _exact(dv.value) if isinstance(dv.value, (int, float)) and not isinstance(dv.value, bool) else dv.value
            )
            return value, f"{fmt(dv.value)} {dv.unit}", list(dv.missing)
        info = self.fields[ref.name]
        value = values.get(ref.name)
        if value is None:
            return None, "", [info.missing_pointer]
        unit = self._unit_of(info, values)
        number = _exact(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
        return number, f"{fmt(value)} {unit}".rstrip(), []

    def _unit_of(self, info: FieldInfo, values: dict[str, Any]) -> str:
        if info.unit_from:
            return str(values.get(info.path.rsplit(".", 1)[0] + "." + info.unit_from) or "")
        return "" if info.unit in (None, "none") else str(info.unit)

    # ---- conditions ---------------------------------------------------------------------------
    def condition(
        self, cond: Condition, values: dict[str, Any], known: dict[str, DerivedValue], memo: Memo | None = None
    ) -> Outcome:
        memo = {} if memo is None else memo
        if isinstance(cond, Compare):
            return self._leaf(cond, values, known, memo)
        if isinstance(cond, Not):
            inner = self.condition(cond.item, values, known, memo)
            result = None if inner.result is None else not inner.result
            return Outcome(result, inner.leaves, inner.missing, inner.derived)
        parts = [self.condition(item, values, known, memo) for item in cond.items]
        combine = kleene_all if isinstance(cond, AllOf) else kleene_any
        result = combine([p.result for p in parts])
        missing: list[str] = []
        if result is None:
            for part in parts:
                if part.result is None:
                    missing.extend(m for m in part.missing if m not in missing)
        leaves = [leaf for p in parts for leaf in p.leaves]
        derived = [d for p in parts for d in p.derived]
        return Outcome(result, leaves, missing, derived)

    def _leaf(self, leaf: Compare, values: dict[str, Any], known: dict[str, DerivedValue], memo: Memo) -> Outcome:
        plan = self._plans.get(id(leaf)) or self._plan(leaf)
        hit = memo.get(plan.key)
        if hit is None:
            hit = memo[plan.key] = self._judge(plan, values, known)
        result, entry, missing = hit
        return Outcome(result, [{"pointer": leaf.pointer, **entry}], list(missing), plan.derived_names)

    def _judge(
        self, plan: _LeafPlan, values: dict[str, Any], known: dict[str, DerivedValue]
    ) -> tuple[Truth, dict[str, Any], list[str]]:
        """A comparison's value and explanation for this patient (without its place in a rule)."""
        leaf = plan.leaf
        if plan.derived:
            dv = known[leaf.name]
            actual, missing = dv.value, list(dv.missing)
            unit = plan.unit
        else:
            actual = values.get(leaf.name)
            missing = [plan.missing_pointer] if actual is None else []
            unit = str(values.get(plan.unit_from) or "") if plan.unit_from else plan.unit
        if leaf.op == "present" or leaf.op == "absent":
            result: Truth = (actual is not None) == (leaf.op == "present")
            missing = []
        elif actual is None:
            result = None
        else:
            result = compare(leaf.op, actual, plan.threshold)
        return result, plan.explain(actual, unit, result, missing), missing

    def leaf_plan(self, leaf: Compare) -> _LeafPlan:
        """The patient-independent part of a comparison (threshold, unit, provenance, wording)."""
        return self._plans.get(id(leaf)) or self._plan(leaf)

    def _plan(self, leaf: Compare) -> _LeafPlan:
        """Everything about a comparison that does not depend on the patient, computed once;
        identical comparisons in different rules share one plan (and one memo entry)."""
        param = self.model.parameters[leaf.operand.name] if isinstance(leaf.operand, ParamRef) else None
        if leaf.source == "derived":
            unit = self.model.derived[leaf.name].unit
            plan = _LeafPlan(leaf, self.threshold(leaf.operand), True, "" if unit == "none" else unit, None, "", param)
            plan.policy = self.shaped.get(("derived", leaf.name), [])
        else:
            info = self.fields[leaf.name]
            unit_from = info.path.rsplit(".", 1)[0] + "." + info.unit_from if info.unit_from else None
            plan = _LeafPlan(
                leaf,
                self.threshold(leaf.operand),
                False,
                "" if info.unit in (None, "none") else str(info.unit),
                unit_from,
                info.missing_pointer,
                param,
            )
            plan.policy = self.shaped.get(("field", leaf.name), [])
        plan = self._shared.setdefault(plan.key, plan)
        self._plans[id(leaf)] = plan
        return plan


class _LeafPlan:
    """A comparison with its threshold, unit and provenance resolved, ready to explain."""

    def __init__(
        self,
        leaf: Compare,
        threshold: Any,
        derived: bool,
        unit: str,
        unit_from: str | None,
        missing_pointer: str,
        param: Any,
    ) -> None:
        self.leaf = leaf
        self.threshold = threshold
        self.derived = derived
        self.unit = unit
        self.unit_from = unit_from
        self.missing_pointer = missing_pointer
        self.symbol = OP_SYMBOL[leaf.op]
        self.key = (leaf.source, leaf.name, leaf.op, repr(leaf.operand))
        self.derived_names = [leaf.name] if derived else []
        self.static: dict[str, Any] = {
            leaf.source: leaf.name,
            "op": leaf.op,
            "threshold": threshold,
        }
        if param is not None:
            self.static["parameter"] = param.name
            self.static["provenance"] = _provenance_summary(param.provenance_kind, param.provenance)
        self.numeric = leaf.op in ("lt", "le", "gt", "ge")
        self.need = f"{self.symbol} {fmt(threshold)}"
        self.policy: list[dict[str, Any]] = []

    def explain(self, actual: Any, unit: str | None, result: Truth, missing: list[str]) -> dict[str, Any]:
        entry = dict(self.static)
        if "provenance" in entry:  # results are handed to callers: share nothing mutable between them
            entry["provenance"] = dict(entry["provenance"])
        if isinstance(self.threshold, list):
            entry["threshold"] = list(self.threshold)
        if self.policy:
            entry["policy"] = copy_policy(self.policy)
        entry["actual"] = actual
        entry["unit"] = unit or None
        entry["result"] = result
        suffix = f" {unit}" if unit else ""
        name = self.leaf.name
        if self.leaf.op in ("present", "absent"):
            entry["text"] = f"{name} {self.symbol}: {fmt(result)}"
        elif actual is None:
            entry["text"] = f"{name} is unknown (needs {self.need}{suffix})"
            entry["missing"] = missing
        else:
            entry["text"] = f"{name} = {fmt(actual)}{suffix} (needs {self.need}{suffix}): {fmt(result)}"
            if self.numeric:
                entry["distance"] = f"{fmt(actual)} vs {self.need}"
                entry["margin"] = float(f"{actual - self.threshold:.12g}")
        return entry


def _provenance_summary(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    if kind == "source":
        return {"kind": "source", "source": data["source"], "sentence": data["sentence"], "quote": data["quote"]}
    if kind == "cited":
        return {"kind": "cited", "reference": " ".join(data["reference"].split()), "verified": data["verified"]}
    return {"kind": "local", "decided_on": data["decided_on"], "decided_by": data.get("decided_by") or None}


def exact(number: Any) -> Fraction:
    """The decimal number as written, as an exact fraction (see _exact)."""
    return _exact(number)


def plain(number: Fraction) -> float | int:
    """An exact result as int or float (see _plain)."""
    return _plain(number)
