"""A Bulk Data export line is refused for what a Bundle line is refused for, and costs only itself.

A Bundle line goes through the bounded record parser (engine/read/records.py parse_json); a bulk
line was read by json.loads alone, which takes what JSON text cannot mean: a key given twice (the
last value was used, silently), NaN and Infinity, integers beyond 64 bits, and strings holding a
lone surrogate (`"\\ud800"`). A Patient id holding one stopped the whole run with exit 3
(`error[internal] UnicodeEncodeError`) when the index stored it; now each such line is its own
`invalid` result naming FILE:LINE, and the patients around it are evaluated.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hostile_support import assert_each_record_once, assert_no_traceback, read_results, run

from fsgs_kb.engine.errors import KBErrors
from fsgs_kb.engine.fhir import ndjson
from fsgs_kb.engine.read import record

AS_OF = "2025-01-15"


def _weight(value: str, subject: str = "Patient/a") -> str:
    """An Observation line written by hand, so that its value can be any JSON text."""
    head = '{"resourceType": "Observation", "status": "final", "subject": {"reference": "' + subject + '"}, '
    code = '"code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]}, '
    quantity = (
        '"valueQuantity": {"value": ' + value + ', "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}'
    )
    return head + code + '"effectiveDateTime": "2025-01-10", ' + quantity


def _export(tmp_path: Path, lines: dict[str, list[str]]) -> list[dict]:
    export = tmp_path / "export"
    export.mkdir()
    for name, content in lines.items():
        (export / name).write_text("\n".join(content) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = run("batch", "--input-format", "fhir-bulk", "--as-of", AS_OF, export, "-o", out, "--quiet", timeout=60)
    assert_no_traceback(result)
    assert result.rc == 1, result
    results = read_results(out)
    assert_each_record_once(results, len(results))
    return results


def test_bulk_lines_are_refused_as_bundle_lines_are(tmp_path: Path) -> None:
    patient = {"resourceType": "Patient", "birthDate": "1980-03-01"}
    results = _export(
        tmp_path,
        {
            "Patient.ndjson": [
                json.dumps({**patient, "id": "a"}),
                json.dumps({**patient, "id": "b"}),
                '{"resourceType": "Patient", "id": "c\\ud800", "birthDate": "1980-03-01"}',
                '{"resourceType": "Patient", "id": "d", "name": [{"text": "\\udfff"}]}',
                '{"resourceType": "Patient", "id": "e", "id": "f"}',
            ],
            "Observation.ndjson": [
                _weight("70"),
                _weight('71, "value": 710'),
                _weight("NaN"),
                _weight("-Infinity"),
                _weight("123456789012345678901234567890"),
                _weight("60", subject="Patient/b"),
            ],
        },
    )
    bad = {r["origin"]: r["errors"][0] for r in results if r["status"] == "invalid"}
    assert set(bad) == {
        "Patient.ndjson:3",
        "Patient.ndjson:4",
        "Patient.ndjson:5",
        "Observation.ndjson:2",
        "Observation.ndjson:3",
        "Observation.ndjson:4",
        "Observation.ndjson:5",
    }, bad
    assert all(error["code"] == "fhir.line" for error in bad.values())
    assert "lone surrogate" in bad["Patient.ndjson:3"]["message"]
    assert "lone surrogate" in bad["Patient.ndjson:4"]["message"]
    assert 'key "id" appears twice' in bad["Patient.ndjson:5"]["message"]
    assert 'key "value" appears twice' in bad["Observation.ndjson:2"]["message"]
    assert "not a JSON number" in bad["Observation.ndjson:3"]["message"]
    assert "not a JSON number" in bad["Observation.ndjson:4"]["message"]
    assert "beyond 64 bits" in bad["Observation.ndjson:5"]["message"]
    patients = {r["patient_id"]: r for r in results if r["status"] != "invalid"}
    assert set(patients) == {"a", "b"}
    # only the one well-formed weight of each patient is read: the refused lines fed nothing
    assert patients["a"]["sources"]["/weight_kg"]["effective"] == "2025-01-10", patients["a"]["sources"]
    assert patients["a"]["set_aside"] == [], patients["a"]["set_aside"]
    assert patients["b"]["sources"]["/weight_kg"]["effective"] == "2025-01-10"


def test_a_patient_without_an_id_and_a_patient_given_twice_are_named_plainly(tmp_path: Path) -> None:
    """A Patient with no id is not "a Patient with no usable patient reference"; a Patient given
    twice with different content names both lines (its one result is that invalid one)."""
    results = _export(
        tmp_path,
        {
            "Observation.ndjson": [_weight("70", subject="Patient/dup")],  # indexed before the Patients
            "Patient.001.ndjson": [
                json.dumps({"resourceType": "Patient", "birthDate": "1980-03-01"}),
                json.dumps({"resourceType": "Patient", "id": 7}),
                json.dumps({"resourceType": "Patient", "id": "dup", "birthDate": "1980-03-01"}),
            ],
            "Patient.002.ndjson": [
                json.dumps({"resourceType": "Patient", "id": "dup", "birthDate": "1980-03-01"}),  # the same: fine
                json.dumps({"resourceType": "Patient", "id": "dup", "birthDate": "1990-03-01"}),
            ],
        },
    )
    bad = {r["origin"]: r["errors"][0]["message"] for r in results if r["status"] == "invalid"}
    assert set(bad) == {"Patient.001.ndjson:1", "Patient.001.ndjson:2", "Patient.002.ndjson:2"}, bad
    assert "Patient has no id" in bad["Patient.001.ndjson:1"]
    assert "Patient has no id" in bad["Patient.001.ndjson:2"]
    assert bad["Patient.002.ndjson:2"] == (
        "Patient.002.ndjson:2: Patient/dup appears twice with different content (also at Patient.001.ndjson:3)"
    )
    assert [r for r in results if r["status"] != "invalid"] == []


def test_a_patient_id_that_is_no_fhir_id_is_its_lines_error(tmp_path: Path) -> None:
    """A Patient of an export is named by its id alone (its resources refer to `Patient/<id>`, the
    Bundle made for it has that fullUrl), and an id that is no FHIR id was taken: `../x` (the fullUrl
    Patient/../x), a 10 KB id, one holding a NUL or a space. Each is now an invalid result naming
    FILE:LINE and Patient.id, the id escaped and cut; an underscore is taken, as the CDS service
    takes it; a reference to such an id is no usable patient reference."""
    bad_ids = ["../x", "y" * 10_000, "a\x00b", "a b", "Patient/z", "a/_history/2", "é"]
    good_ids = ["a", "under_score", "x.y-1"]
    patients = [{"resourceType": "Patient", "id": pid, "birthDate": "1980-03-01"} for pid in good_ids + bad_ids]
    results = _export(
        tmp_path,
        {
            "Patient.ndjson": [json.dumps(p) for p in patients],
            "Observation.ndjson": [_weight("70", subject="Patient/under_score"), _weight("71", subject="Patient/a b")],
        },
    )
    bad = {r["origin"]: r["errors"][0] for r in results if r["status"] == "invalid"}
    lines = [f"Patient.ndjson:{i}" for i, pid in enumerate(good_ids + bad_ids, start=1) if pid in bad_ids]
    assert set(bad) == {*lines, "Observation.ndjson:2"}, sorted(bad)
    for origin in lines:
        error = bad[origin]
        assert error["code"] == "fhir.line", error
        assert error["message"].startswith(f"{origin}: Patient.id "), error["message"]
        assert "is not a FHIR id" in error["message"] and len(error["message"]) < 300, error["message"]
    assert '"a\\u0000b"' in bad["Patient.ndjson:6"]["message"]  # escaped, not a raw NUL
    assert bad["Observation.ndjson:2"]["message"].endswith("Observation has no usable patient reference")
    evaluated = {r["patient_id"]: r for r in results if r["status"] != "invalid"}
    assert set(evaluated) == set(good_ids)
    assert evaluated["under_score"]["sources"]["/weight_kg"]["effective"] == "2025-01-10"
    assert "\x00" not in (tmp_path / "out.jsonl").read_text()


def test_an_oversized_bulk_line_is_read_to_its_end_or_stops_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line past the line limit is skipped to its end, and the lines after it keep their numbers;
    one that goes on past MAX_SKIP stops the run naming the file, as a JSON line that never ends
    does. It was cut off at MAX_SKIP and the rest read as more lines: bogus errors, and each line
    after it numbered wrong (here MAX_SKIP is lowered to 1 MiB, so a 3 MiB line goes on past it)."""
    path = tmp_path / "Patient.ndjson"
    patient = json.dumps({"resourceType": "Patient", "id": "a"})
    path.write_text(patient + "\n" + '{"resourceType": "Patient", "x": "' + "x" * (3 << 20) + '"}\n' + patient + "\n")
    lines = [(number, type(item).__name__) for number, item in ndjson.read_ndjson(path, 1000, 64)]
    assert lines == [(1, "dict"), (2, "LineError"), (3, "dict")]
    monkeypatch.setattr(record, "MAX_SKIP", 1 << 20)
    monkeypatch.setattr(ndjson, "MAX_SKIP", 1 << 20, raising=False)  # where the limit was before
    try:
        lines = [(number, type(item).__name__) for number, item in ndjson.read_ndjson(path, 1000, 64)]
    except KBErrors as exc:
        assert [(e.code, e.file, e.line) for e in exc.errors] == [("input.unbounded", str(path), 2)]
    else:
        raise AssertionError(f"read on past MAX_SKIP: {lines[:6]}")
