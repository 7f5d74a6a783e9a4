"""The CDS Hooks service end to end: discovery, every example patient through prefetch, order-sign
with and without a cyclosporine draft, 412 and null prefetch, feedback, the decision log, replay.

Each call goes over HTTP to the real `fsgs-kb serve` subprocess with a token signed by the test
EHR's key, whose JWKS a local HTTP server publishes. The EHR side answers the service's own
prefetch templates from a FHIR Bundle made by record_to_bundle, so the templates are tested too:
the record the service rebuilds from them must be the example record."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from cds_support import (
    EXAMPLES,
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

from fsgs_kb.engine.kb import KnowledgeBase

PV = "fsgs-csa-patient-view"
OS = "fsgs-csa-order-sign"
CARD_KINDS = ("advice", "warning", "info")
SAME = ("status", "advice", "drafts", "undetermined", "no_recommendation", "scope", "rules", "errors")


@pytest.fixture(scope="module")
def templates(server: Server, ehr: Any) -> dict[str, dict[str, str]]:
    return prefetch_templates(server, ehr)


def patient_view(server: Server, ehr: Any, templates: Any, record: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    bundle = patient_bundle(record)
    pid = patient_id(bundle)
    body = hook_request("patient-view", pid, prefetch_for(templates[PV], bundle, pid))
    return body, signed_call(server, ehr, f"/cds-services/{PV}", body)


def logged(server: Server, hook_instance: str) -> tuple[Any, ...]:
    db = server_db(server)
    rows = list(iter_rows(db, f"SELECT * FROM decisions WHERE hook_instance = '{hook_instance}'"))
    assert len(rows) == 1, rows
    return rows[0]


def server_db(server: Server) -> Path:
    return server.log.parent / "decisions.sqlite"


def result_of(server: Server, hook_instance: str, kb: KnowledgeBase | None = None) -> dict[str, Any]:
    """The logged result (standard detail), expanded to the full one with `kb`."""
    db = server_db(server)
    (text,) = next(iter_rows(db, f"SELECT result FROM decisions WHERE hook_instance = '{hook_instance}'"))
    logged = dict(json.loads(text))
    assert logged["detail"] == "standard"
    return kb.expand(logged) if kb is not None else logged


# ---- discovery ----------------------------------------------------------------------------------


def test_discovery_lists_services_with_minimal_prefetch(server: Server, ehr: Any) -> None:
    answer = signed_call(server, ehr, "/cds-services")
    assert answer.status_code == 200
    services = answer.json()["services"]
    hooks = {s["hook"] for s in services}
    assert {"patient-view", "order-sign"} <= hooks
    for service in services:
        prefetch = service["prefetch"]
        assert prefetch["patient"] == "Patient/{{context.patientId}}"
        for key, query in prefetch.items():
            if query.startswith("Observation?"):
                assert query.endswith("&_sort=-date"), query
                assert query.count("|") == 1 and "," not in query, f"{key}: one code per query"
            elif query.startswith("Condition?"):
                assert query.count("|") == 1, key
    queries = " ".join(services[0]["prefetch"].values())
    assert "http://loinc.org|29463-7" in queries  # weight: the dose per kg reads it
    assert "53828-0" not in queries and "8462-4" not in queries  # trough, diastolic BP: no rule reads them
    assert "fsgs.secondary_cause" not in queries


# ---- every example patient ------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_each_example_patient(server: Server, ehr: Any, templates: Any, kb: KnowledgeBase, path: Path) -> None:
    record = json.loads(path.read_text())
    body, answer = patient_view(server, ehr, templates, record)
    assert answer.status_code == 200, answer.text
    cards = answer.json()["cards"]
    result = result_of(server, body["hookInstance"], kb)
    expected = kb.evaluate(record)
    # the prefetch templates fetched everything the rules read (and nothing else: diastolic BP stays home)
    assert {k: result[k] for k in SAME} == {k: expected[k] for k in SAME}
    fired = [e for e in expected["rules"] if e["outcome"] == "fired" and e["kind"] in CARD_KINDS]
    if expected["status"] != "evaluated":
        fired = []
    rule_cards = [c for c in cards if c["source"]["topic"]["code"] != "UNDETERMINED"]
    assert [c["source"]["topic"]["code"] for c in rule_cards] == [e["id"] for e in fired]
    for card, entry in zip(rule_cards, fired, strict=True):
        check_rule_card(card, entry, result)
    undetermined = [c for c in cards if c["source"]["topic"]["code"] == "UNDETERMINED"]
    assert len(undetermined) == (1 if expected["undetermined"] or path.stem == "not-biopsy-proven" else 0)
    if expected["status"] == "out_of_scope":
        assert cards == []
    row = logged(server, body["hookInstance"])
    assert json.loads(row[13]) == [c["uuid"] for c in cards]


def check_rule_card(card: dict[str, Any], entry: dict[str, Any], result: dict[str, Any]) -> None:
    decision = result["decision"]
    assert card["uuid"] == str(
        uuid.uuid5(uuid.UUID("5b0e6f0c-3c55-5b7e-9a57-2f1d0c5a7e11"), f"{decision['decision_id']}:{entry['id']}")
    )
    assert len(card["summary"]) < 140
    assert card["summary"].startswith("DRAFT: ") == (entry["status"] != "active")
    assert card["indicator"] == ("warning" if entry["kind"] == "warning" else "info")
    detail = card["detail"]
    for cite in entry["citations"]:
        assert cite["quote"].split()[0] in detail and f"sentence {cite['sentence']}" in detail
    assert decision["decision_id"] in detail and f"fingerprint `{decision['kb']['fingerprint']}`" in detail
    assert "Evidence note" in detail and "Where the values came from" in detail
    assert card["source"]["url"] == "https://doi.org/10.1053/snep.2003.50022"
    assert card["source"]["topic"]["code"] == entry["id"]
    assert card["links"][0]["url"] == f"{PUBLIC}/handbook/rules/{entry['id']}.html"
    assert ("overrideReasons" in card) == (entry["kind"] == "warning")
    assert "suggestions" not in card and "systemActions" not in card


def test_a_warning_card_names_its_values_and_their_resources(server: Server, ehr: Any, templates: Any) -> None:
    _, answer = patient_view(server, ehr, templates, example("dose-above-ceiling"))
    cards = {c["source"]["topic"]["code"]: c for c in answer.json()["cards"]}
    dose = cards["CSA-DOSE-EXCEEDS"]
    assert dose["summary"].startswith("DRAFT: Current cyclosporine dose above") and dose["summary"].endswith(
        " (5.1 mg/kg/day)"
    )
    assert dose["indicator"] == "warning"
    assert "`/weight_kg`: Observation/" in dose["detail"] and "29463-7" in dose["detail"]
    assert "`/cyclosporine/daily_dose`: MedicationRequest/" in dose["detail"]
    assert "357 mg/day ÷ 70 kg = 5.1 mg/kg/day" in dose["detail"]
    assert all(c["indicator"] != "critical" for c in cards.values())


def test_a_warning_on_a_derived_value_names_the_values_behind_it(server: Server, ehr: Any, templates: Any) -> None:
    """Review 5 (issue 15: a summary names the finding with its values): the blood-pressure
    warning fires on "above target", a derived value, and its summary named no value. It names
    the value of the branch that held: a child's percentile (95), not the adult systolic (118)."""
    _, answer = patient_view(server, ehr, templates, example("child-bp-above-target"))
    cards = {c["source"]["topic"]["code"]: c for c in answer.json()["cards"]}
    bp = cards["CSA-BP-ABOVE-TARGET"]
    assert bp["summary"].startswith("DRAFT: Blood pressure above") and bp["summary"].endswith(" (95 percentile)")
    assert "118" not in bp["summary"] and len(bp["summary"]) < 140
    detail = bp["detail"]
    # the derived value with its groups (Markdown escapes the brackets)
    assert "\\]: false or \\[" in detail and "(needs ≥ 90 percentile): true\\]: true" in detail


