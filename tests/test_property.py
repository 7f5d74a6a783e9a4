"""Property tests: durable-rules and the Python explanation agree on every generated patient
(whose derived values a double holds: else the record is an eval.overflow error), and the fast
patient validator accepts exactly what the JSON Schema accepts."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import jsonschema
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fsgs_kb.engine.load.fields import catalogue
from fsgs_kb.engine.load.schemas import validator

THRESHOLD_NEAR = st.sampled_from([0, 0.5, 4.99, 5, 5.0001, 5.1, 6, 11.9, 12, 12.1, 15.9, 16, 17.9, 18, 29.9, 30])


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(None), strategy)


def numbers(low: float, high: float) -> st.SearchStrategy[float]:
    return st.one_of(THRESHOLD_NEAR, st.floats(low, high, allow_nan=False), st.integers(int(low), int(high)))


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value


patients = st.builds(
    lambda *parts: _drop_none(
        dict(
            zip(
                [
                    "id",
                    "age_years",
                    "weight_kg",
                    "fsgs",
                    "steroids",
                    "gc_toxicity_risk_factors",
                    "cyclosporine",
                    "disease_status",
                    "serum_creatinine",
                    "blood_pressure",
                ],
                parts,
                strict=True,
            )
        )
    ),
    st.just("hyp"),
    maybe(numbers(-5, 130)),
    maybe(numbers(-1, 320)),
    maybe(
        st.fixed_dictionaries(
            {},
            optional={
                "biopsy_proven": st.booleans(),
                "etiology": st.sampled_from(
                    ["primary", "secondary", "genetic", "undetermined", "unknown", "idiopathic"]
                ),
            },
        )
    ),
    maybe(
        st.fixed_dictionaries(
            {},
            optional={
                "response": st.sampled_from(["not_treated", "sensitive", "dependent", "resistant", "unknown"]),
                "high_dose_weeks": numbers(-1, 60),
            },
        )
    ),
    maybe(
        st.lists(
            st.sampled_from(list(catalogue()["gc_toxicity_risk_factors"].enum or ())),
            max_size=3,
            unique=True,
        )
    ),
    maybe(
        st.fixed_dictionaries(
            {},
            optional={
                "status": st.sampled_from(["never", "current", "stopped"]),
                "daily_dose": st.fixed_dictionaries(
                    {"value": numbers(-1, 800), "unit": st.sampled_from(["mg/day", "mg/kg/day"])}
                ),
                "months_on_therapy": numbers(-1, 40),
                "best_response": st.sampled_from(
                    ["complete_remission", "partial_remission", "no_response", "not_yet_assessed"]
                ),
            },
        )
    ),
    maybe(st.sampled_from(["nephrotic", "partial_remission", "complete_remission", "relapse"])),
    maybe(
        st.fixed_dictionaries(
            {"unit": st.sampled_from(["umol/L", "mg/dL"])},
            optional={"current": numbers(0, 300), "baseline": numbers(0, 300)},
        )
    ),
    maybe(
        st.fixed_dictionaries(
            {},
            optional={
                "systolic_mmHg": numbers(10, 310),
                "diastolic_mmHg": numbers(10, 310),
                "percentile_for_age": numbers(-1, 101),
            },
        )
    ),
)


def _beyond_a_double(patient: dict[str, Any]) -> bool:
    """Whether a bundled derived value is beyond ±1.8e308 for a valid record, worked out here with
    Fractions: the one reason a valid record is an error (eval.overflow, engine/evaluate/overflow.py)."""

    def exact(number: Any) -> Fraction:
        return Fraction(repr(number)) if isinstance(number, float) else Fraction(number)

    def beyond(value: Fraction) -> bool:
        try:
            float(value)
        except OverflowError:
            return True
        return False

    creatinine = patient.get("serum_creatinine") or {}
    baseline, current = creatinine.get("baseline"), creatinine.get("current")
    if baseline is not None and current is not None:
        if beyond((exact(current) - exact(baseline)) / exact(baseline) * 100):
            return True
    dose = (patient.get("cyclosporine") or {}).get("daily_dose") or {}
    weight = patient.get("weight_kg")
    return dose.get("unit") == "mg/day" and weight is not None and beyond(exact(dose["value"]) / exact(weight))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patients)
@example({"id": "hyp", "serum_creatinine": {"unit": "mg/dL", "current": 1.0, "baseline": 5e-324}})
def test_durable_rules_and_explanation_agree(kb: Any, patient: dict[str, Any]) -> None:
    result = kb.evaluate(patient)
    if result["status"] == "invalid":
        return
    if _beyond_a_double(patient):  # a creatinine baseline or a weight as small as 1e-306
        assert [e["code"] for e in result["errors"]] == ["eval.overflow"], result["errors"]
        return
    assert result["status"] != "error", result["errors"]
    outcome = {r["id"]: r["outcome"] for r in result["rules"]}
    for pair in (
        ("CSA-DOSE-WITHIN", "CSA-DOSE-EXCEEDS"),
        ("CSA-DUR-WITHIN", "CSA-DUR-EXCEEDS"),
        ("CSA-SR-CANDIDATE", "SR-NOT-CONFIRMED"),
    ):
        assert [outcome[r] for r in pair].count("fired") <= 1, pair
    if result["status"] == "out_of_scope":
        assert result["advice"] == ["SCOPE-OUT"]
    for rule in result["rules"]:
        assert bool(rule["missing"]) == (rule["outcome"] == "undetermined"), rule["id"]


@settings(max_examples=1500, deadline=None)
@given(patients)
def test_fast_validator_matches_the_json_schema(kb: Any, patient: dict[str, Any]) -> None:
    from fsgs_kb.engine.evaluate.patient import validate_patient

    schema_ok = validator("patient").is_valid(patient)
    ours = [e for e in validate_patient(patient) if e.code != "patient.conflict"]
    assert (not ours) == schema_ok, (
        ours,
        list(jsonschema.Draft202012Validator(validator("patient").schema).iter_errors(patient))[:1],
    )


@settings(max_examples=300, deadline=None)
@given(patients)
def test_every_result_follows_the_result_schema(kb: Any, patient: dict[str, Any]) -> None:
    result = kb.evaluate(patient)
    errors = list(validator("result").iter_errors(result))
    assert not errors, errors[0].message
