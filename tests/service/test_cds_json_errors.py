"""Every error answer of the service is JSON (an OperationOutcome, application/json), also the ones
Starlette makes itself (404, 405) and a refused CORS preflight (400); a request body that gives a
key twice is refused naming it, as the command line refuses such a record. And the command line
names the path an error is about (`feedback-report /etc/passwd`), the command of a usage error
(`fsgs-kb replay: …`), and refuses a `--mask` pointer that no patient record can hold.

Each call goes over HTTP to the real `fsgs-kb serve` subprocess (the session's), as in
test_cds_hooks.py; the CLI runs as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from cds_support import PUBLIC, ROOT, Server

PV = "fsgs-csa-patient-view"


def outcome_of(answer: Any, status: int) -> str:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json", answer.headers
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome", body
    return str(body["issue"][0]["diagnostics"])


def signed(ehr: Any, path: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + ehr.signer.token(PUBLIC + path), "Content-Type": "application/json"}


def test_not_found_and_method_not_allowed_are_json(server: Server) -> None:
    assert "/nope" in outcome_of(server.client.get("/nope"), 404)
    assert "no handbook page" in outcome_of(server.client.get("/handbook/rules/NOPE.html"), 404)
    answer = server.client.get(f"/cds-services/{PV}")  # the hook takes POST only
    assert "Method Not Allowed" in outcome_of(answer, 405) and answer.headers["allow"] == "POST"
    outcome_of(server.client.delete("/cds-services"), 405)


def test_a_refused_cors_preflight_is_json(server: Server) -> None:
    answer = server.client.options(
        f"/cds-services/{PV}",
        headers={"Origin": "https://evil.example.org", "Access-Control-Request-Method": "POST"},
    )
    assert "CORS preflight refused: Disallowed CORS origin" in outcome_of(answer, 400)


@pytest.mark.parametrize(
    ("path", "text", "key"),
    [
        (
            f"/cds-services/{PV}",
            '{"hook": "patient-view", "hook": "order-sign", "hookInstance": "x", "context": {}}',
            "hook",
        ),
        (
            f"/cds-services/{PV}",
            '{"hook": "patient-view", "hookInstance": "x", "context": {"patientId": "a", "patientId": "b"}}',
            "patientId",
        ),
        (f"/cds-services/{PV}/feedback", '{"feedback": [{"card": "a", "card": "b", "outcome": "accepted"}]}', "card"),
    ],
)
def test_a_key_given_twice_in_a_body_is_refused(server: Server, ehr: Any, path: str, text: str, key: str) -> None:
    answer = server.client.post(path, content=text.encode(), headers=signed(ehr, path))
    assert f'gives key "{key}" twice in one object' in outcome_of(answer, 400)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fsgs_kb", *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_errors_name_the_path_or_the_command() -> None:
    run = cli("feedback-report", "/etc/passwd")
    assert run.returncode == 2 and run.stderr.startswith("/etc/passwd: error[service.decision_log] not a fsgs-kb")
    run = cli("replay")
    assert run.returncode == 2 and run.stderr.startswith("fsgs-kb replay: error[cli.replay] give either"), run.stderr
    assert "<input>" not in run.stderr


@pytest.mark.parametrize("pointer", ["/nope/deep", "/weight_kg/value", "/cyclosporine/nope"])
def test_a_mask_no_record_can_hold_is_refused(pointer: str) -> None:
    example = str(ROOT / "examples" / "dose-above-ceiling.json")
    run = cli("evaluate", "--include-input", "--mask", pointer, example)
    assert run.returncode == 2 and run.stdout == "", run.stdout
    assert f"fsgs-kb evaluate: error[cli.mask] --mask {pointer!r} names no value" in run.stderr
    ok = cli(
        "evaluate", "--include-input", "--mask", "/id", "--mask", "/ext/site/mrn", "--mask", "/cyclosporine", example
    )
    assert ok.returncode in (0, 1) and json.loads(ok.stdout)["decision"]["masked"] == [
        "/id",
        "/ext/site/mrn",
        "/cyclosporine",
    ]
