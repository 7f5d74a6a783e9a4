"""Daily dose, status and months on therapy from orders: computed only from structured instructions,
never from a guess; ophthalmic cyclosporine is not cyclosporine therapy."""

from __future__ import annotations

from typing import Any

import pytest
from fhir_helpers import (
    AS_OF,
    RXNORM,
    bundle,
    dosage,
    enum_value,
    field_obs,
    med_request,
    qty,
)

from fsgs_kb.engine.fhir import bundle_to_record
from fsgs_kb.engine.fhir.dosage import daily_dose

MG = {
    "mg": {"to": "mg/day", "factor": 1},
    "g": {"to": "mg/day", "factor": 1000},
    "mg/kg": {"to": "mg/kg/day", "factor": 1},
}


def cyclo(fmap: Any, *resources: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    record, prov = bundle_to_record(bundle(*resources), fmap, as_of=AS_OF)
    return record.get("cyclosporine", {}), prov


@pytest.mark.parametrize(
    ("dosages", "expected"),
    [
        ([dosage(150, frequency=2)], (300, "mg/day")),
        ([dosage(150, frequency=1, period=12, period_unit="h")], (300, "mg/day")),
        ([dosage(100), dosage(75)], (175, "mg/day")),  # split doses: morning + evening
        ([dosage(0.175, unit="g", frequency=2)], (350, "mg/day")),
        ([dosage(1.75, unit="mg/kg", frequency=2)], (3.5, "mg/kg/day")),
        ([dosage(700, frequency=1, period=2, period_unit="d")], (350, "mg/day")),
        ([dosage(1050, frequency=3, period=1, period_unit="wk")], (450, "mg/day")),
        (
            [
                {
                    "timing": {"repeat": {"timeOfDay": ["08:00:00", "20:00:00"]}},
                    "doseAndRate": [{"doseQuantity": qty(125, "mg")}],
                }
            ],
            (250, "mg/day"),
        ),
    ],
)
def test_computable_doses(dosages: list[dict[str, Any]], expected: tuple[float, str]) -> None:
    assert daily_dose(dosages, MG) == expected


@pytest.mark.parametrize(
    "dosages",
    [
        [],
        [dosage(150, frequency=2, asNeededBoolean=True)],
        [dosage(150, frequency=2, asNeededCodeableConcept={"text": "if needed"})],
        [
            {
                "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseRange": {"low": qty(100, "mg"), "high": qty(150, "mg")}}],
            }
        ],
        [
            {
                "timing": {"repeat": {"frequency": 1, "frequencyMax": 2, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": qty(100, "mg")}],
            }
        ],
        [{"text": "150 mg twice a day"}],
        [{"timing": {"code": {"text": "BID"}}, "doseAndRate": [{"doseQuantity": qty(150, "mg")}]}],
        [dosage(150, frequency=1, period=1, period_unit="mo")],
        [dosage(150, unit="mL")],
        [dosage(100), dosage(1, unit="mg/kg")],  # mixed units cannot be summed
        [dosage(150, sequence=1), dosage(100, sequence=2)],  # sequential phases (a taper)
        [
            {
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d", "dayOfWeek": ["mon"]}},
                "doseAndRate": [{"doseQuantity": qty(100, "mg")}],
            }
        ],
        [
            {
                "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {**qty(100, "mg"), "comparator": ">"}}],
            }
        ],
        "not a list",
    ],
)
def test_not_computable_doses(dosages: Any) -> None:
    assert daily_dose(dosages, MG) is None


def test_current_order_gives_status_dose_and_months(fmap: Any) -> None:
    c, prov = cyclo(fmap, med_request("m", dosage(150, frequency=2, start="2024-01-01")))
    assert c == {
        "status": "current",
        "daily_dose": {"value": 300, "unit": "mg/day"},
        "months_on_therapy": round(152 / 30.4375, 6),
    }
    assert prov["/cyclosporine/daily_dose"]["id"] == "m"


def test_as_needed_order_leaves_dose_unknown(fmap: Any) -> None:
    c, prov = cyclo(fmap, med_request("m", dosage(150, frequency=2, start="2024-01-01", asNeededBoolean=True)))
    assert c["status"] == "current" and "daily_dose" not in c
    assert prov["/cyclosporine/daily_dose"] == {"missing": "dose_not_computable"}


def test_ophthalmic_cyclosporine_is_excluded_by_code(fmap: Any) -> None:
    c, prov = cyclo(fmap, med_request("eye", dosage(1, frequency=2, start="2024-01-01"), code="351291"))
    assert c == {} and prov["/cyclosporine/status"] == {"missing": "no_resource"}


def test_ophthalmic_cyclosporine_is_excluded_by_text_and_route(fmap: Any) -> None:
    by_form = med_request(
        "eye1",
        dosage(1, frequency=2, start="2024-01-01"),
        medicationCodeableConcept={
            "coding": [{"system": RXNORM, "code": "3008", "display": "cyclosporine 0.05% ophthalmic emulsion"}]
        },
    )
    by_route = med_request(
        "eye2",
        dosage(
            1,
            frequency=2,
            start="2024-01-01",
            route={"text": "Ophthalmic", "coding": [{"system": "http://snomed.info/sct", "code": "54485002"}]},
        ),
    )
    assert cyclo(fmap, by_form)[0] == {}
    assert cyclo(fmap, by_route)[0] == {}


def test_ophthalmic_excluded_through_contained_medication_form(fmap: Any) -> None:
    order = med_request(
        "eye",
        dosage(1, frequency=2, start="2024-01-01"),
        medicationReference={"reference": "#med"},
        contained=[
            {
                "resourceType": "Medication",
                "id": "med",
                "code": {"coding": [{"system": RXNORM, "code": "3008"}]},
                "form": {"text": "Ophthalmic emulsion"},
            }
        ],
    )
    del order["medicationCodeableConcept"]
    assert cyclo(fmap, order)[0] == {}


def test_systemic_product_code_via_bundle_medication(fmap: Any) -> None:
    order = med_request(
        "m", dosage(100, frequency=2, start="2024-05-01"), medicationReference={"reference": "Medication/neoral"}
    )
    del order["medicationCodeableConcept"]
    med = {"resourceType": "Medication", "id": "neoral", "code": {"coding": [{"system": RXNORM, "code": "835911"}]}}
    c, _ = cyclo(fmap, order, med)
    assert c["status"] == "current" and c["daily_dose"] == {"value": 200, "unit": "mg/day"}


def test_orders_within_the_gap_are_one_course(fmap: Any) -> None:
    first = med_request("m1", dosage(100, frequency=2, start="2023-06-01", end="2023-12-01"), status="completed")
    second = med_request("m2", dosage(125, frequency=2, start="2023-12-20"))
    c, prov = cyclo(fmap, first, second)
    assert c["months_on_therapy"] == round((AS_OF - __import__("datetime").date(2023, 6, 1)).days / 30.4375, 6)
    assert c["daily_dose"]["value"] == 250
    assert prov["/cyclosporine/months_on_therapy"]["id"] == "m1"
    assert prov["/cyclosporine/months_on_therapy"]["others"] == [{"resourceType": "MedicationRequest", "id": "m2"}]


def test_a_longer_gap_starts_a_new_course(fmap: Any) -> None:
    first = med_request("m1", dosage(100, frequency=2, start="2022-01-01", end="2022-06-01"), status="completed")
    second = med_request("m2", dosage(100, frequency=2, start="2024-03-01"))
    c, _ = cyclo(fmap, first, second)
    assert c["months_on_therapy"] == round(92 / 30.4375, 6)


def test_stopped_course(fmap: Any) -> None:
    c, _ = cyclo(
        fmap, med_request("m", dosage(100, frequency=2, start="2023-01-01", end="2023-12-31"), status="stopped")
    )
    assert c["status"] == "stopped"
    assert c["months_on_therapy"] == round(364 / 30.4375, 6)


def test_stopped_order_without_end_has_unknown_length(fmap: Any) -> None:
    c, prov = cyclo(fmap, med_request("m", dosage(100, frequency=2, start="2023-01-01"), status="completed"))
    assert c["status"] == "stopped"
    assert prov["/cyclosporine/months_on_therapy"] == {"missing": "ambiguous"}


@pytest.mark.parametrize("second_mg", [50, 100])
def test_two_concurrent_orders_leave_the_dose_undetermined_equal_or_not(fmap: Any, second_mg: float) -> None:
    """Whether two current orders add up or one replaces the other is not written in them: no dose
    (tests/fhir/test_dose_and_date_edges.py runs it through the command line)."""
    a = med_request("a", dosage(100, frequency=2, start="2024-01-01"))
    b = med_request("b", dosage(second_mg, frequency=2, start="2024-02-01"))
    c, prov = cyclo(fmap, a, b)
    assert prov["/cyclosporine/daily_dose"] == {"missing": "concurrent_orders"}
    assert c["status"] == "current" and "daily_dose" not in c


def test_no_order_is_not_never(fmap: Any) -> None:
    _, prov = cyclo(fmap)
    assert prov["/cyclosporine/status"] == {"missing": "no_resource"}


def test_never_comes_only_from_a_field_observation_and_conflicts_with_orders(fmap: Any) -> None:
    never = field_obs("f", "cyclosporine.status", **enum_value("never"))
    assert cyclo(fmap, never)[0] == {"status": "never"}
    _, prov = cyclo(fmap, never, med_request("m", dosage(100, frequency=2, start="2024-01-01")))
    assert prov["/cyclosporine/status"] == {"missing": "ambiguous"}


def test_proposals_cancelled_and_future_orders_are_ignored(fmap: Any) -> None:
    plan = med_request("p", dosage(100, frequency=2, start="2024-01-01"), intent="proposal")
    cancelled = med_request("c", dosage(100, frequency=2, start="2024-01-01"), status="cancelled")
    future = med_request("f", dosage(100, frequency=2, start="2024-07-01"))
    _, prov = cyclo(fmap, plan, cancelled, future)
    assert prov["/cyclosporine/status"] == {"missing": "no_resource"}


def test_statements_are_used_when_there_is_no_order(fmap: Any) -> None:
    statement = {
        "resourceType": "MedicationStatement",
        "id": "s",
        "status": "active",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "3008"}]},
        "effectivePeriod": {"start": "2024-04-01"},
        "dosage": [dosage(100, frequency=2)],
    }
    c, prov = cyclo(fmap, statement)
    assert c["status"] == "current" and c["daily_dose"]["value"] == 200
    assert prov["/cyclosporine/status"]["resourceType"] == "MedicationStatement"
