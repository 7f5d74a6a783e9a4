"""Orders that name their drug by a medicationReference, end to end: asked for, and resolved.

Two gaps, both silent before. (1) The prefetch templates asked for orders and statements with
`code=`, which FHIR R4 defines as `medication as CodeableConcept`: an order written with a
medicationReference (as many EHRs write every order) was never returned, so a current cyclosporine
course written that way was simply not there. Each drug now has optional `*-by-medication` keys
(`medication.code=…&_include=…:medication`); an EHR that does not run them is still answered (no
412). (2) A draft order's Medication cannot be prefetched at all (`draftOrders` is no prefetch
token), and a prefetched order may come without its Medication: the order was set aside as "which
drug it is cannot be told" even when the EHR gave fhirServer and fhirAuthorization. The service now
reads such a Medication from the FHIR server with the EHR's token (service/fhirfetch.py), within
bounds, and when it cannot, the order's card says why.

A real `fsgs-kb serve` of this module's and a FHIR server on 127.0.0.1 (a thread that serves
Medications and records each request), over HTTP."""

from __future__ import annotations

import copy
import gzip
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cds_support import (
    Server,
    cyclosporine_draft,
    example,
    hook_request,
    iter_rows,
    patient_bundle,
    patient_id,
    prefetch_for,
    signed_call,
    write_config,
)

PV, OS = "fsgs-csa-patient-view", "fsgs-csa-order-sign"
TOKEN = "fhir-access-token-never-logged-91c2"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CYCLOSPORINE = {"resourceType": "Medication", "id": "med-csa", "code": {"coding": [{"system": RXNORM, "code": "3008"}]}}
ELSEWHERE = "it names another server than fhirServer, or is not of the form Medication/(id)"
SLOW_SECONDS = 6.0  # past the service's 3 s for all its fetches


class FhirServer:
    """Medications on loopback, by id: `med-csa` is cyclosporine; `gone` answers 404, `moved` a
    redirect to med-csa, `other` another Medication's id, `slow` nothing for SLOW_SECONDS, `zipped`
    med-csa gzip-compressed.
    `requests` records (path, Authorization header) of each request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None]] = []
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.requests.append((self.path, self.headers.get("Authorization")))
                name = self.path.rpartition("/")[2]
                if name == "slow":
                    outer.release.wait(SLOW_SECONDS)
                if name == "zipped":  # a compressed answer (which could expand past any limit) is not read
                    body = gzip.compress(json.dumps({**CYCLOSPORINE, "id": "zipped"}).encode())
                    self.send_response(200)
                    self.send_header("Content-Encoding", "gzip")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if name == "moved":
                    self.send_response(302)
                    self.send_header("Location", "/fhir/Medication/med-csa")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                found = {"med-csa": CYCLOSPORINE, "other": {**CYCLOSPORINE, "id": "else"}, "slow": CYCLOSPORINE}
                if name not in found:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({**found[name], "id": found[name]["id"]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirServer]:
    running = FhirServer()
    yield running
    running.close()


@pytest.fixture(scope="module")
def own(ehr: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("medref")
    running = Server(write_config(work / "cds.yaml", ehr.issuers()[:1], fetch_medications=True))
    yield running
    running.stop()


def templates(server: Server, ehr: Any, service: str = PV) -> dict[str, str]:
    services = signed_call(server, ehr, "/cds-services").json()["services"]
    return dict(next(s for s in services if s["id"] == service)["prefetch"])


def access(body: dict[str, Any], fhir: FhirServer | str) -> dict[str, Any]:
    body["fhirServer"] = fhir if isinstance(fhir, str) else fhir.base
    body["fhirAuthorization"] = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300, "scope": "x"}
    return body


def row(server: Server, hook_instance: str) -> tuple[str, str | None]:
    db = server.log.parent / "decisions.sqlite"
    ((status, note),) = iter_rows(db, f"SELECT status, note FROM decisions WHERE hook_instance = '{hook_instance}'")
    return status, note


def by_reference(bundle: dict[str, Any], ref: str = "Medication/med-csa", with_medication: bool = True) -> None:
    """The bundle's cyclosporine orders name their drug by `ref` (as many EHRs write them)."""
    for entry in bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] == "MedicationRequest" and res.pop("medicationCodeableConcept", None) is not None:
            res["medicationReference"] = {"reference": ref}
    if with_medication:
        bundle["entry"].append({"resource": copy.deepcopy(CYCLOSPORINE)})


def codes(answer: Any) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [c["source"]["topic"]["code"] for c in answer.json()["cards"]]


def untold_draft(pid: str, ref: str = "Medication/med-csa") -> dict[str, Any]:
    order = cyclosporine_draft("d-ref", f"Patient/{pid}", 280)
    del order["medicationCodeableConcept"]
    order["medicationReference"] = {"reference": ref}
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]}


