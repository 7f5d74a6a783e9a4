"""Editors' scenario runs as text: failures with the rule's explanation, and the coverage table."""

from __future__ import annotations

from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.report.explain import rule_lines
from fsgs_kb.engine.scenarios.check import CaseResult
from fsgs_kb.engine.scenarios.run import Coverage


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


def coverage_text(kb: KnowledgeBase, coverage: Coverage) -> str:
    mark = {True: "✓", False: "✗"}
    lines = ["rules (fires / does not fire / undetermined):"]
    for rule_id in sorted(coverage.outcomes):
        seen = coverage.outcomes[rule_id]
        cells = "  ".join(
            f"{label} {mark[key in seen] if key in coverage.expected(rule_id) else '(never: a caveat)'}"
            for key, label in (("fired", "fires"), ("not_fired", "does not fire"), ("undetermined", "undetermined"))
        )
        lines.append(f"  {rule_id:36s} {cells}")
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
        f"coverage: {rules_ok}/{len(coverage.outcomes)} rules with all three outcomes (caveats: both of theirs), "
        f"{params_ok}/{len(coverage.sides)} numeric parameters tested on both sides"
    )
    return "\n".join(lines)
