"""Static checks of meaning: rules that can never fire, rules of opposite meaning that can fire
together, pairs meant to cover a range that leave a gap, rules without scenario tests. The pairs
are those the knowledge base declares (a rule's `complements`, checked in engine.check.links).

Conditions are expanded (boolean derived values inlined, negations pushed to the comparisons)
into a disjunction of conjunctions; a conjunction is satisfiable unless two of its comparisons
on the same value contradict each other (numeric intervals, enumerated values, present/absent).
The analysis is sound for what it reports: a rule reported as never firing cannot fire.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from fsgs_kb.engine.errors import KBError
from fsgs_kb.engine.load.conditions import walk
from fsgs_kb.engine.load.fields import catalogue
from fsgs_kb.engine.load.yamlsafe import Located, located_error
from fsgs_kb.engine.model import AllOf, AnyOf, Compare, Condition, KnowledgeBaseModel, Not, ParamRef, Rule, rule_order

Literal = tuple[Compare, bool]  # (comparison, must it be true?)
MAX_TERMS = 4096


class _TooLarge(Exception):
    pass


@dataclass
class _Var:
    """What a conjunction says of one value."""

    low: float = -math.inf
    low_closed: bool = False
    high: float = math.inf
    high_closed: bool = False
    allowed: set[Any] | None = None
    present: bool | None = None
    excluded: set[Any] = field(default_factory=set)

    def satisfiable(self) -> bool:
        if self.present is False and (self.allowed is not None or self.low > -math.inf or self.high < math.inf):
            return False
        if self.low > self.high or (self.low == self.high and not (self.low_closed and self.high_closed)):
            return False
        if self.allowed is not None:
            return bool(self.allowed - self.excluded)
        return True


class Analyzer:
    def __init__(self, model: KnowledgeBaseModel) -> None:
        self.model = model
        self.fields = catalogue()

    def threshold(self, operand: Any) -> Any:
        return self.model.parameters[operand.name].value if isinstance(operand, ParamRef) else operand

    def dnf(self, cond: Condition, positive: bool = True, depth: int = 0) -> list[list[Literal]]:
        """The condition (or its negation) as a list of conjunctions of literals."""
        if isinstance(cond, Not):
            return self.dnf(cond.item, not positive, depth)
        if isinstance(cond, Compare):
            derived = self.model.derived.get(cond.name) if cond.source == "derived" else None
            if derived is not None and derived.condition is not None and depth < 8:
                want = bool(cond.operand) == (cond.op == "eq")
                return self.dnf(derived.condition, positive == want, depth + 1)
            return [[(cond, positive)]]
        conjunctive = isinstance(cond, AllOf) == positive
        parts = [self.dnf(item, positive, depth) for item in cond.items]
        if not conjunctive:
            return [term for part in parts for term in part]
        terms: list[list[Literal]] = [[]]
        for part in parts:
            terms = [a + b for a in terms for b in part]
            if len(terms) > MAX_TERMS:
                raise _TooLarge
        return terms

    def _universe(self, leaf: Compare) -> set[Any] | None:
        if leaf.source == "field":
            info = self.fields.get(leaf.name)
            if info is not None and info.type == "boolean":
                return {True, False}
            return set(info.enum) if info is not None and info.enum and info.type != "array" else None
        derived = self.model.derived.get(leaf.name)
        if derived is not None and derived.cases:
            values = {getattr(expr, "value", None) for _, expr in derived.cases}
            return values if all(isinstance(v, str) for v in values) else None
        return None

    def satisfiable(self, term: list[Literal]) -> bool:
        variables: dict[tuple[str, str], _Var] = {}
        for leaf, positive in term:
            var = variables.setdefault((leaf.source, leaf.name), _Var())
            if not self._apply(var, leaf, positive):
                return False
        return all(var.satisfiable() for var in variables.values())

    def _apply(self, var: _Var, leaf: Compare, positive: bool) -> bool:
        op = leaf.op
        if op in ("present", "absent"):
            want = (op == "present") == positive
            if var.present is not None and var.present != want:
                return False
            var.present = want
            return True
        if var.present is False:
            return False
        var.present = True
        value = self.threshold(leaf.operand)
        if op == "includes_any":
            return not (positive and not value)
        if op in ("eq", "ne", "in"):
            values = set(value) if op == "in" else {value}
            restrict = positive != (op == "ne")  # eq/in true, or ne false: the value is one of these
            if restrict:
                base = var.allowed if var.allowed is not None else self._universe(leaf)
                var.allowed = values if base is None else base & values
                if op == "eq" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._bound(var, "ge", float(value))
                    self._bound(var, "le", float(value))
            else:
                if var.allowed is None:
                    var.allowed = self._universe(leaf)
                var.excluded |= values
            return True
        flipped = {"lt": "ge", "le": "gt", "gt": "le", "ge": "lt"}
        self._bound(var, op if positive else flipped[op], float(value))
        return True

    @staticmethod
    def _bound(var: _Var, op: str, value: float) -> None:
        if op in ("gt", "ge") and (value > var.low or (value == var.low and op == "gt")):
            var.low, var.low_closed = value, op == "ge"
        if op in ("lt", "le") and (value < var.high or (value == var.high and op == "lt")):
            var.high, var.high_closed = value, op == "le"

    def can_fire(self, *conditions: Condition) -> bool | None:
        """Can all the conditions be true for one patient? None when too large to decide."""
        try:
            terms: list[list[Literal]] = [[]]
            for cond in conditions:
                terms = [a + b for a in terms for b in self.dnf(cond)]
                if len(terms) > MAX_TERMS:
                    return None
        except _TooLarge:
            return None
        return any(self.satisfiable(term) for term in terms)


def effective_condition(model: KnowledgeBaseModel, rule: Rule) -> Condition:
    """When a rule can fire: a caveat only together with an advice it qualifies."""
    qualified = [model.rules[q].when for q in rule.qualifies if q in model.rules]
    if rule.kind != "caveat" or not qualified:
        return rule.when
    return AllOf((rule.when, AnyOf(tuple(qualified), rule.when.pointer)), rule.when.pointer)


def _numeric_leaves(rule: Rule) -> list[Compare]:

    return [leaf for leaf in walk(rule.when) if leaf.op in ("lt", "le", "gt", "ge")]


def pair_gap(model: KnowledgeBaseModel, a: Rule, b: Rule) -> tuple[Compare, str] | None:
    """For a pair of complements comparing one value with thresholds: the range neither covers."""
    for la in _numeric_leaves(a):
        for lb in _numeric_leaves(b):
            if (la.source, la.name) != (lb.source, lb.name):
                continue
            ta = model.parameters[la.operand.name].value if isinstance(la.operand, ParamRef) else la.operand
            tb = model.parameters[lb.operand.name].value if isinstance(lb.operand, ParamRef) else lb.operand
            lower = [(la.op, ta), (lb.op, tb)]
            low = [x for x in lower if x[0] in ("lt", "le")]
            high = [x for x in lower if x[0] in ("gt", "ge")]
            if len(low) != 1 or len(high) != 1:
                return la, "both rules bound the value from the same side"
            (lop, lt_), (hop, ht) = low[0], high[0]
            unit = model.parameters[la.operand.name].unit if isinstance(la.operand, ParamRef) else ""
            unit = "" if unit == "none" else f" {unit}"
            if lt_ > ht or (lt_ == ht and (lop == "le" or hop == "ge")):
                return None
            if lt_ == ht:
                return la, f"exactly {lt_}{unit} is covered by neither"
            return la, f"values from {lt_} to {ht}{unit} are covered by neither"
    return None


def pairs(model: KnowledgeBaseModel) -> list[tuple[Rule, Rule]]:
    """Rules meant as complements, as the knowledge base declares them (each rule's `complements`
    names the other): each pair once, in the order of results (kind, then id: the advice before
    the warning)."""
    out = []
    for rule in sorted(model.rules.values(), key=rule_order):
        other = model.rules.get(rule.complements) if rule.complements else None
        if other is not None and other.complements == rule.id and rule_order(rule) < rule_order(other):
            out.append((rule, other))
    return out


def _at(
    docs: dict[str, Located], rule: Rule, pointer: str, code: str, message: str, hint: str, severity: str = "error"
) -> KBError:
    return located_error(docs, rule.file, code, message, pointer, hint, severity=severity, rule_id=rule.id)


def meaning_problems(model: KnowledgeBaseModel, docs: dict[str, Located]) -> list[KBError]:
    """The static findings as located KBErrors (docs: file -> Located). The model is the valid
    part of a knowledge base (engine.check.valid): every name its conditions read resolves. A
    caveat is judged with the rules it qualifies, so only when all of them are in it."""

    analyzer = Analyzer(model)
    out: list[KBError] = []

    def at(rule: Rule, pointer: str, code: str, message: str, hint: str) -> None:
        out.append(_at(docs, rule, pointer, code, message, hint))

    # a caveat fires only together with a rule it qualifies: judged when each of them is in the model
    judged = {r.id for r in model.rules.values() if all(q in model.rules for q in r.qualifies)}
    for rule in model.rules.values():
        if rule.id in judged and analyzer.can_fire(effective_condition(model, rule)) is False:
            at(
                rule,
                "/when",
                "rule.never_fires",
                f"{rule.id} can never fire: its conditions contradict each other",
                "look for two comparisons of the same value that cannot both hold",
            )
    exclusive = pairs(model)
    exclusive += [
        (scope, rule)
        for scope in model.rules.values()
        if scope.kind == "out_of_scope"
        for rule in model.rules.values()
        if rule.kind != "out_of_scope"
    ]
    for a, b in exclusive:
        if {a.id, b.id} <= judged and analyzer.can_fire(effective_condition(model, a), effective_condition(model, b)):
            at(
                b,
                "/when",
                "rule.overlap",
                f"{a.id} and {b.id} can fire for the same patient",
                "make their conditions exclusive (e.g. le and gt of the same threshold)",
            )
    for a, b in pairs(model):
        gap = pair_gap(model, a, b)
        if gap is not None:
            leaf, text = gap
            at(
                a,
                leaf.pointer,
                "rule.gap",
                f"{a.id} and {b.id} leave a gap: {text}",
                "use complementary operators on one parameter (le/gt or lt/ge)",
            )
    return out


def untested_problems(model: KnowledgeBaseModel, docs: dict[str, Located], tested: set[str]) -> list[KBError]:
    """A warning for each rule no scenario file tests (`tested`: the rule ids they name)."""
    return [
        _at(
            docs,
            rule,
            "/id",
            "rule.untested",
            f"{rule.id} has no scenario test",
            f"add cases to tests/{rule.id}.yaml (see rules/README.md)",
            severity="warning",
        )
        for rule in model.rules.values()
        if rule.id not in tested
    ]