def sign(server: Server, ehr: Any, fhir: FhirServer | str | None, ref: str = "Medication/med-csa") -> tuple[Any, Any]:
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    body = hook_request("order-sign", pid, prefetch_for(templates(server, ehr, OS), bundle, pid))
    body["context"]["draftOrders"] = untold_draft(pid, ref)
    if fhir is not None:
        access(body, fhir)
    return body, signed_call(server, ehr, f"/cds-services/{OS}", body)


# ---- (1) the templates ask for orders that name their drug through a Medication ------------------


def test_orders_written_with_a_medication_reference_are_asked_for_and_read(own: Server, ehr: Any) -> None:
    """The EHR runs every template on a chart whose cyclosporine order names its Medication: only
    the `-by-medication` key returns it (with the Medication), and its dose is the one checked."""
    asked = templates(own, ehr)
    assert asked["medicationrequest-cyclosporine-by-medication"].startswith(
        "MedicationRequest?patient={{context.patientId}}&medication.code=http://www.nlm.nih.gov/research/umls/rxnorm|3008,"
    )
    assert asked["medicationrequest-cyclosporine-by-medication"].endswith(
        "&_include=MedicationRequest:medication&_sort=-authoredon"
    )
    bundle = patient_bundle(example("dose-above-ceiling"))
    by_reference(bundle)
    pid = patient_id(bundle)
    prefetch = prefetch_for(asked, bundle, pid)
    assert prefetch["medicationrequest-cyclosporine"]["entry"] == []  # FHIR's `code` does not find it
    found = [e["resource"]["resourceType"] for e in prefetch["medicationrequest-cyclosporine-by-medication"]["entry"]]
    assert found == ["MedicationRequest", "Medication"]
    assert "CSA-DOSE-EXCEEDS" in codes(
        signed_call(own, ehr, f"/cds-services/{PV}", hook_request("patient-view", pid, prefetch))
    )


def test_an_ehr_that_cannot_run_the_optional_queries_is_still_answered(own: Server, ehr: Any) -> None:
    """No fhirAuthorization and the `-by-medication` keys left out (chaining and _include are
    beyond CDS Hooks' recommended subset): answered, not 412, and the row says what was not sent."""
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    prefetch = {k: v for k, v in prefetch_for(templates(own, ehr), bundle, pid).items() if "-by-medication" not in k}
    body = hook_request("patient-view", pid, prefetch)
    assert "CSA-DOSE-EXCEEDS" in codes(signed_call(own, ehr, f"/cds-services/{PV}", body))
    status, note = row(own, body["hookInstance"])
    assert status == "evaluated" and note is not None
    assert note.startswith("absent (optional keys): medicationrequest-cyclosporine-by-medication, ")
    del prefetch["medicationrequest-cyclosporine"]  # a required key still is required
    answer = signed_call(own, ehr, f"/cds-services/{PV}", hook_request("patient-view", pid, prefetch))
    assert answer.status_code == 412
    assert answer.json()["issue"][0]["diagnostics"].endswith(": medicationrequest-cyclosporine")


# ---- (2) a Medication the request lacks is read from the FHIR server -----------------------------


def test_a_draft_naming_a_medication_not_sent_is_read_from_the_fhir_server(
    own: Server, ehr: Any, fhir: FhirServer
) -> None:
    seen = len(fhir.requests)
    body, answer = sign(own, ehr, fhir)
    assert "CSA-DOSE-WITHIN" in codes(answer)  # the draft was evaluated: 280 mg/day
    assert fhir.requests[seen:] == [("/fhir/Medication/med-csa", f"Bearer {TOKEN}")]
    status, note = row(own, body["hookInstance"])
    assert status == "evaluated" and f"fetched from fhirServer: {fhir.base}/Medication/med-csa" in (note or "")
    assert TOKEN not in own.log_text() and TOKEN.encode() not in (own.log.parent / "decisions.sqlite").read_bytes()


def test_a_prefetched_order_whose_medication_was_not_included_is_read_too(
    own: Server, ehr: Any, fhir: FhirServer
) -> None:
    """An EHR that answers the order query without the Medication it names (no `_include`)."""
    bundle = patient_bundle(example("dose-above-ceiling"))
    by_reference(bundle)
    pid = patient_id(bundle)
    prefetch = prefetch_for(templates(own, ehr), bundle, pid)
    key = prefetch["medicationrequest-cyclosporine-by-medication"]
    key["entry"] = [e for e in key["entry"] if e["resource"]["resourceType"] != "Medication"]
    answer = signed_call(own, ehr, f"/cds-services/{PV}", hook_request("patient-view", pid, prefetch))
    assert "CSA-DOSE-EXCEEDS" not in codes(answer)  # without FHIR access: which drug it is cannot be told
    body = access(hook_request("patient-view", pid, prefetch), fhir)
    assert "CSA-DOSE-EXCEEDS" in codes(signed_call(own, ehr, f"/cds-services/{PV}", body))


