"""Another patient's prefetch is never answered as if it were this patient's: a prefetch whose every
clinical resource is about someone other than context.patientId is refused (400, as a Patient
that is not context.patientId is), not answered with no cards; the Patient is one, under whichever
key (two different Patients sharing the id are refused, as the command-line reader refuses them);
a Bundle entry holding no resource is named in what was set aside, never dropped in silence.

Each call goes over HTTP to the real `fsgs-kb serve` subprocess, as in test_cds_hooks.py."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from cds_support import PUBLIC, Server, example, hook_request, iter_rows, patient_bundle, patient_id, prefetch_for

PV = "fsgs-csa-patient-view"
WEIGHT_KEY = "obs-loinc-29463-7"


@pytest.fixture(scope="module")
def dose_high(server: Server, ehr: Any) -> tuple[str, dict[str, Any]]:
    """EX-DOSE-HIGH's id and its prefetch, as an EHR answers the service's templates."""
    headers = {"Authorization": "Bearer " + ehr.signer.token(PUBLIC + "/cds-services")}
    services = server.client.get("/cds-services", headers=headers).json()["services"]
    templates = next(s["prefetch"] for s in services if s["id"] == PV)
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    return pid, prefetch_for(templates, bundle, pid)


def post(server: Server, ehr: Any, body: dict[str, Any]) -> Any:
    path = f"/cds-services/{PV}"
    return server.client.post(path, json=body, headers={"Authorization": "Bearer " + ehr.signer.token(PUBLIC + path)})


def logged(server: Server, hook_instance: str) -> tuple[str, str | None, dict[str, Any] | None]:
    db = server.log.parent / "decisions.sqlite"
    sql = f"SELECT status, note, result FROM decisions WHERE hook_instance = '{hook_instance}'"
    status, note, result = next(iter_rows(db, sql))
    return status, note, json.loads(result) if result else None


def refused(answer: Any) -> str:
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome"
    return str(body["issue"][0]["diagnostics"])


@pytest.mark.parametrize("patient", ["null", "other"])
def test_a_prefetch_of_another_patient_is_refused_not_answered_with_no_cards(
    server: Server, ehr: Any, dose_high: Any, patient: str
) -> None:
    """context.patientId OTHER, every other key EX-DOSE-HIGH's (the Patient null, or OTHER's own):
    before, 200 with no cards and the 9 resources set aside only in the log."""
    pid, prefetch = dose_high
    prefetch = copy.deepcopy(prefetch)
    prefetch["patient"] = None if patient == "null" else {**prefetch["patient"], "id": "OTHER"}
    count = sum(len(v["entry"]) for k, v in prefetch.items() if k != "patient" and isinstance(v, dict))
    body = hook_request("patient-view", "OTHER", prefetch)
    said = refused(post(server, ehr, body))
    assert said.startswith(f"none of the {count} prefetched clinical resources is about context.patientId"), said
    assert "the prefetch was not made for this patient" in said and "/prefetch/" in said
    assert pid not in said  # the other patient is not named (the log may be masked)
    status, note, _ = logged(server, body["hookInstance"])
    assert status == "rejected_400" and note == said


def test_one_other_patients_resource_beside_this_patients_is_still_set_aside(
    server: Server, ehr: Any, dose_high: Any
) -> None:
    pid, prefetch = dose_high
    prefetch = copy.deepcopy(prefetch)
    stray = copy.deepcopy(prefetch[WEIGHT_KEY]["entry"][0]["resource"])
    stray |= {"id": "w-other", "subject": {"reference": "Patient/x"}}
    prefetch[WEIGHT_KEY]["entry"].append({"resource": stray})
    body = hook_request("patient-view", pid, prefetch)
    assert post(server, ehr, body).status_code == 200
    _, _, result = logged(server, body["hookInstance"])
    assert result and [(a["id"], a["reason"]) for a in result["set_aside"]] == [("w-other", "not_this_patient")]


def test_two_different_patients_sharing_the_id_are_refused(server: Server, ehr: Any, dose_high: Any) -> None:
    """Before, the last one under `patient` won in silence; the command-line reader refuses it."""
    pid, prefetch = dose_high
    prefetch = copy.deepcopy(prefetch)
    mine = prefetch["patient"]
    prefetch["patient"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {**mine, "birthDate": "2020-01-01"}}, {"resource": mine}],
    }
    said = refused(post(server, ehr, hook_request("patient-view", pid, prefetch)))
    assert said == (
        "two different Patient resources share id context.patientId: /prefetch/patient/entry/0 and "
        "/prefetch/patient/entry/1"
    )


def test_a_patient_under_another_key_is_the_patient_too(server: Server, ehr: Any, dose_high: Any) -> None:
    """Before, a Patient under another key was ignored, whatever it said."""
    pid, prefetch = dose_high
    prefetch = copy.deepcopy(prefetch)
    mine = prefetch["patient"]
    prefetch[WEIGHT_KEY]["entry"].append({"resource": {**mine, "birthDate": "2020-01-01"}})
    said = refused(post(server, ehr, hook_request("patient-view", pid, prefetch)))
    assert said == (
        "two different Patient resources share id context.patientId: /prefetch/patient and "
        f"/prefetch/{WEIGHT_KEY}/entry/1"
    )
    prefetch[WEIGHT_KEY]["entry"][-1] = {"resource": {**mine, "id": "someone-else"}}
    said = refused(post(server, ehr, hook_request("patient-view", pid, prefetch)))
    assert said == f"the prefetched Patient at /prefetch/{WEIGHT_KEY}/entry/1 is not context.patientId"
    prefetch[WEIGHT_KEY]["entry"][-1] = {"resource": copy.deepcopy(mine)}  # the same Patient again: one
    assert post(server, ehr, hook_request("patient-view", pid, prefetch)).status_code == 200


def test_entries_that_hold_no_resource_are_named_not_dropped(server: Server, ehr: Any, dose_high: Any) -> None:
    pid, prefetch = dose_high
    prefetch = copy.deepcopy(prefetch)
    prefetch[WEIGHT_KEY]["entry"] += [1, "x", None, {"fullUrl": "urn:uuid:1"}, {"resource": {"id": "r"}}]
    body = hook_request("patient-view", pid, prefetch)
    answer = post(server, ehr, body)
    assert answer.status_code == 200, answer.text
    _, _, result = logged(server, body["hookInstance"])
    assert result is not None
    unread = [(a["origin"], a["message"]) for a in result["set_aside"] if a["reason"] == "not_a_resource"]
    at = f"/prefetch/{WEIGHT_KEY}/entry/"
    assert unread == [
        (at + "1", "Bundle.entry[1]: the entry is 1, not an object"),
        (at + "2", 'Bundle.entry[2]: the entry is "x" (a string), not an object'),
        (at + "3", "Bundle.entry[3]: the entry is null, not an object"),
        (at + "4", "Bundle.entry[4]: the entry has no resource"),
        (at + "5", "Bundle.entry[5]: its resource has resourceType null, not a type name"),
    ]
    aside = [c for c in answer.json()["cards"] if "not used" in c["summary"]]
    assert aside and "5 FHIR resources sent were not used (an entry with no resource)" == aside[0]["summary"]
