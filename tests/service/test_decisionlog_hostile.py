"""A decision log edited into something the service never writes: `fsgs-kb replay --decision-log`
and `fsgs-kb feedback-report` read it defensively. A table that is a view (a recursive one that
never ends), lacks the service's columns, or holds a value of another type (SQLite keeps any type
in any column) is a located error, exit 2, naming table, row and column: never exit 3 (a
TypeError in sorting, `no such column`), never a hang. A real log written by the service's own
writer (DecisionLog), made hostile with SQLite, read by the real CLI in a subprocess."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import fsgs_kb
from fsgs_kb.engine.errors import KBErrors
from fsgs_kb.service import decisionlog
from fsgs_kb.service.decisionlog import CardRow, DecisionLog, card_uuid

ROOT = Path(__file__).resolve().parents[2]
PV = "fsgs-csa-patient-view"


@pytest.fixture(scope="module")
def good_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One evaluated decision with its cards and one feedback item, as the service writes them."""
    kb = fsgs_kb.load()
    record = json.loads((ROOT / "examples" / "dose-above-ceiling.json").read_text())
    result = kb.evaluate(record, include_input=True)  # as service/hooks.py does
    did = result["decision"]["decision_id"]
    path = tmp_path_factory.mktemp("log") / "decisions.sqlite"
    log = DecisionLog(path, None)
    try:
        cards = [CardRow(card_uuid(did, r), r, kb.version, "warning") for r in result["advice"]]
        ident = {"id": kb.id, "version": kb.version, "fingerprint": kb.fingerprint}
        log.record_decision(
            hook_instance="h1", service=PV, hook="patient-view", patient=result.get("patient_id"),
            kb=ident, result=result, status=result["status"], cards=cards,
        )  # fmt: skip
        item = {"card": cards[0].uuid, "outcome": "accepted", "outcomeTimestamp": "2026-01-01T00:00:00Z"}
        log.record_feedback(PV, [item])
    finally:
        log.close()
    return path


def hostile(good: Path, tmp_path: Path, *statements: str) -> Path:
    path = tmp_path / "hostile.sqlite"
    source, target = sqlite3.connect(good), sqlite3.connect(path)
    try:
        source.backup(target)
        for statement in statements:
            target.execute(statement)
        target.commit()
    finally:
        source.close()
        target.close()
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fsgs_kb", *args], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )


def both(db: Path) -> list[subprocess.CompletedProcess[str]]:
    return [cli("replay", "--decision-log", str(db)), cli("feedback-report", str(db))]


def untyped(table: str, columns: str) -> tuple[str, ...]:
    """`table` made again without column types (as SQLite allows), holding the same rows."""
    return (
        f"CREATE TABLE old_{table} AS SELECT * FROM {table}",
        f"DROP TABLE {table}",
        f"CREATE TABLE {table} ({columns})",
        f"INSERT INTO {table} SELECT * FROM old_{table}",
        f"DROP TABLE old_{table}",
    )


CARDS = "decision, uuid, rule_id, rule_version, indicator"

