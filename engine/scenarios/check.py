"""Run editors' scenario cases against the knowledge base and compare outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fsgs_kb.engine.load.scenario_files import Case


@dataclass
class CaseResult:
    case: Case
    failures: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures


def check_case(case: Case, result: dict[str, Any]) -> CaseResult:
    """Compare a result with a case's expectations; each mismatch is one readable line."""
    outcome = {r["id"]: r for r in result["rules"]}
    failures: list[str] = []
    expect = case.expect
    if "status" in expect and result["status"] != expect["status"]:
        failures.append(f"status: expected {expect['status']}, got {result['status']}")
    if "no_recommendation" in expect and result["no_recommendation"] != expect["no_recommendation"]:
        failures.append(f"no_recommendation: expected {expect['no_recommendation']}, got {result['no_recommendation']}")
    for key in ("advice", "caveats"):
        if key in expect and result.get(key) != expect[key]:
            failures.append(f"{key}: expected {expect[key]}, got {result.get(key)}")
    for want in ("fired", "not_fired"):
        for rid in expect.get(want, []):
            got = outcome.get(rid, {}).get("outcome", "absent")
            if got != want:
                failures.append(f"{rid}: expected {want}, got {got}")
            elif want == "fired" and rid not in result["advice"] + result.get("caveats", []):
                failures.append(f"{rid}: fired in its entry but not listed in the result's advice or caveats")
    undetermined = expect.get("undetermined", {})
    items = undetermined.items() if isinstance(undetermined, dict) else ((rid, None) for rid in undetermined)
    for rid, missing in items:
        rule = outcome.get(rid, {})
        if rule.get("outcome") != "undetermined":
            failures.append(f"{rid}: expected undetermined, got {rule.get('outcome', 'absent')}")
        elif rid not in result["undetermined"]:
            failures.append(f"{rid}: undetermined in its entry but not listed in the result's undetermined")
        elif missing is not None and sorted(rule["missing"]) != sorted(missing):
            failures.append(f"{rid}: expected missing {sorted(missing)}, got {sorted(rule['missing'])}")
    for want_error in expect.get("errors", []):
        if not any(all(e.get(k) == v for k, v in want_error.items()) for e in result["errors"]):
            failures.append(
                f"expected error {want_error}, got {[(e.get('pointer'), e['code']) for e in result['errors']]}"
            )
    return CaseResult(case, failures, result)
