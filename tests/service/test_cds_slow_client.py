"""A client that sends its request slowly, or not at all, cannot hold a connection for ever.

uvicorn times out only an idle connection between requests (`timeout_keep_alive`, cancelled by
the first byte received): a connection that sent nothing, a head arriving a byte at a time
(slow-loris) or a body that never comes were held indefinitely. With `read_timeout_seconds` (1 s
here) a head begun and not finished gets 408, an OperationOutcome, and the connection is closed
(service/wire.py); a connection that sent nothing is closed without an answer; a body that does not
arrive in time gets 408 from the application, with the call's row (`rejected_408`).

Each test waits on the server's own answer (a blocking read, bounded by the socket's timeout),
never on a sleep; the trickling client sends a byte each time a 0.1 s wait for an answer ends
without one. On a real `fsgs-kb serve` subprocess of this module's, over raw sockets on 127.0.0.1."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cds_support import PUBLIC, Server, hook_request, iter_rows, write_config

PV = "/cds-services/fsgs-csa-patient-view"
LIMIT = 30.0  # seconds a test waits for the server at most: far past the 1 s it is given


@pytest.fixture(scope="module")
def slow_server(ehr: Any) -> Iterator[Server]:
    config = write_config(ehr.work / "cds-slow.yaml", ehr.issuers(), read_timeout_seconds=1)
    running = Server(config)
    yield running
    running.stop()


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=LIMIT)


def until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def outcome_408(received: bytes) -> str:
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 408 Request Timeout", received[:300]
    assert b"content-type: application/json" in [line.lower() for line in lines], head
    parsed = json.loads(body)
    assert parsed["resourceType"] == "OperationOutcome" and parsed["issue"][0]["code"] == "timeout", parsed
    return str(parsed["issue"][0]["diagnostics"])


def test_a_connection_that_sends_nothing_is_closed(slow_server: Server) -> None:
    start = time.monotonic()
    with connect(slow_server) as sock:
        assert until_closed(sock) == b""  # closed by the server, no answer owed
    assert time.monotonic() - start < LIMIT


def test_a_head_that_stops_half_way_gets_408(slow_server: Server) -> None:
    seen = len(slow_server.log_text())
    with connect(slow_server) as sock:
        part = f"POST {PV} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthor".encode()
        sock.sendall(part)
        said = outcome_408(until_closed(sock))
    assert said == f"the request line and headers did not arrive within 1 s ({len(part)} bytes received)"
    text = slow_server.log_text()[seen:]
    assert "408 from 127.0.0.1:" in text and "Traceback" not in text, text
    assert slow_server.client.get("/healthz").status_code == 200


def test_a_head_trickling_in_a_byte_at_a_time_is_not_waited_for(slow_server: Server) -> None:
    """Each byte arrives well within the 1 s, so a timer restarted by every byte never fires."""
    head = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: {'a' * 500}\r\n\r\n".encode()
    sent = 0
    with connect(slow_server) as sock:
        while not select.select([sock], [], [], 0.1)[0]:  # no answer yet: one more byte
            assert sent < len(head) - 1, "the whole head was sent without the server giving up"
            sock.sendall(head[sent : sent + 1])
            sent += 1
        said = outcome_408(until_closed(sock))
    assert said.startswith("the request line and headers did not arrive within 1 s (")
    assert sent < len(head) - 1


def test_a_kept_alive_connection_gets_the_same_bound_for_its_next_head(slow_server: Server) -> None:
    with connect(slow_server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while b'{"status":"ok"}' not in answer:
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 OK"), answer
        part = b"GET /healthz HTTP/1.1\r\nHo"  # the next request begins, and stops
        sock.sendall(part)
        said = outcome_408(until_closed(sock))
    assert said == f"the request line and headers did not arrive within 1 s ({len(part)} bytes received)"


def test_a_body_that_does_not_arrive_gets_408_and_a_row(slow_server: Server, ehr: Any) -> None:
    seen = len(slow_server.log_text())
    body = json.dumps(hook_request("patient-view", "p1", {})).encode()
    token = ehr.signer.token(PUBLIC + PV)
    head = (
        f"POST {PV} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with connect(slow_server) as sock:
        sock.sendall(head.encode() + body[:20])
        received = until_closed(sock)
    said = outcome_408(received)
    assert said == f"the request body did not arrive within 1 s (20 of {len(body)} bytes received)"
    db = slow_server.log.parent / "decisions.sqlite"
    notes = [r[0] for r in iter_rows(db, "SELECT note FROM decisions WHERE status = 'rejected_408'")]
    assert notes == [said]
    text = slow_server.log_text()[seen:]
    assert f"408 POST {PV}: {said}" in text and "Traceback" not in text, text


def test_a_prompt_client_is_answered_as_before(slow_server: Server, ehr: Any) -> None:
    headers = {"Authorization": "Bearer " + ehr.signer.token(PUBLIC + PV)}
    assert slow_server.client.post(PV, json=hook_request("patient-view", "p1", {}), headers=headers).status_code == 412
