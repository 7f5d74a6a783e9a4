"""What the service did not use reaches the clinician and the log: a prefetched resource set aside
by the FHIR conversion (a preliminary result, another patient's, a draft whose dose cannot be
computed) is named on the cards, with where it is in the request and why, and kept in the decision
log row; with a masking secret the row keeps no message that could quote a patient reference.

Each call goes over HTTP to the real `fsgs-kb serve` subprocess, as in test_cds_hooks.py."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
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
    write_config,
)

from fsgs_kb.engine.fhir.setaside import REASONS
from fsgs_kb.engine.report.cds import ASIDE_WORDS

PV = "fsgs-csa-patient-view"
OS = "fsgs-csa-order-sign"
WEIGHT_KEY = "obs-loinc-29463-7"
STATUS_WORDS = "not a usable result (the map reads only final, amended, corrected results)"
MASK_ENV = "FSGS_KB_TEST_MASK_SECRET"


def call(server: Server, ehr: Any, service: str, body: dict[str, Any]) -> Any:
    path = f"/cds-services/{service}"
    answer = server.client.post(path, json=body, headers={"Authorization": "Bearer " + ehr.signer.token(PUBLIC + path)})
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def templates(server: Server, ehr: Any) -> dict[str, dict[str, str]]:
    headers = {"Authorization": "Bearer " + ehr.signer.token(PUBLIC + "/cds-services")}
    services = server.client.get("/cds-services", headers=headers).json()["services"]
    return {s["id"]: s["prefetch"] for s in services}


def weight(rid: str, kg: float, when: str, subject: str, status: str = "final") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": status,
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": subject},
        "effectiveDateTime": when,
        "valueQuantity": {"value": kg, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
    }


def prefetch_with(templates: dict[str, str], name: str, *extra_weights: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The prefetch of an example patient, with more resources answering the weight query."""
    bundle = patient_bundle(example(name))
    pid = patient_id(bundle)
    prefetch = prefetch_for(templates, bundle, pid)
    prefetch[WEIGHT_KEY]["entry"] += [{"resource": r} for r in extra_weights]
    return pid, prefetch


def logged_result(server: Server, hook_instance: str) -> dict[str, Any]:
    db = server.log.parent / "decisions.sqlite"
    (text,) = next(iter_rows(db, f"SELECT result FROM decisions WHERE hook_instance = '{hook_instance}'"))
    return dict(json.loads(text))


def by_code(cards: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["source"]["topic"]["code"]: c for c in cards}


def test_every_reason_has_words_for_a_card() -> None:
    assert set(ASIDE_WORDS) == set(REASONS)