def test_caveats_are_shown_with_the_advice_they_qualify(
    server: Server, ehr: Any, templates: Any, kb: KnowledgeBase
) -> None:
    body, answer = patient_view(server, ehr, templates, example("steroid-resistant-outside-the-trials"))
    cards = {c["source"]["topic"]["code"]: c for c in answer.json()["cards"]}
    result = result_of(server, body["hookInstance"], kb)
    assert result["status"] == "evaluated" and result["caveats"]  # eGFR 12 from FHIR reached the record
    entry = next(e for e in result["rules"] if e["id"] == "CSA-SR-CANDIDATE")
    detail = cards["CSA-SR-CANDIDATE"]["detail"]
    for caveat in entry["caveats"]:
        assert f"**Caveat: {caveat['title']}.**" in detail.replace("\\", "")
    assert not set(result["caveats"]) & set(cards)  # a caveat qualifies an advice: no card of its own


def test_the_handbook_page_a_card_links_to_is_served(server: Server, ehr: Any) -> None:
    page = server.client.get("/handbook/rules/CSA-DOSE-EXCEEDS.html")
    assert page.status_code == 200 and "CSA-DOSE-EXCEEDS" in page.text


# ---- prefetch: absent, null, OperationOutcome ------------------------------------------------------


def test_missing_prefetch_without_fhir_authorization_is_412(server: Server, ehr: Any, templates: Any) -> None:
    bundle = patient_bundle(example("missing-weight"))
    pid = patient_id(bundle)
    prefetch = prefetch_for(templates[PV], bundle, pid)
    del prefetch["obs-loinc-29463-7"]
    prefetch["field-fsgs.etiology"] = {"resourceType": "OperationOutcome", "issue": []}
    body = hook_request("patient-view", pid, prefetch)
    answer = signed_call(server, ehr, f"/cds-services/{PV}", body)
    assert answer.status_code == 412
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "obs-loinc-29463-7" in outcome["issue"][0]["diagnostics"]
    assert "field-fsgs.etiology" in outcome["issue"][0]["diagnostics"]
    assert logged(server, body["hookInstance"])[11] == "prefetch_missing"
    body = hook_request("patient-view", pid, prefetch, fhirAuthorization=None)
    body["fhirAuthorization"] = {
        "access_token": "x",
        "token_type": "Bearer",
        "expires_in": 60,
        "scope": "patient/*.read",
        "subject": "fsgs-kb-cds",
    }
    assert signed_call(server, ehr, f"/cds-services/{PV}", body).status_code == 200


