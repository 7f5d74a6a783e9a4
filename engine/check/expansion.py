"""How many comparisons a condition holds once the derived values it reads are written out.

The exact semantics (engine/compile/exact_form.py) and durable-rules' rulesets write a derived
value's condition into every condition that reads it, and a category's cases (`age_group =
child`) as "this case, and none of the earlier ones", once per case giving the value. A chain of
derived values each reading the one before twice doubles at every link: twelve links took 6.5 s
to load, sixteen more than 100 s and growing memory, and evaluation slowed alike (hostile sweep
of session 10). A knowledge base whose condition would be written out beyond MAX_EXPANDED
comparisons is refused, where that condition is, before anything is built; counting needs one
number per derived value, so the check itself is linear in the knowledge base's size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fsgs_kb.engine.errors import KBError, pointer_join
from fsgs_kb.engine.load.yamlsafe import Located, located_error
from fsgs_kb.engine.model import AllOf, AnyOf, Compare, Condition, Const, Derived, KnowledgeBaseModel, Not, ParamRef

MAX_EXPANDED = 20_000  # comparisons in one condition, derived values written out (the bundled: ≤ 60)


class Expansion:
    """Comparisons of conditions with their derived values written out, one count per derived value."""

    def __init__(self, model: KnowledgeBaseModel) -> None:
        self.model = model
        self._boolean: dict[str, int] = {}
        self._category: dict[tuple[str, frozenset[object]], int] = {}
        self._busy: set[str] = set()  # a cycle is the cycle check's to report: counted as one here

    def of(self, cond: Condition) -> int:
        if isinstance(cond, Not):
            return self.of(cond.item)
        if isinstance(cond, (AllOf, AnyOf)):
            return sum(self.of(item) for item in cond.items)
        return self._leaf(cond)

    def _leaf(self, leaf: Compare) -> int:
        spec = self.model.derived.get(leaf.name) if leaf.source == "derived" else None
        if spec is None or leaf.op in ("present", "absent") or spec.name in self._busy:
            return 1
        if spec.condition is not None:
            condition = spec.condition
            return self._memo(self._boolean, spec.name, spec, lambda: self.of(condition))
        if spec.cases and all(isinstance(value, Const) for _, value in spec.cases):
            operand = leaf.operand
            threshold = self.model.parameters[operand.name].value if isinstance(operand, ParamRef) else operand
            wanted = frozenset(threshold) if leaf.op == "in" and isinstance(threshold, list) else frozenset([threshold])
            return self._memo(self._category, (spec.name, wanted), spec, lambda: self._cases(spec, wanted))
        return 1

    def _cases(self, spec: Derived, wanted: frozenset[object]) -> int:
        """Each case giving a wanted value, together with every earlier case (exact_form._category)."""
        total = earlier = 0
        for when, value in spec.cases:
            size = self.of(when)
            if isinstance(value, Const) and value.value in wanted:
                total += earlier + size
            earlier += size
        return total

    def _memo(self, memo: dict[Any, int], key: Any, spec: Derived, count: Callable[[], int]) -> int:
        found = memo.get(key)
        if found is None:
            self._busy.add(spec.name)
            try:
                found = memo[key] = count()
            finally:
                self._busy.discard(spec.name)
        return found


def expansion_problems(model: KnowledgeBaseModel, docs: dict[str, Located]) -> list[KBError]:
    """An error at each rule's `when` and each boolean derived value's `condition` that holds more
    than MAX_EXPANDED comparisons once the derived values it reads are written out."""
    expansion = Expansion(model)
    found: list[tuple[str, str, str, int, str | None]] = []
    for rule in model.rules.values():
        found.append((rule.file, "/when", f"rule {rule.id}", expansion.of(rule.when), rule.id))
    for spec in model.derived.values():
        if spec.condition is not None:
            where = pointer_join(spec.pointer, "condition")
            found.append((spec.file, where, f"derived value '{spec.name}'", expansion.of(spec.condition), None))
    out = []
    for file, pointer, what, size, rule_id in found:
        if size <= MAX_EXPANDED:
            continue
        message = (
            f"{what} holds {size:,} comparisons once the derived values it reads are written out "
            f"(the limit is {MAX_EXPANDED:,}): each reading of a derived value writes its whole condition "
            "again, and a category's each case with every earlier one"
        )
        hint = "read each derived value once in a condition, or give a long chain of them fewer links"
        out.append(located_error(docs, file, "kb.too_large", message, pointer, hint, rule_id=rule_id))
    return out