def test_resources_not_used_are_on_the_cards_and_in_the_log(server: Server, ehr: Any, templates: Any) -> None:
    """A preliminary weight and another patient's weight answer the weight query next to the final
    one: the dose card says, under /weight_kg, which weight was sent but not used; one info card
    lists both with where each is in the request; the log row keeps the list; replay is unmoved."""
    pid, prefetch = prefetch_with(
        templates[PV],
        "dose-above-ceiling",
        weight("w-prelim", 95, "2026-11-29", "Patient/EX-DOSE-HIGH", status="preliminary"),
        weight("w-other", 60, "2026-11-29", "Patient/someone-else"),
    )
    body = hook_request("patient-view", pid, prefetch)
    cards = by_code(call(server, ehr, PV, body)["cards"])
    dose = cards["CSA-DOSE-EXCEEDS"]
    assert dose["summary"].endswith("(5.1 mg/kg/day)")  # the final weight, 70 kg, is the one used
    line = "  - sent but not used: Observation/w-prelim: status preliminary: " + STATUS_WORDS
    assert line in dose["detail"].split("\n"), dose["detail"]
    aside = cards["SET_ASIDE"]
    assert aside["summary"] == "2 FHIR resources sent were not used (another patient, not a final result)"
    assert aside["indicator"] == "info" and len(aside["summary"]) < 140 and aside["source"]["label"]
    assert f"- Observation/w-prelim: status preliminary: {STATUS_WORDS} (for `/weight_kg`), at " in aside["detail"]
    assert f"`/prefetch/{WEIGHT_KEY}/entry/1`" in aside["detail"]
    assert "Observation/w-other: refers to Patient/someone-else, not the Bundle's Patient" in aside["detail"]
    assert f"`/prefetch/{WEIGHT_KEY}/entry/2`" in aside["detail"]
    assert list(cards)[-1] == "SET_ASIDE"  # after the advice it qualifies
    result = logged_result(server, body["hookInstance"])
    assert result["set_aside"] == [
        {
            "resourceType": "Observation",
            "id": "w-other",
            "origin": f"/prefetch/{WEIGHT_KEY}/entry/2",
            "reason": "not_this_patient",
            "message": "Observation/w-other: refers to Patient/someone-else, not the Bundle's Patient "
            f"(https://ehr.example.org/fhir/Patient/{pid})",
        },
        {
            "resourceType": "Observation",
            "id": "w-prelim",
            "origin": f"/prefetch/{WEIGHT_KEY}/entry/1",
            "field": "/weight_kg",
            "reason": "status_not_usable",
            "message": f"Observation/w-prelim: status preliminary: {STATUS_WORDS}",
        },
    ]
    db = server.log.parent / "decisions.sqlite"
    replay = subprocess.run(
        [sys.executable, "-m", "fsgs_kb", "replay", "--decision-log", str(db)], capture_output=True, text=True
    )
    assert replay.returncode == 0 and "0 changed" in replay.stdout, replay.stdout + replay.stderr


def test_a_card_lists_twenty_resources_not_used_and_counts_the_rest(server: Server, ehr: Any, templates: Any) -> None:
    others = [weight(f"o{i}", 60, "2026-11-29", f"Patient/other-{i}") for i in range(50)]
    pid, prefetch = prefetch_with(templates[PV], "dose-above-ceiling", *others)
    body = hook_request("patient-view", pid, prefetch)
    aside = by_code(call(server, ehr, PV, body)["cards"])["SET_ASIDE"]
    assert aside["summary"] == "50 FHIR resources sent were not used (another patient)"
    listed = [line for line in aside["detail"].split("\n") if line.startswith("- ")]
    assert len(listed) == 21 and listed[-1] == "- … and 30 more (the decision log lists them all)"
    assert len(logged_result(server, body["hookInstance"])["set_aside"]) == 50


def test_a_field_left_empty_by_a_result_not_used_says_so_on_the_record_card(
    server: Server, ehr: Any, templates: Any
) -> None:
    """The only weight is preliminary: the card asking to record weight_kg says one was sent and why
    it was not used, rather than only "no matching resource was sent"."""
    pid, prefetch = prefetch_with(templates[PV], "dose-above-ceiling")
    (entry,) = prefetch[WEIGHT_KEY]["entry"]
    entry["resource"]["status"] = "preliminary"
    rid = entry["resource"]["id"]
    body = hook_request("patient-view", pid, prefetch)
    cards = by_code(call(server, ehr, PV, body)["cards"])
    assert "CSA-DOSE-EXCEEDS" not in cards
    record = cards["UNDETERMINED"]
    weight_line = next(line for line in record["detail"].split("\n") if line.startswith("- **weight\\_kg**"))
    assert weight_line.endswith(f"; sent but not used: Observation/{rid}: status preliminary: {STATUS_WORDS}")
    assert cards["SET_ASIDE"]["summary"] == "1 FHIR resource sent was not used (not a final result)"


def test_a_draft_order_set_aside_is_located_in_draft_orders(server: Server, ehr: Any, templates: Any) -> None:
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    draft = {
        "resourceType": "MedicationRequest",
        "id": "draft-free-text",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{pid}"},
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "3008"}]
        },
        "dosageInstruction": [{"text": "as directed"}],
    }
    drafts = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": draft}]}
    body = hook_request("order-sign", pid, prefetch_for(templates[OS], bundle, pid), draftOrders=drafts)
    cards = by_code(call(server, ehr, OS, body)["cards"])
    assert "CSA-DOSE-EXCEEDS" not in cards  # no dose to compare: not the recorded one
    (item,) = logged_result(server, body["hookInstance"])["set_aside"]
    assert (item["id"], item["origin"], item["field"], item["reason"]) == (
        "draft-free-text",
        "/context/draftOrders/entry/0",
        "/cyclosporine/daily_dose",
        "dose_not_computable",
    )
    assert "`/context/draftOrders/entry/0`" in cards["SET_ASIDE"]["detail"]


