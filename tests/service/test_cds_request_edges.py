"""Two requests the routes or the body reader once answered in their framework's way:

- a path with a trailing slash (`POST /cds-services/fsgs-csa-patient-view/`) got Starlette's `307`
  to `http://<Host header>/…`, before the JWT gate, and a client re-sends the body there; the
  service never builds a URL from Host. It is an unknown path: 404, an OperationOutcome.
- a client that disconnects mid-body left a `starlette.requests.ClientDisconnect` traceback in the
  server log and no decision-log row; every hook call leaves a row (`rejected_499`, the status
  proxies give a request the client closed) and one log line, no traceback.

On the session's real `fsgs-kb serve` subprocess, over HTTP and a raw socket on 127.0.0.1."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from cds_support import PUBLIC, Server, iter_rows

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


def rejected_499(server: Server) -> int:
    db = server.log.parent / "decisions.sqlite"
    return len(list(iter_rows(db, "SELECT id FROM decisions WHERE status = 'rejected_499'")))


def test_a_client_that_disconnects_mid_body_leaves_a_row_and_no_traceback(server: Server, ehr: Any) -> None:
    before, seen = rejected_499(server), len(server.log_text())
    token = ehr.signer.token(PUBLIC + PV)
    head = (
        f"POST {PV} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head.encode() + b'{"hook": "patient-view", "hookInst')
        time.sleep(0.2)  # the server reads the part sent before the client goes (not a wait for an event)
    deadline = time.monotonic() + 20
    while rejected_499(server) == before and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the log file, bounded by the deadline
    assert rejected_499(server) == before + 1
    db = server.log.parent / "decisions.sqlite"
    (note,) = next(iter_rows(db, "SELECT note FROM decisions WHERE status = 'rejected_499' ORDER BY id DESC LIMIT 1"))
    assert note == "the client disconnected before the request body was complete (34 of 100000 bytes received)"
    text = server.log_text()[seen:]
    assert "Traceback" not in text and "ClientDisconnect" not in text, text
    assert f"499 POST {PV}: the client disconnected" in text
    assert server.client.get("/healthz").status_code == 200
