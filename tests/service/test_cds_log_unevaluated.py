"""Rows of the decision log that hold no result (a rejected call, an order-sign call without a
cyclosporine draft, one whose drafts were all set aside) have nothing to replay, but their columns
must still say so: `replay --decision-log` once passed them unchecked, so a result deleted from an
`evaluated` row, a rule's card added to a `no_cyclosporine_draft` row, or a `rejected_400` row
relabelled `evaluated` replayed as "100 % identical", exit 0 (review 4, item 5). Each is now that
row's `unreadable`, exit 1; the untouched rows are still `not_evaluated`. Real service, real
SQLite file, the real CLI in a subprocess."""

from __future__ import annotations

import copy
import json
import sqlite3
from collections.abc import Callable
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
OS = "fsgs-csa-order-sign"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ANOTHER_PATIENTS_DRAFT = {
    "resourceType": "MedicationRequest",
    "id": "d-other",
    "status": "draft",
    "intent": "order",
    "subject": {"reference": "Patient/someone-else"},
    "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "3008"}]},
    "dosageInstruction": [
        {
            "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": 150, "unit": "mg", "system": "http://unitsofmeasure.org"}}],
        }
    ],
}


@pytest.fixture(scope="module")
def logged(server: Server, ehr: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """A copy of the service's decision log, and the rows of four calls made now by their kind."""
    templates = {s["id"]: s["prefetch"] for s in signed_call(server, ehr, "/cds-services").json()["services"]}
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    calls = {
        "evaluated": (PV, hook_request("patient-view", pid, prefetch_for(templates[PV], bundle, pid)), 200),
        "no_draft": (
            OS,
            hook_request(
                "order-sign",
                pid,
                prefetch_for(templates[OS], bundle, pid),
                draftOrders={"resourceType": "Bundle", "type": "collection", "entry": []},
            ),
            200,
        ),
        "not_checked": (
            OS,
            hook_request(
                "order-sign",
                pid,
                prefetch_for(templates[OS], bundle, pid),
                draftOrders={
                    "resourceType": "Bundle",
                    "type": "collection",
                    "entry": [{"resource": copy.deepcopy(ANOTHER_PATIENTS_DRAFT)}],
                },
            ),
            200,
        ),
        "rejected": (PV, hook_request("order-sign", pid, None), 400),  # the wrong hook for this service
    }
    for service, body, status in calls.values():
        assert signed_call(server, ehr, f"/cds-services/{service}", body).status_code == status
    copied = tmp_path_factory.mktemp("log") / "decisions.sqlite"
    source = sqlite3.connect(server.log.parent / "decisions.sqlite")
    target = sqlite3.connect(copied)
    try:
        source.backup(target)
        rows = {
            kind: target.execute(
                "SELECT id FROM decisions WHERE hook_instance = ?", (body["hookInstance"],)
            ).fetchone()[0]
            for kind, (_, body, _) in calls.items()
        }
        statuses = {
            kind: target.execute("SELECT status FROM decisions WHERE id = ?", (r,)).fetchone()[0]
            for kind, r in rows.items()
        }
        cards = target.execute("SELECT rule_id FROM cards WHERE decision = ?", (rows["not_checked"],)).fetchall()
    finally:
        source.close()
        target.close()
    assert statuses == {
        "evaluated": "evaluated",
        "no_draft": "no_cyclosporine_draft",
        "not_checked": "no_cyclosporine_draft",
        "rejected": "rejected_400",
    }, statuses
    assert cards == [("ORDER_NOT_CHECKED",)], cards
    return copied, rows


def test_rows_without_a_result_replay_as_not_evaluated(logged: tuple[Path, dict[str, int]]) -> None:
    """Untouched: nothing to evaluate, also the row with the ORDER_NOT_CHECKED card; exit 0."""
    run, verdicts = replay_log(logged[0])
    assert run.returncode == 0, run.stdout
    rows = logged[1]
    assert verdicts[rows["evaluated"]]["verdict"] == "identical"
    for kind in ("no_draft", "not_checked", "rejected"):
        assert verdicts[rows[kind]]["verdict"] == "not_evaluated", (kind, verdicts[rows[kind]])


def _result_removed(con: sqlite3.Connection, rows: dict[str, int]) -> None:
    con.execute("UPDATE decisions SET result = NULL WHERE id = ?", (rows["evaluated"],))


def _rule_card_added(con: sqlite3.Connection, rows: dict[str, int]) -> None:
    row = rows["no_draft"]
    con.execute("INSERT INTO cards VALUES (?, 'forged-uuid', 'CSA-DOSE-WITHIN', '0.1.3', 'info')", (row,))
    con.execute("UPDATE decisions SET cards = ? WHERE id = ?", (json.dumps(["forged-uuid"]), row))


def _rule_card_beside_order_not_checked(con: sqlite3.Connection, rows: dict[str, int]) -> None:
    row = rows["not_checked"]
    (listed,) = con.execute("SELECT cards FROM decisions WHERE id = ?", (row,)).fetchone()
    con.execute("INSERT INTO cards VALUES (?, 'forged-uuid', 'CSA-DOSE-EXCEEDS', '0.1.3', 'warning')", (row,))
    con.execute("UPDATE decisions SET cards = ? WHERE id = ?", (json.dumps([*json.loads(listed), "forged-uuid"]), row))


def _rejected_relabelled(con: sqlite3.Connection, rows: dict[str, int]) -> None:
    con.execute("UPDATE decisions SET status = 'evaluated' WHERE id = ?", (rows["rejected"],))


def _order_not_checked_on_a_rejected_row(con: sqlite3.Connection, rows: dict[str, int]) -> None:
    con.execute("UPDATE cards SET decision = ? WHERE decision = ?", (rows["rejected"], rows["not_checked"]))
    (listed,) = con.execute("SELECT cards FROM decisions WHERE id = ?", (rows["not_checked"],)).fetchone()
    con.execute("UPDATE decisions SET cards = ? WHERE id = ?", (listed, rows["rejected"]))
    con.execute("UPDATE decisions SET cards = '[]' WHERE id = ?", (rows["not_checked"],))


def _decision_id_given(con: sqlite3.Connection, rows: dict[str, int]) -> None:
    con.execute("UPDATE decisions SET decision_id = ? WHERE id = ?", ("0" * 32, rows["no_draft"]))


FORGERIES = [
    (_result_removed, "evaluated", 'status "evaluated", which a row without a result cannot have'),
    (_rule_card_added, "no_draft", "a card for CSA-DOSE-WITHIN, which no call without a decision sends"),
    (_rule_card_beside_order_not_checked, "not_checked", "a card for CSA-DOSE-EXCEEDS"),
    (_rejected_relabelled, "rejected", 'status "evaluated", which a row without a result cannot have'),
    (_order_not_checked_on_a_rejected_row, "rejected", "a card for ORDER_NOT_CHECKED"),
    (_decision_id_given, "no_draft", "decision_id column"),
]


@pytest.mark.parametrize(("edit", "kind", "words"), FORGERIES, ids=[f[0].__name__.strip("_") for f in FORGERIES])
def test_a_row_without_a_result_that_says_otherwise_is_unreadable(
    logged: tuple[Path, dict[str, int]],
    tmp_path: Path,
    edit: Callable[[sqlite3.Connection, dict[str, int]], None],
    kind: str,
    words: str,
) -> None:
    run, verdicts = replay_log(forged_log(logged, tmp_path, edit))
    report = verdicts[logged[1][kind]]
    assert report["verdict"] == "unreadable", report
    assert report["problem"].startswith("a row without a result that says otherwise: "), report
    assert words in report["problem"], report
    assert run.returncode == 1, run.stdout
    others = {k: r for k, r in logged[1].items() if k != kind}
    assert all(verdicts[r]["verdict"] in ("identical", "not_evaluated") for r in others.values()), verdicts