def test_no_card_for_what_was_set_aside_on_a_chart_the_service_is_silent_on(
    server: Server, ehr: Any, templates: Any
) -> None:
    """Secondary FSGS is out of the review's scope: no card at all, also not one about a preliminary
    weight; the log row still keeps what was set aside."""
    subject = "Patient/" + example("secondary-fsgs")["id"]
    pid, prefetch = prefetch_with(
        templates[PV], "secondary-fsgs", weight("w-prelim", 95, "2026-11-29", subject, status="preliminary")
    )
    assert subject == f"Patient/{pid}"
    body = hook_request("patient-view", pid, prefetch)
    assert call(server, ehr, PV, body)["cards"] == []
    result = logged_result(server, body["hookInstance"])
    assert result["status"] == "out_of_scope"
    assert [(i["id"], i["reason"]) for i in result["set_aside"]] == [("w-prelim", "status_not_usable")]


def test_an_order_used_for_its_status_is_not_listed_for_its_dose_no_rule_needs(
    server: Server, ehr: Any, templates: Any
) -> None:
    """A stopped course whose order gives no dose: the order says cyclosporine was stopped (used), and
    no rule waits for its dose, so no card lists it; the log row keeps it."""
    bundle = patient_bundle(example("relapse-after-remission"))
    pid = patient_id(bundle)
    body = hook_request("patient-view", pid, prefetch_for(templates[PV], bundle, pid))
    cards = by_code(call(server, ehr, PV, body)["cards"])
    assert list(cards) == ["CSA-RELAPSE-REINTRODUCE"]
    (item,) = logged_result(server, body["hookInstance"])["set_aside"]
    assert (item["resourceType"], item["field"], item["reason"]) == (
        "MedicationRequest",
        "/cyclosporine/daily_dose",
        "dose_not_computable",
    )


ORDER_WORDS = "not a usable order (the map reads only active, on-hold, completed, stopped orders)"


def test_a_cancelled_order_sent_beside_the_active_one_is_named_with_its_status(
    server: Server, ehr: Any, templates: Any
) -> None:
    """The prefetch asks for the patient's cyclosporine orders of any status, so the EHR may send a
    cancelled one beside the active one: the dose is still the active order's, and the info card
    names the cancelled order, where it is and why, in words of its own reason (not "not a final
    result"); the log row keeps it. Before, it was dropped in silence and no card said so."""
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    prefetch = prefetch_for(templates[PV], bundle, pid)
    key = "medicationrequest-cyclosporine"
    (sent,) = prefetch[key]["entry"]
    prefetch[key]["entry"].append({"resource": {**sent["resource"], "id": "csa-cancelled", "status": "cancelled"}})
    body = hook_request("patient-view", pid, prefetch)
    cards = by_code(call(server, ehr, PV, body)["cards"])
    assert cards["CSA-DOSE-EXCEEDS"]["summary"].endswith("(5.1 mg/kg/day)")
    aside = cards["SET_ASIDE"]
    assert aside["summary"] == "1 FHIR resource sent was not used (no treatment known to be given)"
    message = f"MedicationRequest/csa-cancelled: status cancelled: {ORDER_WORDS}"
    assert f"- {message} (for `/cyclosporine/status`), at `/prefetch/{key}/entry/1`" in aside["detail"], aside["detail"]
    assert logged_result(server, body["hookInstance"])["set_aside"] == [
        {
            "resourceType": "MedicationRequest",
            "id": "csa-cancelled",
            "origin": f"/prefetch/{key}/entry/1",
            "field": "/cyclosporine/status",
            "reason": "medication_status_not_usable",
            "message": message,
        }
    ]


