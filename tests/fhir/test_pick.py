"""The pick rule: latest final/amended/corrected result within the look-back, ties must agree,
baseline creatinine is the last result before the course started, age is exact."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from fhir_helpers import (
    AS_OF,
    bundle,
    dosage,
    enum_value,
    field_obs,
    med_request,
    obs,
    qty,
)

from fsgs_kb.engine.fhir import bundle_to_record


def run(fmap: Any, *resources: dict[str, Any], patient: dict[str, Any] | None = None, as_of: date = AS_OF):
    return bundle_to_record(bundle(*resources, patient=patient), fmap, as_of=as_of)


def weight(rid: str, kg: float, when: str, status: str = "final") -> dict[str, Any]:
    return obs(rid, "29463-7", qty(kg, "kg"), when=when, status=status)


def test_latest_wins(fmap: Any) -> None:
    record, prov = run(
        fmap, weight("a", 70, "2024-05-01"), weight("b", 72, "2024-05-20T10:00:00+02:00"), weight("c", 71, "2024-04-01")
    )
    assert record["weight_kg"] == 72 and prov["/weight_kg"]["effective"] == "2024-05-20T10:00:00+02:00"


@pytest.mark.parametrize("status", ["amended", "corrected"])
def test_amended_and_corrected_count(fmap: Any, status: str) -> None:
    assert run(fmap, weight("a", 70, "2024-05-01"), weight("b", 73, "2024-05-02", status))[0]["weight_kg"] == 73


@pytest.mark.parametrize("status", ["preliminary", "registered", "cancelled", "entered-in-error", "unknown"])
def test_other_statuses_do_not(fmap: Any, status: str) -> None:
    assert run(fmap, weight("a", 70, "2024-05-01"), weight("b", 73, "2024-05-02", status))[0]["weight_kg"] == 70


def test_look_back_window(fmap: Any) -> None:
    _, prov = run(fmap, weight("old", 70, "2024-02-01"))  # > 90 days before 2024-06-01
    assert prov["/weight_kg"] == {"missing": "no_resource"}
    assert run(fmap, weight("edge", 70, "2024-03-03"))[0]["weight_kg"] == 70  # exactly 90 days


def test_future_results_and_partial_dates_ruled_out_as_the_latest_are_ignored(fmap: Any) -> None:
    """A month or year whose last day is before the latest dated result, or whose days all fall
    outside the look-back window, cannot be the latest; an undated one or one of the latest month
    may be, so it leaves the field empty (tests/fhir/test_unreadable_latest.py)."""
    future = weight("f", 90, "2024-06-02")
    older = weight("m", 92, "2024-04"), weight("y", 93, "2023"), weight("n", 94, "2024-07")
    record, _ = run(fmap, weight("ok", 70, "2024-05-01"), future, *older)
    assert record["weight_kg"] == 70
    for vague in (obs("u", "29463-7", qty(91, "kg"), when=None), weight("m", 92, "2024-05")):
        _, prov = run(fmap, weight("ok", 70, "2024-05-01"), vague)
        assert prov["/weight_kg"] == {"missing": "date_not_precise"}


def test_same_day_result_on_the_evaluation_date_counts(fmap: Any) -> None:
    assert run(fmap, weight("today", 70, "2024-06-01T23:59:00Z"))[0]["weight_kg"] == 70


def test_tie_with_different_values_is_ambiguous(fmap: Any) -> None:
    _, prov = run(fmap, weight("a", 70, "2024-05-01"), weight("b", 80, "2024-05-01"))
    assert prov["/weight_kg"] == {"missing": "ambiguous"}


def test_bp_from_panel_and_standalone_latest_wins(fmap: Any) -> None:
    panel = obs(
        "panel",
        "85354-9",
        None,
        when="2024-05-10",
        component=[
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": qty(132, "mm[Hg]"),
            },
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                "valueQuantity": qty(84, "mm[Hg]"),
            },
        ],
    )
    systolic = obs("sys", "8480-6", qty(118, "mm[Hg]"), when="2024-05-20")
    record, prov = run(fmap, panel, systolic)
    assert record["blood_pressure"] == {"systolic_mmHg": 118, "diastolic_mmHg": 84}
    assert prov["/blood_pressure/diastolic_mmHg"]["id"] == "panel"


def test_baseline_is_the_last_result_before_the_course(fmap: Any) -> None:
    order = med_request("m", dosage(100, frequency=2, start="2024-02-01"))
    results = [
        obs(f"c{i}", "14682-9", qty(v, "umol/L"), when=d)
        for i, (v, d) in enumerate([(80, "2023-10-01"), (85, "2024-01-25"), (95, "2024-02-10"), (110, "2024-05-30")])
    ]
    record, prov = run(fmap, order, *results)
    assert record["serum_creatinine"] == {"current": 110, "baseline": 85, "unit": "umol/L"}
    assert prov["/serum_creatinine/baseline"]["id"] == "c1"


def test_no_course_no_baseline(fmap: Any) -> None:
    _, prov = run(fmap, obs("c", "14682-9", qty(80, "umol/L")))
    assert prov["/serum_creatinine/baseline"] == {"missing": "no_resource"}


def test_field_observation_values(fmap: Any) -> None:
    resources = [
        field_obs("a", "fsgs.etiology", **enum_value("primary")),
        field_obs("b", "fsgs.biopsy_proven", valueBoolean=True),
        field_obs("c", "fsgs.secondary_cause", valueString="none known"),
        field_obs(
            "d",
            "gc_toxicity_risk_factors",
            component=[
                {"code": {"coding": [{"system": "urn:fsgs-kb:value", "code": "obesity"}]}, "valueBoolean": True},
                {
                    "code": {"coding": [{"system": "urn:fsgs-kb:value", "code": "psychiatric_disorder"}]},
                    "valueBoolean": False,
                },
            ],
        ),
        field_obs("e", "blood_pressure.percentile_for_age", valueQuantity=qty(95, "%")),
    ]
    record, _ = run(fmap, *resources)
    assert record["fsgs"] == {"etiology": "primary", "biopsy_proven": True, "secondary_cause": "none known"}
    assert record["gc_toxicity_risk_factors"] == ["obesity"]
    assert record["blood_pressure"]["percentile_for_age"] == 95


@pytest.mark.parametrize("value", [enum_value("idiopathic"), {"valueBoolean": True}, {"valueString": "primary"}])
def test_a_value_the_field_cannot_hold_is_ambiguous(fmap: Any, value: dict[str, Any]) -> None:
    _, prov = run(fmap, field_obs("a", "fsgs.etiology", **value))
    assert prov["/fsgs/etiology"] == {"missing": "ambiguous"}


def _condition(code: str, status: str | None = None) -> dict[str, Any]:
    cond = {
        "resourceType": "Condition",
        "id": f"c{code}",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
    }
    if status:
        cond["verificationStatus"] = {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": status}]
        }
    return cond


def test_etiology_from_condition_and_conflicts(fmap: Any) -> None:
    assert run(fmap, _condition("444977005"))[0]["fsgs"] == {"etiology": "genetic"}
    assert "fsgs" not in run(fmap, _condition("236403004"))[0]  # plain FSGS implies no cause
    assert "fsgs" not in run(fmap, _condition("444977005", "refuted"))[0]
    _, prov = run(fmap, _condition("444977005"), field_obs("a", "fsgs.etiology", **enum_value("primary")))
    assert prov["/fsgs/etiology"] == {"missing": "ambiguous"}


@pytest.mark.parametrize(
    ("birth", "age"),
    [("2006-06-01", 18.0), ("2006-06-02", 17.9), ("2014-06-01", 10.0), ("1980-01-15", 44.3), ("2024-06-01", 0.0)],
)
def test_age_is_truncated_never_rounded_up(fmap: Any, birth: str, age: float) -> None:
    record, _ = run(fmap, patient={"resourceType": "Patient", "id": "p1", "birthDate": birth})
    assert record["age_years"] == age


def test_partial_birth_date(fmap: Any) -> None:
    _, prov = run(fmap, patient={"resourceType": "Patient", "id": "p1", "birthDate": "1980"})
    assert prov["/age_years"] == {"missing": "ambiguous"}
    record, _ = run(
        fmap, patient={"resourceType": "Patient", "id": "p1", "birthDate": "1980-01"}, as_of=date(2024, 9, 1)
    )
    assert "age_years" not in record  # 44.5 .. 44.6 depending on the day
    record, _ = run(
        fmap, patient={"resourceType": "Patient", "id": "p1", "birthDate": "1980-02"}, as_of=date(2024, 1, 24)
    )
    assert record["age_years"] == 43.9  # every day of February 1980 gives 43.9


def test_leap_day_birthday(fmap: Any) -> None:
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "2008-02-29"}
    assert run(fmap, patient=patient, as_of=date(2026, 2, 28))[0]["age_years"] == 17.9
    assert run(fmap, patient=patient, as_of=date(2026, 3, 1))[0]["age_years"] == 18.0
