"""Derived values beyond the range of a double (engine/evaluate/overflow.py, engine/check/overflow.py).

A derived value is computed exactly and held as a double. One beyond ±1.8e308 was clamped to the
largest double: right against a threshold, but shown as a false value and read as one by what
read it, so a caveat could silently not fire; `.inf` as a derived value made every record its
rule fired for an eval.disagreement (durable-rules was given null), and an operand `.inf` failed
every record. Now validate refuses what overflows for values the patient schema allows and any
non-finite number, and a record that overflows only through a divisor near 0 is one
`eval.overflow` error, the same in both evaluators.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support import ROOT

import fsgs_kb
from fsgs_kb.cli import main
from fsgs_kb.engine.check.validate import validate_dir
from fsgs_kb.engine.evaluate.output import dumps_bytes

LEVELS = ("full", "standard", "minimal")


def _patient(**changes: Any) -> dict[str, Any]:
    patient = json.loads((ROOT / "examples" / "dose-above-ceiling.json").read_text(encoding="utf-8"))
    for path, value in changes.items():
        *parents, key = path.split("__")
        target = patient
        for part in parents:
            target = target[part]
        target[key] = value
    return patient


def _same_both_ways(kb: Any, patient: dict[str, Any]) -> dict[str, Any]:
    for detail in LEVELS:
        assert kb.evaluate_json(patient, detail=detail) == dumps_bytes(kb.reference_evaluate(patient, detail=detail))
        assert kb.evaluate(patient, detail=detail) == kb.reference_evaluate(patient, detail=detail)
    result: dict[str, Any] = kb.evaluate(patient)
    return result


@pytest.mark.parametrize(
    ("changes", "name", "inputs"),
    [
        (  # (1.17 − 1e-310) ÷ 1e-310 × 100: the schema allows any baseline above 0
            {"id": "TINY-BASELINE", "serum_creatinine__baseline": 1e-310},
            "creatinine_rise_pct",
            "/serum_creatinine/baseline = 1e-310, /serum_creatinine/current = 1.17",
        ),
        (  # 357 mg/day ÷ 1e-306 kg: the second case of dose_mg_per_kg_day
            {"id": "TINY-WEIGHT", "weight_kg": 1e-306},
            "dose_mg_per_kg_day",
            "/cyclosporine/daily_dose/value = 357, /weight_kg = 1e-306",
        ),
    ],
)
def test_a_derived_value_beyond_a_double_is_the_records_one_error(
    kb: Any, changes: dict[str, Any], name: str, inputs: str
) -> None:
    """It was clamped to 1.8e308 and shown so ("= 1.79769e+308 %"); now no rule is run."""
    result = _same_both_ways(kb, _patient(**changes))
    assert result["status"] == "error"
    assert result["rules"] == [] and result["advice"] == []
    [error] = result["errors"]
    assert error["code"] == "eval.overflow"
    assert f"derived value {name} " in error["message"] and f"({inputs})" in error["message"]


def test_the_command_line_reports_the_overflow_and_exits_3(tmp_path: Path) -> None:
    record = tmp_path / "tiny.json"
    record.write_text(json.dumps(_patient(serum_creatinine__baseline=1e-310)), encoding="utf-8")
    result = CliRunner().invoke(main, ["evaluate", str(record)])
    assert result.exit_code == 3
    assert json.loads(result.stdout)["errors"][0]["code"] == "eval.overflow"
    explained = CliRunner().invoke(main, ["explain", str(record)])
    assert explained.exit_code == 3 and "derived value creatinine_rise_pct" in explained.stdout


def test_what_reads_a_value_beyond_a_double_never_reads_a_clamped_one(kb_copy: Path) -> None:
    """The rise ÷ 1e307 for a baseline of 1e-310 (a rise of ~1.2e312 %) read the clamped rise:
    17.98 %, below the 30 % threshold, and the nephrotoxicity warning did not fire, in both
    evaluators and in durable-rules alike. validate cannot refuse it (the rise is unbounded only
    as the baseline nears 0); the record is an error instead."""
    derived = kb_copy / "derived.yaml"
    scaled = (
        '\n  rise_scaled:\n    title: The rise, scaled\n    unit: "%"\n'
        "    value: {divide: [{derived: creatinine_rise_pct}, 1.0e+307]}\n"
    )
    derived.write_text(derived.read_text(encoding="utf-8") + scaled, encoding="utf-8")
    rule = kb_copy / "recommendations" / "CSA-NEPHROTOX-SUSPECTED.yaml"
    text = rule.read_text(encoding="utf-8")
    rule.write_text(text.replace("    - derived: creatinine_rise_pct\n", "    - derived: rise_scaled\n"), "utf-8")
    assert validate_dir(kb_copy).ok
    scaled_kb = fsgs_kb.load(str(kb_copy))
    assert _same_both_ways(scaled_kb, _patient())["status"] == "evaluated"  # an ordinary record: as before
    result = _same_both_ways(scaled_kb, _patient(serum_creatinine__baseline=1e-310))
    assert [e["code"] for e in result["errors"]] == ["eval.overflow"]
    assert "derived value creatinine_rise_pct " in result["errors"][0]["message"]


def _codes(rules: Path) -> list[str]:
    return [p.code for p in validate_dir(rules).problems]


CLEARANCE = "        value: {field: kidney_function.creatinine_clearance}\n"


CHILD = "{field: age_years, lt: {param: child_age_cutoff_years}}"  # under 18
ADULT = "{field: age_years, ge: {param: child_age_cutoff_years}}"


@pytest.mark.parametrize(
    ("cases", "refused"),
    [
        ([("{field: age_years, present: true}", "S")], True),  # up to 120 years: 6e308
        ([(CHILD, "S")], False),  # below 18: 9e307, a double
        ([("{field: age_years, le: {param: adult_trial_max_age_years}}", "S")], True),  # up to 70: 3.5e308
        ([(f"{{all: [{{derived: in_scope, eq: true}}, {CHILD}]}}", "S")], False),
        ([(f"{{any: [{{derived: in_scope, eq: true}}, {CHILD}]}}", "S")], True),  # an any requires neither
        ([(f"{{not: {ADULT}}}", "S")], False),  # not 18 or more: below 18
        ([(f"{{not: {{any: [{{derived: in_scope, eq: false}}, {ADULT}]}}}}", "S")], False),
        ([(ADULT, "0"), ("{field: age_years, present: true}", "S")], False),  # reached when the first is false
        ([(CHILD, "0"), ("{field: age_years, present: true}", "S")], True),
        ([(CHILD, "S"), (ADULT, "S")], True),  # the second case is beyond
        ([(ADULT, "0"), (CHILD, "0"), (CHILD, "S")], False),  # never reached: no value to report
    ],
)
def test_validate_refuses_an_expression_beyond_a_double_for_the_values_its_case_allows(
    kb_copy: Path, cases: list[tuple[str, str]], refused: bool
) -> None:
    """Age × 5e306 (S) is a double below 36 years: the range is the expression's over the
    schema's ranges, narrowed by the comparisons with a number its case requires, its `when`
    true and every earlier case's false."""
    scaled = "{multiply: [{field: age_years}, 5.0e+306]}"
    written = "".join(
        f"      - when: {when}\n        value: {scaled if value == 'S' else value}\n" for when, value in cases
    )
    derived = kb_copy / "derived.yaml"
    added = f"\n  age_scaled:\n    title: Age, scaled\n    unit: years\n    cases:\n{written}"
    derived.write_text(derived.read_text(encoding="utf-8") + added, encoding="utf-8")
    codes = _codes(kb_copy)
    assert not [code for code in codes if code.startswith(("rule.", "derived.", "yaml."))], codes
    assert ("kb.overflow" in codes) is refused