def test_an_undated_weight_and_a_proposed_order_are_named_in_words_of_their_reasons(
    server: Server, ehr: Any, templates: Any
) -> None:
    """The only weight has no date, so it may be the latest: the card asking to record weight_kg
    says why it was not used; a proposed cyclosporine order beside the active one is no order to
    give the drug. The info card names both in words of their own reasons and the log row keeps
    them. Before, both were dropped in silence (the weight read as "no matching resource")."""
    pid, prefetch = prefetch_with(templates[PV], "dose-above-ceiling")
    (entry,) = prefetch[WEIGHT_KEY]["entry"]
    assert entry["resource"].pop("effectiveDateTime")
    rid = entry["resource"]["id"]
    key = "medicationrequest-cyclosporine"
    (sent,) = prefetch[key]["entry"]
    prefetch[key]["entry"].append({"resource": {**sent["resource"], "id": "csa-proposal", "intent": "proposal"}})
    body = hook_request("patient-view", pid, prefetch)
    cards = by_code(call(server, ehr, PV, body)["cards"])
    weight_line = next(line for line in cards["UNDETERMINED"]["detail"].split("\n") if "**weight\\_kg**" in line)
    assert "not available: a result was sent with no date or no day in its date, so it may be the latest" in weight_line
    no_date = "no effective date (effectiveDateTime, effectiveInstant or effectivePeriod): it may be the latest result"
    assert weight_line.endswith(f"; sent but not used: Observation/{rid}: {no_date}"), weight_line
    aside = cards["SET_ASIDE"]
    assert aside["summary"].startswith("2 FHIR resources sent were not used (")
    assert "no date to the day" in aside["summary"] and "an order only proposed or planned" in aside["summary"]
    assert "- MedicationRequest/csa-proposal: intent proposal: not an order to give the drug" in aside["detail"]
    logged = {(i["id"], i["origin"], i["reason"]) for i in logged_result(server, body["hookInstance"])["set_aside"]}
    assert logged == {
        (rid, f"/prefetch/{WEIGHT_KEY}/entry/0", "date_not_precise"),
        ("csa-proposal", f"/prefetch/{key}/entry/1", "medication_intent_not_usable"),
    }


@pytest.fixture(scope="module")
def masked_server(ehr: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("masked-aside")
    (work / "file-jwks.json").write_text((ehr.work / "file-jwks.json").read_text())
    config = write_config(work / "cds.yaml", ehr.issuers(), mask_key_env=MASK_ENV)
    running = Server(config, env={MASK_ENV: "another long random secret for the test"})
    yield running
    running.stop()


def test_with_masking_the_log_keeps_no_message_that_names_a_patient(
    masked_server: Server, ehr: Any, templates: Any
) -> None:
    """A set-aside message quotes references (`refers to Patient/…, not the Bundle's Patient
    (…/Patient/<the patient's id>)`): with a masking secret the row keeps the reason in words
    instead, and neither patient's identifier is anywhere in the log's files. The cards, which go
    to the EHR that sent the data, still say it in full."""
    pid, prefetch = prefetch_with(
        templates[PV], "dose-above-ceiling", weight("w-other", 60, "2026-11-29", "Patient/someone-else-777")
    )
    body = hook_request("patient-view", pid, prefetch)
    cards = by_code(call(masked_server, ehr, PV, body)["cards"])
    assert "refers to Patient/someone-else-777, not the Bundle's Patient" in cards["SET_ASIDE"]["detail"]
    result = logged_result(masked_server, body["hookInstance"])
    assert result["set_aside"] == [
        {
            "resourceType": "Observation",
            "id": "w-other",
            "origin": f"/prefetch/{WEIGHT_KEY}/entry/1",
            "reason": "not_this_patient",
            "message": "Observation/w-other: not_this_patient (message not logged: patient identifiers are masked)",
        }
    ]
    blobs = b"".join(p.read_bytes() for p in Path(masked_server.log.parent).glob("decisions.sqlite*"))
    assert pid.encode() not in blobs and b"someone-else-777" not in blobs
