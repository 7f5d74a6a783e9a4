"""Seeded generator of synthetic patients: a realistic mix for stress tests and benchmarks.

In and out of scope, on and off cyclosporine, missing fields, boundary values, and (when
asked) about 2 % invalid records. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from fsgs_kb.engine.load.fields import catalogue

RISKS = list(catalogue()["gc_toxicity_risk_factors"].enum or ())


def _maybe(rng: random.Random, p: float) -> bool:
    return rng.random() < p


def patient(rng: random.Random, index: int, invalid_rate: float = 0.0) -> dict[str, Any]:
    age = rng.choice([rng.uniform(1, 17.9), rng.uniform(18, 85), 18, 17.9])
    record: dict[str, Any] = {"id": f"P{index:07d}", "age_years": round(age, 1)}
    record["weight_kg"] = round(rng.uniform(10, 120), 1)
    record["fsgs"] = {
        "biopsy_proven": rng.random() < 0.9,
        "etiology": rng.choices(["primary", "secondary", "genetic", "undetermined", "unknown"], [80, 8, 4, 4, 4])[0],
    }
    record["steroids"] = {"response": rng.choice(["not_treated", "sensitive", "dependent", "resistant", "unknown"])}
    if _maybe(rng, 0.7):
        weeks = rng.choice([4, 6, 8, 12, 15.9, 16, 20])
        if record["steroids"]["response"] != "not_treated":  # weeks of high-dose steroid contradict it
            record["steroids"]["high_dose_weeks"] = weeks
    if _maybe(rng, 0.8):
        record["gc_toxicity_risk_factors"] = rng.sample(RISKS, rng.randint(0, 2))
    status = rng.choice(["never", "current", "current", "stopped"])
    csa: dict[str, Any] = {"status": status}
    if status != "never":
        if _maybe(rng, 0.9):
            unit = rng.choice(["mg/day", "mg/kg/day"])
            value = rng.choice([3.5, 5.0, 5.1, 4.2, 6]) if unit == "mg/kg/day" else rng.choice([150, 250, 350, 357])
            csa["daily_dose"] = {"value": value, "unit": unit}
        if _maybe(rng, 0.9):
            csa["months_on_therapy"] = rng.choice([1, 6, 11.9, 12, 12.0, 24])
        csa["best_response"] = rng.choice(
            ["complete_remission", "partial_remission", "no_response", "not_yet_assessed"]
        )
    record["cyclosporine"] = csa
    record["disease_status"] = rng.choice(["nephrotic", "partial_remission", "complete_remission", "relapse"])
    if _maybe(rng, 0.8):
        unit = rng.choice(["mg/dL", "umol/L"])
        base = rng.choice([0.9, 1.0, 1.2]) if unit == "mg/dL" else rng.choice([80, 90, 100])
        record["serum_creatinine"] = {
            "baseline": base,
            "current": round(base * rng.choice([1.0, 1.2, 1.3, 1.5]), 3),
            "unit": unit,
        }
    if _maybe(rng, 0.85):
        record["blood_pressure"] = {
            "systolic_mmHg": rng.choice([110, 119, 120, 135]),
            "diastolic_mmHg": rng.choice([60, 70, 85]),
        }
        if age < 18 and _maybe(rng, 0.7):
            record["blood_pressure"]["percentile_for_age"] = rng.choice([50, 89, 90, 95])
    _applicability(rng, record)
    if invalid_rate and _maybe(rng, invalid_rate):
        _break(rng, record)
    return record


def _applicability(rng: random.Random, record: dict[str, Any]) -> None:
    """The fields the caveats read (clinical-notes §7): kidney function, other
    immunosuppressants, proteinuria, the reason a course was stopped."""
    if record["cyclosporine"]["status"] == "stopped" and _maybe(rng, 0.7):
        record["cyclosporine"]["stop_reason"] = rng.choice(["taper_completed", "nephrotoxicity", "no_response"])
    if _maybe(rng, 0.4):
        if _maybe(rng, 0.7):
            record["kidney_function"] = {"egfr": rng.choice([12, 35, 39.9, 40, 60, 95]), "unit": "mL/min/1.73m2"}
        else:
            unit = rng.choice(["mL/min/1.73m2", "mL/min"])
            record["kidney_function"] = {"creatinine_clearance": rng.choice([30, 45, 80]), "unit": unit}
    if _maybe(rng, 0.4):
        record["other_immunosuppressants"] = rng.choice(
            [[], [{"drug": "tacrolimus", "status": "past"}], [{"drug": "mycophenolate", "status": "current"}]]
        )
    if _maybe(rng, 0.6):
        unit = rng.choice(["g/day", "g/g", "mg/mmol"])
        value = rng.choice([0.4, 3.5, 5.2]) if unit != "mg/mmol" else rng.choice([40, 199, 200, 350, 420])
        record["proteinuria"] = {"value": value, "unit": unit}


def _break(rng: random.Random, record: dict[str, Any]) -> None:
    choice = rng.randrange(4)
    if choice == 0:
        record["weight_kg"] = 0
    elif choice == 1:
        record["cyclosporine"]["status"] = "sometimes"
    elif choice == 2:
        record["unexpected"] = True
    else:
        record["age_years"] = -3


def iter_cohort(n: int, seed: int = 1, invalid_rate: float = 0.0) -> Iterator[dict[str, Any]]:
    """Patients one at a time, so that generating a large cohort costs no memory."""
    rng = random.Random(seed)
    for i in range(n):
        yield patient(rng, i, invalid_rate)


def cohort(n: int, seed: int = 1, invalid_rate: float = 0.0) -> list[dict[str, Any]]:
    return list(iter_cohort(n, seed, invalid_rate))
