"""UCUM units are converted only as the map says; anything else leaves the field empty with a reason."""

from __future__ import annotations

from typing import Any

import pytest
from fhir_helpers import (
    AS_OF,  # noqa: E402
    bundle,
    obs,
    qty,
)

from fsgs_kb.engine.fhir import bundle_to_record


def convert(fmap: Any, *resources: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    return bundle_to_record(bundle(*resources), fmap, as_of=AS_OF)


@pytest.mark.parametrize(
    ("value", "unit", "kg"),
    [(70, "kg", 70), (70000, "g", 70), (154, "[lb_av]", 69.853225), (0.5, "[lb_av]", 0.226796)],
)
def test_body_weight_units(fmap: Any, value: float, unit: str, kg: float) -> None:
    record, prov = convert(fmap, obs("w", "29463-7", qty(value, unit)))
    assert record["weight_kg"] == kg
    assert prov["/weight_kg"]["id"] == "w"


def test_unknown_unit_is_not_convertible_and_no_older_value_is_used(fmap: Any) -> None:
    older = obs("w0", "29463-7", qty(70, "kg"), when="2024-05-01")
    latest = obs("w1", "29463-7", qty(11, "[stone_av]"), when="2024-05-30")
    record, prov = convert(fmap, older, latest)
    assert "weight_kg" not in record
    assert prov["/weight_kg"] == {"missing": "unit_not_convertible"}


def test_non_ucum_unit_string_with_other_system_is_not_trusted(fmap: Any) -> None:
    q = {"value": 70, "unit": "kg", "system": "http://example.org/units", "code": "KILO"}
    _, prov = convert(fmap, obs("w", "29463-7", q))
    assert prov["/weight_kg"] == {"missing": "unit_not_convertible"}  # there is a weight; its unit is not trusted


def test_unit_string_without_system_is_read(fmap: Any) -> None:
    record, _ = convert(fmap, obs("w", "29463-7", {"value": 71.5, "unit": "kg"}))
    assert record["weight_kg"] == 71.5


def test_comparator_values_are_ambiguous(fmap: Any) -> None:
    q = {**qty(0.3, "g/(24.h)"), "comparator": "<"}
    _, prov = convert(fmap, obs("p", "2889-4", q))
    assert prov["/proteinuria"] == {"missing": "ambiguous"}


@pytest.mark.parametrize(
    ("code", "value", "unit", "expected"),
    [
        ("2889-4", 4.2, "g/(24.h)", {"value": 4.2, "unit": "g/day"}),
        ("2889-4", 4200, "mg/(24.h)", {"value": 4.2, "unit": "g/day"}),
        ("2889-4", 4200, "mg/d", {"value": 4.2, "unit": "g/day"}),
        ("2890-2", 2500, "mg/g", {"value": 2.5, "unit": "g/g"}),
        ("2890-2", 2.5, "mg/mg", {"value": 2.5, "unit": "g/g"}),
        ("34366-5", 250, "mg/mmol", {"value": 250, "unit": "mg/mmol"}),
        ("34366-5", 250, "g/mol", {"value": 250, "unit": "mg/mmol"}),
    ],
)
def test_proteinuria_units(fmap: Any, code: str, value: float, unit: str, expected: dict[str, Any]) -> None:
    record, _ = convert(fmap, obs("p", code, qty(value, unit)))
    assert record["proteinuria"] == expected


def test_mg_per_mmol_under_the_mass_ratio_code_is_not_convertible(fmap: Any) -> None:
    _, prov = convert(fmap, obs("p", "2890-2", qty(250, "mg/mmol")))
    assert prov["/proteinuria"] == {"missing": "unit_not_convertible"}


def test_creatinine_mmol_and_mg_per_litre(fmap: Any) -> None:
    record, _ = convert(fmap, obs("c", "14682-9", qty(0.09, "mmol/L")))
    assert record["serum_creatinine"] == {"current": 90, "unit": "umol/L"}
    record, _ = convert(fmap, obs("c", "2160-0", qty(11, "mg/L")))
    assert record["serum_creatinine"] == {"current": 1.1, "unit": "mg/dL"}


def test_baseline_converted_to_the_current_unit_with_88_42(fmap: Any) -> None:
    from fhir_helpers import dosage, med_request

    order = med_request("m", dosage(100, frequency=2, start="2024-01-01"))
    base = obs("b", "2160-0", qty(1.0, "mg/dL"), when="2023-12-20")
    now = obs("c", "14682-9", qty(110, "umol/L"), when="2024-05-30")
    record, prov = convert(fmap, order, base, now)
    assert record["serum_creatinine"] == {"current": 110, "baseline": 88.42, "unit": "umol/L"}
    assert prov["/serum_creatinine/baseline"]["id"] == "b"


def test_same_time_results_in_two_units_agree_within_tolerance(fmap: Any) -> None:
    a = obs("a", "2160-0", qty(1.0, "mg/dL"))
    b = obs("b", "14682-9", qty(88, "umol/L"))
    record, prov = convert(fmap, a, b)
    assert record["serum_creatinine"]["current"] in (1.0, 88)
    c = obs("c", "14682-9", qty(120, "umol/L"))
    record, prov = convert(fmap, a, c)
    assert prov["/serum_creatinine/current"] == {"missing": "ambiguous"}


def test_high_dose_weeks_from_days(fmap: Any) -> None:
    from fhir_helpers import field_obs

    record, _ = convert(fmap, field_obs("s", "steroids.high_dose_weeks", valueQuantity=qty(56, "d")))
    assert record["steroids"]["high_dose_weeks"] == 8


def test_egfr_and_clearance_units(fmap: Any) -> None:
    record, _ = convert(fmap, obs("e", "98979-8", qty(35, "mL/min/{1.73_m2}")), obs("k", "2164-2", qty(40, "mL/min")))
    assert record["kidney_function"] == {"egfr": 35, "creatinine_clearance": 40, "unit": "mL/min"}  # the clearance's


def test_egfr_alone_brings_the_unit_the_record_requires(fmap: Any) -> None:
    record, prov = convert(fmap, obs("e", "98979-8", qty(35, "mL/min/{1.73_m2}")))
    assert record["kidney_function"] == {"egfr": 35, "unit": "mL/min/1.73m2"}
    assert prov["/kidney_function/creatinine_clearance"] == {"missing": "no_resource"}
