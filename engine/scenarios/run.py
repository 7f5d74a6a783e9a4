"""`fsgs-kb test`: run the editors' scenario files, explain failures, measure coverage.

Coverage asks two questions an editor should be able to answer "yes" to before a release:
does every rule have a case where it fires, one where it does not and one where it cannot be
decided; and is every numeric threshold tested on both sides of its boundary?
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fsgs_kb.engine.evaluate.kleene import Memo
from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.load.conditions import walk
from fsgs_kb.engine.load.scenario_files import Case
from fsgs_kb.engine.model import ParamRef
from fsgs_kb.engine.scenarios.check import CaseResult, check_case
from fsgs_kb.engine.scenarios.keywords import keyword_matcher


def select(cases: list[Case], expressions: tuple[str, ...]) -> list[Case]:
    """Cases whose id matches any -k expression (pytest's: `DOSE and not WITHIN`; words match
    anywhere in the id, ignoring case; * and ? are wildcards). Raises KBErrors for a malformed one."""
    matches = keyword_matcher(expressions)
    return [c for c in cases if matches(c.id)]


@dataclass
class Coverage:
    outcomes: dict[str, set[str]] = field(default_factory=dict)
    sides: dict[str, set[str]] = field(default_factory=dict)  # parameter -> {"true", "false", "boundary"}
    caveats: set[str] = field(default_factory=set)  # never undetermined: fired and not fired suffice

    def expected(self, rule_id: str) -> set[str]:
        return {"fired", "not_fired"} if rule_id in self.caveats else {"fired", "not_fired", "undetermined"}

    def rule_complete(self, rule_id: str) -> bool:
        return self.outcomes.get(rule_id, set()) >= self.expected(rule_id)

    def parameter_complete(self, name: str) -> bool:
        return self.sides.get(name, set()) >= {"true", "false"}

    @property
    def complete(self) -> bool:
        return all(self.rule_complete(r) for r in self.outcomes) and all(self.parameter_complete(p) for p in self.sides)


def numeric_parameters(kb: KnowledgeBase) -> list[str]:
    """Parameters compared with numbers anywhere (rules or derived values)."""
    model = kb.model
    conds = [r.when for r in model.rules.values()]
    conds += [d.condition for d in model.derived.values() if d.condition is not None]
    conds += [w for d in model.derived.values() for w, _ in d.cases]
    return sorted(
        {
            leaf.operand.name
            for c in conds
            for leaf in walk(c)
            if leaf.op in ("lt", "le", "gt", "ge") and isinstance(leaf.operand, ParamRef)
        }
    )


def measure_coverage(kb: KnowledgeBase, cases: list[Case], results: list[CaseResult]) -> Coverage:
    coverage = Coverage(
        {rid: set() for rid in kb.model.rules},
        {p: set() for p in numeric_parameters(kb)},
        {rid for rid, rule in kb.model.rules.items() if rule.kind == "caveat"},
    )
    evaluation = kb.evaluation
    for result in results:
        if result.result is None or result.result["status"] == "invalid":
            continue
        for rule in result.result["rules"]:
            coverage.outcomes.setdefault(rule["id"], set()).add(rule["outcome"])
        memo: Memo = {}
        values = evaluation.values_of(result.case.patient)
        derived = kb.evaluator.derive(values, memo)
        for rule in evaluation.rules:
            kb.evaluator.condition(rule.when, values, derived, memo)
        for judged, entry, _ in memo.values():
            name = entry.get("parameter")
            if name in coverage.sides and judged is not None:
                coverage.sides[name].add("true" if judged else "false")
                if entry.get("margin") == 0:
                    coverage.sides[name].add("boundary")
    return coverage


def run(kb: KnowledgeBase, cases: list[Case], stop_at_first_failure: bool = False) -> list[CaseResult]:
    """Each case's outcome, in order; with `stop_at_first_failure` (-x) none after the first failure."""
    results = []
    for case in cases:
        start = time.perf_counter()
        results.append(check_case(case, kb.evaluate(case.patient)))
        results[-1].seconds = time.perf_counter() - start
        if stop_at_first_failure and not results[-1].passed:
            break
    return results


def report_json(results: list[CaseResult], coverage: Coverage | None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "passed": sum(1 for r in results if r.passed),
        "failed": sum(1 for r in results if not r.passed),
        "cases": [
            {"id": r.case.id, "file": r.case.file, "line": r.case.line, "passed": r.passed, "failures": r.failures}
            for r in results
        ],
    }
    if coverage is not None:
        payload["coverage"] = {
            "complete": coverage.complete,
            "rules": {rid: sorted(seen) for rid, seen in sorted(coverage.outcomes.items())},
            "parameters": {name: sorted(seen) for name, seen in sorted(coverage.sides.items())},
        }
    return payload