def test_null_prefetch_makes_the_rules_concerned_undetermined(server: Server, ehr: Any, templates: Any) -> None:
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    prefetch = prefetch_for(templates[PV], bundle, pid)
    prefetch["obs-loinc-29463-7"] = None
    body = hook_request("patient-view", pid, prefetch)
    answer = signed_call(server, ehr, f"/cds-services/{PV}", body)
    assert answer.status_code == 200
    cards = answer.json()["cards"]
    codes = [c["source"]["topic"]["code"] for c in cards]
    assert "CSA-DOSE-EXCEEDS" not in codes and codes[-1] == "UNDETERMINED"
    record_card = cards[-1]
    assert record_card["indicator"] == "info" and "weight_kg" in record_card["summary"]
    assert "CSA-DOSE-EXCEEDS" in record_card["detail"] and "29463-7" in record_card["detail"]
    assert "weight_kg" not in result_of(server, body["hookInstance"])["decision"]["input"]


def test_a_prefetched_resource_about_another_servers_patient_is_not_used(
    server: Server, ehr: Any, templates: Any
) -> None:
    """The request names its FHIR server (fhirServer): a weight whose subject is this patient's id on
    that server is the patient's; the same id on another server is somebody else."""
    for base, used in (("https://ehr.example.org/fhir", True), ("https://other.example.org/fhir", False)):
        bundle = patient_bundle(example("dose-above-ceiling"))
        pid = patient_id(bundle)
        prefetch = prefetch_for(templates[PV], bundle, pid)
        (weight,) = prefetch["obs-loinc-29463-7"]["entry"]
        weight["resource"]["subject"] = {"reference": f"{base}/Patient/{pid}"}
        body = hook_request("patient-view", pid, prefetch)
        assert body["fhirServer"] == "https://ehr.example.org/fhir"
        answer = signed_call(server, ehr, f"/cds-services/{PV}", body)
        assert answer.status_code == 200, answer.text
        codes = [c["source"]["topic"]["code"] for c in answer.json()["cards"]]
        assert ("CSA-DOSE-EXCEEDS" in codes) is used, (base, codes)
        assert ("weight_kg" in result_of(server, body["hookInstance"])["decision"]["input"]) is used


