"""FHIR input that would claim more than its data, or pass in silence: a birthDate after the
evaluation date (no age on it, not an "ambiguous" one) or one that cannot be read; Bundle entries
that hold no resource; an order giving two medication[x] (R4 allows one); a medicationReference to
a Medication not sent (another server's), or to none (a display only). Each is set aside with a
named reason, never skipped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fhir_helpers import AS_OF, bundle, dosage, evaluate_bundle, med_request

from fsgs_kb.engine.fhir import FhirMap, convert_bundle

AGE, STATUS = "/age_years", "/cyclosporine/status"


def convert(fmap: FhirMap, doc: dict[str, Any]) -> Any:
    return convert_bundle(doc, fmap, as_of=AS_OF)


def aside(done: Any) -> list[tuple[str | None, str | None, str, str | None]]:
    return [(a.resource_type, a.id, a.reason, a.field) for a in done.set_aside]


@pytest.mark.parametrize(
    ("birth", "reason"),
    [
        ("2026-01-01", "out_of_range"),
        ("2025", "out_of_range"),
        ("1979-02-30", "date_not_readable"),
        (19790201, "date_not_readable"),
    ],
)
def test_a_birth_date_with_no_age_on_the_evaluation_date_sets_the_patient_aside(
    fmap: FhirMap, birth: Any, reason: str
) -> None:
    done = convert(fmap, bundle(patient={"resourceType": "Patient", "id": "p1", "birthDate": birth}))
    assert aside(done) == [("Patient", "p1", reason, AGE)]
    assert done.sources[AGE] == {"missing": reason} and "age_years" not in done.record
    assert "birthDate" in done.set_aside[0].message


def test_a_birth_date_straddling_the_evaluation_date_stays_ambiguous(fmap: FhirMap) -> None:
    done = convert(fmap, bundle(patient={"resourceType": "Patient", "id": "p1", "birthDate": f"{AS_OF.year}"}))
    assert done.sources[AGE] == {"missing": "ambiguous"} and done.set_aside == []


def test_bundle_entries_that_hold_no_resource_are_each_named(fmap: FhirMap) -> None:
    doc = bundle()
    bad = [{}, {"fullUrl": "urn:uuid:x"}, None, {"resource": None}, {"resource": []}, {"resource": {"id": "a"}}]
    doc["entry"] += bad
    done = convert(fmap, doc)
    assert [(a.reason, a.entry) for a in done.set_aside] == [("not_a_resource", i) for i in range(1, 7)]
    assert "Bundle.entry[3]: the entry is null, not an object" == done.set_aside[2].message
    assert done.record["age_years"] > 0  # the rest is read


def test_an_order_with_two_medications_is_set_aside(fmap: FhirMap) -> None:
    order = med_request("csa", dosage(300, start="2024-01-10"), medicationReference={"reference": "#m"})
    done = convert(fmap, bundle(order))
    assert aside(done) == [("MedicationRequest", "csa", "medication_not_identified", None)]
    assert "both medicationCodeableConcept and medicationReference" in done.set_aside[0].message


@pytest.mark.parametrize("ref", ["http://other.org/fhir/Medication/m1/_history/2", "Medication/absent", "#nowhere"])
def test_an_order_naming_a_medication_not_sent_is_set_aside(fmap: FhirMap, ref: str) -> None:
    order = med_request("csa", dosage(300, start="2024-01-10"), code=None, medicationReference={"reference": ref})
    done = convert(fmap, bundle(order))
    assert aside(done) == [("MedicationRequest", "csa", "medication_not_identified", None)]
    assert f"its medicationReference {ref} names no Medication sent" in done.set_aside[0].message


@pytest.mark.parametrize(
    "named",
    [{"display": "ciclosporin 100 mg capsule"}, {"identifier": {"value": "csa-100"}}, {"reference": 5}, {}],
)
def test_an_order_naming_its_medication_by_no_reference_is_set_aside(fmap: FhirMap, named: Any) -> None:
    """A medicationReference that gives no literal reference (a display or an identifier only):
    the order was read as no drug at all and passed over, so a cyclosporine order written that
    way was silently absent (a draft of one got no card). Its drug cannot be told: set aside."""
    order = med_request("csa", dosage(300, start="2024-01-10"), code=None, medicationReference=named)
    done = convert(fmap, bundle(order))
    assert aside(done) == [("MedicationRequest", "csa", "medication_not_identified", None)]
    assert "its medicationReference names no Medication by reference" in done.set_aside[0].message


def test_the_command_line_reports_them_without_a_traceback(tmp_path: Path) -> None:
    doc = bundle(patient={"resourceType": "Patient", "id": "p1", "birthDate": "2030-01-01"})
    doc["entry"].append(None)
    result = evaluate_bundle(tmp_path, doc, "--as-of", AS_OF.isoformat(), "--include-input")
    assert [(a["reason"], a.get("entry")) for a in result["set_aside"]] == [
        ("not_a_resource", "/entry/1"),
        ("out_of_range", "/entry/0"),
    ]
