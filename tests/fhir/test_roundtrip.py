"""record -> Bundle -> record is the identity on every field the map covers: on every example of
the project, on the cohort, and on records generated from the patient schema (hypothesis)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from fhir_helpers import AS_OF, project_file
from fhir_strategies import records
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsgs_kb.engine.fhir import FhirMap, bundle_to_record, record_to_bundle

EXAMPLES = sorted(project_file("examples").glob("*.json"))


def _round_trip(record: dict[str, Any], fmap: FhirMap, as_of: date = AS_OF) -> tuple[dict[str, Any], dict[str, Any]]:
    bundle = json.loads(json.dumps(record_to_bundle(record, fmap, as_of=as_of)))  # through JSON, as on the wire
    return bundle_to_record(bundle, fmap, as_of=as_of)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_round_trip(path: Any, fmap: FhirMap) -> None:
    record = json.loads(path.read_text())
    back, prov = _round_trip(record, fmap)
    assert back == record
    for pointer, entry in prov.items():
        assert ("missing" in entry) != ("resourceType" in entry), pointer


def test_cohort_round_trips(fmap: FhirMap, valid_record: Any) -> None:
    lines = project_file("examples/cohort.jsonl").read_text().splitlines()
    checked = 0
    for line in lines:
        record = json.loads(line)
        if not valid_record(record):
            continue  # the cohort keeps some invalid records on purpose
        assert _round_trip(record, fmap)[0] == record, record["id"]
        checked += 1
    assert checked > 400


def test_filled_fields_say_where_from_and_empty_ones_why(fmap: FhirMap) -> None:
    record = json.loads(project_file("examples/dose-above-ceiling.json").read_text())
    _, prov = _round_trip(record, fmap)
    assert prov["/weight_kg"]["code"] == "http://loinc.org|29463-7"
    assert prov["/cyclosporine/daily_dose"]["resourceType"] == "MedicationRequest"
    assert prov["/serum_creatinine/baseline"]["effective"] < prov["/cyclosporine/months_on_therapy"]["effective"]
    assert prov["/disease_status"] == {"missing": "no_resource"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), as_of=st.dates(date(2000, 1, 1), date(2099, 12, 31)))
def test_generated_records_round_trip(
    data: Any, as_of: date, fmap: FhirMap, patient_schema: dict[str, Any], valid_record: Any
) -> None:
    record = data.draw(records(patient_schema))
    assert valid_record(record), record
    assert _round_trip(record, fmap, as_of)[0] == record


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_generated_records_with_section3_fields_round_trip(
    data: Any, fmap: FhirMap, patient_schema: dict[str, Any]
) -> None:
    record = data.draw(records(patient_schema, extended=True))
    assert _round_trip(record, fmap)[0] == record
