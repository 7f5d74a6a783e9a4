"""`Patient/123` here and `Patient/123` on another FHIR server are two people: a resource whose
subject is an absolute URL to another server is set aside, never read as this patient's data.
Relative references, `urn:uuid:` fullUrls and absolute URLs on the Patient's server (or, when the
Bundle does not say the Patient's server, on the referring entry's) are the patient's.

Bundles and a Bulk Data export are written here as FHIR JSON and go through the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fhir_helpers import RXNORM, UCUM, cli, evaluate_bundle, obs, qty

AS_OF = "2025-01-15"
THIS = "https://this.example/fhir"
OTHER = "https://other.example/fhir"
URN = "urn:uuid:6b1c0f4e-0000-4000-8000-000000000123"
PATIENT = {"resourceType": "Patient", "id": "123", "birthDate": "1980-03-01"}


def weight(rid: str, kg: float, when: str, subject: str) -> dict[str, Any]:
    return obs(rid, "29463-7", qty(kg, "kg"), when=when, subject=subject)


def evaluate(tmp_path: Path, patient_url: str | None, *entries: dict[str, Any]) -> dict[str, Any]:
    first = {"fullUrl": patient_url, "resource": PATIENT} if patient_url else {"resource": PATIENT}
    doc = {"resourceType": "Bundle", "type": "collection", "entry": [first, *entries]}
    return evaluate_bundle(tmp_path, doc, "--as-of", AS_OF)


@pytest.mark.parametrize("patient_url", [f"{THIS}/Patient/123", None, URN])
def test_another_servers_patient_is_not_this_patient(tmp_path: Path, patient_url: str | None) -> None:
    ours = {"resource": weight("ours", 70, "2025-01-10", "Patient/123")}
    theirs = {"resource": weight("theirs", 95, "2025-01-14", f"{OTHER}/Patient/123")}  # newer, same id, other server
    result = evaluate(tmp_path, patient_url, ours, theirs)
    assert result["sources"]["/weight_kg"]["id"] == "ours"
    (item,) = result["set_aside"]
    assert (item["id"], item["entry"], item["reason"]) == ("theirs", "/entry/2", "not_this_patient")
    assert f"refers to {OTHER}/Patient/123, a patient on another server" in item["message"]


@pytest.mark.parametrize(
    ("patient_url", "entry_url", "subject", "ours"),
    [
        (f"{THIS}/Patient/123", None, "Patient/123", True),
        (f"{THIS}/Patient/123", f"{THIS}/Observation/w", "Patient/123", True),
        (f"{THIS}/Patient/123", None, f"{THIS}/Patient/123", True),
        (f"{THIS}/Patient/123", None, "HTTPS://THIS.example/fhir/Patient/123", True),  # scheme and host: any case
        (None, None, "Patient/123", True),
        (None, f"{THIS}/Observation/w", f"{THIS}/Patient/123", True),  # the entry's own server names the patient
        (URN, None, URN, True),
        (None, None, f"{OTHER}/Patient/123", False),  # no server anywhere says this is the Bundle's patient
        (f"{THIS}/Patient/123", f"{OTHER}/Observation/w", f"{OTHER}/Patient/123", False),
        (f"{THIS}/Patient/123", f"{OTHER}/Observation/w", "Patient/123", False),  # relative: the other server's 123
        (f"{THIS}/Patient/123", None, f"{THIS}/Patient/124", False),
        # a version-specific reference names the same patient: the version is not part of who it is
        (None, None, "Patient/123/_history/2", True),
        (f"{THIS}/Patient/123", None, f"{THIS}/Patient/123/_history/7", True),
        (f"{THIS}/Patient/123", None, "Patient/123/_history/7", True),
        (f"{THIS}/Patient/123", None, f"{OTHER}/Patient/123/_history/7", False),
        (None, None, "Patient/124/_history/2", False),
        (None, None, "Patient/123/_history/", False),  # no version id: not a reference FHIR defines
    ],
)
def test_which_references_name_this_patient(
    tmp_path: Path, patient_url: str | None, entry_url: str | None, subject: str, ours: bool
) -> None:
    entry = {"resource": weight("w", 70, "2025-01-10", subject)}
    if entry_url:
        entry["fullUrl"] = entry_url
    result = evaluate(tmp_path, patient_url, entry)
    if ours:
        assert result["sources"]["/weight_kg"]["id"] == "w" and result["set_aside"] == []
    else:
        assert result["sources"]["/weight_kg"] == {"missing": "no_resource"}
        assert [i["reason"] for i in result["set_aside"]] == ["not_this_patient"]


def _bulk(tmp_path: Path, subjects: list[str]) -> list[dict[str, Any]]:
    export = tmp_path / "export"
    export.mkdir()
    (export / "Patient.ndjson").write_text(json.dumps(PATIENT) + "\n")
    lines = [weight(f"w{i}", 70 + i, f"2025-01-1{i}", s) for i, s in enumerate(subjects)]
    (export / "Observation.ndjson").write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = tmp_path / "out.jsonl"
    proc = cli("batch", "--input-format", "fhir-bulk", "--as-of", AS_OF, export, "-o", out)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_a_bulk_export_with_absolute_references_to_its_one_server_is_read(tmp_path: Path) -> None:
    """The Bulk Data IG allows absolute references rooted at the exporting server."""
    (result,) = _bulk(tmp_path, [f"{THIS}/Patient/123", f"{THIS}/Patient/123"])
    assert result["sources"]["/weight_kg"]["id"] == "w1" and result["set_aside"] == []


def test_a_bulk_export_sets_aside_a_reference_to_another_server(tmp_path: Path) -> None:
    (result,) = _bulk(tmp_path, ["Patient/123", f"{OTHER}/Patient/123"])
    assert result["sources"]["/weight_kg"]["id"] == "w0"
    (item,) = result["set_aside"]
    assert (item["id"], item["origin"], item["reason"]) == ("w1", "Observation.ndjson:2", "not_this_patient")


@pytest.mark.parametrize(
    "subjects",
    [["Patient/123/_history/1", "Patient/123/_history/2"], [f"{THIS}/Patient/123/_history/1", f"{THIS}/Patient/123"]],
)
def test_a_bulk_export_groups_version_specific_references_with_their_patient(
    tmp_path: Path, subjects: list[str]
) -> None:
    (result,) = _bulk(tmp_path, subjects)
    assert result["status"] != "invalid" and result["set_aside"] == []
    assert result["sources"]["/weight_kg"]["id"] == "w1"


NEORAL = {  # cyclosporine, modified 100 MG Oral Capsule [Neoral], with its strength per capsule
    "resourceType": "Medication",
    "id": "neoral",
    "code": {"coding": [{"system": RXNORM, "code": "835911"}]},
    "ingredient": [
        {
            "itemCodeableConcept": {"coding": [{"system": RXNORM, "code": "3008"}]},
            "strength": {"numerator": qty(100, "mg"), "denominator": {"value": 1, "system": UCUM, "code": "{capsule}"}},
        }
    ],
}


def capsule_order(medication: str, subject: str = "Patient/123") -> dict[str, Any]:
    """Two capsules twice a day of the Medication `medication` refers to: the order names its drug
    and the capsule's strength only through that Medication."""
    capsules = {"value": 2, "unit": "capsule", "system": UCUM, "code": "{capsule}"}
    return {
        "resourceType": "MedicationRequest",
        "id": "o",
        "status": "active",
        "intent": "order",
        "subject": {"reference": subject},
        "authoredOn": "2024-12-01",
        "medicationReference": {"reference": medication},
        "dosageInstruction": [
            {
                "doseAndRate": [{"doseQuantity": capsules}],
                "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
            }
        ],
    }


