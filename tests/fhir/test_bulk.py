"""A Bulk Data export, in any order and not grouped, becomes one Bundle per Patient; every bad line
is reported with file and line number and never stops the stream; memory stays flat."""

from __future__ import annotations

import json
import random
import tracemalloc
from pathlib import Path
from typing import Any

from fhir_helpers import AS_OF, med_request

from fsgs_kb.engine.fhir import FhirMap, LineError, PatientGroup, bundle_to_record, group_bulk_export, record_to_bundle


def _write_export(directory: Path, records: list[dict[str, Any]], fmap: FhirMap, seed: int = 7) -> dict[str, list[str]]:
    """Write the records' resources as one NDJSON file per type, lines shuffled across patients."""
    by_type: dict[str, list[str]] = {}
    for record in records:
        for entry in record_to_bundle(record, fmap, as_of=AS_OF)["entry"]:
            res = entry["resource"]
            if res["resourceType"] != "Patient":
                res["id"] = f"{res['id']}-{res['subject']['reference'].split('/')[-1]}"
            by_type.setdefault(res["resourceType"], []).append(json.dumps(res))
    rng = random.Random(seed)
    for rtype, lines in by_type.items():
        rng.shuffle(lines)
        (directory / f"{rtype}.ndjson").write_text("\n".join(lines) + "\n")
    return by_type


def _records(count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"P{i:05d}",
            "age_years": 30 + i % 40,
            "weight_kg": 60 + i % 30,
            "fsgs": {"biopsy_proven": True, "etiology": "primary"},
            "cyclosporine": {
                "status": "current",
                "daily_dose": {"value": 150 + i % 100, "unit": "mg/day"},
                "months_on_therapy": 3,
            },
            "serum_creatinine": {"current": 90 + i % 20, "baseline": 80, "unit": "umol/L"},
        }
        for i in range(count)
    ]


def test_shuffled_export_groups_back_into_the_same_records(tmp_path: Path, fmap: FhirMap) -> None:
    records = _records(40)
    _write_export(tmp_path, records, fmap)
    items = list(group_bulk_export(tmp_path, tmp_path / "index.sqlite"))
    groups = [i for i in items if isinstance(i, PatientGroup)]
    assert [i for i in items if isinstance(i, LineError)] == []
    assert len(groups) == 40
    back = sorted((bundle_to_record(g.bundle, fmap, as_of=AS_OF)[0] for g in groups), key=lambda r: r["id"])
    assert back == records


def test_garbage_lines_are_reported_and_the_stream_goes_on(tmp_path: Path, fmap: FhirMap) -> None:
    _write_export(tmp_path, _records(3), fmap)
    obs_file = tmp_path / "Observation.ndjson"
    lines = obs_file.read_text().splitlines()
    lines[1:1] = ["{not json", "[1, 2, 3]", '{"no": "resourceType"}', "", "\xff\xfe"]
    obs_file.write_text("\n".join(lines) + "\n")
    with (tmp_path / "Zzz.ndjson").open("wb") as handle:
        handle.write(b"\xff\xfe\xfa\n")
        handle.write(b"[" * 200_000 + b"]" * 200_000 + b"\n")
        handle.write(
            b'{"resourceType": "Observation", "id": "deep", "x": ' + b'{"a": ' * 100 + b"1" + b"}" * 100 + b"}\n"
        )
    items = list(group_bulk_export(tmp_path, tmp_path / "index.sqlite"))
    errors = [i for i in items if isinstance(i, LineError)]
    assert len([i for i in items if isinstance(i, PatientGroup)]) == 3
    located = {(e.file, e.line) for e in errors}
    assert {("Observation.ndjson", 2), ("Observation.ndjson", 3), ("Observation.ndjson", 4)} <= located
    assert ("Zzz.ndjson", 1) in located and ("Zzz.ndjson", 2) in located and ("Zzz.ndjson", 3) in located
    assert any("not valid JSON" in e.message for e in errors)
    assert any("not a FHIR resource" in e.message for e in errors)


