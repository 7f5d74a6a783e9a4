"""A prefetched resource or a draft order whose `id` is not text (an object, a list) is read as one
without an id, never a fault: it made the FHIR conversion raise `TypeError: unhashable type`
(engine/fhir, looking for resources given twice) and the order hooks' renaming of revised orders
(service/drafts.py) do the same, each answered 500 with a traceback in the server log. Found by
mutating the leaves of a real prefetch at random.

On the session's real `fsgs-kb serve` subprocess, over HTTP on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import pytest
from cds_support import (
    Server,
    cyclosporine_draft,
    example,
    hook_request,
    patient_bundle,
    patient_id,
    prefetch_for,
    prefetch_templates,
    signed_call,
)

PV = "fsgs-csa-patient-view"
OS = "fsgs-csa-order-sign"


@pytest.fixture(scope="module")
def templates(server: Server, ehr: Any) -> dict[str, dict[str, str]]:
    return prefetch_templates(server, ehr)


def with_odd_ids(prefetch: dict[str, Any], rid: Any) -> dict[str, Any]:
    """The prefetch with the id of every resource but the Patient replaced by `rid`."""
    for value in prefetch.values():
        for entry in value.get("entry", []) if isinstance(value, dict) else []:
            entry["resource"]["id"] = rid
    return prefetch


@pytest.mark.parametrize("rid", [{"x": 1}, [1]])
def test_prefetched_resources_whose_id_is_not_text_are_answered(
    server: Server, ehr: Any, templates: dict[str, dict[str, str]], rid: Any
) -> None:
    seen = len(server.log_text())
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    prefetch = with_odd_ids(prefetch_for(templates[PV], bundle, pid), rid)
    answer = signed_call(server, ehr, f"/cds-services/{PV}", hook_request("patient-view", pid, prefetch))
    assert answer.status_code == 200, answer.text
    prefetch = with_odd_ids(prefetch_for(templates[OS], bundle, pid), rid)
    draft = cyclosporine_draft("draft-1", f"Patient/{pid}", 300.0)
    orders = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {**draft, "id": rid}}]}
    body = hook_request("order-sign", pid, prefetch, draftOrders=orders)
    answer = signed_call(server, ehr, f"/cds-services/{OS}", body)
    assert answer.status_code == 200, answer.text
    assert "Traceback" not in server.log_text()[seen:]
