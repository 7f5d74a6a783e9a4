"""A Condition is a diagnosis only when confirmed, or when it states no verificationStatus (FHIR R4:
the element is optional; only refuted and entered-in-error mark a Condition as not valid).
Unconfirmed, provisional, differential and refuted ones, and statuses this reader cannot read, are
set aside with the reason; entered-in-error ones are not part of the record at all.

The Bundles are written here as FHIR JSON and go through the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fhir_helpers import enum_value, evaluate_bundle, field_obs

from fsgs_kb.engine.fhir import FhirMapError, default_map_path, load_map

AS_OF = "2025-01-15"
VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
GENETIC_FSGS = {"system": "http://snomed.info/sct", "code": "444977005"}  # autosomal dominant FSGS


def condition(verification: Any = None) -> dict[str, Any]:
    cond: dict[str, Any] = {
        "resourceType": "Condition",
        "id": "fsgs-dx",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [GENETIC_FSGS]},
        "recordedDate": "2024-11-02",
    }
    if verification is not None:
        cond["verificationStatus"] = verification
    return cond


def status(code: str) -> dict[str, Any]:
    return {"coding": [{"system": VER, "code": code}]}


def primary_etiology() -> dict[str, Any]:
    return field_obs("etiology", "fsgs.etiology", when="2025-01-10", **enum_value("primary"))


def evaluate(tmp_path: Path, *resources: dict[str, Any]) -> dict[str, Any]:
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1980-03-01"}
    entries = [{"fullUrl": "urn:uuid:p1", "resource": patient}] + [{"resource": r} for r in resources]
    return evaluate_bundle(
        tmp_path, {"resourceType": "Bundle", "type": "collection", "entry": entries}, "--as-of", AS_OF
    )


@pytest.mark.parametrize("verification", [status("confirmed"), None], ids=["confirmed", "absent"])
def test_a_confirmed_or_unqualified_diagnosis_counts(tmp_path: Path, verification: Any) -> None:
    result = evaluate(tmp_path, condition(verification))
    assert result["sources"]["/fsgs/etiology"]["id"] == "fsgs-dx"
    assert result["sources"]["/fsgs/etiology"]["effective"] == "2024-11-02"  # the recordedDate as written
    assert result["status"] == "out_of_scope" and result["set_aside"] == []  # genetic FSGS: not the review's


@pytest.mark.parametrize(
    ("verification", "words"),
    [
        (status("unconfirmed"), "verificationStatus unconfirmed: only a confirmed diagnosis counts"),
        (status("provisional"), "verificationStatus provisional: only a confirmed diagnosis counts"),
        (status("differential"), "verificationStatus differential: only a confirmed diagnosis counts"),
        (status("refuted"), "verificationStatus refuted: only a confirmed diagnosis counts"),
        ({"coding": [{"code": "confirmed"}]}, f"has no code of {VER}"),  # no system: not the FHIR code
        ({"text": "probable"}, f"has no code of {VER}"),
        (
            {"coding": [{"system": VER, "code": "likely"}]},
            "verificationStatus likely is not a ConditionVerificationStatus code",
        ),
        ({"coding": [status("confirmed")["coding"][0], status("refuted")["coding"][0]]}, "refuted"),
    ],
    ids=["unconfirmed", "provisional", "differential", "refuted", "no-system", "text-only", "unknown", "contradictory"],
)
def test_a_diagnosis_that_is_not_confirmed_is_set_aside(tmp_path: Path, verification: Any, words: str) -> None:
    result = evaluate(tmp_path, condition(verification))
    assert result["sources"]["/fsgs/etiology"] == {"missing": "no_resource"}
    (item,) = result["set_aside"]
    assert (item["id"], item["field"], item["reason"]) == ("fsgs-dx", "/fsgs/etiology", "not_confirmed")
    assert item["message"].startswith("Condition/fsgs-dx: ") and words in item["message"]


def test_an_entered_in_error_diagnosis_is_not_in_the_record(tmp_path: Path) -> None:
    result = evaluate(tmp_path, condition(status("entered-in-error")))
    assert result["sources"]["/fsgs/etiology"] == {"missing": "no_resource"}
    (item,) = result["set_aside"]
    assert (item["id"], item["reason"]) == ("fsgs-dx", "entered_in_error")


def test_a_provisional_diagnosis_does_not_contradict_a_recorded_etiology(tmp_path: Path) -> None:
    """Before, a provisional genetic FSGS made a recorded primary etiology 'ambiguous'."""
    result = evaluate(tmp_path, primary_etiology(), condition(status("provisional")))
    assert result["sources"]["/fsgs/etiology"]["id"] == "etiology"
    confirmed = evaluate(tmp_path, primary_etiology(), condition(status("confirmed")))
    assert confirmed["sources"]["/fsgs/etiology"] == {"missing": "ambiguous"}


def test_the_map_accepts_only_verification_status_codes(tmp_path: Path) -> None:
    text = default_map_path().read_text()
    old = "condition_exclude_verification: [unconfirmed, provisional, differential, refuted, entered-in-error]"
    assert old in text
    path = tmp_path / "fhir-map.yaml"
    path.write_text(text.replace(old, "condition_exclude_verification: [provisonal]"))
    with pytest.raises(FhirMapError) as info:
        load_map(path)
    assert [p.pointer for p in info.value.problems] == ["/settings/condition_exclude_verification/0"]
