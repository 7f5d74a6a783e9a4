"""A record the knowledge base cannot evaluate is said, never answered with silence: a current
cyclosporine order with a dose of 0 (`patient.conflict`) or a record-id identifier longer than the
record can hold (`patient.length`) made the record `invalid`, and the service answered
`200 {"cards": []}`, which reads as "nothing to say": a chart that had a warning lost it over one
conflicting value. Each call now gets one `info` card (NOT_EVALUATED) saying no rule was checked
and why, by the value's clinical name, its pointer and the resource it came from, with the
decision id; the decision-log row holds the card, and replay still finds the row its result's.

The HTTP tests talk to the real `fsgs-kb serve` subprocess (conftest.py); the `error` status, which
no request can provoke (it is a fault of the service), is checked on the real card maker with the
knowledge base's own failed result."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from cds_support import (
    FMAP,
    Server,
    cyclosporine_draft,
    example,
    hook_request,
    iter_rows,
    log_copy,
    patient_bundle,
    patient_id,
    prefetch_for,
    replay_log,
    signed_call,
)

from fsgs_kb.engine.errors import KBError
from fsgs_kb.engine.kb import load
from fsgs_kb.service.cards import CardMaker
from fsgs_kb.service.decisionlog import NOT_EVALUATED, card_uuid
from fsgs_kb.service.prefetch import Templates

PV = "fsgs-csa-patient-view"
OS = "fsgs-csa-order-sign"
ORDER_KEY = "medicationrequest-cyclosporine"


@pytest.fixture(scope="module")
def templates(server: Server, ehr: Any) -> dict[str, dict[str, str]]:
    return {s["id"]: s["prefetch"] for s in signed_call(server, ehr, "/cds-services").json()["services"]}


def dose_zero(templates: dict[str, dict[str, str]], service: str = PV) -> tuple[str, dict[str, Any]]:
    """The over-the-ceiling patient's prefetch with the current order's dose made 0."""
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    prefetch = prefetch_for(templates[service], bundle, pid)
    order = prefetch[ORDER_KEY]["entry"][0]["resource"]
    for dosage in order["dosageInstruction"]:
        for rate in dosage.get("doseAndRate", []):
            rate["doseQuantity"]["value"] = 0
    return pid, prefetch


def row_of(server: Server, hook_instance: str) -> tuple[Any, ...]:
    db = server.log.parent / "decisions.sqlite"
    sql = f"SELECT id, status, cards, result FROM decisions WHERE hook_instance = '{hook_instance}'"
    return next(iter_rows(db, sql))


def test_a_conflicting_dose_gives_a_card_saying_nothing_was_checked(
    server: Server, ehr: Any, templates: Any, tmp_path: Path
) -> None:
    pid, prefetch = dose_zero(templates)
    body = hook_request("patient-view", pid, prefetch)
    answer = signed_call(server, ehr, f"/cds-services/{PV}", body)
    assert answer.status_code == 200, answer.text
    cards = answer.json()["cards"]
    assert [c["source"]["topic"]["code"] for c in cards] == [NOT_EVALUATED], cards
    card = cards[0]
    assert card["indicator"] == "info" and "overrideReasons" not in card
    assert card["summary"].startswith("Record could not be evaluated, no rule was checked: daily cyclosporine dose")
    assert len(card["summary"]) < 140
    detail = card["detail"]
    assert "none of its rules was checked" in detail
    assert "**daily cyclosporine dose** (`/cyclosporine/daily_dose/value`): a current cyclosporine course" in detail
    assert "Hint: record the dose taken" in detail
    assert "From: MedicationRequest/" in detail  # the order the value came from, to correct in the EHR
    rowid, status, listed, result = row_of(server, body["hookInstance"])
    assert status == "invalid" and result is not None
    assert f'"{card["uuid"]}"' in listed
    assert card["uuid"] == card_uuid(detail.split("Decision `")[1].split("`")[0], NOT_EVALUATED)
    assert f"record not evaluated (invalid) for hookInstance {body['hookInstance']}: patient.conflict at " in (
        server.log_text()
    )
    copied = log_copy(server, tmp_path)
    _, verdicts = replay_log(copied)
    assert verdicts[rowid]["verdict"] == "identical", verdicts[rowid]


def test_an_order_sign_call_on_a_record_that_cannot_be_evaluated_is_said_too(
    server: Server, ehr: Any, templates: Any
) -> None:
    """A record id too long for the record (the identifier in the map's record-id system), in an
    order hook: the card names the record id, not its value."""
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    prefetch = prefetch_for(templates[OS], bundle, pid)
    long_id = "R" * 201
    prefetch["patient"]["identifier"][0]["value"] = long_id
    draft = cyclosporine_draft("draft-1", f"Patient/{pid}", 300, {"start": date.today().isoformat()})
    body = hook_request(
        "order-sign",
        pid,
        prefetch,
        draftOrders={"resourceType": "Bundle", "type": "collection", "entry": [{"resource": draft}]},
    )
    answer = signed_call(server, ehr, f"/cds-services/{OS}", body)
    assert answer.status_code == 200, answer.text
    cards = answer.json()["cards"]
    assert [c["source"]["topic"]["code"] for c in cards] == [NOT_EVALUATED], cards
    assert "patient record id: text length 201 is outside 1..200" in cards[0]["summary"]
    assert long_id not in answer.text
    assert row_of(server, body["hookInstance"])[1] == "invalid"


def test_an_evaluation_error_gives_a_card_without_the_errors_text() -> None:
    """`error` is a fault of the service: the card says so and names the error's code; the
    exception's text (which may quote a value) stays in the service log."""
    kb = load()
    maker = CardMaker(kb, FMAP, Templates(FMAP, [f.path for f in kb.evaluation.fields]), True, "https://h/")
    result = kb.failed_result(KBError("eval.internal", "KeyError: 'secret-value'"), b"{}", "error")
    made = maker.make(result, {}, patient_view=True, absent=[])
    assert [c["source"]["topic"]["code"] for c in made.cards] == [NOT_EVALUATED]
    card = made.cards[0]
    assert card["indicator"] == "info"
    assert card["summary"] == "Record could not be evaluated, no rule was checked: an internal error of the service"
    assert "`eval.internal`" in card["detail"] and "secret-value" not in card["detail"]
    assert [r.rule_id for r in made.rows] == [NOT_EVALUATED]
