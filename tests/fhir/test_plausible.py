"""One implausible value empties its own field, not the whole record: a body weight of 0 kg (or
400 kg, an age of 135 years, a note longer than the record holds) leaves that field missing
(`out_of_range`), names the resource, the value and the range the record allows in `set_aside`,
and the rest of the record is evaluated: the rules that need the field are undetermined.

The Bundle is written here as FHIR JSON and goes through the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fsgs_kb.engine.load.schemas import validator

AS_OF = "2025-01-15"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
FIELD = "urn:fsgs-kb:field"
VALUE = "urn:fsgs-kb:value"


def cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fsgs_kb", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def observation(rid: str, system: str, code: str, when: str = "2025-01-10", **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": when,
        **value,
    }


def quantity(value: float, unit: str) -> dict[str, Any]:
    return {"valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}


def enum(code: str) -> dict[str, Any]:
    return {"valueCodeableConcept": {"coding": [{"system": VALUE, "code": code}]}}


ORDER = {
    "resourceType": "MedicationRequest",
    "id": "csa",
    "status": "active",
    "intent": "order",
    "subject": {"reference": "Patient/p1"},
    "authoredOn": "2024-09-01",
    "medicationCodeableConcept": {
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "3008"}]
    },
    "dosageInstruction": [
        {
            "timing": {
                "repeat": {"frequency": 2, "period": 1, "periodUnit": "d", "boundsPeriod": {"start": "2024-09-01"}}
            },
            "doseAndRate": [{"doseQuantity": {"value": 178.5, "unit": "mg", "system": UCUM, "code": "mg"}}],
        }
    ],
}


def bundle(weight_kg: float, birth: str = "1980-03-01", *extra: dict[str, Any]) -> dict[str, Any]:
    resources = [
        observation("weight", LOINC, "29463-7", **quantity(weight_kg, "kg")),
        observation("biopsy", FIELD, "fsgs.biopsy_proven", valueBoolean=True),
        observation("etiology", FIELD, "fsgs.etiology", **enum("primary")),
        observation("response", FIELD, "steroids.response", **enum("resistant")),
        ORDER,
        *extra,
    ]
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": birth}
    entries = [{"fullUrl": "urn:uuid:p1", "resource": patient}] + [{"resource": r} for r in resources]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def evaluate(tmp_path: Path, doc: dict[str, Any]) -> dict[str, Any]:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(doc))
    proc = cli("evaluate", "--input-format", "fhir", "--as-of", AS_OF, path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    result = dict(json.loads(proc.stdout))
    assert not list(validator("result").iter_errors(result))
    return result


def test_the_plausible_bundle_is_evaluated(tmp_path: Path) -> None:
    result = evaluate(tmp_path, bundle(70))
    assert result["status"] == "evaluated" and "CSA-DOSE-EXCEEDS" in result["advice"]  # 357 mg/day ÷ 70 kg


@pytest.mark.parametrize(("kg", "shown"), [(0, "0 kg"), (0.0, "0 kg"), (400, "400 kg"), (-70, "-70 kg")])
def test_an_implausible_weight_empties_only_the_weight(tmp_path: Path, kg: float, shown: str) -> None:
    older = observation("older", LOINC, "29463-7", when="2025-01-01", **quantity(70, "kg"))
    result = evaluate(tmp_path, bundle(kg, "1980-03-01", older))
    assert result["status"] == "evaluated", result["errors"]
    assert result["sources"]["/weight_kg"] == {"missing": "out_of_range"}  # never the older 70 kg instead
    (item,) = result["set_aside"]
    assert item == {
        "resourceType": "Observation",
        "id": "weight",
        "entry": "/entry/1",
        "field": "/weight_kg",
        "reason": "out_of_range",
        "message": f"Observation/weight: value {shown} is outside what the record allows for /weight_kg "
        "(> 0 and ≤ 300 kg)",
    }
    rules = {r["id"]: r for r in result["rules"]}
    assert rules["CSA-DOSE-EXCEEDS"]["outcome"] == "undetermined"
    assert rules["CSA-DOSE-EXCEEDS"]["missing"] == ["/weight_kg"]
    assert "CSA-DUR-WITHIN" in result["advice"]  # the rest of the record still counts


def test_an_impossible_age_and_an_overlong_note_are_set_aside(tmp_path: Path) -> None:
    note = observation("cause", FIELD, "fsgs.secondary_cause", valueString="x" * 600)
    result = evaluate(tmp_path, bundle(70, "1890-01-01", note))
    assert result["sources"]["/age_years"] == {"missing": "out_of_range"}
    assert result["sources"]["/fsgs/secondary_cause"] == {"missing": "out_of_range"}
    messages = {item["id"]: item["message"] for item in result["set_aside"]}
    assert (
        messages["p1"]
        == "Patient/p1: value 135 years is outside what the record allows for /age_years (≥ 0 and ≤ 120 years)"
    )
    assert messages["cause"].endswith("a text of 600 characters is longer than /fsgs/secondary_cause holds (500)")
    assert result["status"] != "invalid"


def test_explain_says_why_the_field_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle(0)))
    proc = cli("explain", "--input-format", "fhir", "--as-of", AS_OF, path)
    assert proc.returncode == 0, proc.stderr
    assert "body weight (/weight_kg (FHIR: a value outside what the record allows))" in proc.stdout
    assert "/entry/1, /weight_kg: Observation/weight: value 0 kg is outside what the record allows" in proc.stdout
