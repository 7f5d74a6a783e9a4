"""order-select / order-sign: a cyclosporine draft is evaluated as the regimen being signed only
when it can be that order. A draft about another patient is never re-pointed to the context's
patient; a cancelled or entered-in-error draft, one whose intent is a proposal or plan, one whose
period is read from a date that cannot be read, or one that gives a dose both as a quantity and a
range (a choice element in two types), is no active order. Each is set aside with its
reason (named on the cards, kept in the log row), as the FHIR reader sets aside what it does not
use. When no cyclosporine draft can be checked, one `info` card says so.

Each call goes over HTTP to the real `fsgs-kb serve` subprocess, as in test_cds_hooks.py."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import pytest
from cds_support import (
    PUBLIC,
    Server,
    example,
    hook_request,
    iter_rows,
    patient_bundle,
    patient_id,
    prefetch_for,
    prefetch_templates,
    signed_call,
)
from cds_support import cyclosporine_draft as draft

from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.report.cds import ASIDE_WORDS, md

OS = "fsgs-csa-order-sign"
TS = "2026-11-30T10:00:00Z"  # an outcomeTimestamp (required in feedback)


@pytest.fixture(scope="module")
def templates(server: Server, ehr: Any) -> dict[str, str]:
    return prefetch_templates(server, ehr)[OS]


def sign(server: Server, ehr: Any, templates: dict[str, str], *drafts: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    bundle = patient_bundle(example("dose-above-ceiling"))  # on 357 mg/day at 70 kg
    pid = patient_id(bundle)
    entries = [{"resource": copy.deepcopy(d)} for d in drafts]
    for entry in entries:
        entry["resource"]["subject"]["reference"] = entry["resource"]["subject"]["reference"].replace("{pid}", pid)
    orders = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    body = hook_request("order-sign", pid, prefetch_for(templates, bundle, pid), draftOrders=orders)
    path = f"/cds-services/{OS}"
    answer = server.client.post(path, json=body, headers={"Authorization": "Bearer " + ehr.signer.token(PUBLIC + path)})
    assert answer.status_code == 200, answer.text
    return body, answer.json()


def row(server: Server, hook_instance: str) -> tuple[str, Any, str | None]:
    db = server.log.parent / "decisions.sqlite"
    sql = f"SELECT status, result, note FROM decisions WHERE hook_instance = '{hook_instance}'"
    ((status, result, note),) = list(iter_rows(db, sql))
    return status, json.loads(result) if result else None, note


BAD = [
    (
        "another patient",
        draft("d-bad", "Patient/someone-else", 420),
        "not_this_patient",
        "refers to Patient/someone-else",
    ),
    (
        "cancelled",
        draft("d-bad", "Patient/{pid}", 420, status="cancelled"),
        "medication_status_not_usable",
        "status cancelled",
    ),
    (
        "entered in error",
        draft("d-bad", "Patient/{pid}", 420, status="entered-in-error"),
        "entered_in_error",
        "entered-in-error",
    ),
    (
        "proposal",
        draft("d-bad", "Patient/{pid}", 420, intent="proposal"),
        "medication_intent_not_usable",
        "intent proposal",
    ),
    ("plan", draft("d-bad", "Patient/{pid}", 420, intent="plan"), "medication_intent_not_usable", "intent plan"),
    (
        "start not a day",
        draft("d-bad", "Patient/{pid}", 420, dispenseRequest={"validityPeriod": {"start": "2023-02-30"}}),
        "date_not_readable",
        '"2023-02-30" (a string) is not a date that can be read',
    ),
    (
        "two doses",
        draft(
            "d-bad",
            "Patient/{pid}",
            420,
            dosageInstruction=[
                {
                    "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
                    "doseAndRate": [
                        {
                            "doseQuantity": {
                                "value": 210,
                                "unit": "mg",
                                "system": "http://unitsofmeasure.org",
                                "code": "mg",
                            },
                            "doseRange": {"low": {"value": 100, "unit": "mg"}, "high": {"value": 210, "unit": "mg"}},
                        }
                    ],
                }
            ],
        ),
        "choice_conflict",
        "dosageInstruction[0].doseAndRate[0] gives both doseQuantity and doseRange (FHIR R4: one dose[x])",
    ),
    # the reader sets these aside before it reads the drug: the service once asked whether a draft
    # is cyclosporine through that reader, so they were neither evaluated nor named (review 5)
    (
        "do not perform",
        draft("d-bad", "Patient/{pid}", 420, doNotPerform=True),
        "do_not_perform",
        "an order not to perform (doNotPerform: true) is no treatment",
    ),
    (
        "modifier",
        draft(
            "d-bad",
            "Patient/{pid}",
            420,
            modifierExtension=[{"url": "https://ehr.example.org/x", "valueBoolean": True}],
        ),
        "modifier",
        "carries a modifierExtension this reader does not understand",
    ),
]


@pytest.mark.parametrize(("label", "bad", "reason", "words"), BAD, ids=[b[0] for b in BAD])
def test_a_draft_that_cannot_be_signed_is_set_aside_not_evaluated(
    server: Server, ehr: Any, templates: dict[str, str], label: str, bad: dict[str, Any], reason: str, words: str
) -> None:
    """Alone, it is no regimen to check: no dose card, and the log row says why. Beside a signable
    draft of 280 mg/day, that draft alone is the regimen (not 700 mg/day, not ambiguous), and the
    bad one is listed as not used, with where it is in the request."""
    body, answer = sign(server, ehr, templates, bad)
    codes = [c["source"]["topic"]["code"] for c in answer["cards"]]
    assert not [c for c in codes if c.startswith("CSA-DOSE")], codes
    status, result, note = row(server, body["hookInstance"])
    assert status == "no_cyclosporine_draft" and result is None
    assert note is not None and "MedicationRequest/d-bad" in note and words in note, note

    body, answer = sign(server, ehr, templates, draft("d-good", "Patient/{pid}", 280), bad)
    cards = {c["source"]["topic"]["code"]: c for c in answer["cards"]}
    assert "CSA-DOSE-WITHIN" in cards and "CSA-DOSE-EXCEEDS" not in cards, list(cards)
    status, result, _ = row(server, body["hookInstance"])
    assert result["decision"]["input"]["cyclosporine"]["daily_dose"] == {"value": 280, "unit": "mg/day"}
    aside = [a for a in result["set_aside"] if a["id"] == "d-bad"]
    assert len(aside) == 1 and aside[0]["reason"] == reason, result["set_aside"]
    assert aside[0]["origin"] == "/context/draftOrders/entry/1" and words in aside[0]["message"]
    assert "MedicationRequest/d-bad" in cards["SET_ASIDE"]["detail"]


# ---- no draft that can be checked: one card says so ----------------------------------------------


@pytest.mark.parametrize(("label", "bad", "reason", "words"), BAD, ids=[b[0] for b in BAD])
def test_no_draft_that_can_be_checked_gives_one_card_saying_so(
    server: Server,
    ehr: Any,
    templates: dict[str, str],
    kb: KnowledgeBase,
    label: str,
    bad: dict[str, Any],
    reason: str,
    words: str,
) -> None:
    """The clinician signing gets no silence: one `info` card that the order could not be checked,
    naming the draft, where it is and why (the words of the set-aside card), and nothing else."""
    body, answer = sign(server, ehr, templates, bad)
    (card,) = answer["cards"]
    assert card["indicator"] == "info" and card["source"]["topic"]["code"] == "ORDER_NOT_CHECKED"
    assert card["summary"] == f"Draft cyclosporine order could not be checked ({ASIDE_WORDS[reason]})"
    assert len(card["summary"]) < 140 and str(uuid.UUID(card["uuid"])) == card["uuid"]
    assert card["source"]["label"] == f"fsgs-kb: knowledge base {kb.id} {kb.version}"
    assert "MedicationRequest/d-bad" in card["detail"] and md(words) in card["detail"], card["detail"]
    assert "`/context/draftOrders/entry/0`" in card["detail"] and kb.fingerprint in card["detail"]
    assert not {"suggestions", "overrideReasons", "selectionBehavior"} & set(card)
    db = server.log.parent / "decisions.sqlite"
    sql = "SELECT d.status, d.cards, c.rule_id, c.rule_version, c.indicator FROM decisions d JOIN cards c ON "
    sql += f"c.decision = d.id WHERE d.hook_instance = '{body['hookInstance']}'"
    assert list(iter_rows(db, sql)) == [
        ("no_cyclosporine_draft", json.dumps([card["uuid"]]), "ORDER_NOT_CHECKED", kb.version, "info")
    ]


def test_the_card_of_drafts_not_checked_takes_feedback_and_is_the_same_for_the_same_call(
    server: Server, ehr: Any, templates: dict[str, str]
) -> None:
    """Two drafts set aside: both named, their reasons once each. The same call again shows the same
    card; feedback on it links to the call's row; an override with a reason it did not offer is refused."""
    elsewhere = draft("d-other", "Patient/someone-else", 420)
    proposed = draft("d-proposed", "Patient/{pid}", 280, intent="proposal")
    body, answer = sign(server, ehr, templates, elsewhere, proposed)
    (card,) = answer["cards"]
    words = f"{ASIDE_WORDS['not_this_patient']}, {ASIDE_WORDS['medication_intent_not_usable']}"
    assert card["summary"] == f"2 draft cyclosporine orders could not be checked ({words})"
    assert "MedicationRequest/d-other" in card["detail"] and "MedicationRequest/d-proposed" in card["detail"]
    path = f"/cds-services/{OS}"
    again = signed_call(server, ehr, path, body).json()
    assert again == answer
    other_call = signed_call(server, ehr, path, {**body, "hookInstance": str(uuid.uuid4())}).json()
    assert other_call["cards"][0]["uuid"] != card["uuid"]
    accepted = signed_call(
        server,
        ehr,
        path + "/feedback",
        {"feedback": [{"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": TS}]},
    )
    assert accepted.status_code == 200, accepted.text
    db = server.log.parent / "decisions.sqlite"
    sql = "SELECT f.rule_id, d.hook_instance FROM feedback f JOIN decisions d ON d.id = f.decision "
    sql += f"WHERE f.card = '{card['uuid']}'"
    assert list(iter_rows(db, sql)) == [("ORDER_NOT_CHECKED", body["hookInstance"])]
    reason = {"reason": {"system": "urn:fsgs-kb:override-reason", "code": "clinical-judgement"}}
    refused = signed_call(
        server,
        ehr,
        path + "/feedback",
        {
            "feedback": [
                {"card": card["uuid"], "outcome": "overridden", "overrideReason": reason, "outcomeTimestamp": TS}
            ]
        },
    )
    assert refused.status_code == 409, refused.text  # accepted already