CASES: dict[str, tuple[tuple[str, ...], str]] = {
    "card version null": (
        (*untyped("cards", CARDS), "UPDATE cards SET rule_version = NULL WHERE rowid = 1"),
        "error[service.decision_log_row] cards row 1: its rule_version is null, where the service writes text",
    ),
    "card rule an integer": (
        (*untyped("cards", CARDS), "UPDATE cards SET rule_id = 5 WHERE rowid = 1"),
        "error[service.decision_log_row] cards row 1: its rule_id is integer, where the service writes text",
    ),
    "feedback without its columns": (
        ("DROP TABLE feedback", "CREATE TABLE feedback (x)"),
        "error[service.decision_log] not a fsgs-kb decision log: its feedback table has no id column",
    ),
    "decisions reduced to id": (
        (
            "DROP TABLE cards",
            "DROP TABLE decisions",
            "CREATE TABLE decisions (id INTEGER PRIMARY KEY)",
            f"CREATE TABLE cards ({CARDS})",
        ),
        "error[service.decision_log] not a fsgs-kb decision log: its decisions table has no time column",
    ),
    "time a blob": (
        ("UPDATE decisions SET time = x'1b5b33316d'",),
        "error[service.decision_log_row] decisions row 1: its time is blob, where the service writes text",
    ),
    "outcome not one of the two": (
        ("UPDATE feedback SET outcome = 'maybe'",),
        "error[service.decision_log_row] feedback row 1: its outcome is not one of accepted, overridden",
    ),
    "feedback a view that never ends": (
        (
            "DROP TABLE feedback",
            "CREATE VIEW feedback AS WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
            "SELECT n AS id, 't' AS time, 's' AS service, 'c' AS card, 1 AS decision, 'R' AS rule_id, "
            "'v' AS rule_version, 'accepted' AS outcome, NULL AS override_system, NULL AS override_code, "
            "NULL AS override_display, NULL AS user_comment, NULL AS outcome_timestamp FROM r",
        ),
        "error[service.decision_log] not a fsgs-kb decision log: its feedback is a view, not a table",
    ),
    "feedback_refused a view that never ends": (
        (
            "DROP TABLE feedback_refused",
            "CREATE VIEW feedback_refused AS WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
            "SELECT n AS id, 't' AS time, 's' AS service, 401 AS status, 'r' AS reason FROM r",
        ),
        "error[service.decision_log] not a fsgs-kb decision log: its feedback_refused is a view, not a table",
    ),
    "refused call with status 200": (
        ("INSERT INTO feedback_refused (time, service, status, reason) VALUES ('t', 's', 200, 'r')",),
        "error[service.decision_log_row] feedback_refused row 1: its status is not an HTTP error status (400 to 599)",
    ),
    "a generated column": (
        (
            "ALTER TABLE cards RENAME COLUMN indicator TO old",
            "ALTER TABLE cards ADD COLUMN indicator GENERATED ALWAYS AS (old)",
        ),
        "error[service.decision_log] not a fsgs-kb decision log: its cards.indicator column is generated, not stored",
    ),
}


def test_the_log_as_written_is_read(good_log: Path) -> None:
    replay, report = both(good_log)
    assert replay.returncode == 0 and "1 identical" in replay.stdout, replay.stdout + replay.stderr
    assert report.returncode == 0 and "1 accepted" in report.stdout, report.stdout + report.stderr


@pytest.mark.parametrize("name", list(CASES))
def test_a_hostile_log_is_a_located_error(good_log: Path, tmp_path: Path, name: str) -> None:
    statements, said = CASES[name]
    db = hostile(good_log, tmp_path, *statements)
    for run in both(db):
        assert run.returncode == 2, run.stdout + run.stderr
        assert run.stderr.startswith(f"{db}: {said}"), run.stderr
        assert "Traceback" not in run.stderr and not run.stdout


def test_a_statement_past_the_step_budget_is_stopped(
    good_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backstop for whatever the schema checks let through: a query that runs on is stopped
    with a clear error. A feedback table of 3,000 rows for a card table of 3,000 and no index on
    the cards makes the report's per-item card look-up quadratic; with the budget made small the
    report stops, naming the reason."""
    db = hostile(good_log, tmp_path, "DROP INDEX cards_by_uuid")
    con = sqlite3.connect(db)
    try:
        card = con.execute("SELECT decision, uuid, rule_id, rule_version, indicator FROM cards").fetchone()
        rows = [(card[0], f"u{i}", *card[2:]) for i in range(3000)]
        con.executemany("INSERT INTO cards VALUES (?, ?, ?, ?, ?)", rows)
        con.executemany(
            "INSERT INTO feedback (time, service, card, decision, outcome) VALUES ('t', ?, ?, ?, 'accepted')",
            [(PV, f"u{i}", card[0]) for i in range(3000)],
        )
        con.commit()
    finally:
        con.close()
    monkeypatch.setattr(decisionlog, "STEP_FLOOR", 2_000_000)
    monkeypatch.setattr(decisionlog, "STEPS_PER_BYTE", 0)
    with pytest.raises(KBErrors) as caught:
        decisionlog.feedback_summary(db)
    assert "took more than 2,000,000 SQLite steps, and was stopped" in caught.value.errors[0].message
    monkeypatch.setattr(decisionlog, "STEP_FLOOR", 10**12)
    assert decisionlog.feedback_summary(db)["feedback"] == 3001  # the same file, within the budget


def test_an_unknown_column_type_or_an_extra_column_is_not_refused(good_log: Path, tmp_path: Path) -> None:
    """Columns the service does not write (added by a later version, or by hand) are not read,
    so not refused."""
    db = hostile(good_log, tmp_path, "ALTER TABLE decisions ADD COLUMN extra BLOB")
    replay, report = both(db)
    assert replay.returncode == 0 and report.returncode == 0, replay.stderr + report.stderr
