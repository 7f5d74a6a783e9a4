"""Feedback that contradicts its card is refused; `feedback-report` counts what is left honestly and
prints nothing a feedback item can forge.

CDS Hooks 2.0 (Feedback): a user accepts or overrides a card, typically once; an override reason is
one of the card's `overrideReasons`. Where the decision log has the card, the service refuses (the
whole request, nothing written) a card both accepted and overridden (409), a reason the card did
not offer and an override of a card that offered none (400), and feedback on a card it never sent
(404). The same outcome again is written (a retried POST) and counted once. Contradictions the
service could not check (in a log written before it checked) are counted apart in the report, not
as feedback.

A real `fsgs-kb serve` of its own (so the report's counts are this test's), over HTTP."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from cds_support import PUBLIC, Server, example, hook_request, patient_bundle, patient_id, prefetch_for, write_config

PV = "fsgs-csa-patient-view"
FEEDBACK = f"/cds-services/{PV}/feedback"
FORGED = "\x1b[31mRED\nCSA-FAKE v9: 99 cards, 99 with feedback"


@pytest.fixture(scope="module")
def own(ehr: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("feedback")
    running = Server(write_config(work / "cds.yaml", ehr.issuers()[:1]))
    yield running
    running.stop()


def post(server: Server, ehr: Any, path: str, body: dict[str, Any]) -> Any:
    return server.client.post(path, json=body, headers={"Authorization": "Bearer " + ehr.signer.token(PUBLIC + path)})


def feedback(server: Server, ehr: Any, *items: dict[str, Any]) -> Any:
    stamped = [{"outcomeTimestamp": "2026-11-30T10:00:00Z", **item} for item in items]
    return post(server, ehr, FEEDBACK, {"feedback": stamped})


def rows(server: Server) -> int:
    with sqlite3.connect(server.log.parent / "decisions.sqlite") as db:
        return int(db.execute("SELECT count(*) FROM feedback").fetchone()[0])


def report(server: Server) -> str:
    db = server.log.parent / "decisions.sqlite"
    run = subprocess.run([sys.executable, "-m", "fsgs_kb", "feedback-report", str(db)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_feedback_checked_against_its_card_and_reported_once(own: Server, ehr: Any) -> None:
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    headers = {"Authorization": "Bearer " + ehr.signer.token(PUBLIC + "/cds-services")}
    templates = next(s for s in own.client.get("/cds-services", headers=headers).json()["services"] if s["id"] == PV)
    answer = post(
        own,
        ehr,
        f"/cds-services/{PV}",
        hook_request("patient-view", pid, prefetch_for(templates["prefetch"], bundle, pid)),
    )
    cards = {c["source"]["topic"]["code"]: c for c in answer.json()["cards"]}
    warning, info = cards["CSA-DOSE-EXCEEDS"], cards["CSA-MONITOR-BP"]
    assert "overrideReasons" not in info
    reason = {**warning["overrideReasons"][0], "display": FORGED}  # a known code, a display of its own
    override = {"card": warning["uuid"], "outcome": "overridden", "overrideReason": {"reason": reason}}
    for _ in range(5):  # a retried POST, a second click: written, counted once
        assert feedback(own, ehr, override).status_code == 200

    refused = [
        (feedback(own, ehr, {"card": warning["uuid"], "outcome": "accepted"}), 409, "other outcome"),
        (
            feedback(own, ehr, {**override, "overrideReason": {"reason": {**reason, "code": "made-up"}}}),
            400,
            "not one of the card's overrideReasons",
        ),
        (feedback(own, ehr, {"card": info["uuid"], "outcome": "overridden"}), 400, "offered no override reasons"),
        (  # within one request too; the valid first item is not written either
            feedback(
                own, ehr, {"card": info["uuid"], "outcome": "accepted"}, {"card": info["uuid"], "outcome": "overridden"}
            ),
            409,
            "feedback[1]",
        ),
    ]
    for answer, status, words in refused:
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"] == "application/json"
        body = answer.json()
        assert body["resourceType"] == "OperationOutcome" and words in body["issue"][0]["diagnostics"], body
    assert rows(own) == 5

    # cards the service never sent are refused (404, nothing written); a log written before the
    # service checked may hold such items: their contradictions are counted apart in the report
    unknown = {
        "card": "not-a-card-of-ours",
        "outcome": "overridden",
        "overrideReason": {"reason": {"code": FORGED, "display": FORGED}},
    }
    assert feedback(own, ehr, unknown).status_code == 404
    assert rows(own) == 5
    with sqlite3.connect(own.log.parent / "decisions.sqlite") as db:  # as a log written before the checks
        db.executemany(
            "INSERT INTO feedback (time, service, card, outcome, override_code, override_display) "
            "VALUES ('2026-01-01T00:00:00Z', ?, ?, ?, ?, ?)",
            [
                (PV, "not-a-card-of-ours", "overridden", FORGED, FORGED),
                (PV, "other-unknown", "accepted", None, None),
                (PV, "other-unknown", "overridden", None, None),
            ],
        )
        db.execute(
            "INSERT INTO feedback (time, service, card, decision, rule_id, rule_version, outcome) "
            "SELECT '2026-01-01T00:00:00Z', ?, uuid, decision, rule_id, rule_version, 'overridden' "
            "FROM cards WHERE uuid = ?",
            (PV, info["uuid"]),
        )

    text = report(own)
    lines = text.splitlines()
    head = "; 9 feedback items: 4 duplicates ignored (the same card's same outcome counts once), "
    assert lines[0].endswith(head + "3 contradictory not counted"), lines[0]
    dose = next(line for line in lines if line.startswith("CSA-DOSE-EXCEEDS v"))
    assert "1 with feedback: 0 accepted, 1 overridden" in dose
    assert (
        f"    overridden: {warning['overrideReasons'][0]['display']} × 1" in lines
    )  # the card's display, not the one sent
    bp = next(line for line in lines if line.startswith("CSA-MONITOR-BP v"))
    assert "0 with feedback" in bp and "1 contradictory (not counted)" in bp
    unknown_line = next(line for line in lines if line.startswith("(unknown card)"))
    assert "1 overridden" in unknown_line and "2 contradictory (not counted)" in unknown_line
    assert "\x1b" not in text and not any(line.startswith("CSA-FAKE") for line in lines)
    assert "    overridden: \\x1b[31mRED\\x0aCSA-FAKE v9: 99 cards, 99 with feedback × 1" in lines
