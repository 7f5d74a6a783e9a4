"""Outside review 3 of the CDS Hooks service, each finding checked on the real `fsgs-kb serve`
over HTTP: a hookInstance that is not a UUID, feedback for a card never issued, the same card
sent by two calls, the scope-undetermined summary, a call that brings no patient data, and the
prefetch templates' `_sort`."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
from cds_support import (
    Server,
    example,
    hook_request,
    patient_bundle,
    patient_id,
    prefetch_for,
    signed_call,
    write_config,
)

PV = "fsgs-csa-patient-view"
AUTHORIZATION = {
    "access_token": "x",
    "token_type": "Bearer",
    "expires_in": 60,
    "scope": "patient/*.read",
    "subject": "fsgs-kb-cds",
}


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


@pytest.fixture(scope="module")
def own(ehr: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of this module's own, so that its decision log holds only these tests' calls."""
    running = Server(write_config(tmp_path_factory.mktemp("review3") / "cds.yaml", ehr.issuers()[:1]))
    yield running
    running.stop()


def templates_of(server: Server, ehr: Any) -> dict[str, str]:
    services = signed_call(server, ehr, "/cds-services").json()["services"]
    return dict(next(s for s in services if s["id"] == PV)["prefetch"])


def feedback_rows(server: Server) -> list[tuple[Any, ...]]:
    with sqlite3.connect(server.log.parent / "decisions.sqlite") as db:
        return db.execute("SELECT card, decision, outcome FROM feedback ORDER BY id").fetchall()