def test_requests_without_required_fields_are_400(server: Server, ehr: Any) -> None:
    for drop in ("hook", "hookInstance", "context"):
        body = hook_request("patient-view", "p1", None)
        del body[drop]
        answer = signed_call(server, ehr, f"/cds-services/{PV}", body)
        assert answer.status_code == 400
        assert answer.json()["resourceType"] == "OperationOutcome" and drop in answer.json()["issue"][0]["diagnostics"]
    wrong = hook_request("order-sign", "p1", None)
    assert signed_call(server, ehr, f"/cds-services/{PV}", wrong).status_code == 400
    row = logged(server, wrong["hookInstance"])  # every hook call leaves a row, an answered error too
    assert row[11] == "rejected_400" and "answers hook patient-view" in row[14]
    unknown = signed_call(server, ehr, "/cds-services/no-such-service", hook_request("patient-view", "p1", None))
    assert unknown.status_code == 404


def test_hostile_requests_get_clear_answers(server: Server, ehr: Any, templates: Any) -> None:
    path = f"/cds-services/{PV}"
    headers = {"Authorization": "Bearer " + ehr.signer.token(PUBLIC + path), "Content-Type": "application/json"}
    rows_before = len(list(iter_rows(server_db(server), "SELECT id FROM decisions")))
    not_json = server.client.post(path, content=b"{not json", headers=headers)
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["issue"][0]["diagnostics"]
    statuses = [r[0] for r in iter_rows(server_db(server), "SELECT status FROM decisions ORDER BY id")]
    assert statuses[rows_before:] == ["rejected_400"]
    deep: Any = {}
    for _ in range(200):
        deep = {"x": deep}
    body = hook_request("patient-view", "p1", {"patient": deep})
    assert signed_call(server, ehr, path, body).status_code == 400
    headers["Authorization"] = "Bearer " + ehr.signer.token(PUBLIC + path)
    huge = server.client.post(path, content=b" " * (17 * 1024 * 1024), headers=headers)
    assert huge.status_code == 413
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    prefetch = prefetch_for(templates[PV], bundle, pid)
    someone_else = signed_call(server, ehr, path, hook_request("patient-view", "another-patient", prefetch))
    assert someone_else.status_code == 400 and "context.patientId" in someone_else.text
    assert "Traceback" not in server.log_text()


# ---- order-sign ------------------------------------------------------------------------------------


def draft_orders(bundle: dict[str, Any], pid: str, mg_per_day: float, rxnorm: str = "3008") -> dict[str, Any]:
    order = {
        "resourceType": "MedicationRequest",
        "id": "draft-1",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{pid}"},
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rxnorm}]
        },
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": mg_per_day / 2,
                            "unit": "mg",
                            "system": "http://unitsofmeasure.org",
                            "code": "mg",
                        }
                    }
                ],
            }
        ],
    }
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]}


def test_order_sign_checks_the_draft_regimen(server: Server, ehr: Any, templates: Any) -> None:
    record = example("dose-above-ceiling")  # on 357 mg/day at 70 kg, 11.9 months
    bundle = patient_bundle(record)
    pid = patient_id(bundle)
    prefetch = prefetch_for(templates[OS], bundle, pid)
    lower = hook_request("order-sign", pid, prefetch, draftOrders=draft_orders(bundle, pid, 280))
    answer = signed_call(server, ehr, f"/cds-services/{OS}", lower)
    assert answer.status_code == 200
    codes = [c["source"]["topic"]["code"] for c in answer.json()["cards"]]
    assert "CSA-DOSE-WITHIN" in codes and "CSA-DOSE-EXCEEDS" not in codes
    evaluated = result_of(server, lower["hookInstance"])["decision"]["input"]["cyclosporine"]
    assert evaluated["daily_dose"] == {"value": 280, "unit": "mg/day"}
    assert evaluated["months_on_therapy"] == record["cyclosporine"]["months_on_therapy"]  # a renewal keeps the course
    higher = hook_request("order-sign", pid, prefetch, draftOrders=draft_orders(bundle, pid, 420))
    cards = signed_call(server, ehr, f"/cds-services/{OS}", higher).json()["cards"]
    dose = next(c for c in cards if c["source"]["topic"]["code"] == "CSA-DOSE-EXCEEDS")
    assert "(6 mg/kg/day)" in dose["summary"] and dose["indicator"] == "warning"


