"""The record id is the Patient's identifier in the map's record-id system (else Patient.id): a
Patient that gives two different identifiers in that system is refused with a located reason, no
longer filed under whichever came first (which one the EHR means cannot be told). The same
identifier given twice is one id. Through the real command line; the CDS service refuses the same
(tests/service/test_cds_record_id.py)."""

from __future__ import annotations

import json
from pathlib import Path

from fhir_helpers import cli, evaluate_bundle

SYSTEM = "urn:fsgs-kb:record-id"  # rules/fhir-map.yaml settings.record_id_system


def bundle(*values: str) -> dict[str, object]:
    patient = {
        "resourceType": "Patient",
        "id": "fhir-123",
        "birthDate": "1980-03-01",
        "identifier": [{"system": "urn:other", "value": "x"}] + [{"system": SYSTEM, "value": v} for v in values],
    }
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": patient}]}


def test_two_record_ids_on_one_patient_are_refused_with_where_and_why(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle("MRN-1", "MRN-2")))
    proc = cli("evaluate", "--input-format", "fhir", "--as-of", "2025-01-15", path)
    assert "Traceback" not in proc.stderr, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "invalid"
    (error,) = result["errors"]
    assert error["code"] == "fhir.bundle" and error["pointer"] == "/entry/0/resource/identifier/2"
    assert "2 different identifiers in the map's record-id system 'urn:fsgs-kb:record-id'" in error["message"]
    assert "which one is the record id cannot be told" in error["message"]
    assert "record_id_system" in error["hint"]
    assert "MRN-1" not in proc.stdout and "MRN-2" not in proc.stdout  # identifiers are not quoted


def test_one_record_id_given_twice_is_the_record_id(tmp_path: Path) -> None:
    result = evaluate_bundle(tmp_path, bundle("MRN-1", "MRN-1"), "--as-of", "2025-01-15")
    assert result["patient_id"] == "MRN-1" and result["status"] != "invalid"


def test_a_patient_named_only_by_its_full_url_is_that_url(tmp_path: Path) -> None:
    """A transaction Bundle (a POST of a new Patient) names the Patient by its entry's urn:uuid
    fullUrl, with no id: the record id is that fullUrl, and the resources that refer to it are
    read (it was fhir.internal, exit 3: 'unreachable: read_bundle guarantees an id or fullUrl')."""
    url = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"
    weight = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": url},
        "effectiveDateTime": "2025-01-01",
        "valueQuantity": {"value": 70, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
    }
    patient = {"resourceType": "Patient", "birthDate": "1980-03-01"}
    entries = [
        {"fullUrl": url, "resource": patient, "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:0b0f3c1e-1d7a-4a54-9d43-3f3f7a1b2c3d", "resource": weight},
    ]
    for kind in ("transaction", "collection"):
        result = evaluate_bundle(
            tmp_path, {"resourceType": "Bundle", "type": kind, "entry": entries}, "--as-of", "2025-01-15"
        )
        assert result["status"] not in ("invalid", "error"), result
        assert result["patient_id"] == url and result["sources"]["/id"]["code"] == "Bundle.entry.fullUrl"
        assert result["sources"]["/weight_kg"]["resourceType"] == "Observation"
