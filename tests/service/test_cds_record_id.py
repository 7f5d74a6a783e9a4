"""The decision log's patient column is the patient the EHR named (context.patientId, masked with
a masking secret) on every row; the record id (the result's patient_id) is the Patient's identifier
in the map's record_id_system, which at a site whose record-id system is its MRN is not the FHIR
id. Replay once compared the two, so every honest row of such a site was reported tampered
("patient column 'fhir-123', the result's 'EX-DOSE-HIGH'", exit 1). A logged result now carries the
patient the EHR named as its origin (`Patient/<id>`), which replay ties the column to. A Patient
with two different record ids is refused (400, naming where in the request), as the command line
refuses it, not filed under the first.

Real service (conftest.py), real SQLite file, the real CLI in a subprocess."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from cds_support import (
    Server,
    example,
    hook_request,
    iter_rows,
    log_copy,
    patient_bundle,
    prefetch_for,
    replay_log,
    signed_call,
)

PV = "fsgs-csa-patient-view"
RECORD_ID = "EX-DOSE-HIGH"  # the example's identifier in urn:fsgs-kb:record-id
FHIR_ID = "fhir-123"


def templates(server: Server, ehr: Any) -> dict[str, str]:
    services = signed_call(server, ehr, "/cds-services").json()["services"]
    return dict(next(s["prefetch"] for s in services if s["id"] == PV))


def prefetch_of(server: Server, ehr: Any) -> dict[str, Any]:
    """The over-the-ceiling patient, whose FHIR id is not its record id."""
    bundle = patient_bundle(example("dose-above-ceiling"))
    text = json.dumps(bundle).replace(f'"Patient/{RECORD_ID}"', f'"Patient/{FHIR_ID}"')
    bundle = json.loads(text)
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    patient["id"] = FHIR_ID
    assert patient["identifier"][0]["value"] == RECORD_ID
    return prefetch_for(templates(server, ehr), bundle, FHIR_ID)


def test_a_record_id_that_is_not_the_fhir_id_replays_identical(server: Server, ehr: Any, tmp_path: Path) -> None:
    body = hook_request("patient-view", FHIR_ID, prefetch_of(server, ehr))
    answer = signed_call(server, ehr, f"/cds-services/{PV}", body)
    assert answer.status_code == 200, answer.text
    assert "CSA-DOSE-EXCEEDS" in [c["source"]["topic"]["code"] for c in answer.json()["cards"]]
    copied = log_copy(server, tmp_path)
    sql = f"SELECT id, patient, result FROM decisions WHERE hook_instance = '{body['hookInstance']}'"
    ((rowid, patient, result),) = list(iter_rows(copied, sql))
    assert patient == FHIR_ID  # the column: the patient the EHR named
    assert json.loads(result)["patient_id"] == RECORD_ID and json.loads(result)["origin"] == f"Patient/{FHIR_ID}"
    _, verdicts = replay_log(copied)
    assert verdicts[rowid]["verdict"] == "identical", verdicts[rowid]


def test_a_result_moved_to_another_patients_row_is_still_found(server: Server, ehr: Any, tmp_path: Path) -> None:
    """The tie holds: a row whose column names another patient than its result's origin is unreadable."""
    body = hook_request("patient-view", FHIR_ID, prefetch_of(server, ehr))
    assert signed_call(server, ehr, f"/cds-services/{PV}", body).status_code == 200
    copied = tmp_path / "decisions.sqlite"
    source, target = sqlite3.connect(server.log.parent / "decisions.sqlite"), sqlite3.connect(copied)
    try:
        source.backup(target)
        target.execute("UPDATE decisions SET patient = 'someone-else' WHERE hook_instance = ?", (body["hookInstance"],))
        target.commit()
        (rowid,) = target.execute(
            "SELECT id FROM decisions WHERE hook_instance = ?", (body["hookInstance"],)
        ).fetchone()
    finally:
        source.close()
        target.close()
    _, verdicts = replay_log(copied)
    assert verdicts[rowid]["verdict"] == "unreadable"
    assert 'patient column "someone-else", the result\'s "fhir-123"' in verdicts[rowid]["problem"]


def test_two_record_ids_on_the_patient_are_refused_with_where(server: Server, ehr: Any) -> None:
    prefetch = prefetch_of(server, ehr)
    prefetch["patient"]["identifier"].append({"system": "urn:fsgs-kb:record-id", "value": "MRN-OTHER"})
    body = hook_request("patient-view", FHIR_ID, prefetch)
    answer = signed_call(server, ehr, f"/cds-services/{PV}", body)
    assert answer.status_code == 400, answer.text
    said = answer.json()["issue"][0]["diagnostics"]
    assert said.startswith("prefetch cannot be read as one patient's data: /prefetch/patient/identifier/1: the Patient")
    assert "which one is the record id cannot be told" in said and "MRN-OTHER" not in said
    sql = f"SELECT status FROM decisions WHERE hook_instance = '{body['hookInstance']}'"
    assert list(iter_rows(server.log.parent / "decisions.sqlite", sql)) == [("rejected_400",)]
