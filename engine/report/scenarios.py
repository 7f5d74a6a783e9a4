"""Editors' scenario runs as text: failures with the rule's explanation, and the coverage table."""

from __future__ import annotations

import shlex
from typing import Any

from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.load.scenario_files import Case
from fsgs_kb.engine.report.colour import PLAIN, Palette
from fsgs_kb.engine.report.explain import explanation, rule_lines
from fsgs_kb.engine.report.text import escape_control, printable
from fsgs_kb.engine.scenarios.check import CaseResult
from fsgs_kb.engine.scenarios.run import Coverage


def failure_text(kb: KnowledgeBase, outcome: CaseResult, brief: bool = False, paint: Palette = PLAIN) -> list[str]:
    """A failed case: where it is written, its note, each mismatch and (unless `brief`) the
    conditions of each rule concerned, with this patient's values."""
    case = outcome.case
    lines = [f"{paint('FAIL', 'fail')} {escape_control(f'{case.file}:{case.line}: {case.id}')}"]
    if case.note:
        lines.append(f"  note: {escape_control(case.note)}")
    shown: set[str] = set()
    result = outcome.result or {}
    rules = {r["id"]: r for r in explanation(kb, case.patient, result)["rules"]} if result and not brief else {}
    for failure in outcome.failures:
        lines.append(f"  {escape_control(failure)}")
        rule_id = failure.split(":", 1)[0]
        if not brief and rule_id in rules and rule_id not in shown:
            shown.add(rule_id)
            lines += ["  " + line for line in rule_lines(printable(rules[rule_id]), paint, full=False)]
    lines += [escape_control(record_error(case, e)) for e in result.get("errors", [])]
    return lines


def record_error(case: Case, error: dict[str, Any]) -> str:
    """An error of the record a case builds, with where its value is written (the case, or its
    base patient in tests/_bases.yaml): the record is built from two files, and its JSON pointer
    alone sent the editor to the case when the wrong value was the base's."""
    pointer = error.get("pointer", "")
    message = error["message"].removeprefix(f"{pointer}: ") if pointer else error["message"]
    where = case.written_at(pointer) if pointer else None
    return f"  record error {pointer}{f' (written at {where})' if where else ''}: {message}"


def report_text(
    kb: KnowledgeBase,
    results: list[CaseResult],
    patterns: tuple[str, ...],
    verbosity: int = 0,
    paint: Palette = PLAIN,
    selected: int | None = None,
) -> str:
    """Failures, then `N passed, N failed (M cases; selection: -k …)`. verbosity 1 (-v) also
    lists each passing case; -1 (-q) shows failures without the rules' conditions. `selected`
    larger than the results means -x stopped the run at its first failure."""
    lines: list[str] = []
    for outcome in results:
        if not outcome.passed:
            lines += failure_text(kb, outcome, brief=verbosity < 0, paint=paint)
        elif verbosity > 0:
            case = outcome.case
            lines.append(f"{paint('PASS', 'ok')} {escape_control(f'{case.file}:{case.line}: {case.id}')}")
    passed = sum(1 for r in results if r.passed)
    failed = len(results) - passed
    selection = f"; selection: {' '.join('-k ' + shlex.quote(escape_control(p)) for p in patterns)}" if patterns else ""
    if selected is not None and selected > len(results):
        selection += f"; stopped at the first failure (-x), {selected - len(results)} not run"
    summary = f"{passed} passed, {failed} failed ({len(results)} cases{selection})"
    lines.append(paint(summary, "fail" if failed else "ok"))
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
