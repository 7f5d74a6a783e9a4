"""A cyclosporine order or statement whose period is read from a date that cannot be read (a day off
the calendar such as 2023-02-30 or 2023-13-01, a malformed dateTime, a number) is set aside as
`date_not_readable`, as a result whose date cannot be read is: it neither counts as the current
order (with a dose and no known start) nor drops in silence, and since it may be current and part of
the latest course, what it could change is left empty with that reason: the status (unless another
order is current), the dose, the months on therapy and the baseline creatinine before the course.
A partial date is no unreadable one (the reader places it as before)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fhir_helpers import AS_OF, bundle, dosage, evaluate_bundle, med_request, obs, qty

from fsgs_kb.engine.fhir import FhirMap, convert_bundle

STATUS, DOSE = "/cyclosporine/status", "/cyclosporine/daily_dose"
MONTHS, BASELINE = "/cyclosporine/months_on_therapy", "/serum_creatinine/baseline"
UNREADABLE = ["2023-02-30", "2023-13-01", "2023-02-30T08:00:00Z", "20230201", 20230201]


def convert(fmap: FhirMap, *resources: dict[str, Any]) -> Any:
    return convert_bundle(bundle(*resources), fmap, as_of=AS_OF)


def aside(done: Any) -> list[tuple[str, str, str | None]]:
    return [(a.id, a.reason, a.field) for a in done.set_aside]


@pytest.mark.parametrize("start", UNREADABLE, ids=repr)
def test_an_order_whose_start_cannot_be_read_is_set_aside_not_current(fmap: FhirMap, start: Any) -> None:
    done = convert(fmap, med_request("csa", dosage(150, frequency=2, start=start)))
    assert aside(done) == [("csa", "date_not_readable", STATUS)]
    message = done.set_aside[0].message
    assert "dosageInstruction[0].timing.repeat.boundsPeriod.start" in message and "cannot be told" in message
    for field in (STATUS, DOSE, MONTHS, BASELINE):
        assert done.sources[field] == {"missing": "date_not_readable"}, field
    assert "cyclosporine" not in done.record or "status" not in done.record["cyclosporine"]


def test_an_unreadable_start_is_not_replaced_by_authored_on(fmap: FhirMap) -> None:
    """Was: the boundsPeriod start skipped, the course started on authoredOn instead."""
    order = med_request("csa", dosage(300, start="2023-02-30"), authoredOn="2023-01-10")
    done = convert(fmap, order)
    assert aside(done) == [("csa", "date_not_readable", STATUS)]
    assert done.sources[MONTHS] == {"missing": "date_not_readable"}


def test_a_validity_period_or_an_end_that_cannot_be_read_is_set_aside_too(fmap: FhirMap) -> None:
    validity = {"validityPeriod": {"start": "2023-13-01"}}
    ends = med_request("a", dosage(300, start="2023-01-10", end="2024-02-30"))
    by_validity = med_request("b", dosage(300), dispenseRequest=validity)
    for order, where in ((ends, "boundsPeriod.end"), (by_validity, "dispenseRequest.validityPeriod.start")):
        done = convert(fmap, order)
        assert [a[1] for a in aside(done)] == ["date_not_readable"] and where in done.set_aside[0].message
        assert done.sources[DOSE] == {"missing": "date_not_readable"}


def test_an_unreadable_authored_on_not_read_for_the_period_changes_nothing(fmap: FhirMap) -> None:
    done = convert(fmap, med_request("csa", dosage(300, start="2024-01-10"), authoredOn="2023-02-30"))
    assert done.set_aside == [] and done.record["cyclosporine"]["daily_dose"] == {"value": 300, "unit": "mg/day"}


def test_a_statement_whose_period_cannot_be_read_is_set_aside(fmap: FhirMap) -> None:
    statement = {
        "resourceType": "MedicationStatement",
        "id": "st",
        "status": "active",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "3008"}]
        },
        "effectivePeriod": {"start": "2023-02-30"},
        "dosage": [dosage(300)],
    }
    done = convert(fmap, statement)
    assert aside(done) == [("st", "date_not_readable", STATUS)]
    assert (
        "effectivePeriod.start" in done.set_aside[0].message and "when the statement runs" in done.set_aside[0].message
    )


def test_beside_a_current_order_the_status_holds_but_the_course_and_dose_do_not(fmap: FhirMap) -> None:
    """Another order is current whatever the unreadable one's dates: the status is read; how long
    the course has run, its baseline and the current dose are not (the unreadable one may be part of
    the course, or current too)."""
    current = med_request("now", dosage(300, start="2024-03-01"))
    old = med_request("old", dosage(300, start="2023-02-30", end="2024-02-20"), status="completed")
    creatinine = obs("cr", "2160-0", qty(1.0, "mg/dL"), when="2024-02-25")
    done = convert(fmap, current, old, creatinine)
    assert aside(done) == [("old", "date_not_readable", STATUS)]
    assert done.record["cyclosporine"]["status"] == "current" and done.sources[STATUS]["id"] == "now"
    for field in (DOSE, MONTHS, BASELINE):
        assert done.sources[field] == {"missing": "date_not_readable"}, field
    alone = convert(fmap, current, creatinine)  # without it: the course starts 2024-03-01, baseline 2024-02-25
    assert alone.set_aside == [] and alone.sources[BASELINE]["id"] == "cr" and alone.sources[MONTHS]["id"] == "now"


def test_a_partial_start_is_not_an_unreadable_one(fmap: FhirMap) -> None:
    done = convert(fmap, med_request("csa", dosage(300, start="2023-02"), authoredOn="2023-02-10"))
    assert all(a[1] != "date_not_readable" for a in aside(done)), aside(done)
    assert done.record["cyclosporine"]["status"] == "current"


def test_the_command_line_names_the_order_and_the_report_says_why(tmp_path: Path) -> None:
    doc = bundle(med_request("csa", dosage(150, frequency=2, start="2023-02-30")))
    result = evaluate_bundle(tmp_path, doc, "--as-of", AS_OF.isoformat(), "--include-input")
    (item,) = result["set_aside"]
    assert (item["id"], item["reason"], item["field"]) == ("csa", "date_not_readable", STATUS)
    assert '"2023-02-30" (a string) is not a date that can be read' in item["message"]
    assert result["sources"][STATUS] == {"missing": "date_not_readable"}
    assert date.fromisoformat(result["decision"]["fhir"]["as_of"]) == AS_OF
