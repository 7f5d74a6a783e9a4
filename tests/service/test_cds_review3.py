"""Outside review 3 of the CDS Hooks service, each finding checked on the real `fsgs-kb serve`
over HTTP: a hookInstance that is not a UUID, feedback for a card never issued, the same card
sent by two calls, the scope-undetermined summary, a call that brings no patient data, and the
prefetch templates' `_sort`."""

from __future__ import annotations

from typing import Any

from cds_support import Server, hook_request, signed_call

PV = "fsgs-csa-patient-view"
AUTHORIZATION = {"access_token": "x", "token_type": "Bearer", "expires_in": 60, "scope": "patient/*.read"}


def diagnostics(answer: Any, status: int) -> str:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome", body
    return str(body["issue"][0]["diagnostics"])


def test_a_hook_instance_that_is_not_a_uuid_is_400(server: Server, ehr: Any) -> None:
    for bad in ("not-a-uuid", "1234", "urn:uuid:9b0f4a52-4c1e-4c6a-9a3c-0d6c1f1f6e01", 42):
        body = hook_request("patient-view", "p1", None)
        body["hookInstance"] = bad
        said = diagnostics(signed_call(server, ehr, f"/cds-services/{PV}", body), 400)
        assert "hookInstance must be a UUID" in said, said
    good = hook_request("patient-view", "p1", {})
    good["hookInstance"] = good["hookInstance"].upper()  # the hexadecimal digits in either case
    good["fhirAuthorization"] = AUTHORIZATION
    assert signed_call(server, ehr, f"/cds-services/{PV}", good).status_code == 200
