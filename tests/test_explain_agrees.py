"""`explain` says what `evaluate` decided, never something else.

An outside audit against clinical-notes.md found explain contradicting evaluate: the scope called
false (out of scope) where the result says null (undetermined: not biopsy-proven); an etiology
recorded as `unknown` beside a biopsy recorded false missing from what to record, so nothing
said what would decide the scope (§4: "never silence"); and a derived value the exact semantics
decided (BP above target for a child and an adult alike, age missing) shown as unknown. Each
example and each crafted record below is evaluated and explained with the bundled knowledge base,
and the two are compared rule by rule.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import fsgs_kb
from fsgs_kb.engine.report.explain import explain_text, explanation

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
IN_SCOPE = {"biopsy_proven": True, "etiology": "primary"}
CRAFTED: dict[str, dict[str, Any]] = {
    "etiology-unknown-biopsy-false": {"fsgs": {"biopsy_proven": False, "etiology": "unknown"}},
    "etiology-unknown-biopsy-true": {"fsgs": {"biopsy_proven": True, "etiology": "unknown"}},
    "etiology-absent": {"fsgs": {"biopsy_proven": True}},
    "undetermined-cause": {"fsgs": {"biopsy_proven": True, "etiology": "undetermined"}, "age_years": 38},
    "bp-age-missing-both-above": {
        "fsgs": IN_SCOPE,
        "weight_kg": 70,
        "cyclosporine": {"status": "current", "daily_dose": {"value": 3, "unit": "mg/kg/day"}, "months_on_therapy": 3},
        "blood_pressure": {"systolic_mmHg": 150, "diastolic_mmHg": 96, "percentile_for_age": 99},
    },
    "bp-age-missing-open": {
        "fsgs": IN_SCOPE,
        "cyclosporine": {"status": "current", "daily_dose": {"value": 3, "unit": "mg/kg/day"}, "months_on_therapy": 3},
        "blood_pressure": {"systolic_mmHg": 150, "diastolic_mmHg": 96, "percentile_for_age": 50},
    },
}
CASES = [(p.stem, json.loads(p.read_text(encoding="utf-8"))) for p in EXAMPLES] + [
    (name, {"id": name, **record}) for name, record in CRAFTED.items()
]
TRUTH = {"fired": True, "not_fired": False, "undetermined": None}


@pytest.fixture(scope="module")
def kb() -> fsgs_kb.KnowledgeBase:
    return fsgs_kb.load(ROOT / "rules")


@pytest.mark.parametrize(("name", "patient"), CASES, ids=[name for name, _ in CASES])
def test_explain_agrees_with_evaluate(kb: fsgs_kb.KnowledgeBase, name: str, patient: dict[str, Any]) -> None:
    result = kb.evaluate(patient)
    doc = explanation(kb, patient, result)
    scope = doc["scope"]
    assert scope["in_scope"] == result["scope"]["in_scope"], name
    assert [item["pointer"] for item in scope["record"]] == result["scope"]["missing"], name
    for rule, said in zip(result["rules"], doc["rules"], strict=True):
        if rule["kind"] == "caveat":
            continue  # a caveat's condition may hold while it does not fire (no advice to qualify)
        assert said["because"]["met"] == TRUTH[rule["outcome"]], (name, rule["id"])
    explain_text(doc)  # renders


def test_a_scope_left_undetermined_names_every_input_that_could_decide_it(kb: fsgs_kb.KnowledgeBase) -> None:
    """Etiology recorded as unknown beside a biopsy recorded false: SCOPE-OUT is undetermined on the
    etiology (secondary would put the patient out of scope), so the scope names it to record."""
    result = kb.evaluate({"id": "p3", **CRAFTED["etiology-unknown-biopsy-false"]})
    assert result["status"] == "scope_undetermined"
    assert result["scope"] == {"in_scope": None, "missing": ["/fsgs/etiology"], "reason": result["scope"]["reason"]}
    assert "/fsgs/etiology" in next(r for r in result["rules"] if r["id"] == "SCOPE-OUT")["missing"]


def test_undetermined_cause_is_out_of_scope_by_local_policy_not_by_the_title(kb: fsgs_kb.KnowledgeBase) -> None:
    """clinical-notes §6.3: FSGS of undetermined cause is out by the site's choice; the heading says so."""
    patient = {"id": "uc", **CRAFTED["undetermined-cause"]}
    result = kb.evaluate(patient)
    assert result["status"] == "out_of_scope" and "local policy" in result["scope"]["reason"]
    heading = explain_text(explanation(kb, patient, result)).splitlines()[0]
    assert "site leaves out of scope (local policy" in heading, heading


def _leaf_texts(node: dict[str, Any]) -> list[str]:
    if node.get("kind") == "condition":
        return [node["text"]] + _leaf_texts(node.get("definition") or {})
    return [text for item in node.get("items", []) for text in _leaf_texts(item)]


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("etiology-unknown-biopsy-true", "FSGS etiology: recorded as unknown"),
        ("etiology-absent", "FSGS etiology: not recorded"),
    ],
)
def test_a_field_recorded_as_unknown_is_not_called_unrecorded(kb: fsgs_kb.KnowledgeBase, name: str, said: str) -> None:
    """The engine reads an enum recorded as 'unknown' as it reads an absent field, but the record
    is not silent there: a clinician wrote that it is not known. The explanation says which."""
    patient = {"id": name, **CRAFTED[name]}
    doc = explanation(kb, patient, kb.evaluate(patient))
    texts = _leaf_texts(doc["scope"]["because"]) if doc["scope"].get("because") else []
    texts += [t for rule in doc["rules"] for t in _leaf_texts(rule["because"])]
    assert any(t.startswith(said) for t in texts), texts
    other = "not recorded" if "unknown" in said else "recorded as unknown"
    assert not any(t.startswith(f"FSGS etiology: {other}") for t in texts), texts
