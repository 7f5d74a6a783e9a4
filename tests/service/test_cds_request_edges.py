"""A path with a trailing slash (`POST /cds-services/fsgs-csa-patient-view/`) got Starlette's `307`
to `http://<Host header>/…`, before the JWT gate, and a client re-sends the body there; the service
never builds a URL from Host. It is an unknown path: 404, an OperationOutcome.

On the session's real `fsgs-kb serve` subprocess, over HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from cds_support import PUBLIC, Server

PV = "/cds-services/fsgs-csa-patient-view"


@pytest.mark.parametrize("path", [PV + "/", "/cds-services/", PV + "/feedback/", "/healthz/"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_trailing_slash_is_an_unknown_path_not_a_redirect(server: Server, ehr: Any, path: str, method: str) -> None:
    headers = {"Authorization": "Bearer " + ehr.signer.token(PUBLIC + path), "Host": "evil.example"}
    answer = server.client.request(method, path, json={}, headers=headers, follow_redirects=False)
    assert answer.status_code == 404, (answer.status_code, answer.headers)
    assert "location" not in answer.headers
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "not-found", body
    assert "evil.example" not in answer.text
