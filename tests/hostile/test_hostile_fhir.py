"""Hostile FHIR through the command line: each bad Bundle or bulk line gets its own clear result,
no traceback reaches stderr, and the records around it are untouched.

Bundles are built here by hand (not by the package), so the suite keeps its distance from the code
it attacks. Cases a Bundle can survive (a resource about someone else, a unit UCUM cannot convert,
two different resources with one id) are `evaluated` with the field left empty and the reason in
`sources`; cases that leave no usable patient (not a Bundle, too large, too deep, not JSON) are
`invalid` with a code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hostile_support import assert_each_record_once, assert_no_traceback, read_results, run

AS_OF = "2025-01-15"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
FIELD = "urn:fsgs-kb:field"
VALUE = "urn:fsgs-kb:value"


def weight(rid: str, value: Any, unit: str = "kg", subject: str = "Patient/p1") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
        "subject": {"reference": subject},
        "effectiveDateTime": "2025-01-10",
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def field(rid: str, path: str, code: str, subject: str = "Patient/p1") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": FIELD, "code": path}]},
        "subject": {"reference": subject},
        "effectiveDateTime": "2025-01-10",
        "valueCodeableConcept": {"coding": [{"system": VALUE, "code": code}]},
    }


def biopsy(rid: str, subject: str = "Patient/p1") -> dict[str, Any]:
    obs = field(rid, "fsgs.biopsy_proven", "", subject)
    del obs["valueCodeableConcept"]
    return {**obs, "valueBoolean": True}


def patient(pid: str = "p1") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "birthDate": "1980-03-01"}


def bundle(*resources: dict[str, Any], pid: str = "p1") -> dict[str, Any]:
    entries = [{"fullUrl": f"urn:uuid:{pid}", "resource": patient(pid)}] + [{"resource": r} for r in resources]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def good(pid: str = "p1") -> bytes:
    subject = f"Patient/{pid}"
    resources = (
        weight("w", 70, subject=subject),
        field("e", "fsgs.etiology", "primary", subject),
        biopsy("b", subject),
    )
    return json.dumps(bundle(*resources, pid=pid)).encode()


def deep(levels: int) -> bytes:
    text = json.dumps(bundle(weight("w", 70)))
    return text[:-1].encode() + b', "extension": ' + b"[" * levels + b"]" * levels + b"}"


# case -> (one line of a Bundles file, expected status, what the result must say)
CASES: dict[str, tuple[bytes, str, dict[str, Any]]] = {
    "wrong-resourceType": (
        json.dumps(patient()).encode(),
        "invalid",
        {"code": "fhir.bundle", "pointer": "/resourceType"},
    ),
    "bundle-of-type-document": (
        json.dumps({**bundle(), "type": "document"}).encode(),
        "invalid",
        {"code": "fhir.bundle", "pointer": "/type"},
    ),
    "two-patients": (
        json.dumps({**bundle(), "entry": bundle()["entry"] + [{"resource": patient("p2")}]}).encode(),
        "invalid",
        {"code": "fhir.bundle"},
    ),
    "reference-to-a-missing-patient": (
        json.dumps(bundle(weight("w", 70, subject="Patient/ghost"))).encode(),
        "scope_undetermined",
        {"sources": {"/weight_kg": {"missing": "no_resource"}}},
    ),
    "duplicate-ids-different-content": (
        json.dumps(bundle(weight("w", 70), weight("w", 95))).encode(),
        "scope_undetermined",
        {"sources": {"/weight_kg": {"missing": "ambiguous"}}},
    ),
    "unit-ucum-cannot-convert": (
        json.dumps(bundle(weight("w", 11, unit="[stone_av]"))).encode(),
        "scope_undetermined",
        {"sources": {"/weight_kg": {"missing": "unit_not_convertible"}}},
    ),
    "unknown-resourceType-inside": (
        json.dumps(bundle({"resourceType": "Observatoin", "id": "x", "subject": {"reference": "Patient/p1"}})).encode(),
        "scope_undetermined",
        {"sources": {"/weight_kg": {"missing": "no_resource"}}},
    ),
    "value-of-the-wrong-type": (
        json.dumps(bundle(weight("w", "seventy"), field("b", "fsgs.biopsy_proven", "yes"))).encode(),
        "scope_undetermined",
        {"sources": {"/weight_kg": {"missing": "not_a_value"}, "/fsgs/biopsy_proven": {"missing": "ambiguous"}}},
    ),
    "10mb-bundle": (
        json.dumps(bundle(weight("w", 70), {"resourceType": "Basic", "id": "b" * 10_000_000})).encode(),
        "invalid",
        {"code": "input.too_large"},
    ),
    "nested-1000-deep": (deep(1000), "invalid", {"code": "input.too_deep"}),
    "nested-200-deep": (deep(200), "invalid", {"code": "input.too_deep"}),  # beyond 2 x the map's max_json_depth + 3
    "not-json": (b'{"resourceType": "Bundle", "type": "collection", "entry": [', "invalid", {"code": "patient.json"}),
    "json-but-not-an-object": (b"[1, 2, 3]", "invalid", {"code": "fhir.bundle"}),
}


def _check(result: dict[str, Any], status: str, expect: dict[str, Any]) -> None:
    assert result["status"] == status, result.get("errors")
    if "code" in expect:
        assert result["errors"][0]["code"] == expect["code"], result["errors"]
        assert result["errors"][0]["message"]
    if "pointer" in expect:
        assert result["errors"][0]["pointer"] == expect["pointer"]
    for pointer, entry in expect.get("sources", {}).items():
        assert result["sources"][pointer] == entry, pointer


@pytest.mark.parametrize("case", sorted(CASES))
def test_bundles_batch_survives_one_hostile_bundle(tmp_path: Path, case: str) -> None:
    """good, hostile, good → three results; the hostile one says what is wrong; neighbours intact."""
    line, status, expect = CASES[case]
    source = tmp_path / "bundles.ndjson"
    source.write_bytes(good("a") + b"\n" + line + b"\n" + good("b") + b"\n")
    out = tmp_path / "out.jsonl"
    result = run("batch", "--input-format", "fhir-bundles", "--as-of", AS_OF, source, "-o", out, timeout=120)
    assert_no_traceback(result)
    results = read_results(out)
    assert_each_record_once(results, 3)
    _check(results[1], status, expect)
    for neighbour, pid in ((results[0], "a"), (results[2], "b")):
        assert neighbour["status"] == "evaluated" and neighbour["patient_id"] == pid
        assert neighbour["sources"]["/weight_kg"]["id"] == "w"
    assert result.rc == (1 if status == "invalid" else 0), result


@pytest.mark.parametrize("case", ["wrong-resourceType", "10mb-bundle", "nested-1000-deep", "unit-ucum-cannot-convert"])
def test_evaluate_one_hostile_bundle_is_a_clear_result(tmp_path: Path, case: str) -> None:
    line, status, expect = CASES[case]
    source = tmp_path / "bundle.json"
    source.write_bytes(line)
    result = run("evaluate", "--input-format", "fhir", "--as-of", AS_OF, source, timeout=120)
    assert_no_traceback(result)
    assert result.rc == (1 if status == "invalid" else 0), result
    _check(json.loads(result.out), status, expect)


def test_hostile_bulk_export_reports_each_bad_line_and_keeps_going(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    lines = {
        "Patient.ndjson": [
            json.dumps(patient("a")),
            b"not json at all".decode(),
            json.dumps({"id": "no-type"}),
            json.dumps({**patient("dup"), "birthDate": "1970-01-01"}),
            json.dumps(patient("b")),
            json.dumps({**patient("dup"), "birthDate": "1990-01-01"}),
        ],
        "Observation.ndjson": [
            json.dumps(weight("wa", 70, subject="Patient/a")),
            json.dumps(weight("ghost", 70, subject="Patient/ghost")),
            json.dumps(weight("wb", 11, unit="[stone_av]", subject="Patient/b")),
            '{"resourceType": "Observation", "id": "deep", "x": ' + "[" * 5000 + "]" * 5000 + "}",
            json.dumps(weight("big", 70, subject="Patient/a"))[:-1] + ', "note": "' + "n" * 5_000_000 + '"}',
            json.dumps({**weight("wa2", 80, subject="Patient/a"), "id": "wa"}),  # same id, other content
        ],
    }
    for name, content in lines.items():
        (export / name).write_text("\n".join(content) + "\n")
    out = tmp_path / "out.jsonl"
    result = run("batch", "--input-format", "fhir-bulk", "--as-of", AS_OF, export, "-o", out, timeout=120)
    assert_no_traceback(result)
    assert result.rc == 1, result
    results = read_results(out)
    assert_each_record_once(results, len(results))
    by_origin = {r.get("origin"): r for r in results}
    bad = {o: r["errors"][0]["message"] for o, r in by_origin.items() if r["status"] == "invalid"}
    assert "not valid JSON" in bad["Patient.ndjson:2"]
    assert "not a FHIR resource" in bad["Patient.ndjson:3"]
    assert "nested" in bad["Observation.ndjson:4"]
    assert "longer than" in bad["Observation.ndjson:5"]
    assert "not in the export" in bad["Observation.ndjson:2"]
    assert "appears twice with different content" in bad["Patient.ndjson:6"]
    patients = {r["patient_id"]: r for r in results if r["status"] != "invalid"}
    assert set(patients) == {"a", "b"}
    assert patients["a"]["sources"]["/weight_kg"] == {"missing": "ambiguous"}  # two Observation/wa
    assert patients["b"]["sources"]["/weight_kg"] == {"missing": "unit_not_convertible"}


def test_a_broken_bulk_export_is_refused_and_harmless_variants_are_read(tmp_path: Path) -> None:
    """An export with no NDJSON file (empty, or only a manifest) is an error, not '0 records';
    a directory named like a part is not read as one; the same Patient in two files with its keys
    in another order is one patient; a byte-order mark on line 1 is read as Bundle input reads it."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "manifest.json").write_text("{}")
    refused = run("batch", "--input-format", "fhir-bulk", "--as-of", AS_OF, empty, "-o", tmp_path / "e.jsonl")
    assert refused.rc == 2 and "no NDJSON file" in refused.err, refused
    assert_no_traceback(refused)
    assert not list(tmp_path.glob("e.jsonl*"))  # refused before the output was opened: nothing left behind
    # a part whose download failed (a link to nothing) was skipped in silence, its resources with it
    (empty / "Observation.ndjson").symlink_to(tmp_path / "never-downloaded.ndjson")
    (empty / "Patient.ndjson").write_text(json.dumps(patient("a")) + "\n")
    refused = run("batch", "--input-format", "fhir-bulk", "--as-of", AS_OF, empty, "-o", tmp_path / "e.jsonl")
    assert refused.rc == 2 and "Observation.ndjson in this Bulk Data export is a link to" in refused.err, refused
    assert "error[input.unreadable]" in refused.err and not list(tmp_path.glob("e.jsonl*"))
    export = tmp_path / "export"
    (export / "Observation.ndjson").mkdir(parents=True)  # a directory, not a part
    first = patient("a")
    reordered = dict(reversed(list(first.items())))
    (export / "Patient.ndjson").write_bytes(b"\xef\xbb\xbf" + json.dumps(first).encode() + b"\n")
    (export / "Patient2.ndjson").write_text(json.dumps(reordered) + "\n")
    (export / "Weights.ndjson").write_text(json.dumps(weight("wa", 70, subject="Patient/a")) + "\n")
    out = tmp_path / "out.jsonl"
    done = run("batch", "--input-format", "fhir-bulk", "--as-of", AS_OF, export, "-o", out)
    assert_no_traceback(done)
    results = read_results(out)
    assert [r["patient_id"] for r in results] == ["a"], results
    assert results[0]["status"] != "invalid" and "missing" not in results[0]["sources"]["/weight_kg"], results[0]