@pytest.mark.parametrize("name", ["steroid-resistant-naive", "relapse-after-nephrotoxicity-stop"])
def test_order_sign_of_a_first_course_or_a_restart_is_the_signed_regimen(
    server: Server, ehr: Any, templates: Any, name: str
) -> None:
    """A draft that starts cyclosporine (the record says `never`) or restarts it (`stopped`, with
    the stop reason of the past course) is evaluated as the current regimen: not a record that
    contradicts itself, not every cyclosporine rule left undetermined."""
    record = example(name)
    bundle = patient_bundle(record)
    pid = patient_id(bundle)
    mg = 6 * record["weight_kg"]  # 6 mg/kg/day: above the review's ceiling
    body = hook_request(
        "order-sign", pid, prefetch_for(templates[OS], bundle, pid), draftOrders=draft_orders(bundle, pid, mg)
    )
    answer = signed_call(server, ehr, f"/cds-services/{OS}", body)
    assert answer.status_code == 200, answer.text
    dose = next(c for c in answer.json()["cards"] if c["source"]["topic"]["code"] == "CSA-DOSE-EXCEEDS")
    assert "(6 mg/kg/day)" in dose["summary"] and "draft order being signed" in dose["detail"]
    logged_result = result_of(server, body["hookInstance"])
    assert logged_result["status"] == "evaluated", logged_result["errors"]
    evaluated = logged_result["decision"]["input"]["cyclosporine"]
    assert evaluated["status"] == "current" and "stop_reason" not in evaluated


@pytest.mark.parametrize("bad", ["x", {"validityPeriod": "x"}, {"validityPeriod": {"start": 5}}])
def test_order_sign_with_a_malformed_draft_is_answered_not_crashed(
    server: Server, ehr: Any, templates: Any, bad: Any
) -> None:
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    drafts = draft_orders(bundle, pid, 280)
    drafts["entry"][0]["resource"]["dispenseRequest"] = bad
    body = hook_request("order-sign", pid, prefetch_for(templates[OS], bundle, pid), draftOrders=drafts)
    answer = signed_call(server, ehr, f"/cds-services/{OS}", body)
    assert answer.status_code == 200, answer.text
    assert "Traceback" not in server.log.read_text()


def test_order_sign_without_cyclosporine_draft_gives_no_cards(server: Server, ehr: Any, templates: Any) -> None:
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    prefetch = prefetch_for(templates[OS], bundle, pid)
    for drafts in (draft_orders(bundle, pid, 10, rxnorm="8640"), draft_orders(bundle, pid, 1, rxnorm="402092")):
        body = hook_request("order-sign", pid, prefetch, draftOrders=drafts)  # prednisone; ophthalmic cyclosporine
        answer = signed_call(server, ehr, f"/cds-services/{OS}", body)
        assert answer.status_code == 200 and answer.json() == {"cards": []}
        assert logged(server, body["hookInstance"])[11] == "no_cyclosporine_draft"


def test_order_select_reads_only_the_selected_draft(server: Server, ehr: Any, templates: Any) -> None:
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    prefetch = prefetch_for(templates["fsgs-csa-order-select"], bundle, pid)
    drafts = draft_orders(bundle, pid, 420)
    other = draft_orders(bundle, pid, 10, rxnorm="8640")["entry"][0]
    other["resource"]["id"] = "draft-2"
    drafts["entry"].append(other)
    path = "/cds-services/fsgs-csa-order-select"
    chosen = hook_request("order-select", pid, prefetch, draftOrders=drafts, selections=["MedicationRequest/draft-1"])
    codes = [c["source"]["topic"]["code"] for c in signed_call(server, ehr, path, chosen).json()["cards"]]
    assert "CSA-DOSE-EXCEEDS" in codes
    elsewhere = hook_request("order-select", pid, None, draftOrders=drafts, selections=["MedicationRequest/draft-2"])
    assert signed_call(server, ehr, path, elsewhere).json() == {"cards": []}  # no cyclosporine selected: no data needed


# ---- feedback, the decision log, replay ----------------------------------------------------------


