"""Derived values whose `cases` leave recorded inputs uncovered (warning `derived.case_uncovered`).

A derived value given by cases is unknown when no case applies: the evaluator cannot tell "no
case for this record" from "not recorded", so whatever compares it stays open for a record that
decides it. This is checked where it can be exactly: over every combination of the values of the
enumerated, boolean and unit fields the cases' `when`s test, a combination is uncovered when every
`when` is false for it, whatever the record's other values (any other comparison counts as
possibly true, so no warning is raised for a combination some case might cover).

An uncovered combination does no harm where the value is never needed for it: a use is guarded
when, for that combination, something around it is decided without it - an `all` with another
item that is false (CAVEAT-KIDNEY-FUNCTION compares the clearance only beside
`kidney_function.unit eq mL/min/1.73m2`), an `any` with another item that is true, or, inside
another derived value's case, its `when` false or an earlier case's `when` true. Each use left
open for some uncovered combination is one warning at the use, naming the combinations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import product
from typing import Any

from fsgs_kb.engine.check.static import Analyzer
from fsgs_kb.engine.errors import KBError, pointer_join
from fsgs_kb.engine.load.conditions import expression_refs, walk
from fsgs_kb.engine.load.fields import FieldInfo
from fsgs_kb.engine.load.yamlsafe import Located, located_error
from fsgs_kb.engine.model import AllOf, AnyOf, Compare, Condition, Derived, Expression, KnowledgeBaseModel, Not

Combination = dict[str, Any]  # field -> one of its values
MAX_COMBINATIONS = 1024  # beyond this many the check is skipped, not approximated
EXACT_OPS = ("eq", "ne", "in", "present", "absent")
SHOWN = 3  # combinations named in one warning


@dataclass(frozen=True)
class Use:
    """Where a derived value is read, and whether that place is decided without it for a combination."""

    file: str
    pointer: str
    rule_id: str | None
    decided: Callable[[Combination], bool]


class CaseCoverage:
    def __init__(self, model: KnowledgeBaseModel) -> None:
        self.model = model
        self.analyzer = Analyzer(model)

    # ---- three-valued truth for one combination: None when other values of the record decide it ----
    def truth(self, cond: Condition, combo: Combination) -> bool | None:
        if isinstance(cond, Compare):
            return self._leaf(cond, combo)
        if isinstance(cond, Not):
            inner = self.truth(cond.item, combo)
            return None if inner is None else not inner
        results = [self.truth(item, combo) for item in cond.items]
        decisive = isinstance(cond, AnyOf)  # an any is decided by a true item, an all by a false one
        if decisive in results:
            return decisive
        return None if None in results else not decisive

    def _leaf(self, leaf: Compare, combo: Combination) -> bool | None:
        if leaf.source != "field" or leaf.name not in combo or leaf.op not in EXACT_OPS:
            return None
        if leaf.op in ("present", "absent"):
            return leaf.op == "present"
        value, operand = combo[leaf.name], self.analyzer.threshold(leaf.operand)
        if leaf.op == "in":
            return any(_same(value, x) for x in operand)
        return _same(value, operand) == (leaf.op == "eq")

    # ---- the combinations no case covers -----------------------------------------------------------
    def inputs(self, derived: Derived) -> dict[str, tuple[Any, ...]]:
        """The enumerated, boolean and unit fields the cases test, with their values."""
        out: dict[str, tuple[Any, ...]] = {}
        for when, _ in derived.cases:
            for leaf in walk(when):
                values = _values(self.analyzer.fields.get(leaf.name)) if leaf.source == "field" else None
                if values and leaf.op in EXACT_OPS:
                    out[leaf.name] = values
        return out

    def uncovered(self, derived: Derived) -> list[Combination]:
        inputs = self.inputs(derived)
        size = 1
        for values in inputs.values():
            size *= len(values)
        if not inputs or size > MAX_COMBINATIONS:
            return []
        combos = [dict(zip(inputs, values, strict=True)) for values in product(*inputs.values())]
        return [c for c in combos if all(self.truth(when, c) is False for when, _ in derived.cases)]

    # ---- where the value is read ---------------------------------------------------------------------
    def uses(self, name: str) -> Iterator[Use]:
        for rule in self.model.rules.values():
            yield from self._condition_uses(rule.when, name, rule.file, rule.id)
        for scope in self.model.scope:
            if scope.when is not None:
                yield from self._condition_uses(scope.when, name, scope.file, None)
        for other in self.model.derived.values():
            if other.condition is not None:
                yield from self._condition_uses(other.condition, name, other.file, None)
            if other.value is not None:
                yield from self._expression_uses(other.value, name, other.file, lambda c: False)
            for i, (when, expr) in enumerate(other.cases):
                yield from self._case_uses(other, i, when, expr, name)

    def _case_uses(self, other: Derived, i: int, when: Condition, expr: Expression, name: str) -> Iterator[Use]:
        earlier = [w for w, _ in other.cases[:i]]

        def passed_over(combo: Combination) -> bool:  # an earlier case applies: this one is not reached
            return any(self.truth(w, combo) is True for w in earlier)

        yield from self._condition_uses(when, name, other.file, None, passed_over)
        yield from self._expression_uses(
            expr, name, other.file, lambda c: passed_over(c) or self.truth(when, c) is False
        )

    def _condition_uses(
        self,
        cond: Condition,
        name: str,
        file: str,
        rule_id: str | None,
        outside: Callable[[Combination], bool] = lambda c: False,
    ) -> Iterator[Use]:
        for leaf, path in _paths(cond, name):
            yield Use(file, leaf.pointer, rule_id, self._decided(path, outside))

    def _decided(
        self, path: tuple[tuple[Condition, int], ...], outside: Callable[[Combination], bool]
    ) -> Callable[[Combination], bool]:
        return lambda combo: outside(combo) or self._decided_around(path, combo)

    @staticmethod
    def _expression_uses(
        expr: Expression, name: str, file: str, decided: Callable[[Combination], bool]
    ) -> Iterator[Use]:
        for ref in expression_refs(expr):
            if ref.source == "derived" and ref.name == name:
                yield Use(file, ref.pointer, None, decided)

    def _decided_around(self, path: tuple[tuple[Condition, int], ...], combo: Combination) -> bool:
        """Some all/any around the use is decided by one of its other items."""
        for node, index in path:
            if isinstance(node, (AllOf, AnyOf)):
                decisive = isinstance(node, AnyOf)
                if any(self.truth(item, combo) is decisive for i, item in enumerate(node.items) if i != index):
                    return True
        return False


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b  # True is not 1


def _values(info: FieldInfo | None) -> tuple[Any, ...] | None:
    if info is None or info.type == "array":
        return None
    return (True, False) if info.type == "boolean" else info.enum


def _paths(
    cond: Condition, name: str, path: tuple[tuple[Condition, int], ...] = ()
) -> Iterator[tuple[Compare, tuple[tuple[Condition, int], ...]]]:
    """Each comparison of the derived value `name`, with the all/any/not around it (and its place in each)."""
    if isinstance(cond, Compare):
        if cond.source == "derived" and cond.name == name:
            yield cond, path
        return
    items = (cond.item,) if isinstance(cond, Not) else cond.items
    for i, item in enumerate(items):
        yield from _paths(item, name, (*path, (cond, i)))


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _combinations_text(combos: list[Combination]) -> str:
    if len(combos[0]) == 1:
        (field,) = combos[0]
        shown = " or ".join(_text(c[field]) for c in combos[:SHOWN])
        text = f"{field} = {shown}"
    else:
        text = " or ".join("(" + ", ".join(f"{f} = {_text(v)}" for f, v in c.items()) + ")" for c in combos[:SHOWN])
    return text + (f" (and {len(combos) - SHOWN} more)" if len(combos) > SHOWN else "")


def _guard_hint(coverage: CaseCoverage, derived: Derived, combos: list[Combination]) -> str:
    inputs = coverage.inputs(derived)
    if len(inputs) != 1:
        return f"or compare it only beside conditions on {', '.join(inputs)} that are false for those records"
    (field, values) = next(iter(inputs.items()))
    covered = [_text(v) for v in values if all(not _same(v, c[field]) for c in combos)]
    guard = f"eq: {covered[0]}" if len(covered) == 1 else f"in: [{', '.join(covered)}]"
    return f"or compare it in an all beside {{field: {field}, {guard}}}, which is false for those records"


def case_problems(model: KnowledgeBaseModel, docs: dict[str, Located]) -> list[KBError]:
    """One warning per use of a derived value that its cases leave unknown for a recorded combination.
    The model is the valid part of a knowledge base (engine.check.valid): a derived value with an
    error, or a use in a condition with one, is not judged."""
    coverage = CaseCoverage(model)
    out: list[KBError] = []
    for derived in model.derived.values():
        combos = coverage.uncovered(derived) if derived.cases else []
        if not combos:
            continue
        for use in coverage.uses(derived.name):
            open_for = [c for c in combos if not use.decided(c)]
            if not open_for:
                continue
            text = _combinations_text(open_for)
            message = (
                f"derived value '{derived.name}' has no case for {text}: for such a record it is unknown "
                "here, and what reads it stays open though the record decides it"
            )
            hint = (
                f"add a case for those records to '{derived.name}' after its last case ({_last_case(docs, derived)}), "
                + _guard_hint(coverage, derived, open_for)
            )
            out.append(_located(docs, use, "derived.case_uncovered", message, hint))
    return out


def _last_case(docs: dict[str, Located], derived: Derived) -> str:
    """Where the missing case goes: after the last one (no case covers its records, so it is
    reached there as anywhere), as file:line:col of that last case."""
    doc = docs.get(derived.file)
    if doc is None:
        return derived.file
    line, col = doc.where(pointer_join(derived.pointer, "cases", len(derived.cases) - 1))
    return f"{derived.file}:{line}:{col}"


def _located(docs: dict[str, Located], use: Use, code: str, message: str, hint: str) -> KBError:
    return located_error(docs, use.file, code, message, use.pointer, hint, severity="warning", rule_id=use.rule_id)
