"""fhirServer and fhirAuthorization as CDS Hooks 2.0 shapes them, or 400 naming the field.

Whether the EHR gave FHIR access decides what a missing prefetch key means (412 without it; with
it, a card says what was not sent), so a fhirAuthorization that is not one used to change the
answer: `"yes"` or an object without its token counted as FHIR access (200 with a card), and a
fhirAuthorization without the fhirServer it is for (which CDS Hooks 2.0 requires with it) was
taken as well; a fhirServer that is no URL was silently ignored. Each is now a 400 naming the
field, logged as `rejected_400`, and the access token is quoted nowhere.

On the session's real `fsgs-kb serve` subprocess, over HTTP on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import pytest
from cds_support import Server, hook_request, iter_rows, signed_call

PV = "/cds-services/fsgs-csa-patient-view"
SECRET = "s3cr3t-access-token-never-logged"
GOOD = {
    "access_token": SECRET,
    "token_type": "Bearer",
    "expires_in": 300,
    "scope": "patient/*.read",
    "subject": "fsgs-kb-cds",
}


def call_with_server(fhir_server: Any) -> dict[str, Any]:
    """A patient-view call with no prefetch, whose fhirServer is `fhir_server` (None: left out)."""
    body = hook_request("patient-view", "p1", None)
    body.pop("fhirServer")
    if fhir_server is not None:
        body["fhirServer"] = fhir_server
    return body


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != key}


@pytest.mark.parametrize(
    ("fhir_server", "authorization", "said"),
    [
        (None, GOOD, "fhirAuthorization is given without fhirServer, which CDS Hooks 2.0 requires with it"),
        ("https://ehr.example.org/fhir", "yes", "fhirAuthorization must be an object (CDS Hooks 2.0: access_token"),
        ("https://ehr.example.org/fhir", [GOOD], "fhirAuthorization must be an object"),
        ("https://ehr.example.org/fhir", True, "fhirAuthorization must be an object (CDS Hooks 2.0: access_token, "),
        ("https://ehr.example.org/fhir", {}, "fhirAuthorization.access_token is missing"),
        ("https://ehr.example.org/fhir", without("access_token"), "fhirAuthorization.access_token is missing"),
        ("https://ehr.example.org/fhir", {**GOOD, "access_token": 5}, "access_token must be non-empty text, not a"),
        ("https://ehr.example.org/fhir", {**GOOD, "access_token": " "}, "fhirAuthorization.access_token must be"),
        ("https://ehr.example.org/fhir", {**GOOD, "token_type": "MAC"}, "token_type must be Bearer, not 'MAC'"),
        (
            "https://ehr.example.org/fhir",
            {**GOOD, "expires_in": "300"},
            "expires_in must be a number of seconds, not text",
        ),
        (
            "https://ehr.example.org/fhir",
            {**GOOD, "expires_in": True},
            "expires_in must be a number of seconds, not a boolean",
        ),
        ("https://ehr.example.org/fhir", {**GOOD, "expires_in": -1}, "fhirAuthorization.expires_in must not be neg"),
        ("https://ehr.example.org/fhir", {**GOOD, "patient": 5}, "fhirAuthorization.patient must be text"),
        (5, None, "fhirServer must be the base URL of the EHR's FHIR server (an absolute https URL), not a number"),
        ("fhir", None, "fhirServer must be the base URL of the EHR's FHIR server (an absolute https URL), not 'fhir'"),
        ("ftp://ehr.example.org/fhir", GOOD, "fhirServer must be the base URL"),
        ("https://[::1/fhir", GOOD, "fhirServer must be the base URL"),
        ({"url": "https://ehr.example.org"}, GOOD, "not an object"),
        ("https://ehr.example.org:99999/fhir", None, "fhirServer must be the base URL"),  # was taken
        ("https://" + "a" * 5000 + ".org/fhir", None, "fhirServer must be the base URL"),  # was taken
    ],
)
def test_fhir_access_of_the_wrong_shape_is_a_400_naming_the_field(
    server: Server, ehr: Any, fhir_server: Any, authorization: Any, said: str
) -> None:
    body = call_with_server(fhir_server)
    body["fhirAuthorization"] = authorization
    seen = len(server.log_text())
    answer = signed_call(server, ehr, PV, body)
    assert answer.status_code == 400, answer.text
    issue = answer.json()["issue"][0]
    assert said in issue["diagnostics"], issue
    assert SECRET not in answer.text
    db = server.log.parent / "decisions.sqlite"
    ((status, note),) = iter_rows(
        db, f"SELECT status, note FROM decisions WHERE hook_instance = '{body['hookInstance']}'"
    )
    assert status == "rejected_400" and note == issue["diagnostics"]
    files = [db, db.with_name(db.name + "-wal")]  # the row may still be in the write-ahead log
    assert all(SECRET.encode() not in f.read_bytes() for f in files if f.exists())
    assert SECRET not in server.log_text()
    assert "Traceback" not in server.log_text()[seen:]


@pytest.mark.parametrize(
    ("fhir_server", "authorization", "status"),
    [
        ("https://ehr.example.org/fhir", GOOD, 200),  # FHIR access given: a card says no data was sent
        ("https://ehr.example.org/fhir", {**GOOD, "token_type": "bearer", "patient": "p1"}, 200),
        # only the token is required: 1.0 clients send no subject, many send only the token
        ("https://ehr.example.org/fhir", {"access_token": SECRET}, 200),
        ("https://ehr.example.org/fhir", {k: v for k, v in GOOD.items() if k != "subject"}, 200),
        ("https://ehr.example.org/fhir", None, 412),  # no FHIR access: the missing prefetch is a 412
        ("http://127.0.0.1:8080/fhir", None, 412),
        (None, None, 412),
    ],
)
def test_fhir_access_of_the_right_shape_is_taken(
    server: Server, ehr: Any, fhir_server: Any, authorization: Any, status: int
) -> None:
    body = call_with_server(fhir_server)
    if authorization is not None:
        body["fhirAuthorization"] = authorization
    assert signed_call(server, ehr, PV, body).status_code == status