def feedback_report(server: Server) -> list[str]:
    db = server.log.parent / "decisions.sqlite"
    run = subprocess.run([sys.executable, "-m", "fsgs_kb", "feedback-report", str(db)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()


def test_feedback_on_a_card_never_sent_is_404_and_not_written(own: Server, ehr: Any) -> None:
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    body = hook_request("patient-view", pid, prefetch_for(templates_of(own, ehr), bundle, pid))
    sent = signed_call(own, ehr, f"/cds-services/{PV}", body).json()["cards"]
    before = feedback_rows(own)
    never = str(uuid.uuid4())
    items = [
        {"card": sent[0]["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-30T10:00:00Z"},
        {"card": never, "outcome": "accepted", "outcomeTimestamp": "2026-11-30T10:00:00Z"},
    ]
    said = diagnostics(signed_call(own, ehr, f"/cds-services/{PV}/feedback", {"feedback": items}), 404)
    assert said.startswith("feedback[1]: ") and never in said, said
    assert feedback_rows(own) == before  # not even the item on a card that was sent


def test_the_same_card_sent_by_two_calls_is_one_card_in_the_feedback_report(own: Server, ehr: Any) -> None:
    """Card uuids come from the decision id and the rule: the same data on the same day in two
    calls sends the same cards. Feedback is that card's, counted once, linked to a row that sent it."""
    bundle = patient_bundle(example("steroid-resistant-naive"))
    pid = patient_id(bundle)
    prefetch = prefetch_for(templates_of(own, ehr), bundle, pid)
    calls = [hook_request("patient-view", pid, prefetch) for _ in range(2)]
    answers = [signed_call(own, ehr, f"/cds-services/{PV}", body).json()["cards"] for body in calls]
    first, second = ({c["source"]["topic"]["code"]: c["uuid"] for c in cards} for cards in answers)
    assert first == second and "CSA-SR-CANDIDATE" in first, (first, second)
    card = first["CSA-SR-CANDIDATE"]
    with sqlite3.connect(own.log.parent / "decisions.sqlite") as db:
        sent_by = [row[0] for row in db.execute("SELECT decision FROM cards WHERE uuid = ? ORDER BY decision", (card,))]
    assert len(sent_by) == 2
    item = {"card": card, "outcome": "accepted", "outcomeTimestamp": "2026-11-30T10:00:00Z"}
    for _ in range(2):  # the EHR sends its feedback for the card of each call
        assert signed_call(own, ehr, f"/cds-services/{PV}/feedback", {"feedback": [item]}).status_code == 200
    linked = [row for row in feedback_rows(own) if row[0] == card]
    assert [row[1] for row in linked] == [sent_by[-1], sent_by[-1]]
    line = next(text for text in feedback_report(own) if text.startswith("CSA-SR-CANDIDATE v"))
    assert ": 1 card (sent in 2 calls), 1 with feedback: 1 accepted, 0 overridden" in line, line


def scope_card(server: Server, ehr: Any, drop: str) -> dict[str, Any]:
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    prefetch = prefetch_for(templates_of(server, ehr), bundle, pid)
    del prefetch[drop]
    body = hook_request("patient-view", pid, prefetch)
    body["fhirAuthorization"] = AUTHORIZATION
    answer = signed_call(server, ehr, f"/cds-services/{PV}", body)
    assert answer.status_code == 200, answer.text
    (card,) = [c for c in answer.json()["cards"] if c["source"]["topic"]["code"] == "UNDETERMINED"]
    return dict(card)


def test_the_scope_undetermined_summary_is_one_sentence_naming_what_to_record(server: Server, ehr: Any) -> None:
    card = scope_card(server, ehr, "field-fsgs.etiology")
    summary = card["summary"]
    assert summary == "DRAFT: Cannot tell whether the review applies: record FSGS etiology", summary
    assert len(summary) < 140 and "…" not in summary and "/fsgs" not in summary
    assert "**fsgs.etiology** (FSGS etiology)" in card["detail"] and "/fsgs/etiology" in card["detail"]
    assert "`field-fsgs.etiology`" in card["detail"]  # the prefetch key the EHR did not send


def pv_call(server: Server, ehr: Any, prefetch: dict[str, Any] | None, pid: str, authorized: bool) -> list[Any]:
    body = hook_request("patient-view", pid, prefetch)
    if authorized:
        body["fhirAuthorization"] = AUTHORIZATION
    answer = signed_call(server, ehr, f"/cds-services/{PV}", body)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["cards"])


def test_a_call_that_brings_no_patient_data_says_so(server: Server, ehr: Any) -> None:
    """fhirAuthorization and no prefetch, or every key null: the service fetches nothing itself,
    so it received no data to assess; an info card says so, never `{"cards": []}`."""
    templates = templates_of(server, ehr)
    pid = patient_id(patient_bundle(example("dose-above-ceiling")))
    for prefetch, authorized, said in (
        (None, True, "not sent"),
        ({key: None for key in templates}, False, "null"),
    ):
        cards = pv_call(server, ehr, prefetch, pid, authorized)
        assert [c["source"]["topic"]["code"] for c in cards] == ["NO_DATA"], cards
        (card,) = cards
        assert card["indicator"] == "info" and len(card["summary"]) < 140
        assert card["summary"] == f"No patient data received to assess: of {len(templates)} prefetch queries, " + (
            f"{len(templates)} {said}"
        )
        assert "`field-fsgs.etiology`" in card["detail"] and "`obs-loinc-29463-7`" in card["detail"]


def test_silence_only_when_the_data_sent_says_nothing_of_fsgs(server: Server, ehr: Any) -> None:
    """A chart whose diagnosis queries came back null (the EHR has nothing on FSGS) stays silent;
    the same queries not sent (with fhirAuthorization) are not an answer: the scope card asks for them."""
    templates = templates_of(server, ehr)
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    prefetch = prefetch_for(templates, bundle, pid)
    fsgs = [key for key in templates if key.startswith("field-fsgs.") or key.startswith("condition-")]
    assert "field-fsgs.etiology" in fsgs and "field-fsgs.biopsy_proven" in fsgs
    assert pv_call(server, ehr, {**prefetch, **{key: None for key in fsgs}}, pid, authorized=False) == []
    not_sent = {key: value for key, value in prefetch.items() if key not in fsgs}
    (card,) = pv_call(server, ehr, not_sent, pid, authorized=True)
    assert card["source"]["topic"]["code"] == "UNDETERMINED", card
    assert card["summary"] == (
        "DRAFT: Cannot tell whether the review applies: record FSGS etiology and FSGS proven by kidney biopsy"
    )


def test_observation_templates_are_one_code_each_sorted_on_date(server: Server, ehr: Any) -> None:
    """Issue 15's wording, "one query per code, `_sort=-date`", where FHIR R4 has that parameter
    (Observation); Conditions, orders and statements sort on their own date parameter, the
    departure the README documents (R4 gives Condition and MedicationStatement no `date`, and
    MedicationRequest's `date` is the dose timing, not the order date)."""
    sorts = {"Condition": "-recorded-date", "MedicationRequest": "-authoredon", "MedicationStatement": "-effective"}
    services = signed_call(server, ehr, "/cds-services").json()["services"]
    seen: set[str] = set()
    for service in services:
        for key, template in service["prefetch"].items():
            rtype, _, query = template.partition("?")
            seen.add(rtype.split("/")[0])
            if rtype.startswith("Patient/"):
                assert template == "Patient/{{context.patientId}}", (key, template)
                continue
            params = parse_qs(query)
            assert params["patient"] == ["{{context.patientId}}"], (key, template)
            (sort,) = params["_sort"]
            if key.endswith("-by-medication"):  # the orders naming their drug through a Medication
                assert rtype in ("MedicationRequest", "MedicationStatement") and "code" not in params, (key, template)
                assert params["_include"] == [f"{rtype}:medication"] and sort == sorts[rtype], (key, template)
                by_code = parse_qs(service["prefetch"][key.removesuffix("-by-medication")].partition("?")[2])
                assert params["medication.code"] == by_code["code"], (key, template)  # the same drug's codes
                continue
            (codes,) = params["code"]
            if rtype == "Observation":
                assert sort == "-date" and "," not in codes and codes.count("|") == 1, (key, template)
            else:
                assert sort == sorts[rtype], (key, template)
                assert rtype != "Condition" or "," not in codes, (key, template)
    assert {"Observation", "Condition", "MedicationRequest", "Patient"} <= seen
