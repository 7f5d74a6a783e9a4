"""Wrong shapes in an order hook's request are refused, 400 OperationOutcome naming the path and
what is wrong, never answered {"cards": []} or ignored: draftOrders.entry not a list, an entry not
an object, a resource not an object, a resourceType not text; selections not a list, or holding
something other than a reference; a patientId that is there but not text.

On the session's real `fsgs-kb serve` subprocess, over HTTP."""

from __future__ import annotations

from typing import Any

from cds_support import Server, hook_request, signed_call

DRAFT = {"resourceType": "MedicationRequest", "id": "d1", "status": "draft", "intent": "order"}


def refused(server: Server, ehr: Any, hook: str, **context: Any) -> str:
    answer = signed_call(server, ehr, f"/cds-services/fsgs-csa-{hook}", hook_request(hook, "p1", None, **context))
    assert answer.status_code == 400, answer.text
    assert answer.json()["resourceType"] == "OperationOutcome"
    return str(answer.json()["issue"][0]["diagnostics"])


def bundle(entry: Any) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": entry}


def test_draft_orders_of_the_wrong_shape(server: Server, ehr: Any) -> None:
    said = refused(server, ehr, "order-sign", draftOrders=bundle({"resource": DRAFT}))
    assert said == "context.draftOrders.entry must be a list, not an object"
    said = refused(server, ehr, "order-sign", draftOrders=bundle([{"resource": DRAFT}, None]))
    assert said == "context.draftOrders.entry[1] must be an object (a Bundle entry), not null"
    said = refused(server, ehr, "order-sign", draftOrders=bundle([{"resource": "hello"}]))
    assert said == "context.draftOrders.entry[0].resource must be a FHIR resource (an object), not text"
    said = refused(server, ehr, "order-sign", draftOrders=bundle([{"resource": {**DRAFT, "resourceType": 7}}]))
    assert said == "context.draftOrders.entry[0].resource.resourceType must be text, not a number"


def test_selections_of_the_wrong_shape(server: Server, ehr: Any) -> None:
    drafts = bundle([{"resource": DRAFT}])
    said = refused(server, ehr, "order-select", draftOrders=drafts, selections=[5, None, {}])
    assert said == "context.selections[0] must be a reference such as MedicationRequest/<id>, not a number"
    said = refused(server, ehr, "order-select", draftOrders=drafts, selections="MedicationRequest/d1")
    assert said == "context.selections must be a list of references, not text"


def test_a_patient_id_that_is_not_text(server: Server, ehr: Any) -> None:
    said = refused(server, ehr, "patient-view", patientId=12)
    assert said == "context.patientId must be text (the Patient's id), not int"
