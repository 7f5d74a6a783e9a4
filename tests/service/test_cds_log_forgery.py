"""A decision log edited after the fact: `fsgs-kb replay --decision-log` must not call a row
identical when its result is not the decision that row records (results swapped between rows:
each row's patient, input hash, decision id and cards contradict the result), and a row whose
result cannot be read (nested 100,000 levels deep) is that row's `unreadable`, with the reason,
while every other row is still replayed: never a RecursionError, never exit 3. Real service, real
SQLite file, the real CLI in a subprocess."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from cds_support import (
    Server,
    example,
    forged_log,
    hook_request,
    patient_bundle,
    patient_id,
    prefetch_for,
    replay_log,
    signed_call,
)

PV = "fsgs-csa-patient-view"
NAMES = ("dose-above-ceiling", "relapse-after-remission", "secondary-fsgs")


@pytest.fixture(scope="module")
def logged(server: Server, ehr: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """A copy of the service's decision log, and the rows of three patient-view calls made now."""
    templates = {s["id"]: s["prefetch"] for s in signed_call(server, ehr, "/cds-services").json()["services"]}
    instances = []
    for name in NAMES:
        bundle = patient_bundle(example(name))
        pid = patient_id(bundle)
        body = hook_request("patient-view", pid, prefetch_for(templates[PV], bundle, pid))
        assert signed_call(server, ehr, f"/cds-services/{PV}", body).status_code == 200
        instances.append(body["hookInstance"])
    copy = tmp_path_factory.mktemp("log") / "decisions.sqlite"
    source = sqlite3.connect(server.log.parent / "decisions.sqlite")
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
        rows = [
            target.execute("SELECT id FROM decisions WHERE hook_instance = ?", (h,)).fetchone()[0] for h in instances
        ]
    finally:
        source.close()
        target.close()
    return copy, rows


def test_the_untouched_copy_replays_identical(logged: tuple[Path, list[int]]) -> None:
    run, verdicts = replay_log(logged[0])
    assert run.returncode == 0, run.stdout
    assert all(verdicts[row]["verdict"] == "identical" for row in logged[1])


def test_results_swapped_between_rows_are_not_identical(logged: tuple[Path, list[int]], tmp_path: Path) -> None:
    def swap(con: sqlite3.Connection, rows: list[int]) -> None:
        (a,), (b,) = (con.execute("SELECT result FROM decisions WHERE id = ?", (r,)).fetchone() for r in rows[:2])
        con.execute("UPDATE decisions SET result = ? WHERE id = ?", (b, rows[0]))
        con.execute("UPDATE decisions SET result = ? WHERE id = ?", (a, rows[1]))

    run, verdicts = replay_log(forged_log(logged, tmp_path, swap))
    assert run.returncode == 1, run.stdout
    for row in logged[1][:2]:
        assert verdicts[row]["verdict"] == "unreadable", verdicts[row]
        assert "the row contradicts its result" in verdicts[row]["problem"]
        assert "decision_id column" in verdicts[row]["problem"] and "patient column" in verdicts[row]["problem"]
    assert verdicts[logged[1][2]]["verdict"] == "identical"


def test_a_card_row_of_another_decision_is_found(logged: tuple[Path, list[int]], tmp_path: Path) -> None:
    def move(con: sqlite3.Connection, rows: list[int]) -> None:  # the first call's cards claimed by the second
        con.execute("UPDATE cards SET decision = ? WHERE decision = ?", (rows[1], rows[0]))
        cards = con.execute("SELECT cards FROM decisions WHERE id = ?", (rows[0],)).fetchone()[0]
        con.execute("UPDATE decisions SET cards = '[]' WHERE id = ?", (rows[0],))
        theirs = json.loads(con.execute("SELECT cards FROM decisions WHERE id = ?", (rows[1],)).fetchone()[0])
        con.execute("UPDATE decisions SET cards = ? WHERE id = ?", (json.dumps(json.loads(cards) + theirs), rows[1]))

    run, verdicts = replay_log(forged_log(logged, tmp_path, move))
    assert run.returncode == 1
    assert verdicts[logged[1][1]]["verdict"] == "unreadable"
    assert "is not this decision's card" in verdicts[logged[1][1]]["problem"]


def test_a_result_nested_100000_deep_is_that_rows_unreadable(logged: tuple[Path, list[int]], tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000

    def nest(con: sqlite3.Connection, rows: list[int]) -> None:
        con.execute("UPDATE decisions SET result = ?, cards = ? WHERE id = ?", (deep, deep, rows[1]))

    run, verdicts = replay_log(forged_log(logged, tmp_path, nest))
    assert run.returncode == 1, run.stderr
    report = verdicts[logged[1][1]]
    assert report["verdict"] == "unreadable" and "nested" in report["problem"], report
    assert [verdicts[r]["verdict"] for r in (logged[1][0], logged[1][2])] == ["identical", "identical"]
