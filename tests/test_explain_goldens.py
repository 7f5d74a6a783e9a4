"""`fsgs-kb explain` for every example, as a clinician reads it: golden files in tests/golden/explain.

Each golden is the exact output (the knowledge-base fingerprint and the decision id masked, as
any edit of the knowledge base changes them). Run with FSGS_UPDATE_GOLDENS=1 to rewrite them
after an intended change, then read them again as a clinician would.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import ROOT

from fsgs_kb.cli import main

EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
GOLDEN = Path(__file__).parent / "golden" / "explain"
MASKS = (
    (re.compile(r"fingerprint [0-9a-f]{12}"), "fingerprint …"),
    (re.compile(r"decision [0-9a-f]{32}"), "decision …"),
)
UNFOLDED = ("dose-above-ceiling", "not-biopsy-proven", "missing-weight")


def _explain(*args: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(main, ["explain", *args])
    text = result.output
    for pattern, mask in MASKS:
        text = pattern.sub(mask, text)
    return result.exit_code, text


def _check(name: str, actual: str) -> None:
    golden = GOLDEN / name
    if os.environ.get("FSGS_UPDATE_GOLDENS"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(actual, encoding="utf-8")
    assert actual == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_explain_golden(example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, text = _explain(str(example.relative_to(ROOT)), "--color", "never", monkeypatch=monkeypatch)
    assert code == 0, text
    _check(f"{example.stem}.txt", text)


@pytest.mark.parametrize("stem", UNFOLDED)
def test_explain_all_golden(stem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    code, text = _explain(f"examples/{stem}.json", "--all", "--color", "never", monkeypatch=monkeypatch)
    assert code == 0, text
    _check(f"{stem}--all.txt", text)


def test_every_example_has_a_golden() -> None:
    assert {p.stem for p in GOLDEN.glob("*.txt") if "--" not in p.stem} == {e.stem for e in EXAMPLES}


def test_warnings_come_before_advice_and_undetermined_says_what_to_record(monkeypatch: pytest.MonkeyPatch) -> None:
    _, text = _explain("examples/missing-weight.json", monkeypatch=monkeypatch)
    assert text.index("WARNINGS (") < text.index("ADVICE (") < text.index("UNDETERMINED")
    assert "record: body weight (/weight_kg)" in text


def test_json_for_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(main, ["explain", "examples/child-bp-above-target.json", "--format", "json"])
    doc = json.loads(result.stdout)
    assert doc["kb"]["id"] == "fsgs-csa" and doc["status"] == "evaluated"
    rule = next(r for r in doc["rules"] if r["id"] == "CSA-BP-ABOVE-TARGET")
    assert rule["section"] == "warning" and rule["because"]["kind"] == "all" and rule["because"]["met"] is True
    bp = next(item for item in rule["because"]["items"] if item.get("derived") == "bp_above_target")
    either = bp["definition"]
    assert either["kind"] == "any" and either["met"] is True
    assert [group["met"] for group in either["items"]] == [False, True]  # adult branch false, child branch true
    assert rule["interpretation"] and rule["citations"][0]["sentence"] == "S5"


def test_colour_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    _, plain = _explain("examples/dose-above-ceiling.json", monkeypatch=monkeypatch)
    _, coloured = _explain("examples/dose-above-ceiling.json", "--color", "always", monkeypatch=monkeypatch)
    assert "\x1b[" not in plain and "\x1b[1mWARNINGS (2)\x1b[0m" in coloured


def test_a_rule_decided_by_the_exact_semantics_is_explained_as_decided(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kleene's tables leave the BP warning open without an age (child and adult targets differ),
    but 150/96 mmHg at the 99th percentile is above both: the warning fires (clinical-notes §4.1),
    and its explanation must say why it is decided, not 'Not decided', nor show the derived value
    that decides it as unknown (it did: '? unknown whether blood pressure is above …', where
    evaluate records the value true)."""
    patient = {
        "id": "exact",
        "weight_kg": 150,
        "fsgs": {"biopsy_proven": True, "etiology": "primary"},
        "cyclosporine": {"status": "current", "daily_dose": {"value": 600, "unit": "mg/day"}, "months_on_therapy": 5},
        "blood_pressure": {"systolic_mmHg": 150, "diastolic_mmHg": 96, "percentile_for_age": 99},
    }
    path = tmp_path / "exact.json"
    path.write_text(json.dumps(patient))
    code, text = _explain(str(path), "--color", "never", monkeypatch=monkeypatch)
    warning = text[text.index("WARNINGS") : text.index("ADVICE")]
    assert "CSA-BP-ABOVE-TARGET" in warning and "Not decided" not in warning, warning
    assert "✓ blood pressure is above the ideal level" in warning, warning
    assert "decided whatever the value of age (any value consistent with the rest of the record)" in warning
    code, raw = _explain(str(path), "--format", "json", monkeypatch=monkeypatch)
    rule = next(r for r in json.loads(raw)["rules"] if r["id"] == "CSA-BP-ABOVE-TARGET")
    assert rule["because"]["met"] is True
    bp = next(item for item in rule["because"]["items"] if item.get("derived") == "bp_above_target")
    assert bp["met"] is True and bp["decided_without"] == ["/age_years"]
    assert bp["definition"]["met"] is True and bp["definition"]["exact"] is True


def test_local_choices_are_shown_next_to_the_values_they_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    """clinical-notes §7: a choice the review does not make is shown next to the value it shapes:
    the body weight a dose per kilogram uses, what the course length counts, the scope's biopsy."""
    code, text = _explain("examples/dose-above-ceiling.json", "--color", "never", monkeypatch=monkeypatch)
    dose = text[text.index("= 357 mg/day ÷ 70 kg") :].splitlines()[1]
    assert "a choice the review does not make: the body weight the dose per kilogram" in dose
    assert "what the course length compared with the review's 12" in text
    assert "scope rests on a choice the review does not make: the biopsy findings" in text.splitlines()[3]
    code, raw = _explain("examples/dose-above-ceiling.json", "--format", "json", monkeypatch=monkeypatch)
    assert any("local policy" in c for c in json.loads(raw)["scope"]["choices"])


def test_advice_says_which_applicability_checks_the_record_could_not_make(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """clinical-notes §7: a creatinine of 450 µmol/L but no eGFR or creatinine clearance: the
    kidney-function caveat cannot be checked, and the advice says so and what to record."""
    patient = {
        "id": "cr450",
        "age_years": 50,
        "weight_kg": 70,
        "fsgs": {"biopsy_proven": True, "etiology": "primary"},
        "steroids": {"response": "resistant", "high_dose_weeks": 16},
        "cyclosporine": {"status": "never"},
        "serum_creatinine": {"current": 450, "unit": "umol/L"},
    }
    path = tmp_path / "cr450.json"
    path.write_text(json.dumps(patient))
    code, text = _explain(str(path), "--color", "never", monkeypatch=monkeypatch)
    advice = text[text.index("ADVICE") :]
    assert "Not checked whether the evidence applies" in advice and "CAVEAT-KIDNEY-FUNCTION" in advice
    assert "(/kidney_function/egfr)" in advice