def test_without_fhir_authorization_nothing_is_fetched(own: Server, ehr: Any, fhir: FhirServer) -> None:
    seen = len(fhir.requests)
    _, answer = sign(own, ehr, None)
    (card,) = answer.json()["cards"]
    assert card["summary"] == "Draft order could not be checked (a drug that cannot be told)"
    assert "fetching it" not in card["detail"] and fhir.requests[seen:] == []


@pytest.mark.parametrize(
    ("ref", "why"),
    [
        ("Medication/gone", "the FHIR server answered 404"),
        ("Medication/moved", "the FHIR server answered 302"),  # a redirect is not followed (the token with it)
        ("Medication/other", "the FHIR server's answer is not Medication/other"),
        ("Medication/slow", "no answer within 3 s"),
        ("Medication/zipped", "the FHIR server's answer is compressed (gzip), which is not read"),
        ("https://elsewhere.example.org/fhir/Medication/med-csa", ELSEWHERE),
    ],
)
def test_a_medication_that_cannot_be_read_is_said_on_the_order_card(
    own: Server, ehr: Any, fhir: FhirServer, ref: str, why: str
) -> None:
    start = time.monotonic()
    body, answer = sign(own, ehr, fhir, ref)
    assert time.monotonic() - start < SLOW_SECONDS  # the call does not wait for a slow FHIR server
    (card,) = answer.json()["cards"]
    assert card["source"]["topic"]["code"] == "ORDER_NOT_CHECKED", card
    untold = "names no Medication sent (contained or in the Bundle): which drug it is cannot be told"
    assert f"{untold} (fetching it from fhirServer failed: {why}" in card["detail"], card["detail"]
    status, note = row(own, body["hookInstance"])
    assert status == "no_cyclosporine_draft" and f"not fetched: {ref} ({why}" in (note or "")
    assert "Traceback" not in own.log_text()


def test_the_token_is_sent_only_over_https(own: Server, ehr: Any, fhir: FhirServer) -> None:
    """A fhirServer on plain http (not this machine) or with a query gets no request and no token."""
    for server, why in (
        ("http://ehr.example.org/fhir", "fhirServer is not https: the access token is not sent in clear"),
        (f"{fhir.base}?x=1", "fhirServer has credentials, a query or a fragment"),
    ):
        seen = len(fhir.requests)
        _, answer = sign(own, ehr, server)
        (card,) = answer.json()["cards"]
        assert f"(fetching it from fhirServer failed: {why}" in card["detail"], card["detail"]
        assert fhir.requests[seen:] == []


def test_fetching_is_off_unless_the_configuration_asks_for_it(
    own: Server, ehr: Any, fhir: FhirServer, tmp_path: Path
) -> None:
    """The CDS Hooks issue's contract: the service fetches nothing itself. Reading a Medication
    from the EHR's FHIR server is opt-in (`fetch_medications: true`), and discovery promises it
    only then."""
    off = Server(write_config(tmp_path / "cds.yaml", ehr.issuers()[:1]))
    try:
        seen = len(fhir.requests)
        _, answer = sign(off, ehr, fhir)
        (card,) = answer.json()["cards"]
        assert card["summary"] == "Draft order could not be checked (a drug that cannot be told)"
        assert fhir.requests[seen:] == []
        usage = {s["usageRequirements"] for s in signed_call(off, ehr, "/cds-services").json()["services"]}
        assert not any("GET" in u for u in usage), usage
    finally:
        off.stop()
    usage = {s["usageRequirements"] for s in signed_call(own, ehr, "/cds-services").json()["services"]}
    assert all("GET [fhirServer]/Medication/[id]" in u for u in usage), usage


def test_a_draft_naming_its_medication_by_display_only_is_named_not_passed_over(own: Server, ehr: Any) -> None:
    """A medicationReference with a display and no reference (found in the sweep): the draft was
    read as no drug at all, and order-sign answered `{"cards": []}` for what may be cyclosporine."""
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    body = hook_request("order-sign", pid, prefetch_for(templates(own, ehr, OS), bundle, pid))
    draft = untold_draft(pid)
    draft["entry"][0]["resource"]["medicationReference"] = {"display": "ciclosporin 100 mg capsule"}
    body["context"]["draftOrders"] = draft
    (card,) = signed_call(own, ehr, f"/cds-services/{OS}", body).json()["cards"]
    assert card["summary"] == "Draft order could not be checked (a drug that cannot be told)"
    assert "its medicationReference names no Medication by reference (a display or identifier only)" in card["detail"]
