"""One implausible value empties its own field, not the whole record: a body weight of 0 kg (or
400 kg, an age of 135 years, a note longer than the record holds) leaves that field missing
(`out_of_range`), names the resource, the value and the range the record allows in `set_aside`,
and the rest of the record is evaluated: the rules that need the field are undetermined.

The Bundle is written here as FHIR JSON and goes through the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fhir_helpers import cli, dosage, enum_value, evaluate_bundle, field_obs, med_request, obs, qty

from fsgs_kb.engine.load.schemas import validator

AS_OF = "2025-01-15"


def weight(rid: str, kg: float, when: str = "2025-01-10") -> dict[str, Any]:
    return obs(rid, "29463-7", qty(kg, "kg"), when=when)


def bundle(weight_kg: float, birth: str = "1980-03-01", *extra: dict[str, Any]) -> dict[str, Any]:
    resources = [
        weight("weight", weight_kg),
        field_obs("biopsy", "fsgs.biopsy_proven", when="2025-01-10", valueBoolean=True),
        field_obs("etiology", "fsgs.etiology", when="2025-01-10", **enum_value("primary")),
        field_obs("response", "steroids.response", when="2025-01-10", **enum_value("resistant")),
        med_request("csa", dosage(178.5, frequency=2, start="2024-09-01")),  # 357 mg/day
        *extra,
    ]
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": birth}
    entries = [{"fullUrl": "urn:uuid:p1", "resource": patient}] + [{"resource": r} for r in resources]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def evaluate(tmp_path: Path, doc: dict[str, Any]) -> dict[str, Any]:
    result = evaluate_bundle(tmp_path, doc, "--as-of", AS_OF)
    assert not list(validator("result").iter_errors(result))
    return result


def test_the_plausible_bundle_is_evaluated(tmp_path: Path) -> None:
    result = evaluate(tmp_path, bundle(70))
    assert result["status"] == "evaluated" and "CSA-DOSE-EXCEEDS" in result["advice"]  # 357 mg/day ÷ 70 kg


@pytest.mark.parametrize(("kg", "shown"), [(0, "0 kg"), (0.0, "0 kg"), (400, "400 kg"), (-70, "-70 kg")])
def test_an_implausible_weight_empties_only_the_weight(tmp_path: Path, kg: float, shown: str) -> None:
    older = weight("older", 70, when="2025-01-01")
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
    note = field_obs("cause", "fsgs.secondary_cause", when="2025-01-10", valueString="x" * 600)
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
