"""CDS Hooks: orders of other immunosuppressants are prefetched, and a tacrolimus order in the
prefetch gives the "another calcineurin inhibitor" caveat with the advice it qualifies (review 3,
defect 1: discovery had no template for them, so a patient on tacrolimus got the advice alone).

Over HTTP to the real `fsgs-kb serve` subprocess; the EHR side answers the service's own templates."""

from __future__ import annotations

from typing import Any

from cds_support import (
    FMAP,
    Server,
    example,
    hook_request,
    patient_bundle,
    patient_id,
    prefetch_for,
    prefetch_templates,
    signed_call,
)

PV = "fsgs-csa-patient-view"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CAVEAT = "**Caveat: Another calcineurin inhibitor now or before.**"


def patient_view_templates(server: Server, ehr: Any) -> dict[str, str]:
    return prefetch_templates(server, ehr)[PV]


def tacrolimus_order(pid: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": "tac1",
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{pid}"},
        "authoredOn": "2024-12-01",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "42316"}]},
        "dosageInstruction": [
            {
                "timing": {
                    "repeat": {"boundsPeriod": {"start": "2024-12-01"}, "frequency": 2, "period": 1, "periodUnit": "d"}
                },
                "doseAndRate": [
                    {"doseQuantity": {"value": 2, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}
                ],
            }
        ],
    }


def test_discovery_prefetches_the_orders_of_every_other_immunosuppressant_the_map_reads(
    server: Server, ehr: Any
) -> None:
    prefetch = patient_view_templates(server, ehr)
    (source,) = [s for s in FMAP.fields["other_immunosuppressants"]["sources"] if s["kind"] == "medication_list"]
    for drug in source["drugs"].values():
        usable = [c for name in FMAP.medications[drug]["include"] for c in sorted(FMAP.code_sets[name])]
        for rtype in FMAP.medications[drug]["resources"]:
            key = f"{rtype.lower()}-{drug}"
            if not usable:  # an unverified code the shipped map ignores is not asked for either
                assert key not in prefetch, key
                continue
            assert all(f"{system}|{code}" in prefetch[key] for system, code in usable), key
    assert f"{RXNORM}|42316" in prefetch["medicationrequest-tacrolimus"]
    assert prefetch["medicationrequest-tacrolimus"].startswith("MedicationRequest?patient={{context.patientId}}&")


def test_a_tacrolimus_order_in_the_prefetch_gives_the_caveat_with_the_advice(server: Server, ehr: Any) -> None:
    templates = patient_view_templates(server, ehr)
    bundle = patient_bundle(example("steroid-resistant-naive"))
    pid = patient_id(bundle)
    before = signed_call(
        server, ehr, f"/cds-services/{PV}", hook_request("patient-view", pid, prefetch_for(templates, bundle, pid))
    )
    assert before.status_code == 200
    cards = {c["source"]["topic"]["code"]: c for c in before.json()["cards"]}
    assert "CSA-SR-CANDIDATE" in cards and CAVEAT not in cards["CSA-SR-CANDIDATE"]["detail"].replace("\\", "")

    bundle["entry"].append({"fullUrl": "urn:uuid:tac1", "resource": tacrolimus_order(pid)})
    prefetch = prefetch_for(templates, bundle, pid)
    assert [e["resource"]["id"] for e in prefetch["medicationrequest-tacrolimus"]["entry"]] == ["tac1"]
    answer = signed_call(server, ehr, f"/cds-services/{PV}", hook_request("patient-view", pid, prefetch))
    assert answer.status_code == 200, answer.text
    cards = {c["source"]["topic"]["code"]: c for c in answer.json()["cards"]}
    assert "CSA-SR-CANDIDATE" in cards and "CAVEAT-OTHER-CNI" not in cards  # the caveat qualifies the advice
    assert CAVEAT in cards["CSA-SR-CANDIDATE"]["detail"].replace("\\", "")