def test_overlong_lines_are_skipped_with_bounded_reads(tmp_path: Path) -> None:
    (tmp_path / "Patient.ndjson").write_text(json.dumps({"resourceType": "Patient", "id": "a"}) + "\n")
    big = json.dumps(
        {
            "resourceType": "Observation",
            "id": "big",
            "subject": {"reference": "Patient/a"},
            "note": [{"text": "x" * 50_000}],
        }
    )
    (tmp_path / "Observation.ndjson").write_text(big + "\n")
    items = list(group_bulk_export(tmp_path, tmp_path / "i.sqlite", max_line_bytes=10_000))
    assert [(e.file, e.line) for e in items if isinstance(e, LineError)] == [("Observation.ndjson", 1)]
    assert len([i for i in items if isinstance(i, PatientGroup)]) == 1


def test_references_to_missing_patients_and_to_no_one(tmp_path: Path) -> None:
    (tmp_path / "Patient.ndjson").write_text(json.dumps({"resourceType": "Patient", "id": "a"}) + "\n")
    rows = [
        {"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/ghost"}},
        {"resourceType": "Observation", "id": "o2"},
        {"resourceType": "Observation", "id": "o3", "subject": {"reference": "Group/g1"}},
        {"resourceType": "Observation", "id": "o4", "subject": {"reference": "Patient/a"}},
    ]
    (tmp_path / "Observation.ndjson").write_text("\n".join(map(json.dumps, rows)) + "\n")
    items = list(group_bulk_export(tmp_path, tmp_path / "i.sqlite"))
    errors = {(e.file, e.line): e.message for e in items if isinstance(e, LineError)}
    assert "Patient/ghost" in errors[("Observation.ndjson", 1)]
    assert "no usable patient reference" in errors[("Observation.ndjson", 2)]
    assert ("Observation.ndjson", 3) in errors
    group = next(i for i in items if isinstance(i, PatientGroup))
    assert [e["resource"]["id"] for e in group.bundle["entry"]] == ["a", "o4"]


def test_duplicate_patient_lines_with_different_content(tmp_path: Path) -> None:
    rows = [
        {"resourceType": "Patient", "id": "a", "gender": "male"},
        {"resourceType": "Patient", "id": "a", "gender": "female"},
    ]
    (tmp_path / "Patient.ndjson").write_text("\n".join(map(json.dumps, rows)) + "\n")
    items = list(group_bulk_export(tmp_path, tmp_path / "i.sqlite"))
    assert [(e.file, e.line) for e in items if isinstance(e, LineError)] == [("Patient.ndjson", 2)]


def test_medications_referenced_by_orders_travel_with_the_group(tmp_path: Path, fmap: FhirMap) -> None:
    (tmp_path / "Patient.ndjson").write_text(json.dumps({"resourceType": "Patient", "id": "a"}) + "\n")
    (tmp_path / "Medication.ndjson").write_text(
        json.dumps(
            {
                "resourceType": "Medication",
                "id": "neoral",
                "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "835911"}]},
            }
        )
        + "\n"
    )
    dosage = {
        "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d", "boundsPeriod": {"start": "2024-01-01"}}},
        "doseAndRate": [{"doseQuantity": {"value": 100, "system": "http://unitsofmeasure.org", "code": "mg"}}],
    }
    order = med_request(
        "m",
        dosage,
        code=None,
        subject={"reference": "Patient/a"},
        medicationReference={"reference": "Medication/neoral"},
    )
    (tmp_path / "MedicationRequest.ndjson").write_text(json.dumps(order) + "\n")
    group = next(i for i in group_bulk_export(tmp_path, tmp_path / "i.sqlite") if isinstance(i, PatientGroup))
    record, _ = bundle_to_record(group.bundle, fmap, as_of=AS_OF)
    assert record["cyclosporine"]["daily_dose"] == {"value": 200, "unit": "mg/day"}


def test_memory_stays_flat_while_iterating(tmp_path: Path, fmap: FhirMap) -> None:
    _write_export(tmp_path, _records(600), fmap)
    stream = group_bulk_export(tmp_path, tmp_path / "i.sqlite")
    first = next(stream)  # indexing done
    assert isinstance(first, PatientGroup)
    tracemalloc.start()
    for i, _ in enumerate(stream):
        if i == 50:
            early = tracemalloc.get_traced_memory()[0]
    late, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert late < early + 200_000, (early, late)
    assert peak < 5_000_000
