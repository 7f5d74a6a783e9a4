"""The latest value or nothing, when the latest result is broken: a newest Observation whose value is
not a number (`"value": "95"`), whose date cannot be read (`2025-02-29`, a number), or which has no
date to the day (`2025-01`, none at all) and may be the latest, leaves its field empty, saying why in
`sources`, and is listed in `set_aside`; an older result never fills the field.

The Bundles are written out here as FHIR JSON and go through the real command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fhir_helpers import bundle, cli, dosage, evaluate_bundle, field_obs, med_request, obs, qty

AS_OF = "2025-01-15"
PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "1980-03-01"}


def weight(rid: str, value: Any, when: Any = "2025-01-10") -> dict[str, Any]:
    return obs(rid, "29463-7", {**qty(70, "kg"), "value": value}, when=when)


def evaluate(tmp_path: Path, *resources: dict[str, Any]) -> dict[str, Any]:
    return evaluate_bundle(tmp_path, bundle(*resources, patient=PATIENT), "--as-of", AS_OF)


def weight_aside(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [item for item in result["set_aside"] if item.get("field") == "/weight_kg"]


BROKEN_VALUES = [
    ("95", 'valueQuantity.value "95" (a string) is not a number'),
    (True, "valueQuantity.value true (a boolean) is not a number"),
    (None, "valueQuantity.value null is not a number"),
]


@pytest.mark.parametrize(("value", "words"), BROKEN_VALUES)
def test_a_newer_value_that_is_not_a_number_leaves_the_field_empty_not_filled_from_an_older_one(
    tmp_path: Path, value: Any, words: str
) -> None:
    result = evaluate(tmp_path, weight("w-old", 70, "2024-12-01"), weight("w-new", value, "2025-01-10"))
    assert result["sources"]["/weight_kg"] == {"missing": "not_a_value"}
    assert weight_aside(result) == [
        {
            "resourceType": "Observation",
            "id": "w-new",
            "entry": "/entry/2",
            "field": "/weight_kg",
            "reason": "not_a_value",
            "message": f"Observation/w-new: {words}",
        }
    ]


BROKEN_DATES = [
    ({"effectiveDateTime": "2025-02-29"}, 'effectiveDateTime "2025-02-29" (a string) is not a date'),
    ({"effectiveDateTime": 20250110}, "effectiveDateTime 20250110 is not a date"),
    ({"effectiveDateTime": "2025-01-10T10:00:00"}, 'effectiveDateTime "2025-01-10T10:00:00" (a string) is not'),
    ({"effectivePeriod": {"start": "2025-13-01"}}, 'effectivePeriod.start "2025-13-01" (a string) is not a date'),
]


@pytest.mark.parametrize(("effective", "words"), BROKEN_DATES)
def test_a_result_whose_date_cannot_be_read_may_be_the_latest_so_no_older_value_fills_the_field(
    tmp_path: Path, effective: dict[str, Any], words: str
) -> None:
    undated = {**weight("w-bad", 95, None), **effective}
    result = evaluate(tmp_path, weight("w-old", 70, "2024-12-01"), undated)
    assert result["sources"]["/weight_kg"] == {"missing": "date_not_readable"}
    [item] = weight_aside(result)
    assert (item["id"], item["entry"], item["reason"]) == ("w-bad", "/entry/2", "date_not_readable")
    assert item["message"].startswith(f"Observation/w-bad: {words}")
    assert item["message"].endswith("it may be the latest result")


IMPRECISE_DATES = [
    ({"effectiveDateTime": "2025-01"}, 'effectiveDateTime "2025-01" (a string) gives only a year and a month, no day'),
    ({"effectiveDateTime": "2025"}, 'effectiveDateTime "2025" (a string) gives only a year, no day'),
    ({}, "no effective date (effectiveDateTime, effectiveInstant or effectivePeriod)"),
    ({"effectivePeriod": {"start": "2024-12"}}, 'effectivePeriod (start "2024-12" (a string)) gives no day'),
]


@pytest.mark.parametrize(("effective", "words"), IMPRECISE_DATES)
def test_a_result_with_no_day_in_its_date_may_be_the_latest_so_no_older_value_fills_the_field(
    tmp_path: Path, effective: dict[str, Any], words: str
) -> None:
    """Valid FHIR, but not placed on a day: a weight of January 2025 (or of 2025, or undated) may
    be later than the one of 1 December, so that one does not stand in for it (before, it was
    skipped in silence and the December weight filled the field)."""
    vague = {**weight("w-vague", 95, None), **effective}
    result = evaluate(tmp_path, weight("w-old", 70, "2024-12-01"), vague)
    assert result["sources"]["/weight_kg"] == {"missing": "date_not_precise"}
    assert weight_aside(result) == [
        {
            "resourceType": "Observation",
            "id": "w-vague",
            "entry": "/entry/2",
            "field": "/weight_kg",
            "reason": "date_not_precise",
            "message": f"Observation/w-vague: {words}: it may be the latest result",
        }
    ]


def test_a_partial_date_ruled_out_as_the_latest_or_outside_the_window_is_not_read(tmp_path: Path) -> None:
    """Every day of December 2024 is before the weight of 10 January, and 2023 is before the
    90-day look-back window: neither can be the latest weight, so the dated one fills the field."""
    december, old_year = weight("w-dec", 95, "2024-12"), weight("w-2023", 96, "2023")
    result = evaluate(tmp_path, december, old_year, weight("w-new", 70, "2025-01-10"))
    assert result["sources"]["/weight_kg"]["id"] == "w-new"
    assert result["set_aside"] == []
    assert evaluate(tmp_path, old_year)["sources"]["/weight_kg"] == {"missing": "no_resource"}


def test_a_result_of_the_same_month_as_the_latest_dated_one_may_be_later(tmp_path: Path) -> None:
    result = evaluate(tmp_path, weight("w-new", 70, "2025-01-10"), weight("w-jan", 95, "2025-01"))
    assert result["sources"]["/weight_kg"] == {"missing": "date_not_precise"}
    assert [(i["id"], i["reason"]) for i in weight_aside(result)] == [("w-jan", "date_not_precise")]


def creatinine(rid: str, value: float, when: str | None) -> dict[str, Any]:
    return obs(rid, "2160-0", qty(value, "mg/dL"), when=when)


def test_a_creatinine_of_a_month_before_the_course_leaves_the_baseline_empty(tmp_path: Path) -> None:
    """The course starts on 1 December 2024: a creatinine of November may be the last one before
    it, so the one of October is not the baseline (nor, within 90 days, the current value); one of
    December is after the course started and is not a baseline at all (it is a current value that
    may be the latest)."""
    order = med_request("o", dosage(100, frequency=2), authoredOn="2024-12-01")
    older = creatinine("c-oct", 1.0, "2024-10-01")
    result = evaluate(tmp_path, order, older, creatinine("c-nov", 1.4, "2024-11"))
    assert result["sources"]["/serum_creatinine/baseline"] == {"missing": "date_not_precise"}
    aside = {(i["id"], i["field"], i["reason"]) for i in result["set_aside"]}
    assert aside == {("c-nov", f"/serum_creatinine/{k}", "date_not_precise") for k in ("current", "baseline")}
    result = evaluate(tmp_path, order, older, creatinine("c-dec", 1.4, "2024-12"))
    assert result["sources"]["/serum_creatinine/baseline"]["id"] == "c-oct"
    assert result["sources"]["/serum_creatinine/current"] == {"missing": "date_not_precise"}


def test_explain_says_why_a_field_is_empty_when_the_latest_result_has_no_day(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle(weight("w-old", 70, "2024-12-01"), weight("w", 95, "2025-01"), patient=PATIENT)))
    proc = cli("explain", "--input-format", "fhir", "--as-of", AS_OF, path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "empty, a result with no date, or none to the day, so it may be the latest: /weight_kg" in proc.stdout
    assert '/entry/2, /weight_kg: Observation/w: effectiveDateTime "2025-01" (a string) gives only' in proc.stdout


def test_a_bulk_export_sets_aside_an_undated_result_with_its_file_and_line(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    (export / "Patient.ndjson").write_text(json.dumps(PATIENT) + "\n")
    lines = [weight("w-old", 70, "2024-12-01"), weight("w-none", 95, None)]
    (export / "Observation.ndjson").write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = tmp_path / "out.jsonl"
    proc = cli("batch", "--input-format", "fhir-bulk", "--as-of", AS_OF, export, "-o", out)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    (result,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert result["sources"]["/weight_kg"] == {"missing": "date_not_precise"}
    (item,) = result["set_aside"]
    assert (item["id"], item["origin"], item["field"], item["reason"]) == (
        "w-none",
        "Observation.ndjson:2",
        "/weight_kg",
        "date_not_precise",
    )


def test_a_lone_broken_value_is_not_reported_as_no_resource(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle(weight("w", "95"), patient=PATIENT)))
    result = evaluate(tmp_path, weight("w", "95"))
    assert result["sources"]["/weight_kg"] == {"missing": "not_a_value"}
    proc = cli("explain", "--input-format", "fhir", "--as-of", AS_OF, path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "empty, the latest value is not a number the map can read: /weight_kg" in proc.stdout
    assert '/entry/1, /weight_kg: Observation/w: valueQuantity.value "95" (a string) is not a number' in proc.stdout
    assert "no resource for it: /weight_kg" not in proc.stdout


def test_a_lone_result_with_an_unreadable_date_is_not_reported_as_no_resource(tmp_path: Path) -> None:
    result = evaluate(tmp_path, weight("w", 95, "2025-02-29"))
    assert result["sources"]["/weight_kg"] == {"missing": "date_not_readable"}
    assert [item["id"] for item in weight_aside(result)] == ["w"]


def test_an_unreadable_date_on_a_result_that_is_no_result_is_set_aside_for_its_status(tmp_path: Path) -> None:
    prelim = {**weight("w-bad", 95, "2025-02-29"), "status": "preliminary"}
    result = evaluate(tmp_path, weight("w-old", 70, "2024-12-01"), prelim)
    assert result["sources"]["/weight_kg"]["id"] == "w-old"
    assert [(i["id"], i["reason"]) for i in weight_aside(result)] == [("w-bad", "status_not_usable")]


def test_a_field_observation_with_no_date_is_set_aside_as_not_precise(tmp_path: Path) -> None:
    """Facts carried as field Observations (biopsy-proven, etiology, …) are picked by the same rule."""
    fact = field_obs("f-none", "fsgs.biopsy_proven", when=None, valueBoolean=True)
    result = evaluate(tmp_path, field_obs("f-old", "fsgs.biopsy_proven", when="2024-01-01", valueBoolean=False), fact)
    assert result["sources"]["/fsgs/biopsy_proven"] == {"missing": "date_not_precise"}
    assert [(i["id"], i["reason"]) for i in result["set_aside"]] == [("f-none", "date_not_precise")]
