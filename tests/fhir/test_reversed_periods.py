"""A FHIR Period that ends before it starts (R4 invariant per-1: start <= end) tells no time: an
order or statement read from one is set aside as `date_not_readable` with what it could change left
empty, as for an unreadable date; an Observation's effectivePeriod so is no date to place it by. A
negative course length never becomes 0 months."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fhir_helpers import AS_OF, bundle, dosage, med_request, obs, qty

from fsgs_kb.engine.fhir import FhirMap, convert_bundle
from fsgs_kb.engine.fhir.effective import reversed_period

STATUS, DOSE, MONTHS = "/cyclosporine/status", "/cyclosporine/daily_dose", "/cyclosporine/months_on_therapy"


def convert(fmap: FhirMap, *resources: dict[str, Any]) -> Any:
    return convert_bundle(bundle(*resources), fmap, as_of=AS_OF)


def test_a_bounds_period_that_ends_before_it_starts_is_set_aside(fmap: FhirMap) -> None:
    done = convert(fmap, med_request("csa", dosage(150, frequency=2, start="2024-01-18", end="2023-01-01")))
    assert [(a.id, a.reason, a.field) for a in done.set_aside] == [("csa", "date_not_readable", STATUS)]
    assert 'boundsPeriod ends ("2023-01-01") before it starts ("2024-01-18")' in done.set_aside[0].message
    for field in (STATUS, DOSE, MONTHS):
        assert done.sources[field] == {"missing": "date_not_readable"}, field


def test_an_authored_on_after_the_end_read_is_set_aside_too(fmap: FhirMap) -> None:
    order = med_request("csa", dosage(300, end="2023-01-01"), authoredOn="2024-01-18", status="completed")
    done = convert(fmap, order)
    assert [a.reason for a in done.set_aside] == ["date_not_readable"]
    assert "the period read ends" in done.set_aside[0].message
    assert done.sources[MONTHS] == {"missing": "date_not_readable"}


def test_a_statement_period_that_ends_before_it_starts_is_set_aside(fmap: FhirMap) -> None:
    statement = {
        "resourceType": "MedicationStatement",
        "id": "st",
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "3008"}]
        },
        "effectivePeriod": {"start": "2024-06", "end": "2024-05-31"},
        "dosage": [dosage(300)],
    }
    done = convert(fmap, statement)
    assert [(a.id, a.reason) for a in done.set_aside] == [("st", "date_not_readable")]


def test_an_observation_period_that_ends_before_it_starts_is_not_dated_by_its_end(fmap: FhirMap) -> None:
    period = {"start": "2024-05-20", "end": "2024-05-10"}
    weight = obs("w", "29463-7", qty(70, "kg"), when=None, effectivePeriod=period)
    done = convert(fmap, weight)
    assert [(a.id, a.reason) for a in done.set_aside] == [("w", "date_not_readable")]
    assert "effectivePeriod ends" in done.set_aside[0].message
    assert done.sources["/weight_kg"] == {"missing": "date_not_readable"}
    forward = obs("w", "29463-7", qty(70, "kg"), when=None, effectivePeriod={"start": "2024-06", "end": "2024-06-01"})
    assert convert(fmap, forward).record["weight_kg"] == 70  # a partial start that may be before the end


def test_a_course_begun_after_the_evaluation_days_utc_midnight_counts_its_days_not_zero(fmap: FhirMap) -> None:
    """Started the evening before the evaluation date in New York (05:00Z on it): was 0 months."""
    start = f"{AS_OF - timedelta(days=1)}T23:00:00-05:00"
    done = convert(fmap, med_request("csa", dosage(300, start=start)))
    assert done.set_aside == []
    assert done.record["cyclosporine"]["months_on_therapy"] == round(1 / 30.4375, 6)


def test_a_period_ending_on_the_day_it_starts_runs_forward(fmap: FhirMap) -> None:
    """A date alone is its whole day (FHIR: Period.end is inclusive): a course started that morning
    and ending that day is no reversed period (it was, compared to the day's first instant)."""
    done = convert(fmap, med_request("csa", dosage(150, frequency=2, start="2024-01-18T10:00:00Z", end="2024-01-18")))
    assert [a.reason for a in done.set_aside] == []
    assert reversed_period("p", {"start": "2024-01-18T10:00:00Z", "end": "2024-01-18"}) is None
    assert reversed_period("p", {"start": "2024-01-18T10:00:00Z", "end": "2024-01-17"}) is not None
    assert reversed_period("p", {"start": "2024-01-18T10:00:00Z", "end": "2024-01-18T09:59:59Z"}) is not None
