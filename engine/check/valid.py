"""The part of a knowledge base that loaded and validated, for the checks that read a whole
condition (engine.check.static, engine.check.cases).

Those checks follow a rule's condition into the derived values and parameters it reads; on a
broken part they would report echoes of the error, or fail on a name that does not resolve. So
they run on the valid part only: one error hides what depends on it, never the rest. A part is
valid when no error is reported in what the checks read of it, and everything it reads is valid:

- a rule: its id, kind, condition (`when`), `qualifies` and `complements`; it reads the derived
  values and parameters its condition compares (the rules a caveat qualifies, whose conditions
  the static checks join to its own, are left to them: the coverage of a derived value's cases
  does not read them);
- a derived value: its unit, condition, value or cases; it reads the fields, derived values and
  parameters they name;
- a parameter: its value and unit;
- a scope case of kb.yaml: its condition.

Patient fields must exist. A name that does not resolve is not valid even where its error is
not reported again (a part that failed to load: engine.check.checks.Checker.fail).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace

from fsgs_kb.engine.errors import KBError
from fsgs_kb.engine.load.conditions import expression_refs, walk
from fsgs_kb.engine.load.fields import catalogue
from fsgs_kb.engine.model import Condition, Derived, KnowledgeBaseModel, ParamRef

RULE_PARTS = ("/id", "/kind", "/when", "/qualifies", "/complements")
DERIVED_PARTS = ("/unit", "/condition", "/value", "/cases")
PARAMETER_PARTS = ("/value", "/unit")

Name = tuple[str, str]  # ("field" | "derived" | "param", name)


def valid_part(model: KnowledgeBaseModel, problems: Iterable[KBError]) -> KnowledgeBaseModel:
    """A copy of the model holding only its valid rules, derived values, parameters and scope
    cases (`problems`: everything reported so far; warnings do not count)."""
    errors: dict[str, list[str]] = {}
    for problem in problems:
        if problem.severity == "error":
            errors.setdefault(problem.file or "", []).append(problem.pointer or "")

    def clean(file: str, bases: Iterable[str]) -> bool:
        return not any(_on_path(pointer, base) for pointer in errors.get(file, ()) for base in bases)

    fields = set(catalogue())
    params = {
        name: p for name, p in model.parameters.items() if clean(p.file, [p.pointer + part for part in PARAMETER_PARTS])
    }
    derived = {
        name: d for name, d in model.derived.items() if clean(d.file, [d.pointer + part for part in DERIVED_PARTS])
    }

    def known(names: Iterable[Name]) -> bool:
        table = {"field": fields, "derived": derived, "param": params}
        return all(name in table[source] for source, name in names)

    while True:  # drop the derived values that read a dropped one, until none is dropped
        kept = {name: d for name, d in derived.items() if known(_derived_reads(d))}
        if len(kept) == len(derived):
            break
        derived = kept
    rules = {rid: r for rid, r in model.rules.items() if clean(r.file, RULE_PARTS) and known(_condition_reads(r.when))}
    scope = [
        case
        for case in model.scope
        if case.when is None or (clean(case.file, [case.pointer + "/when"]) and known(_condition_reads(case.when)))
    ]
    return replace(
        model,
        parameters=params,
        derived=derived,
        rules=rules,
        derived_order=tuple(name for name in model.derived_order if name in derived),
        scope=tuple(scope),
    )


def _on_path(pointer: str, base: str) -> bool:
    """The pointer is the base, inside it, or around it (an error about the whole of it)."""
    return pointer == base or pointer.startswith(base + "/") or base.startswith(pointer + "/") or not pointer


def _condition_reads(cond: Condition) -> Iterator[Name]:
    for leaf in walk(cond):
        yield leaf.source, leaf.name
        if isinstance(leaf.operand, ParamRef):
            yield "param", leaf.operand.name


def _derived_reads(derived: Derived) -> Iterator[Name]:
    conditions = [derived.condition] if derived.condition is not None else []
    expressions = [derived.value] if derived.value is not None else []
    for when, expr in derived.cases:
        conditions.append(when)
        expressions.append(expr)
    for cond in conditions:
        yield from _condition_reads(cond)
    for expr in expressions:
        for ref in expression_refs(expr):
            yield ref.source, ref.name
