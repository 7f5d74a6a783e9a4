"""A refused call leaves a row in the decision log: an auditor sees that an EHR tried and was
turned away, when, at which service, with which status and why, and never the untrusted body.

Before, a feedback call the service refused (415 for its Content-Type, 408 for a body that did not
arrive, 400 for a body or an item it could not take, 401 for its token, 413 for its size, 404 and
409 from the log's checks) wrote nothing at all, and a hook call whose token the gate refused (401)
wrote nothing either, while every other refused hook call had its `rejected_<status>` row. Now a
refused feedback call is a `feedback_refused` row (time, service, status, reason), which
`feedback-report` counts apart (`N feedback calls refused, nothing of them counted (401
Unauthorized × 1, …)`), and a refused token on a hook call is a `rejected_401` decision row whose
note is the gate's reason (the answer itself stays the fixed 401). A path naming no service is no
call to one: no row, as for any unknown path.

A real `fsgs-kb serve` of this module's (its own log, so the counts are this test's), over HTTP and
raw sockets on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cds_support import PUBLIC, Server, Signer, hook_request, iter_rows, write_config

PV = "fsgs-csa-patient-view"
FEEDBACK = f"/cds-services/{PV}/feedback"
MARKER = "body-text-never-logged-7f3a"  # in every refused body: it must be in no row
LIMIT = 30.0


@pytest.fixture(scope="module")
def own(ehr: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("refused")
    config = write_config(work / "cds.yaml", ehr.issuers()[:1], read_timeout_seconds=1, max_request_bytes=4096)
    running = Server(config)
    yield running
    running.stop()


def db_of(server: Server) -> Path:
    return server.log.parent / "decisions.sqlite"


def refused_rows(server: Server) -> list[tuple[Any, ...]]:
    return list(iter_rows(db_of(server), "SELECT time, service, status, reason FROM feedback_refused ORDER BY id"))


def item(**fields: Any) -> dict[str, Any]:
    return {
        "card": "00000000-0000-0000-0000-000000000000",
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-30T10:00:00Z",
        "overrideReason": {"userComment": MARKER},
        **fields,
    }


def post(server: Server, path: str, content: bytes, token: str | None, **headers: str) -> Any:
    sent = {"Authorization": f"Bearer {token}"} if token else {}
    return server.client.post(path, content=content, headers={**sent, **headers})


def slow_body(server: Server, token: str, path: str) -> bytes:
    """A POST whose body stops after 20 bytes: the server's 408 (read_timeout_seconds 1)."""
    body = json.dumps({"feedback": [item()]}).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=LIMIT) as sock:
        sock.sendall(head.encode() + body[:20])
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_each_refused_feedback_call_leaves_one_row_without_its_body(own: Server, ehr: Any) -> None:
    aud = PUBLIC + FEEDBACK

    def send(body: Any, token: str | None = None, **headers: str) -> Any:
        content = body if isinstance(body, bytes) else json.dumps({"feedback": [body]}).encode()
        return post(own, FEEDBACK, content, token or ehr.signer.token(aud), **headers)

    good = item()
    calls = [
        (415, lambda: send(good, **{"Content-Type": "application/xml"})),
        (400, lambda: send(b'{"feedback": [' + MARKER.encode())),
        (400, lambda: send(item(outcome="maybe"))),
        (401, lambda: send(good, "x" + ehr.signer.token(aud))),
        (401, lambda: send(good, Signer(kid="stranger").token(aud))),
        (413, lambda: send(item(card=MARKER * 300))),
        (404, lambda: send(good)),  # a card this service never sent
    ]
    answered = []
    for status, call in calls:
        answer = call()
        assert answer.status_code == status, (status, answer.text)
        answered.append(answer.json()["issue"][0]["diagnostics"])
    received = slow_body(own, ehr.signer.token(aud), FEEDBACK)
    assert received.startswith(b"HTTP/1.1 408 "), received[:200]

    rows = refused_rows(own)
    assert [r[2] for r in rows] == [s for s, _ in calls] + [408]
    assert {r[1] for r in rows} == {PV}
    assert all(r[0].endswith("Z") and r[0][:2] == "20" for r in rows)  # when: an instant, UTC
    # the reason: what the EHR was told, or for a token the gate's own reason (the answer says only 401)
    for (status, _), said, row in zip(calls, answered, rows, strict=False):
        if status == 401:
            assert row[3].startswith("token refused: ") and row[3] != said, row
        else:
            assert row[3] == said, row
    assert rows[3][3] == "token refused: malformed token" and rows[4][3] == "token refused: unknown kid"
    assert rows[-1][3].startswith("the request body did not arrive within 1 s (20 of ")
    assert MARKER.encode() not in db_of(own).read_bytes()
    assert not list(iter_rows(db_of(own), "SELECT id FROM feedback"))  # nothing of them written as feedback


def test_a_hook_call_whose_token_is_refused_leaves_a_rejected_401_row(own: Server, ehr: Any) -> None:
    path = f"/cds-services/{PV}"
    body = json.dumps(hook_request("patient-view", "p1", {"marker": MARKER})).encode()
    answer = post(own, path, body, Signer(kid="stranger").token(PUBLIC + path))
    assert answer.status_code == 401
    assert answer.json()["issue"][0]["diagnostics"] == "unauthorized"  # the answer says no more than before
    sql = "SELECT hook_instance, service, patient, note FROM decisions WHERE status = 'rejected_401'"
    rows = list(iter_rows(db_of(own), sql))
    assert rows == [("", PV, None, "token refused: unknown kid")]  # the body unread: no hookInstance, no patient
    assert MARKER.encode() not in db_of(own).read_bytes()