@pytest.mark.parametrize(
    ("medication_url", "ref", "found"),
    [
        (None, "Medication/neoral", True),  # as before
        (None, "Medication/neoral/_history/3", True),
        (f"{THIS}/Medication/neoral", f"{THIS}/Medication/neoral/_history/3", True),
        (f"{THIS}/Medication/neoral", "Medication/neoral/_history/3", True),
        (None, "Medication/neoral/_history/", False),  # no version id: not a reference FHIR defines
        (None, "Medication/other/_history/3", False),
    ],
)
def test_a_version_specific_medication_reference_names_the_same_medication(
    tmp_path: Path, medication_url: str | None, ref: str, found: bool
) -> None:
    """`Medication/neoral/_history/3` is a version of `Medication/neoral` (FHIR R4 "Literal
    references"): the order is cyclosporine and its dose, 2 capsules of 100 mg twice a day, is
    400 mg/day. Before, the versioned reference was looked up as it is written and found nothing,
    so the order named no drug and the field stayed empty."""
    medication = {"fullUrl": medication_url, "resource": NEORAL} if medication_url else {"resource": NEORAL}
    doc = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": PATIENT}, {"resource": capsule_order(ref)}, medication],
    }
    result = evaluate_bundle(tmp_path, doc, "--as-of", AS_OF, "--include-input")
    if found:
        assert result["decision"]["input"]["cyclosporine"]["daily_dose"] == {"value": 400, "unit": "mg/day"}
        assert result["sources"]["/cyclosporine/daily_dose"]["id"] == "o"
    else:
        assert "cyclosporine" not in result["decision"]["input"]
        assert result["sources"]["/cyclosporine/daily_dose"] == {"missing": "no_resource"}