def test_validate_does_not_refuse_a_range_unbounded_only_as_a_divisor_nears_0(kb_copy: Path) -> None:
    """The bundled dose ÷ weight and percent changes: unbounded as the divisor nears 0, which
    the schema allows; refusing them would refuse the bundled knowledge base."""
    assert "kb.overflow" not in _codes(kb_copy)
    derived = kb_copy / "derived.yaml"
    text = derived.read_text(encoding="utf-8")
    derived.write_text(text.replace(CLEARANCE, "        value: {divide: [1.0e+300, {field: weight_kg}]}\n"), "utf-8")
    assert "kb.overflow" not in _codes(kb_copy)


@pytest.mark.parametrize("written", [".inf", "-.inf", ".nan", "1.0e+400"])
def test_validate_refuses_a_number_that_is_not_finite_where_it_is_written(kb_copy: Path, written: str) -> None:
    """As an operand (every record failed with eval.internal) or as the value itself (.inf:
    durable-rules, given null, disagreed with the explanation)."""
    derived = kb_copy / "derived.yaml"
    text = derived.read_text(encoding="utf-8")
    for value in (f"{{multiply: [{{field: kidney_function.creatinine_clearance}}, {written}]}}", written):
        derived.write_text(text.replace(CLEARANCE, f"        value: {value}\n"), encoding="utf-8")
        problems = validate_dir(kb_copy).problems
        assert [(p.code, p.file, p.line) for p in problems if p.severity == "error"] == [
            ("yaml.not_finite", str(derived), 86)
        ]
