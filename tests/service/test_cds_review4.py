"""Review 4 on the real server: a draft with the id of the order it revises keeps the patient's
course (months on therapy, baseline creatinine), and every cyclosporine draft is either evaluated
or named on a card (two drafts with one id; a draft whose period ends before it starts)."""

from __future__ import annotations

import copy
from datetime import date, timedelta
from typing import Any

import pytest
from cds_support import Server, example, hook_request, patient_bundle, patient_id, prefetch_for, signed_call
from cds_support import cyclosporine_draft as draft

OS = "/cds-services/fsgs-csa-order-sign"


def collection(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


@pytest.fixture(scope="module")
def templates(server: Server, ehr: Any) -> dict[str, str]:
    services = signed_call(server, ehr, "/cds-services").json()["services"]
    return dict(next(s["prefetch"] for s in services if s["hook"] == "order-sign"))


def patient(days_on_therapy: int | None = None) -> tuple[dict[str, Any], str, str]:
    """The dose-above-ceiling patient's bundle (its course moved to start `days_on_therapy` ago),
    its id and its current order's id."""
    bundle = copy.deepcopy(patient_bundle(example("dose-above-ceiling")))
    order = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationRequest")
    if days_on_therapy is not None:
        start = (date.today() - timedelta(days=days_on_therapy)).isoformat()
        order["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]["start"] = start
    return bundle, patient_id(bundle), order["id"]


def sign(server: Server, ehr: Any, templates: dict[str, str], bundle: dict[str, Any], *drafts: Any) -> list[str]:
    pid = patient_id(bundle)
    body = hook_request("order-sign", pid, prefetch_for(templates, bundle, pid), draftOrders=collection(*drafts))
    answer = signed_call(server, ehr, OS, body)
    assert answer.status_code == 200, answer.text
    return [f"{c['indicator']} {c['summary']}\n{c['detail']}" for c in answer.json()["cards"]]


def summaries(cards: list[str]) -> list[str]:
    return [c.splitlines()[0] for c in cards]


def test_a_draft_with_the_current_orders_id_keeps_the_course(server: Server, ehr: Any, templates: Any) -> None:
    bundle, pid, order_id = patient(days_on_therapy=800)
    new_id = summaries(sign(server, ehr, templates, bundle, draft("dnew", f"Patient/{pid}", 100)))
    same_id = summaries(sign(server, ehr, templates, bundle, draft(order_id, f"Patient/{pid}", 100)))
    assert any("at or beyond 12 months" in s for s in new_id), new_id
    assert same_id == new_id
    assert not any("shorter than 12 months" in s for s in same_id), same_id


def test_a_draft_with_the_current_orders_id_keeps_the_baseline(server: Server, ehr: Any, templates: Any) -> None:
    bundle, pid, order_id = patient()
    new_id = summaries(sign(server, ehr, templates, bundle, draft("dnew", f"Patient/{pid}", 100)))
    same_id = summaries(sign(server, ehr, templates, bundle, draft(order_id, f"Patient/{pid}", 100)))
    assert any("creatinine 30% or more above" in s for s in new_id), new_id
    assert same_id == new_id


def test_two_drafts_with_one_id_are_named_on_a_card(server: Server, ehr: Any, templates: Any) -> None:
    bundle, pid, _ = patient()
    cards = sign(server, ehr, templates, bundle, draft("d1", f"Patient/{pid}", 300), draft("d1", f"Patient/{pid}", 100))
    (named,) = [c for c in cards if "/context/draftOrders/entry/0" in c]
    assert "/context/draftOrders/entry/1" in named and "appears twice among the draft orders" in named, named
    assert "could not be checked" in named.splitlines()[0] or "not used" in named, named


def test_a_draft_sent_twice_alike_is_checked_once(server: Server, ehr: Any, templates: Any) -> None:
    bundle, pid, _ = patient()
    once = summaries(sign(server, ehr, templates, bundle, draft("d1", f"Patient/{pid}", 300)))
    twice = summaries(sign(server, ehr, templates, bundle, *[draft("d1", f"Patient/{pid}", 300)] * 2))
    thrice = summaries(sign(server, ehr, templates, bundle, *[draft("d1", f"Patient/{pid}", 300)] * 3))
    assert twice == once == thrice and any("dose" in s.lower() for s in once), once


def test_a_draft_whose_period_ends_before_it_starts_is_named(server: Server, ehr: Any, templates: Any) -> None:
    bundle, pid, _ = patient()
    reversed_period = {"start": "2030-01-01", "end": "2020-01-01"}
    cards = sign(server, ehr, templates, bundle, draft("d1", f"Patient/{pid}", 300, reversed_period))
    (named,) = [c for c in cards if "/context/draftOrders/entry/0" in c]
    assert 'ends ("2020-01-01") before it starts ("2030-01-01")' in named, named
    assert "could not be checked" in named.splitlines()[0], named
    # beside a good draft it is named on the set-aside card, and the good one is checked
    good = draft("d2", f"Patient/{pid}", 300)
    cards = sign(server, ehr, templates, bundle, draft("d1", f"Patient/{pid}", 300, reversed_period), good)
    assert any("/context/draftOrders/entry/0" in c and 'ends ("2020-01-01")' in c for c in cards), cards
    assert any("dose" in c.splitlines()[0].lower() for c in cards), summaries(cards)


def test_a_draft_set_aside_is_named_even_with_the_current_orders_id(server: Server, ehr: Any, templates: Any) -> None:
    bundle, pid, order_id = patient()
    reversed_period = {"start": "2030-01-01", "end": "2020-01-01"}
    bad = draft(order_id, f"Patient/{pid}", 300, reversed_period)
    cards = sign(server, ehr, templates, bundle, bad, draft("d2", f"Patient/{pid}", 300))
    assert any("/context/draftOrders/entry/0" in c and 'ends ("2020-01-01")' in c for c in cards), summaries(cards)
