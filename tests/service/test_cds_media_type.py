"""A hook call or feedback whose Content-Type says the body is something else than JSON
(`multipart/form-data`, XML, `application/json-seq`) or names another charset than UTF-8 gets 415,
an OperationOutcome naming what was received and what is expected, before the body is read, and a
hook call's row (`rejected_415`). `application/json` with or without `charset=utf-8`, in any
letter case, a `+json` type (`application/fhir+json`) and what HTTP tools send undeclared (no
type, curl's and urllib's form type, `text/plain`) are read as JSON.

On the session's real `fsgs-kb serve` subprocess, over HTTP on 127.0.0.1."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from cds_support import PUBLIC, Server, hook_request, iter_rows

PV = "/cds-services/fsgs-csa-patient-view"


def post(server: Server, ehr: Any, path: str, content_type: str | None, body: bytes) -> Any:
    headers = {"Authorization": "Bearer " + ehr.signer.token(PUBLIC + path)}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return server.client.post(path, content=body, headers=headers)


def rows_415(server: Server) -> list[str]:
    db = server.log.parent / "decisions.sqlite"
    return [r[0] for r in iter_rows(db, "SELECT note FROM decisions WHERE status = 'rejected_415' ORDER BY id")]


@pytest.mark.parametrize(
    ("content_type", "said"),
    [
        ("multipart/form-data; boundary=x", "Content-Type 'multipart/form-data; boundary=x' is not JSON"),
        ("application/json-seq", "Content-Type 'application/json-seq' is not JSON"),
        ("application/xml", "Content-Type 'application/xml' is not JSON; send the body as application/json"),
        ("text/plain; charset=latin-1", "Content-Type 'text/plain; charset=latin-1' names another charset than"),
        (
            "application/json; charset=iso-8859-1",
            "Content-Type 'application/json; charset=iso-8859-1' names another charset than UTF-8",
        ),
    ],
)
def test_a_body_not_declared_json_is_a_415_naming_its_type(
    server: Server, ehr: Any, content_type: str | None, said: str
) -> None:
    before = rows_415(server)
    seen = len(server.log_text())
    answer = post(server, ehr, PV, content_type, json.dumps(hook_request("patient-view", "p1", {})).encode())
    assert answer.status_code == 415, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "not-supported", body
    assert said in body["issue"][0]["diagnostics"], body
    assert "application/json" in body["issue"][0]["diagnostics"]
    assert rows_415(server) == [*before, body["issue"][0]["diagnostics"]]  # the call still leaves its row
    assert "Traceback" not in server.log_text()[seen:]


def test_feedback_not_declared_json_is_a_415(server: Server, ehr: Any) -> None:
    answer = post(server, ehr, PV + "/feedback", "application/xml", b'{"feedback": []}')
    assert answer.status_code == 415, answer.text
    assert "Content-Type 'application/xml' is not JSON" in answer.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        'Application/JSON;Charset="UTF-8"',
        "application/fhir+json",
        # what HTTP tools send when told nothing: curl -d and urllib a form type, others none or text
        None,
        "application/x-www-form-urlencoded",
        "text/plain;charset=UTF-8",
    ],
)
def test_json_in_utf8_is_read(server: Server, ehr: Any, content_type: str) -> None:
    answer = post(server, ehr, PV, content_type, json.dumps(hook_request("patient-view", "p1", {})).encode())
    assert answer.status_code == 412, answer.text  # read: the empty prefetch is the request's problem


def test_a_compressed_body_or_a_content_type_given_twice_is_a_415(server: Server, ehr: Any) -> None:
    """A gzip body was parsed as JSON and refused as `str is not valid UTF-8`; two Content-Types
    were read as the first."""
    body = json.dumps(hook_request("patient-view", "p1", {})).encode()
    headers = {"Authorization": "Bearer " + ehr.signer.token(PUBLIC + PV), "Content-Type": "application/json"}
    gzipped = server.client.post(PV, content=gzip.compress(body), headers={**headers, "Content-Encoding": "gzip"})
    assert gzipped.status_code == 415, gzipped.text
    said = gzipped.json()["issue"][0]["diagnostics"]
    assert said == "Content-Encoding 'gzip' is not supported; send the JSON body uncompressed"
    twice = [("Authorization", "Bearer " + ehr.signer.token(PUBLIC + PV))]
    twice += [("Content-Type", "application/json"), ("Content-Type", "text/plain")]
    answer = server.client.post(PV, content=body, headers=twice)
    assert answer.status_code == 415, answer.text
    assert answer.json()["issue"][0]["diagnostics"] == (
        "Content-Type is given 2 times ('application/json', 'text/plain'); send it once, as application/json"
    )
    identity = {**headers, "Authorization": "Bearer " + ehr.signer.token(PUBLIC + PV), "Content-Encoding": "identity"}
    assert server.client.post(PV, content=body, headers=identity).status_code == 412
