"""Run the clinical editors' scenario files (rules/tests/*.yaml) as pytest cases.

Test ids are `<file>::<case>`, so `pytest -k CSA-DOSE` runs the dose cases.
"""

from __future__ import annotations

from typing import Any

from support import RULES

from fsgs_kb.engine.load.scenario_files import Case, load_cases
from fsgs_kb.engine.scenarios.check import check_case

CASES = load_cases(RULES / "tests")


def pytest_generate_tests(metafunc: Any) -> None:
    if "case" in metafunc.fixturenames:
        metafunc.parametrize("case", CASES, ids=[c.id for c in CASES])


def test_scenario(case: Case, kb: Any) -> None:
    outcome = check_case(case, kb.evaluate(case.patient))
    assert outcome.passed, f"{case.file}:{case.line}: {case.id}\n  " + "\n  ".join(outcome.failures)


def test_every_required_rule_fires_misses_and_is_undetermined(kb: Any) -> None:
    """Each rule has a case where it fires, one where it does not, one undetermined (caveats:
    the first two)."""
    seen: dict[str, set[str]] = {}
    for case in CASES:
        for rule in kb.evaluate(case.patient)["rules"]:
            seen.setdefault(rule["id"], set()).add(rule["outcome"])
    for rule_id, rule in kb.model.rules.items():
        if rule.kind == "caveat":  # never undetermined (clinical-notes §7)
            assert seen.get(rule_id) == {"fired", "not_fired"}, (rule_id, seen.get(rule_id))
        else:
            assert seen.get(rule_id) == {"fired", "not_fired", "undetermined"}, (rule_id, seen.get(rule_id))