def test_order_select_of_a_draft_that_cannot_be_checked_says_so(server: Server, ehr: Any) -> None:
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    orders = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": draft("d-ok", f"Patient/{pid}", 280)},
            {"resource": draft("d-cancelled", f"Patient/{pid}", 280, status="cancelled")},
        ],
    }
    path = "/cds-services/fsgs-csa-order-select"
    body = hook_request("order-select", pid, None, draftOrders=orders, selections=["MedicationRequest/d-cancelled"])
    (card,) = signed_call(server, ehr, path, body).json()["cards"]
    assert card["source"]["topic"]["code"] == "ORDER_NOT_CHECKED" and "MedicationRequest/d-cancelled" in card["detail"]
    assert "`/context/draftOrders/entry/1`" in card["detail"] and "d-ok" not in card["detail"]


# ---- a draft that names its drug by medicationReference ------------------------------------------
CYCLOSPORINE = {
    "resourceType": "Medication",
    "id": "med-csa",
    "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "3008"}]},
}


def by_reference(rid: str = "d-ref") -> dict[str, Any]:
    order = draft(rid, "Patient/{pid}", 280)
    del order["medicationCodeableConcept"]
    order["medicationReference"] = {"reference": "Medication/med-csa"}
    return order


def test_a_draft_naming_a_medication_sent_with_it_is_evaluated(
    server: Server, ehr: Any, templates: dict[str, str]
) -> None:
    """Its Medication in the draft orders' Bundle: the draft is cyclosporine and is the regimen."""
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    order = by_reference()
    order["subject"]["reference"] = f"Patient/{pid}"
    orders = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": order}, {"resource": CYCLOSPORINE}],
    }
    body = hook_request("order-sign", pid, prefetch_for(templates, bundle, pid), draftOrders=orders)
    answer = signed_call(server, ehr, f"/cds-services/{OS}", body)
    assert answer.status_code == 200, answer.text
    codes = [c["source"]["topic"]["code"] for c in answer.json()["cards"]]
    assert "CSA-DOSE-WITHIN" in codes, codes
    status, result, _ = row(server, body["hookInstance"])
    assert status == "evaluated"
    assert result["decision"]["input"]["cyclosporine"]["daily_dose"] == {"value": 280, "unit": "mg/day"}


def test_a_draft_whose_medication_was_not_sent_is_named(server: Server, ehr: Any, templates: dict[str, str]) -> None:
    """Its Medication not sent: which drug it is cannot be told, and it may be cyclosporine, so
    it is named on a card (without calling it cyclosporine) rather than passed over."""
    body, answer = sign(server, ehr, templates, by_reference())
    (card,) = answer["cards"]
    assert card["source"]["topic"]["code"] == "ORDER_NOT_CHECKED"
    assert card["summary"] == "Draft order could not be checked (a drug that cannot be told)"
    assert "or whose drug cannot be told, and may be cyclosporine" in card["detail"]
    assert "MedicationRequest/d-ref" in card["detail"] and "`/context/draftOrders/entry/0`" in card["detail"]
    status, result, note = row(server, body["hookInstance"])
    assert status == "no_cyclosporine_draft" and note is not None and "names no Medication sent" in note
