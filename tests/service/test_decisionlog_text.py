"""`fsgs-kb replay --decision-log` as text (hostile sweep g): a hookInstance or service holding a
newline or ESC was printed raw (an edited log could add a fake `changed:` line), and a `changed`
row whose outcomes are all the same but one field differs (here `decision.masked`: the stored
input not masked as the service masks it) printed `changed: row 1 (…): ` with nothing after it.
The log is written by the service's own writer (service/decisionlog.py), the replay is the real
CLI in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fsgs_kb import load
from fsgs_kb.service.decisionlog import CardRow, DecisionLog, card_uuid

ROOT = Path(__file__).resolve().parents[2]
FORGED = "\nchanged: row 99 (forged): CSA-FAKE not_fired → fired"


def _log(path: Path) -> None:
    kb = load()
    record = json.loads((ROOT / "examples" / "dose-above-ceiling.json").read_text(encoding="utf-8"))
    result = kb.evaluate(record, detail="standard")
    result["decision"]["input"] = record  # stored as it came, not masked as the service stores it
    decision = result["decision"]
    cards = [CardRow(card_uuid(decision["decision_id"], r), r, "0.1.3", "warning") for r in result["advice"]]
    log = DecisionLog(path, None)
    try:
        log.record_decision(
            hook_instance=FORGED,
            service="\x1b[2Jfsgs-csa-patient-view",
            hook="patient-view",
            patient=record["id"],
            kb={
                "id": decision["kb"]["id"],
                "version": decision["kb"]["version"],
                "fingerprint": decision["kb"]["fingerprint"],
            },
            result=result,
            status=result["status"],
            cards=cards,
        )
    finally:
        log.close()


def _replay(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fsgs_kb", "replay", "--decision-log", str(db), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_text_report_escapes_the_log_and_says_what_differs(tmp_path: Path) -> None:
    db = tmp_path / "decisions.sqlite"
    _log(db)
    (report,) = json.loads(_replay(db, "--format", "json").stdout)["decisions"]
    assert report["verdict"] == "changed" and not report["changes"], report
    assert report["differs"]["fields"] == ["decision.masked"], report
    run = _replay(db)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    lines = run.stdout.splitlines()
    assert not any(line.startswith("changed: row 99") for line in lines), lines
    assert "\x1b" not in run.stdout
    (line,) = [line for line in lines if line.startswith("changed: row 1 ")]
    assert "\\x1b[2Jfsgs-csa-patient-view, hookInstance \\x0achanged: row 99 (forged)" in line, line
    assert line.endswith("): the same outcomes; differs in decision.masked"), line
