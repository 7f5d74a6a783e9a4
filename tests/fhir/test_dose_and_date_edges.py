"""FHIR input edges found by the second outside review, through the real command line on the shipped
example Bundle (examples/fhir/dose-above-ceiling: 178.5 mg twice a day, 70 kg, 5.1 mg/kg/day):

- two current cyclosporine orders: whether their doses add up (divided doses ordered separately) or
  one replaces the other is not written in them, and the clinical notes define the dose only as the
  total of divided doses; equal or not, the dose is left undetermined (`concurrent_orders`), each
  order is set aside for the dose naming the other, never one order's dose read as the total;
- a Timing.repeat frequency, period or periodUnit that is present but not one (a frequency of "2",
  0, -1, 1.5 or true; a period of "1", 0 or -1; a unit "mo" or ["d"]) makes the dose not computable,
  never once a day;
- a valid FHIR dateTime whose UTC instant is off the calendar (0001-01-01T00:00:00+14:00,
  9999-12-31T23:59:59-14:00) is a date that cannot be read, not an internal error; an evaluation
  date (--as-of) outside the dates the reader counts from is a usage error, exit 2.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from fhir_helpers import cli, evaluate_bundle, project_file

from fsgs_kb.engine.load.schemas import validator

AS_OF = "2025-01-15"  # the examples' evaluation date (examples/fhir/make_examples.py)
DOSE = "/cyclosporine/daily_dose"
FIRST_DAY, LAST_DAY = "0200-01-01", "9899-12-31"  # engine/fhir/dates.py: the dates the reader places


def example() -> dict[str, Any]:
    return dict(json.loads(project_file("examples/fhir/dose-above-ceiling.bundle.json").read_text()))


def resource(doc: dict[str, Any], rid: str) -> dict[str, Any]:
    return next(e["resource"] for e in doc["entry"] if e["resource"].get("id") == rid)


def run(tmp_path: Path, doc: dict[str, Any]) -> dict[str, Any]:
    result = evaluate_bundle(tmp_path, doc, "--as-of", AS_OF, "--include-input")
    assert not list(validator("result").iter_errors(result))
    return result


def outcome(result: dict[str, Any], rule: str) -> str:
    return str(next(r["outcome"] for r in result["rules"] if r["id"] == rule))


def with_second_order(doc: dict[str, Any], first_mg: float, second_mg: float) -> dict[str, Any]:
    order = resource(doc, "medicationrequest-1")
    order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = first_mg
    second = copy.deepcopy(order)
    second["id"] = "medicationrequest-2"
    second["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = second_mg
    doc["entry"].append({"fullUrl": "urn:uuid:6f1c1a52-0000-4000-8000-000000000002", "resource": second})
    return doc


@pytest.mark.parametrize(("first_mg", "second_mg"), [(100, 100), (50, 160)], ids=["equal", "unequal"])
def test_two_current_orders_leave_the_dose_undetermined_naming_both(
    tmp_path: Path, first_mg: float, second_mg: float
) -> None:
    """Equal doses (200 + 200 mg/day; summed, 5.71 mg/kg/day) were read as one order's 200 mg/day,
    CSA-DOSE-WITHIN; unequal ones were 'ambiguous' with nothing naming the orders."""
    result = run(tmp_path, with_second_order(example(), first_mg, second_mg))
    assert result["sources"][DOSE] == {"missing": "concurrent_orders"}
    assert "daily_dose" not in result["decision"]["input"]["cyclosporine"]
    assert outcome(result, "CSA-DOSE-WITHIN") == outcome(result, "CSA-DOSE-EXCEEDS") == "undetermined"
    aside = [a for a in result["set_aside"] if a.get("field") == DOSE]
    assert [(a["id"], a["reason"]) for a in aside] == [
        ("medicationrequest-1", "concurrent_orders"),
        ("medicationrequest-2", "concurrent_orders"),
    ]
    first, second = (f"{2 * mg:g} mg/day" for mg in (first_mg, second_mg))
    assert f"this one {first}; also MedicationRequest/medicationrequest-2, {second}" in aside[0]["message"]
    assert f"this one {second}; also MedicationRequest/medicationrequest-1, {first}" in aside[1]["message"]
    assert result["decision"]["input"]["cyclosporine"]["status"] == "current"  # both orders still say it is given


def test_the_text_report_says_why_the_dose_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "two.json"
    path.write_text(json.dumps(with_second_order(example(), 100, 100)))
    proc = cli("explain", "--input-format", "fhir", "--as-of", AS_OF, path)
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr
    assert "more than one current order of the drug" in proc.stdout, proc.stdout


def test_one_order_still_gives_its_dose(tmp_path: Path) -> None:
    result = run(tmp_path, example())
    assert result["decision"]["input"]["cyclosporine"]["daily_dose"] == {"value": 357, "unit": "mg/day"}
    assert outcome(result, "CSA-DOSE-EXCEEDS") == "fired"


@pytest.mark.parametrize(
    "repeat",
    [
        {"frequency": "2"},
        {"frequency": 0},
        {"frequency": -2},
        {"frequency": 1.5},
        {"frequency": True},
        {"frequency": None},
        {"period": "1"},
        {"period": 0},
        {"period": -1},
        {"periodUnit": "mo"},
        {"periodUnit": ["d"]},
        {"periodUnit": None},
    ],
    ids=repr,
)
def test_a_malformed_frequency_or_period_is_not_once_a_day(tmp_path: Path, repeat: dict[str, Any]) -> None:
    """The review's case: "frequency": "2" with 210 mg was read as 210 mg/day (CSA-DOSE-WITHIN,
    3 mg/kg/day) where the order means 420 (6 mg/kg/day)."""
    doc = example()
    order = resource(doc, "medicationrequest-1")
    order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 210
    order["dosageInstruction"][0]["timing"]["repeat"].update(repeat)
    result = run(tmp_path, doc)
    assert result["sources"][DOSE] == {"missing": "dose_not_computable"}
    assert outcome(result, "CSA-DOSE-WITHIN") == "undetermined"
    assert [(a["id"], a["reason"]) for a in result["set_aside"]] == [("medicationrequest-1", "dose_not_computable")]


def test_a_whole_frequency_written_as_a_decimal_still_counts(tmp_path: Path) -> None:
    doc = example()
    resource(doc, "medicationrequest-1")["dosageInstruction"][0]["timing"]["repeat"]["frequency"] = 2.0
    assert run(tmp_path, doc)["decision"]["input"]["cyclosporine"]["daily_dose"] == {"value": 357, "unit": "mg/day"}


OFF_CALENDAR = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01", "9999-12-31"]


@pytest.mark.parametrize("when", OFF_CALENDAR)
def test_a_weight_dated_off_the_calendar_is_set_aside_not_an_error(tmp_path: Path, when: str) -> None:
    """Was: status error, fhir.internal "OverflowError: date value out of range", exit 3."""
    doc = example()
    resource(doc, "observation-2")["effectiveDateTime"] = when
    result = run(tmp_path, doc)
    assert result["status"] == "evaluated"
    assert result["sources"]["/weight_kg"] == {"missing": "date_not_readable"}
    (item,) = result["set_aside"]
    assert (item["id"], item["reason"], item["field"]) == ("observation-2", "date_not_readable", "/weight_kg")
    assert f'effectiveDateTime "{when}" (a string) is outside the dates this reader places' in item["message"]


@pytest.mark.parametrize("when", OFF_CALENDAR)
def test_an_order_started_off_the_calendar_is_no_internal_error(tmp_path: Path, when: str) -> None:
    """The order's start cannot be read (as for a day that does not exist): it is set aside as
    `date_not_readable` (test_order_dates.py), the fields it feeds empty for that reason. (Was: still
    current, how long it had run unknown.)"""
    doc = example()
    resource(doc, "medicationrequest-1")["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]["start"] = when
    result = run(tmp_path, doc)
    assert result["status"] == "evaluated"
    assert "status" not in result["decision"]["input"].get("cyclosporine", {})
    assert result["sources"]["/cyclosporine/months_on_therapy"] == {"missing": "date_not_readable"}
    assert [(a["id"], a["reason"]) for a in result["set_aside"]] == [("medicationrequest-1", "date_not_readable")]


@pytest.mark.parametrize("as_of", ["0001-01-01", "9999-12-31", "0199-12-31", "9900-01-01"])
def test_an_evaluation_date_off_the_calendar_is_a_usage_error(tmp_path: Path, as_of: str) -> None:
    """Was: accepted, then exit 3 ("year 10000 is out of range")."""
    path = tmp_path / "b.json"
    path.write_text(json.dumps(example()))
    proc = cli("evaluate", "--input-format", "fhir", "--as-of", as_of, path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    assert f"error[cli.as_of] --as-of {as_of} is outside the evaluation dates" in proc.stderr, proc.stderr
    assert f"({FIRST_DAY} to {LAST_DAY})" in proc.stderr


@pytest.mark.parametrize("as_of", [FIRST_DAY, LAST_DAY])
def test_the_first_and_last_evaluation_dates_work(tmp_path: Path, as_of: str) -> None:
    doc = example()
    resource(doc, "observation-2")["effectiveDateTime"] = f"{as_of}T00:00:00+14:00"
    result = evaluate_bundle(tmp_path, doc, "--as-of", as_of)
    assert result["decision"]["fhir"]["as_of"] == as_of
