"""Malformed feedback items are refused (CDS Hooks 2.0 Feedback), 400 OperationOutcome naming
feedback[i] and the field, and nothing is written: outcomeTimestamp missing or not an instant (FHIR
R4: a date that exists, a zone from -14:00 to +14:00, second 60 only where a leap second can be), an
overrideReason on an accepted card, acceptedSuggestions that are not a list or name a suggestion
the card did not have (this service's cards have none), a userComment over the documented cap;
and a card of one service is not found through another service's feedback endpoint (404). Every
instant FHIR allows is taken, with any number of fraction digits, and logged as sent.

On the session's real `fsgs-kb serve` subprocess, over HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from cds_support import (
    Server,
    example,
    hook_request,
    iter_rows,
    patient_bundle,
    patient_id,
    prefetch_for,
    prefetch_templates,
    signed_call,
)

PV = "fsgs-csa-patient-view"
FEEDBACK = f"/cds-services/{PV}/feedback"
TS = "2026-11-30T10:00:00Z"


@pytest.fixture(scope="module")
def cards(server: Server, ehr: Any) -> list[dict[str, Any]]:
    templates = prefetch_templates(server, ehr)[PV]
    bundle = patient_bundle(example("dose-above-ceiling"))
    pid = patient_id(bundle)
    answer = signed_call(
        server, ehr, f"/cds-services/{PV}", hook_request("patient-view", pid, prefetch_for(templates, bundle, pid))
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json()["cards"])


def stored(server: Server) -> int:
    (count,) = next(iter_rows(server.log.parent / "decisions.sqlite", "SELECT count(*) FROM feedback"))
    return int(count)


def refused(server: Server, ehr: Any, item: dict[str, Any], path: str = FEEDBACK) -> str:
    before = stored(server)
    good = {"card": item["card"], "outcome": "accepted", "outcomeTimestamp": TS}
    answer = signed_call(server, ehr, path, {"feedback": [good, item]})
    assert stored(server) == before
    assert answer.json()["resourceType"] == "OperationOutcome", answer.text
    return f"{answer.status_code} {answer.json()['issue'][0]['diagnostics']}"


def test_malformed_items_are_refused(server: Server, ehr: Any, cards: list[dict[str, Any]]) -> None:
    plain = next(c for c in cards if not c.get("overrideReasons"))
    offered = next(c for c in cards if c.get("overrideReasons"))
    card = {"card": plain["uuid"], "outcome": "accepted"}
    for stamp in ("2023-02-30T00:00:00Z", 1e308, "2025-01-15", "2025-01-15T10:00:00"):
        assert refused(server, ehr, {**card, "outcomeTimestamp": stamp}).startswith("400 feedback[1]: outcomeTimestamp")
    assert refused(server, ehr, card).startswith("400 feedback[1]: outcomeTimestamp")
    reason = {"reason": offered["overrideReasons"][0]}
    said = refused(server, ehr, {**card, "card": offered["uuid"], "outcomeTimestamp": TS, "overrideReason": reason})
    assert said.startswith("400 feedback[1]: overrideReason is given only with outcome overridden"), said
    for suggestions in ("x", [{"id": "nonexistent"}], [5]):
        said = refused(server, ehr, {**card, "outcomeTimestamp": TS, "acceptedSuggestions": suggestions})
        assert said.startswith("400 feedback[1]: acceptedSuggestions"), said
    long = {**reason, "userComment": "A" * 2_000_000}
    said = refused(
        server, ehr, {"card": offered["uuid"], "outcome": "overridden", "outcomeTimestamp": TS, "overrideReason": long}
    )
    assert said.startswith("400 feedback[1]: overrideReason.userComment is longer than 4000 characters"), said


NOT_INSTANTS = (
    "2025-01-01T00:00:00+99:00",  # the sweep's: a zone beyond +14:00
    "2025-01-01T00:00:00+14:30",
    "2025-01-01T00:00:00-15:00",
    "2025-01-01T00:00:00+05:60",  # zone minutes
    "2025-01-01T24:00:00Z",
    "2025-01-01T10:60:00Z",
    "2025-01-01T10:00:60Z",  # second 60 that is no leap second (not 23:59:60 UTC on a month's last day)
    "2025-06-15T23:59:60Z",
    "0000-01-01T00:00:00Z",
    "\uff12\uff10\uff12\uff15-01-01T00:00:00Z",  # fullwidth digits
    "2025-01-01T00:00:00.Z",
    "2025-01-01T00:00:00Z\n",
)
INSTANTS = (
    "2025-01-01T00:00:00.1234567890123Z",  # the sweep's: R4's instant allows any number of fraction digits
    "2025-01-01T00:00:00+14:00",
    "2025-01-01T00:00:00-14:00",
    "2025-01-01T00:00:00-09:30",
    "2016-12-31T23:59:60Z",  # a leap second, and the same one in two zones
    "2017-01-01T00:59:60+01:00",
    "2016-12-31T18:59:60-05:00",
)


def test_an_instant_is_checked_as_fhir_defines_it(server: Server, ehr: Any, cards: list[dict[str, Any]]) -> None:
    card = {"card": cards[0]["uuid"], "outcome": "accepted"}
    for stamp in NOT_INSTANTS:
        said = refused(server, ehr, {**card, "outcomeTimestamp": stamp})
        assert said.startswith("400 feedback[1]: outcomeTimestamp "), (stamp, said)
    said = refused(server, ehr, {**card, "outcomeTimestamp": "2025-01-01T10:00:60Z"})
    assert "only a leap second has" in said, said
    before = stored(server)
    answer = signed_call(server, ehr, FEEDBACK, {"feedback": [{**card, "outcomeTimestamp": s} for s in INSTANTS]})
    assert answer.status_code == 200, answer.text
    logged = iter_rows(
        server.log.parent / "decisions.sqlite",
        f"SELECT outcome_timestamp FROM feedback ORDER BY rowid DESC LIMIT {len(INSTANTS)}",
    )
    assert [row[0] for row in logged] == list(reversed(INSTANTS))  # as sent, every fraction digit kept
    assert stored(server) == before + len(INSTANTS)


def test_a_card_is_found_only_through_its_own_service(server: Server, ehr: Any, cards: list[dict[str, Any]]) -> None:
    item = {"card": cards[0]["uuid"], "outcome": "accepted", "outcomeTimestamp": TS}
    before = stored(server)
    answer = signed_call(server, ehr, "/cds-services/fsgs-csa-order-sign/feedback", {"feedback": [item]})
    assert answer.status_code == 404 and "feedback[0]" in answer.text, answer.text
    assert stored(server) == before
    ok = signed_call(
        server, ehr, FEEDBACK, {"feedback": [item, {**item, "outcomeTimestamp": "2026-11-30T10:00:00.5+01:00"}]}
    )
    assert ok.status_code == 200 and stored(server) == before + 2, ok.text