def test_an_order_not_to_give_cyclosporine_is_no_treatment(tmp_path: Path) -> None:
    order = {
        "resourceType": "MedicationRequest",
        "id": "dnp",
        "status": "active",
        "intent": "order",
        "doNotPerform": True,
        "subject": {"reference": "Patient/p1"},
        "authoredOn": "2024-12-01",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "3008"}]
        },
        "dosageInstruction": [
            {
                "doseAndRate": [{"doseQuantity": {"value": 178.5, "unit": "mg", "system": UCUM, "code": "mg"}}],
                "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
            }
        ],
    }
    modified = {
        **order,
        "id": "mod",
        "doNotPerform": False,
        "modifierExtension": [{"url": "urn:x", "valueBoolean": True}],
    }
    for resource in (order, modified):
        path = tmp_path / f"{resource['id']}.json"
        path.write_text(json.dumps(bundle(weight("w", 70), resource)))
        result = run("evaluate", "--input-format", "fhir", "--as-of", AS_OF, "--include-input", path)
        assert_no_traceback(result)
        evaluated = json.loads(result.out)["decision"]["input"]
        assert evaluated.get("cyclosporine", {}).get("status") != "current", evaluated


@pytest.mark.parametrize(
    "newest",
    [
        {"valueQuantity": {"value": 72, "unit": "kg", "system": "http://snomed.info/sct", "code": "258683005"}},
        {"valueQuantity": {"value": 72}},
        {"valueString": "72 kg"},
    ],
    ids=["snomed-unit", "no-unit", "value-string"],
)
def test_an_unusable_latest_value_never_falls_back_to_an_older_one(tmp_path: Path, newest: dict[str, Any]) -> None:
    """The map's promise: the latest value, or why there is none; an older weight taken in place of
    a newer one the map cannot read would be a silently wrong dose per kilogram."""
    latest = {k: v for k, v in weight("new", 72).items() if k != "valueQuantity"} | newest
    latest["effectiveDateTime"] = "2025-01-12"
    path = tmp_path / "p.json"
    path.write_text(json.dumps(bundle(weight("old", 70), latest)))
    result = run("evaluate", "--input-format", "fhir", "--as-of", AS_OF, path)
    assert_no_traceback(result)
    assert json.loads(result.out)["sources"]["/weight_kg"] == {"missing": "unit_not_convertible"}


