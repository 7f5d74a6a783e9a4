"""FHIR input edges of the second outside review at the service (tests/fhir/test_dose_and_date_edges.py
has them on the command line): two current cyclosporine orders give no dose card, and the cards say
why the dose is undetermined, naming both orders; a weight dated off the calendar is set aside, not
an HTTP 500. Each call goes over HTTP to the real `fsgs-kb serve` subprocess (conftest.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from cds_support import (
    PUBLIC,
    Server,
    example,
    hook_request,
    patient_bundle,
    patient_id,
    prefetch_for,
    prefetch_templates,
)

PV = "fsgs-csa-patient-view"
OS = "fsgs-csa-order-sign"
ORDERS_KEY = "medicationrequest-cyclosporine"
WEIGHT_KEY = "obs-loinc-29463-7"
CONCURRENT = "more than one current order of the drug was sent, and whether their doses add up"


def call(server: Server, ehr: Any, service: str, body: dict[str, Any]) -> dict[str, Any]:
    path = f"/cds-services/{service}"
    answer = server.client.post(path, json=body, headers={"Authorization": "Bearer " + ehr.signer.token(PUBLIC + path)})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


@pytest.fixture(scope="module")
def templates(server: Server, ehr: Any) -> dict[str, dict[str, str]]:
    return prefetch_templates(server, ehr)


def by_code(cards: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["source"]["topic"]["code"]: c for c in cards}


def test_two_current_orders_give_no_dose_card_and_the_record_card_says_why(
    server: Server, ehr: Any, templates: Any
) -> None:
    """Two active orders of the example's dose (357 mg/day each): before, the dose card said 5.1
    mg/kg/day from one of them, and the second order appeared nowhere."""
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    prefetch = prefetch_for(templates[PV], bundle, pid)
    (sent,) = prefetch[ORDERS_KEY]["entry"]
    first = sent["resource"]["id"]
    prefetch[ORDERS_KEY]["entry"].append({"resource": {**copy.deepcopy(sent["resource"]), "id": "csa-second"}})
    cards = by_code(call(server, ehr, PV, hook_request("patient-view", pid, prefetch))["cards"])
    assert "CSA-DOSE-EXCEEDS" not in cards and "CSA-DOSE-WITHIN" not in cards
    line = next(
        x for x in cards["UNDETERMINED"]["detail"].split("\n") if x.startswith("- **cyclosporine.daily\\_dose**")
    )
    assert CONCURRENT in line, line
    assert "MedicationRequest/csa-second, 357 mg/day" in line and f"MedicationRequest/{first}:" in line, line
    aside = cards["SET_ASIDE"]
    assert aside["summary"] == "2 FHIR resources sent were not used (concurrent orders of one drug)"
    assert f"`/prefetch/{ORDERS_KEY}/entry/1`" in aside["detail"]


def draft(rid: str, pid: str, mg: float) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{pid}"},
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "3008"}]
        },
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": mg, "system": "http://unitsofmeasure.org", "code": "mg"}}],
            }
        ],
    }


@pytest.mark.parametrize(("first_mg", "second_mg"), [(100, 100), (50, 160)], ids=["equal", "unequal"])
def test_two_draft_orders_at_signing_are_named_not_read_as_one(
    server: Server, ehr: Any, templates: Any, first_mg: float, second_mg: float
) -> None:
    """The review: two drafts of 200 mg/day each gave "within the 5 mg/kg/day ceiling (2.86 mg/kg/day)"
    (the sum is 5.71); unequal ones gave no dose card and no notice."""
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    drafts = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": draft("d1", pid, first_mg)}, {"resource": draft("d2", pid, second_mg)}],
    }
    body = hook_request("order-sign", pid, prefetch_for(templates[OS], bundle, pid), draftOrders=drafts)
    cards = by_code(call(server, ehr, OS, body)["cards"])
    assert "CSA-DOSE-WITHIN" not in cards and "CSA-DOSE-EXCEEDS" not in cards
    aside = cards["SET_ASIDE"]
    assert aside["summary"] == "2 FHIR resources sent were not used (concurrent orders of one drug)"
    first, second = (f"{2 * mg:g} mg/day" for mg in (first_mg, second_mg))
    assert f"MedicationRequest/d1: one of 2 current orders of cyclosporine (this one {first}; also " in aside["detail"]
    assert f"MedicationRequest/d2, {second}" in aside["detail"]
    assert "`/context/draftOrders/entry/1`" in aside["detail"]


def test_a_weight_dated_off_the_calendar_is_set_aside_not_a_server_error(
    server: Server, ehr: Any, templates: Any
) -> None:
    """Was: HTTP 500, OverflowError in the log."""
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    prefetch = prefetch_for(templates[PV], bundle, pid)
    (sent,) = prefetch[WEIGHT_KEY]["entry"]
    sent["resource"]["effectiveDateTime"] = "0001-01-01T00:00:00+14:00"
    cards = by_code(call(server, ehr, PV, hook_request("patient-view", pid, prefetch))["cards"])
    assert "CSA-DOSE-EXCEEDS" not in cards
    line = next(x for x in cards["UNDETERMINED"]["detail"].split("\n") if x.startswith("- **weight\\_kg**"))
    assert '"0001-01-01T00:00:00+14:00" (a string) is outside the dates this reader places' in line, line
