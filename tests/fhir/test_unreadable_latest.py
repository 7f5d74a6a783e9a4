"""The latest value or nothing, when the latest result is broken: a newest Observation whose value is
not a number (`"value": "95"`) or whose date cannot be read (`2025-02-29`, a number) leaves its field
empty, saying why in `sources`, and is listed in `set_aside`; an older result never fills the field.

The Bundles are written out here as FHIR JSON and go through the real command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fhir_helpers import bundle, cli, evaluate_bundle, obs, qty

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


def test_a_partial_or_absent_date_is_still_not_placed_and_the_readable_result_fills_the_field(tmp_path: Path) -> None:
    month_only = weight("w-month", 95, "2025-01")
    no_date = weight("w-none", 96, None)
    result = evaluate(tmp_path, weight("w-old", 70, "2024-12-01"), month_only, no_date)
    assert result["sources"]["/weight_kg"]["id"] == "w-old"
    assert weight_aside(result) == []


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
