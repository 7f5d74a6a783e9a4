"""Checks of what the knowledge base names outside rule conditions: the rule a rule complements
(the pairs whose thresholds the static checks compare) and kb.yaml's scope explanation.

A pair is declared in data, both ways: CSA-DOSE-WITHIN says `complements: CSA-DOSE-EXCEEDS`
and CSA-DOSE-EXCEEDS says `complements: CSA-DOSE-WITHIN`. A name that is no rule, a rule that
names itself, or a pair named one way only is an error where the name is written. The scope
cases' conditions are checked like a rule's; the fields they list must exist, and the only
placeholder a reason may use is {missing}.
"""

from __future__ import annotations

from fsgs_kb.engine.check.checks import Checker
from fsgs_kb.engine.load.conditions import walk
from fsgs_kb.engine.load.templating import placeholders
from fsgs_kb.engine.model import Rule, ScopeCase
from fsgs_kb.engine.suggest import did_you_mean

SCOPE_PLACEHOLDERS = ("missing",)


def check_links(checker: Checker) -> None:
    """Every problem of the pairs and of the scope explanation, recorded by the checker of the
    other cross-file checks (engine.check.checks.run_checks)."""
    for rule in checker.model.rules.values():
        check_complements(checker, rule)
    for case in checker.model.scope:
        check_scope_case(checker, case)


def check_complements(checker: Checker, rule: Rule) -> None:
    """The rule a rule complements exists, is another rule, and names this one back."""
    target = rule.complements
    if target is None:
        return
    rules = checker.model.rules
    other = rules.get(target)
    if other is None:
        hint = did_you_mean(target, set(rules)) or "name the rule that covers the other side of the threshold"
        message = f"{rule.id} complements unknown rule '{target}'"
    elif other is rule:
        hint = "name the rule that covers the other side of the threshold, or remove complements"
        message = f"{rule.id} complements itself"
    elif other.complements is None:
        hint = f"add 'complements: {rule.id}' to {target}"
        message = f"{rule.id} complements {target}, but {target} names no complement: the two of a pair name each other"
    elif other.complements != rule.id and other.complements in rules and other.complements != target:
        hint = f"name the rule {rule.id} pairs with, or write 'complements: {rule.id}' in {target}"
        message = (
            f"{rule.id} complements {target}, but {target} complements {other.complements}: "
            "the two of a pair name each other"
        )
    else:
        return  # a pair, or the partner names an unknown rule or itself: reported there
    checker.fail(rule.file, "/complements", "rule.complements", message, hint, rule_id=rule.id)


def check_scope_case(checker: Checker, case: ScopeCase) -> None:
    """A scope case's condition, the fields it waits for, and the placeholders of its reason."""
    if case.when is not None:
        for leaf in walk(case.when):
            checker.check_condition_leaf(leaf, case.file, None)
    for i, name in enumerate(case.undetermined_needs):
        if name not in checker.fields:
            checker.fail(
                case.file,
                f"{case.pointer}/undetermined_needs/{i}",
                "kb.scope_field",
                f"unknown patient field '{name}'",
                did_you_mean(name, set(checker.fields)),
            )
    names, stray = placeholders(case.reason)
    for name in dict.fromkeys(n for n in names if n not in SCOPE_PLACEHOLDERS):
        checker.fail(
            case.file,
            f"{case.pointer}/reason",
            "kb.scope_placeholder",
            f"unknown placeholder '{{{name}}}' in the scope reason",
            did_you_mean(name, set(SCOPE_PLACEHOLDERS)) or "a scope reason may name {missing} only",
        )
    if stray:
        checker.fail(
            case.file,
            f"{case.pointer}/reason",
            "kb.scope_placeholder",
            f"a lone '{stray[0]}' in the scope reason",
            "write {missing} for the inputs that would decide, or {{ and }} for a literal brace",
        )
