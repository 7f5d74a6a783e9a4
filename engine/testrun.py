"""`fsgs-kb test`: run the editors' scenario files, explain failures, measure coverage.

Coverage asks two questions an editor should be able to answer "yes" to before a release:
does every rule have a case where it fires, one where it does not and one where it cannot be
decided; and is every numeric threshold tested on both sides of its boundary?
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from engine.explain import rule_lines
from engine.kleene import Memo
from engine.model import ParamRef
from engine.scenarios import Case, CaseResult, check_case


def select(cases: list[Case], patterns: tuple[str, ...]) -> list[Case]:
    """Cases whose id contains any pattern (case-insensitive; * and ? are wildcards)."""
    if not patterns:
        return cases
    lowered = [p.lower() for p in patterns]
    return [c for c in cases if any(fnmatch.fnmatch(c.id.lower(), f"*{p}*") for p in lowered)]


@dataclass
class Coverage:
    outcomes: dict[str, set[str]] = field(default_factory=dict)
    sides: dict[str, set[str]] = field(default_factory=dict)  # parameter -> {"true", "false", "boundary"}

    def rule_complete(self, rule_id: str) -> bool:
        return self.outcomes.get(rule_id, set()) >= {"fired", "not_fired", "undetermined"}

    def parameter_complete(self, name: str) -> bool:
        return self.sides.get(name, set()) >= {"true", "false"}

    @property
    def complete(self) -> bool:
        return all(self.rule_complete(r) for r in self.outcomes) and all(self.parameter_complete(p) for p in self.sides)


def numeric_parameters(kb: Any) -> list[str]:
    """Parameters compared with numbers anywhere (rules or derived values)."""
    from engine.conditions import walk

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


def measure_coverage(kb: Any, cases: list[Case], results: list[CaseResult]) -> Coverage:
    coverage = Coverage({rid: set() for rid in kb.model.rules}, {p: set() for p in numeric_parameters(kb)})
    evaluation = kb._evaluation
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


def run(kb: Any, cases: list[Case]) -> list[CaseResult]:
    return [check_case(case, kb.evaluate(case.patient)) for case in cases]


def failure_text(outcome: CaseResult) -> list[str]:
    case = outcome.case
    lines = [f"FAIL {case.file}:{case.line}: {case.id}"]
    if case.note:
        lines.append(f"  note: {case.note}")
    shown: set[str] = set()
    result = outcome.result or {}
    rules = {r["id"]: r for r in result.get("rules", [])}
    for failure in outcome.failures:
        lines.append(f"  {failure}")
        rule_id = failure.split(":", 1)[0]
        if rule_id in rules and rule_id not in shown:
            shown.add(rule_id)
            lines += ["  " + line for line in rule_lines(rules[rule_id], show_says=False)]
    if result.get("errors"):
        lines += [f"  record error {e.get('pointer', '')}: {e['message']}" for e in result["errors"]]
    return lines


def report_text(results: list[CaseResult], patterns: tuple[str, ...]) -> str:
    lines: list[str] = []
    for outcome in results:
        if not outcome.passed:
            lines += failure_text(outcome)
    passed = sum(1 for r in results if r.passed)
    selection = f"; selection: -k {' -k '.join(patterns)}" if patterns else ""
    lines.append(f"{passed} passed, {len(results) - passed} failed ({len(results)} cases{selection})")
    return "\n".join(lines)


def coverage_text(kb: Any, coverage: Coverage) -> str:
    mark = {True: "✓", False: "✗"}
    lines = ["rules (fires / does not fire / undetermined):"]
    for rule_id in sorted(coverage.outcomes):
        seen = coverage.outcomes[rule_id]
        cells = "  ".join(
            f"{label} {mark[key in seen]}"
            for key, label in (("fired", "fires"), ("not_fired", "does not fire"), ("undetermined", "undetermined"))
        )
        lines.append(f"  {rule_id:26s} {cells}")
    lines.append("numeric parameters (both sides of the boundary):")
    for name in sorted(coverage.sides):
        param = kb.model.parameters[name]
        seen = coverage.sides[name]
        lines.append(
            f"  {name:30s} {param.value} {param.unit}:  condition true {mark['true' in seen]}  "
            f"false {mark['false' in seen]}  exact boundary {mark['boundary' in seen]}"
        )
    rules_ok = sum(coverage.rule_complete(r) for r in coverage.outcomes)
    params_ok = sum(coverage.parameter_complete(p) for p in coverage.sides)
    lines.append(
        f"coverage: {rules_ok}/{len(coverage.outcomes)} rules with all three outcomes, "
        f"{params_ok}/{len(coverage.sides)} numeric parameters tested on both sides"
    )
    return "\n".join(lines)


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