def test_feedback_is_logged_and_reported(server: Server, ehr: Any, templates: Any) -> None:
    body, answer = patient_view(server, ehr, templates, example("dose-above-ceiling"))
    cards = {c["source"]["topic"]["code"]: c for c in answer.json()["cards"]}
    warning, advice = cards["CSA-DOSE-EXCEEDS"], cards["CSA-MONITOR-BP"]
    reason = warning["overrideReasons"][0]
    feedback = {
        "feedback": [
            {"card": advice["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-01-01T10:00:00Z"},
            {
                "card": warning["uuid"],
                "outcome": "overridden",
                "overrideReason": {"reason": reason, "userComment": "tapering next week"},
                "outcomeTimestamp": "2026-01-01T10:00:01Z",
            },
        ]
    }
    answer = signed_call(server, ehr, f"/cds-services/{PV}/feedback", feedback)
    assert answer.status_code == 200
    db = server_db(server)
    decision = logged(server, body["hookInstance"])[0]
    rows = list(
        iter_rows(
            db, f"SELECT card, outcome, override_code, user_comment, rule_id FROM feedback WHERE decision = {decision}"
        )
    )
    assert (advice["uuid"], "accepted", None, None, "CSA-MONITOR-BP") in rows
    assert (warning["uuid"], "overridden", reason["code"], "tapering next week", "CSA-DOSE-EXCEEDS") in rows
    bad = signed_call(server, ehr, f"/cds-services/{PV}/feedback", {"feedback": [{"card": "x", "outcome": "maybe"}]})
    assert bad.status_code == 400
    report = subprocess.run(
        [sys.executable, "-m", "fsgs_kb", "feedback-report", str(db)], capture_output=True, text=True, check=True
    ).stdout
    line = next(line for line in report.splitlines() if line.startswith("CSA-DOSE-EXCEEDS v"))
    assert "1 overridden" in line
    assert f"overridden: {reason['display']} × 1 (1 with a comment)" in report


def test_the_decision_log_rows(server: Server, ehr: Any, templates: Any, kb: KnowledgeBase) -> None:
    body, answer = patient_view(server, ehr, templates, example("relapse-after-remission"))
    row = logged(server, body["hookInstance"])
    _, when, hook_instance, service, hook, patient, kb_id, kb_version, fingerprint, input_sha, decision_id = row[:11]
    assert (hook_instance, service, hook, patient) == (
        body["hookInstance"],
        PV,
        "patient-view",
        body["context"]["patientId"],
    )
    assert (kb_id, kb_version, fingerprint) == (kb.id, kb.version, kb.fingerprint)
    result = json.loads(row[12])
    assert result["decision"]["decision_id"] == decision_id and result["decision"]["input_sha256"] == input_sha
    assert result["detail"] == "standard"  # the knowledge base of its fingerprint holds the rest
    assert kb.expand(result)["rules"][0]["citations"], "a logged result expands to the full one"
    assert when.endswith("Z")
    (mode,) = next(iter_rows(server_db(server), "PRAGMA journal_mode"))
    assert mode == "wal"
    uuids = [c["uuid"] for c in answer.json()["cards"]]
    cards = list(iter_rows(server_db(server), f"SELECT uuid, rule_id FROM cards WHERE decision = {row[0]}"))
    assert cards == [(u, "CSA-RELAPSE-REINTRODUCE") for u in uuids]


def test_replay_of_the_decision_log_is_identical(server: Server, ehr: Any, templates: Any, kb_copy: Path) -> None:
    for name in ("dose-above-ceiling", "missing-weight", "secondary-fsgs"):
        patient_view(server, ehr, templates, example(name))
    db = server_db(server)
    run = subprocess.run(
        [sys.executable, "-m", "fsgs_kb", "replay", "--decision-log", str(db)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "identical (100.0 %), 0 changed" in run.stdout
    rule = kb_copy / "recommendations" / "CSA-MONITOR-BP.yaml"
    rule.write_text(rule.read_text().replace("title: ", "title: Edited ", 1))
    other = subprocess.run(
        [sys.executable, "-m", "fsgs_kb", "replay", "--decision-log", str(db), "--rules", str(kb_copy)],
        capture_output=True,
        text=True,
    )
    assert other.returncode == 1
    assert "from another knowledge base (not replayed)" in other.stdout and "0 replayed" in other.stdout


def test_cors_preflight_needs_no_token(server: Server) -> None:
    answer = server.client.options(
        f"/cds-services/{PV}",
        headers={
            "Origin": "https://sandbox.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "https://sandbox.example.org"
    assert "authorization" in answer.headers["access-control-allow-headers"].lower()
    assert server.client.get("/healthz").status_code == 200
