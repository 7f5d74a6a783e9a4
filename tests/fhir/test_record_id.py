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