def test_a_dose_in_capsules_uses_the_strength_of_the_orders_medication(tmp_path: Path) -> None:
    """Issue 14: 'strengths of product codes where the dose is in tablets/capsules'. Two capsules of
    100 mg twice a day is 400 mg/day; without a stated strength the dose stays not computable."""
    rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm"
    medication = {
        "resourceType": "Medication",
        "id": "neoral",
        "code": {"coding": [{"system": rxnorm, "code": "3008"}]},
        "ingredient": [
            {
                "itemCodeableConcept": {"coding": [{"system": rxnorm, "code": "3008"}]},
                "strength": {
                    "numerator": {"value": 100, "unit": "mg", "system": UCUM, "code": "mg"},
                    "denominator": {"value": 1, "unit": "capsule", "system": UCUM, "code": "{capsule}"},
                },
            }
        ],
    }
    order = {
        "resourceType": "MedicationRequest",
        "id": "o1",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "authoredOn": "2024-12-01",
        "contained": [medication],
        "medicationReference": {"reference": "#neoral"},
        "dosageInstruction": [
            {
                "doseAndRate": [{"doseQuantity": {"value": 2, "unit": "capsule", "system": UCUM, "code": "{capsule}"}}],
                "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
            }
        ],
    }
    for with_strength, expected in ((True, {"value": 400, "unit": "mg/day"}), (False, None)):
        if not with_strength:
            order["contained"] = [{k: v for k, v in medication.items() if k != "ingredient"}]
        path = tmp_path / f"{with_strength}.json"
        path.write_text(json.dumps(bundle(weight("w", 80), order)))
        result = run("evaluate", "--input-format", "fhir", "--as-of", AS_OF, "--include-input", path)
        assert_no_traceback(result)
        evaluated = json.loads(result.out)
        assert evaluated["decision"]["input"].get("cyclosporine", {}).get("daily_dose") == expected, evaluated[
            "sources"
        ]
        if expected is None:
            assert evaluated["sources"]["/cyclosporine/daily_dose"] == {"missing": "dose_not_computable"}


@pytest.mark.parametrize("rid", [{"x": 1}, [1], None, 7])
def test_a_resource_whose_id_is_not_text_is_read_without_a_fault(tmp_path: Path, rid: Any) -> None:
    """An id that is an object or a list made the FHIR conversion fail (`fhir.internal`,
    `TypeError: unhashable type`, exit 3) where it looked for resources given twice; such an id
    names no resource, so it is read as one without an id (the CDS service answered it 500)."""
    order = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "authoredOn": "2024-12-01",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "3008"}]
        },
        "dosageInstruction": [
            {
                "doseAndRate": [{"doseQuantity": {"value": 178.5, "unit": "mg", "system": UCUM, "code": "mg"}}],
                "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
            }
        ],
    }
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle({**weight("w", 70), "id": rid}, order, field("e", "fsgs.etiology", "primary"))))
    result = run("evaluate", "--input-format", "fhir", "--as-of", AS_OF, "--include-input", path, timeout=120)
    assert_no_traceback(result)
    assert result.rc == 0, result
    out = json.loads(result.out)
    assert out["status"] != "error", out["errors"]
    evaluated = out["decision"]["input"]
    assert evaluated["weight_kg"] == 70 and evaluated["cyclosporine"]["status"] == "current", evaluated