def test_a_bulk_export_brings_the_medication_a_version_specific_reference_names(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    (export / "Patient.ndjson").write_text(json.dumps(PATIENT) + "\n")
    (export / "Medication.ndjson").write_text(json.dumps(NEORAL) + "\n")
    (export / "MedicationRequest.ndjson").write_text(json.dumps(capsule_order("Medication/neoral/_history/3")) + "\n")
    out = tmp_path / "out.jsonl"
    proc = cli("batch", "--input-format", "fhir-bulk", "--as-of", AS_OF, "--include-input", export, "-o", out)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    (result,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert result["decision"]["input"]["cyclosporine"]["daily_dose"] == {"value": 400, "unit": "mg/day"}


def versioned(vid: str, mg: float = 100) -> dict[str, Any]:
    """NEORAL as its version `vid` says it is (meta.versionId), `mg` per capsule."""
    (ingredient,) = NEORAL["ingredient"]
    strength = {**ingredient["strength"], "numerator": qty(mg, "mg")}
    return {**NEORAL, "meta": {"versionId": vid}, "ingredient": [{**ingredient, "strength": strength}]}


def capsule_bundle(ref: str, *medications: dict[str, Any], medication_url: str | None = None) -> dict[str, Any]:
    meds = [{"fullUrl": medication_url, "resource": m} if medication_url else {"resource": m} for m in medications]
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": PATIENT}, {"resource": capsule_order(ref)}, *meds],
    }


MISMATCH = (
    "MedicationRequest/o: its medicationReference {ref} names version 3 of Medication/neoral, but the one sent "
    "is version 4: the drug and its strength are not read from another version"
)


@pytest.mark.parametrize(
    ("medication_url", "ref"),
    [
        (None, "Medication/neoral/_history/3"),
        (f"{THIS}/Medication/neoral", f"{THIS}/Medication/neoral/_history/3"),
        (f"{THIS}/Medication/neoral", "Medication/neoral/_history/3"),
    ],
)
def test_an_order_naming_another_version_of_its_medication_is_set_aside_naming_both(
    tmp_path: Path, medication_url: str | None, ref: str
) -> None:
    """The order names version 3 of the Medication; the one sent says it is version 4 (its code or
    strength may have been corrected since): the order is not read as cyclosporine from version 4,
    nor its dose from version 4's strength; it is set aside, naming both versions. Before, version
    4 was used as if it were version 3."""
    doc = capsule_bundle(ref, versioned("4"), medication_url=medication_url)
    result = evaluate_bundle(tmp_path, doc, "--as-of", AS_OF, "--include-input")
    assert "cyclosporine" not in result["decision"]["input"]
    assert result["sources"]["/cyclosporine/daily_dose"] == {"missing": "no_resource"}
    assert result["set_aside"] == [
        {
            "resourceType": "MedicationRequest",
            "id": "o",
            "entry": "/entry/1",
            "reason": "medication_version_mismatch",
            "message": MISMATCH.format(ref=ref),
        }
    ]


@pytest.mark.parametrize(
    ("medications", "mg_per_day"),
    [
        ([versioned("3")], 400),  # the version named
        ([versioned("4", mg=25), versioned("3")], 400),  # both sent: the one named, not the last
        ([versioned("3"), versioned("4", mg=25)], 400),
    ],
)
def test_an_order_naming_the_version_sent_reads_that_version(
    tmp_path: Path, medications: list[dict[str, Any]], mg_per_day: float
) -> None:
    doc = capsule_bundle("Medication/neoral/_history/3", *medications)
    result = evaluate_bundle(tmp_path, doc, "--as-of", AS_OF, "--include-input")
    assert result["decision"]["input"]["cyclosporine"]["daily_dose"] == {"value": mg_per_day, "unit": "mg/day"}
    assert result["set_aside"] == []


def _bulk_capsules(tmp_path: Path, ref: str, *medications: dict[str, Any]) -> dict[str, Any]:
    export = tmp_path / "export"
    export.mkdir()
    (export / "Patient.ndjson").write_text(json.dumps(PATIENT) + "\n")
    (export / "Medication.ndjson").write_text("".join(json.dumps(m) + "\n" for m in medications))
    (export / "MedicationRequest.ndjson").write_text(json.dumps(capsule_order(ref)) + "\n")
    out = tmp_path / "out.jsonl"
    proc = cli("batch", "--input-format", "fhir-bulk", "--as-of", AS_OF, "--include-input", export, "-o", out)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    (result,) = [json.loads(line) for line in out.read_text().splitlines()]
    return dict(result)


def test_a_bulk_export_sets_aside_an_order_naming_another_version_of_its_medication(tmp_path: Path) -> None:
    result = _bulk_capsules(tmp_path, "Medication/neoral/_history/3", versioned("4"))
    assert "cyclosporine" not in result["decision"]["input"]
    assert result["set_aside"] == [
        {
            "resourceType": "MedicationRequest",
            "id": "o",
            "origin": "MedicationRequest.ndjson:1",
            "reason": "medication_version_mismatch",
            "message": MISMATCH.format(ref="Medication/neoral/_history/3"),
        }
    ]


def test_a_bulk_export_holding_two_versions_brings_the_one_named(tmp_path: Path) -> None:
    result = _bulk_capsules(tmp_path, "Medication/neoral/_history/3", versioned("3"), versioned("4", mg=25))
    assert result["decision"]["input"]["cyclosporine"]["daily_dose"] == {"value": 400, "unit": "mg/day"}
    assert result["set_aside"] == []
