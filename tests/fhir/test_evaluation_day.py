"""The evaluation date is a calendar day, and a resource counts on the day its own date or dateTime
is written in: a weight taken at 20:00 in New York on 15 January (01:00Z on the 16th) is a
15 January weight, one taken at 01:00 in Paris on 16 January (23:00Z on the 15th) is not. Nothing
is converted through UTC on the way, nor when it is shown (`sources[].effective` is the time as
written). `--as-of` is that calendar day as given; without it, today's
date on the computer's clock (its local time zone), recorded in decision.fhir.as_of.

The Bundles are written here as FHIR JSON and go through the command line."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fhir_helpers import bundle as api_bundle
from fhir_helpers import cli, dosage, evaluate_bundle, med_request, obs, qty

from fsgs_kb.engine.fhir import FhirMap, bundle_to_record

AS_OF = "2025-01-15"


def weight(rid: str, when: str) -> dict[str, Any]:
    return obs(rid, "29463-7", qty(70, "kg"), when=when)


def order(rid: str, start: str, end: str | None = None, status: str = "active") -> dict[str, Any]:
    return med_request(rid, dosage(100, frequency=2, start=start, end=end), status=status)


def evaluate(
    tmp_path: Path, *resources: dict[str, Any], birth: str = "1980-03-01", as_of: str | None = AS_OF
) -> dict[str, Any]:
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": birth}
    entries = [{"fullUrl": "urn:uuid:p1", "resource": patient}] + [{"resource": r} for r in resources]
    doc = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    return evaluate_bundle(tmp_path, doc, "--include-input", *(("--as-of", as_of) if as_of else ()))


@pytest.mark.parametrize(
    ("when", "counted"),
    [
        ("2025-01-15T20:00:00-05:00", True),  # 15 January in New York (01:00Z on the 16th)
        ("2025-01-16T01:00:00+02:00", False),  # 16 January in Paris (23:00Z on the 15th)
        ("2025-01-15T23:59:59+14:00", True),
        ("2025-01-16T00:00:00-12:00", False),
        ("2025-01-15", True),
        ("2025-01-16", False),
    ],
)
def test_a_result_counts_on_the_day_it_is_written_in(tmp_path: Path, when: str, counted: bool) -> None:
    """...and is shown as it is written (its own offset, or a date alone), not as a UTC instant."""
    result = evaluate(tmp_path, weight("w", when))
    assert ("id" in result["sources"]["/weight_kg"]) is counted, result["sources"]["/weight_kg"]
    if counted:
        assert result["sources"]["/weight_kg"]["effective"] == when


def test_the_first_day_of_a_look_back_window_is_a_written_day_too(tmp_path: Path) -> None:
    """The weight's window is 90 days: 2024-10-17 is its first day whatever the offset."""
    result = evaluate(tmp_path, weight("w", "2024-10-17T01:00:00+05:00"))  # 2024-10-16T20:00Z
    assert result["sources"]["/weight_kg"]["id"] == "w"
    result = evaluate(tmp_path, weight("w", "2024-10-16T23:00:00-05:00"))  # 2024-10-17T04:00Z
    assert result["sources"]["/weight_kg"] == {"missing": "no_resource"}


def test_an_order_started_or_ending_on_the_evaluation_date_as_written_is_current(tmp_path: Path) -> None:
    started = evaluate(tmp_path, order("o", "2025-01-15T21:00:00-05:00"))  # 02:00Z on the 16th
    assert started["decision"]["fhir"]["as_of"] == AS_OF
    assert started["sources"]["/cyclosporine/status"]["id"] == "o"
    assert started["sources"]["/cyclosporine/status"]["effective"] == "2025-01-15T21:00:00-05:00"  # as written
    ending = evaluate(tmp_path, order("o", "2024-12-01", "2025-01-15T21:00:00-05:00", status="completed"))
    assert ending["sources"]["/cyclosporine/status"]["id"] == "o"
    later = evaluate(
        tmp_path, order("o", "2024-12-01", "2025-01-15T21:00:00-05:00", status="completed"), as_of="2025-01-16"
    )
    assert later["decision"]["fhir"]["as_of"] == "2025-01-16"
    assert [r["outcome"] for r in later["rules"] if r["id"] == "CSA-MONITOR-BP"] == ["not_fired"]  # stopped by then


@pytest.mark.parametrize(("as_of", "age"), [("2025-01-15", 18.0), ("2025-01-14", 17.9)])
def test_as_of_is_the_calendar_day_given(tmp_path: Path, as_of: str, age: float) -> None:
    """An 18th birthday on the evaluation date makes an adult that day, not the day before or after."""
    result = evaluate(tmp_path, birth="2007-01-15", as_of=as_of)
    assert result["decision"]["fhir"]["as_of"] == as_of
    assert result["decision"]["input"]["age_years"] == age
    assert result["sources"]["/age_years"]["effective"] == "2007-01-15"


def test_a_datetime_given_as_the_evaluation_date_is_its_own_calendar_day(fmap: FhirMap) -> None:
    late_in_new_york = datetime(2025, 1, 15, 23, 0, tzinfo=timezone(timedelta(hours=-5)))  # 04:00Z on the 16th
    record, _ = bundle_to_record(
        api_bundle(obs("w", "29463-7", qty(70, "kg"), when="2025-01-16")), fmap, as_of=late_in_new_york
    )
    assert "weight_kg" not in record
    record, _ = bundle_to_record(
        api_bundle(obs("w", "29463-7", qty(70, "kg"), when="2025-01-16")), fmap, as_of=date(2025, 1, 16)
    )
    assert record["weight_kg"] == 70


@pytest.mark.parametrize("offset", [14, -12])
def test_without_as_of_the_day_is_today_on_the_local_clock(tmp_path: Path, offset: int) -> None:
    """POSIX TZ `UTC-14` is 14 hours ahead of UTC: the day recorded is the local one, never UTC's."""
    tz = f"UTC{-offset:+d}"

    def local_today() -> date:
        return (datetime.now(timezone.utc) + timedelta(hours=offset)).date()

    before = local_today()
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1980-03-01"}
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": patient}]}))
    proc = cli("evaluate", "--input-format", "fhir", path, env={"TZ": tz})
    after = local_today()
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["decision"]["fhir"]["as_of"] in {before.isoformat(), after.isoformat()}
