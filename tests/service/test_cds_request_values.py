"""context.patientId is the Patient's FHIR id (CDS Hooks 2.0: "the FHIR Patient.id"; FHIR R4's
`id`: 1 to 64 letters, digits, '-', '.' or '_'). Any other text was taken: `"   "`, `"../x/y"`, 100 KB,
control characters, which became the `{fhirServer}/Patient/<id>` the prefetch is matched against
and the decision log's patient column. Now each is a 400 naming the field and showing the value as
JSON (escaped, cut to 60 characters), as are a `hook` or `hookInstance` of the wrong type, which
were shown as Python's repr (`['patient-view']`).

On the session's real `fsgs-kb serve` subprocess, over HTTP on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import pytest
from cds_support import Server, hook_request, iter_rows, signed_call

PV = "/cds-services/fsgs-csa-patient-view"


def refused(server: Server, ehr: Any, body: dict[str, Any]) -> str:
    answer = signed_call(server, ehr, PV, body)
    assert answer.status_code == 400, answer.text
    said = str(answer.json()["issue"][0]["diagnostics"])
    db = server.log.parent / "decisions.sqlite"
    sql = f"SELECT status, note FROM decisions WHERE hook_instance = '{body['hookInstance']}'"
    if isinstance(body["hookInstance"], str):
        ((status, note),) = iter_rows(db, sql)
        assert status == "rejected_400" and note == said
    return said


@pytest.mark.parametrize(
    ("patient", "shown"),
    [
        ("   ", '"   "'),
        ("../x/y", '"../x/y"'),
        ("p1/_history/2", '"p1/_history/2"'),
        ("a" * 65, '"' + "a" * 58 + "…"),
        ("a\n\x1b[31mb", '"a\\n\\u001b[31mb"'),
        ("patiént", '"pati\\u00e9nt"'),
    ],
)
def test_a_patient_id_that_is_not_a_fhir_id_is_a_400(server: Server, ehr: Any, patient: str, shown: str) -> None:
    said = refused(server, ehr, hook_request("patient-view", patient, {}))
    assert said == (
        f"context.patientId must be a FHIR id (the Patient's: 1 to 64 letters, digits, '-', '.' or '_'), not {shown}"
    )
    assert "\n" not in said and "\x1b" not in said


@pytest.mark.parametrize("patient", ["p1", "A-1.b", "a" * 64, "0", "p_1"])
def test_a_fhir_id_is_taken(server: Server, ehr: Any, patient: str) -> None:
    assert signed_call(server, ehr, PV, hook_request("patient-view", patient, {})).status_code == 412


def test_a_hook_or_hook_instance_of_the_wrong_type_is_shown_as_json(server: Server, ehr: Any) -> None:
    body = hook_request("patient-view", "p1", {})
    body["hook"] = ["patient-view"]
    assert refused(server, ehr, body).endswith('answers hook patient-view, not ["patient-view"]')
    body = hook_request("patient-view", "p1", {})
    body["hookInstance"] = {"id": "x\ny"}
    said = refused(server, ehr, body)
    assert said.endswith('8-4-4-4-12 hexadecimal digits, not {"id": "x\\ny"}'), said