def test_a_path_naming_no_service_leaves_no_row(own: Server, ehr: Any) -> None:
    before = (
        len(refused_rows(own)),
        len(list(iter_rows(db_of(own), "SELECT id FROM decisions"))),
    )
    for path in ("/cds-services/no-such-service", "/cds-services/no-such-service/feedback"):
        assert post(own, path, b"{}", ehr.signer.token(PUBLIC + path)).status_code in (400, 404)
        assert post(own, path, b"{}", "x").status_code == 401
    after = (len(refused_rows(own)), len(list(iter_rows(db_of(own), "SELECT id FROM decisions"))))
    assert after == before


def test_the_feedback_report_counts_refused_calls_apart(own: Server, ehr: Any) -> None:
    """After the tests above: the report's feedback counts are unchanged (none was written) and
    one more line says how many calls were refused, by status."""
    counts = {}
    for status, count in iter_rows(db_of(own), "SELECT status, count(*) FROM feedback_refused GROUP BY status"):
        counts[str(status)] = count
    assert counts, "the tests above refused feedback calls"
    text = subprocess.run(
        [sys.executable, "-m", "fsgs_kb", "feedback-report", str(db_of(own))], capture_output=True, text=True
    )
    assert text.returncode == 0, text.stderr
    total = sum(counts.values())
    assert "; 0 feedback items: " in text.stdout.splitlines()[0]
    assert f"{total} feedback calls refused, nothing of them counted (" in text.stdout
    assert "401 Unauthorized × 2" in text.stdout and "415 Unsupported Media Type × 1" in text.stdout
    run = subprocess.run(
        [sys.executable, "-m", "fsgs_kb", "feedback-report", str(db_of(own)), "--format", "json"],
        capture_output=True,
        text=True,
    )
    summary = json.loads(run.stdout)
    assert summary["refused"] == total and summary["refused_by_status"] == counts
    assert summary["feedback"] == 0


def test_a_log_written_before_refused_calls_were_kept_still_reads(own: Server, tmp_path: Path) -> None:
    """A log without the feedback_refused table (written by an earlier service) reads as having no
    refused calls; one whose table holds what the service never writes is refused, located."""
    old = tmp_path / "old.sqlite"
    source, target = sqlite3.connect(db_of(own)), sqlite3.connect(old)
    try:
        source.backup(target)
        target.execute("DROP TABLE feedback_refused")
        target.commit()
    finally:
        source.close()
        target.close()
    run = subprocess.run([sys.executable, "-m", "fsgs_kb", "feedback-report", str(old)], capture_output=True, text=True)
    assert run.returncode == 0 and "refused" not in run.stdout, run.stdout + run.stderr
    con = sqlite3.connect(old)
    try:
        columns = "id INTEGER PRIMARY KEY, time TEXT NOT NULL, service TEXT NOT NULL, status INTEGER, reason TEXT"
        con.execute(f"CREATE TABLE feedback_refused ({columns})")
        con.execute("INSERT INTO feedback_refused (time, service, status, reason) VALUES ('t', 's', 200, 'r')")
        con.commit()
    finally:
        con.close()
    run = subprocess.run([sys.executable, "-m", "fsgs_kb", "feedback-report", str(old)], capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert "feedback_refused row 1: its status is not an HTTP error status (400 to 599)" in run.stderr


def test_refused_tokens_write_a_bounded_number_of_rows(ehr: Any, tmp_path: Path) -> None:
    """A refused token needs no credentials: without a bound, anyone who reaches the port could
    grow the decision log (and make the worker write to SQLite) as fast as they send requests.
    A worker writes at most PER_MINUTE rows of refused tokens a minute; a signed call's row is
    never held back."""
    from fsgs_kb.service.refusals import PER_MINUTE

    server = Server(write_config(tmp_path / "cds.yaml", ehr.issuers()[:1]))
    try:
        path = f"/cds-services/{PV}"
        body = json.dumps(hook_request("patient-view", "p1", {})).encode()
        for _ in range(PER_MINUTE + 15):
            assert post(server, path, body, "not-a-token").status_code == 401
            assert post(server, FEEDBACK, b'{"feedback": []}', "not-a-token").status_code == 401
        refused = list(iter_rows(db_of(server), "SELECT id FROM decisions WHERE status = 'rejected_401'"))
        assert len(refused) + len(refused_rows(server)) == PER_MINUTE
        signed = post(server, path, body, ehr.signer.token(PUBLIC + path))  # a signed call without its prefetch
        assert signed.status_code == 412, signed.text
        assert list(iter_rows(db_of(server), "SELECT count(*) FROM decisions WHERE status != 'rejected_401'")) == [(1,)]
    finally:
        server.stop()


def test_the_next_row_after_a_full_minute_says_how_many_were_not_written() -> None:
    from fsgs_kb.service.refusals import RefusalBudget

    now = [1000.0]
    budget = RefusalBudget(per_minute=2, clock=lambda: now[0])
    assert [budget.note("token refused: unknown kid") for _ in range(5)] == [
        "token refused: unknown kid",
        "token refused: unknown kid",
        None,
        None,
        None,
    ]
    now[0] += 60
    again = budget.note("token refused: expired")
    assert again is not None and again.startswith("token refused: expired (and 3 more refused tokens since 20")
    assert again.endswith("not logged one by one)")
    assert budget.note("token refused: expired") == "token refused: expired"  # counted once, then plain again
