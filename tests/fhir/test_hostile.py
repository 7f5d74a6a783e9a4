"""Hostile or broken FHIR never crashes the converter and never leaks into a record: a bundle that
is not one patient's data is refused with a pointer; bad resources inside a usable bundle are
ignored or make their field ambiguous; size and nesting are bounded."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest
from fhir_helpers import (
    AS_OF,
    bundle,
    obs,
    qty,
)

from fsgs_kb.engine.fhir import FhirInputError, FhirMap, bundle_to_record


def weight(rid: str = "w", kg: Any = 70, subject: str = "Patient/p1", when: str = "2024-05-30") -> dict[str, Any]:
    return obs(rid, "29463-7", qty(kg, "kg"), when=when, subject=subject)


@pytest.mark.parametrize(
    ("payload", "pointer", "words"),
    [
        ([], "/resourceType", "not a FHIR Bundle"),
        ({"resourceType": "Patient", "id": "p1"}, "/resourceType", "not a FHIR Bundle"),
        ({"resourceType": "Bundle", "type": "document", "entry": []}, "/type", "collection, searchset, transaction"),
        ({"resourceType": "Bundle", "entry": []}, "/type", "Bundle.type"),
        ({"resourceType": "Bundle", "type": "collection", "entry": {"resource": {}}}, "/entry", "must be a list"),
        ({"resourceType": "Bundle", "type": "collection", "entry": []}, "/entry", "exactly one Patient; found 0"),
        (
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [
                    {"resource": {"resourceType": "Patient", "id": "a"}},
                    {"resource": {"resourceType": "Patient", "id": "b"}},
                ],
            },
            "/entry",
            "found 2",
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [
                    {"resource": {"resourceType": "Patient", "id": "a", "gender": "male"}},
                    {"resource": {"resourceType": "Patient", "id": "a", "gender": "female"}},
                ],
            },
            "/entry/1",
            "share id",
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": {"resourceType": "Patient", "id": "not a valid id!"}}],
            },
            "/entry",
            "neither a valid id nor a fullUrl",
        ),
    ],
)
def test_unusable_bundles_are_refused_with_a_pointer(fmap: FhirMap, payload: Any, pointer: str, words: str) -> None:
    with pytest.raises(FhirInputError) as info:
        bundle_to_record(payload, fmap, as_of=AS_OF)
    assert info.value.pointer == pointer
    assert words in info.value.message


@pytest.mark.parametrize("kind", ["collection", "searchset", "transaction"])
def test_accepted_bundle_types(fmap: FhirMap, kind: str) -> None:
    b = bundle(weight(), kind=kind)
    if kind == "transaction":
        for entry in b["entry"]:
            entry["request"] = {"method": "POST", "url": entry["resource"]["resourceType"]}
    assert bundle_to_record(b, fmap, as_of=AS_OF)[0]["weight_kg"] == 70


def test_identical_duplicate_patient_entries_are_one_patient(fmap: FhirMap) -> None:
    b = bundle(weight())
    b["entry"].append(copy.deepcopy(b["entry"][0]))
    assert bundle_to_record(b, fmap, as_of=AS_OF)[0]["id"] == "p1"


def test_resources_about_someone_else_or_no_one_are_ignored(fmap: FhirMap) -> None:
    other = weight("x", 120, subject="Patient/someone-else", when="2024-05-31")
    nobody = weight("y", 130, when="2024-05-31")
    del nobody["subject"]
    record, prov = bundle_to_record(bundle(weight(), other, nobody), fmap, as_of=AS_OF)
    assert record["weight_kg"] == 70 and prov["/weight_kg"]["id"] == "w"


def test_absolute_and_fullurl_references_resolve(fmap: FhirMap) -> None:
    a = weight("a", 71, subject="https://ehr.example.org/fhir/Patient/p1", when="2024-05-30")
    b = weight("b", 72, subject="urn:uuid:p1", when="2024-05-31")
    both = bundle(a, b)
    both["entry"][1]["fullUrl"] = "https://ehr.example.org/fhir/Observation/a"  # a's server is the one it names
    assert bundle_to_record(both, fmap, as_of=AS_OF)[0]["weight_kg"] == 72
    alone = bundle(a)
    alone["entry"][1]["fullUrl"] = "https://ehr.example.org/fhir/Observation/a"
    assert bundle_to_record(alone, fmap, as_of=AS_OF)[0]["weight_kg"] == 71
    assert "weight_kg" not in bundle_to_record(bundle(a), fmap, as_of=AS_OF)[0]  # no entry names that server


def test_duplicate_ids_with_different_content_are_ambiguous(fmap: FhirMap) -> None:
    _, prov = bundle_to_record(bundle(weight("dup", 70), weight("dup", 75)), fmap, as_of=AS_OF)
    assert prov["/weight_kg"] == {"missing": "ambiguous"}
    record, _ = bundle_to_record(bundle(weight("dup", 70), weight("dup", 70)), fmap, as_of=AS_OF)
    assert record["weight_kg"] == 70


@pytest.mark.parametrize(
    "garbage",
    [
        "a string",
        None,
        42,
        {"resource": None},
        {"resource": "Observation"},
        {"resource": {"resourceType": 7}},
        {"resource": {**weight("b1"), "code": "29463-7"}},
        {"resource": {**weight("b2"), "code": {"coding": "29463-7"}}},
        {"resource": {**weight("b8"), "status": ["final"]}},
        {"resource": {**weight("b9"), "subject": "Patient/p1"}},
        {
            "resource": {
                "resourceType": "MedicationRequest",
                "subject": {"reference": "Patient/p1"},
                "status": "active",
                "intent": "order",
                "medicationCodeableConcept": {
                    "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "3008"}]
                },
                "dosageInstruction": "twice a day",
            }
        },
    ],
)
def test_malformed_entries_are_ignored_not_fatal(fmap: FhirMap, garbage: Any) -> None:
    b = bundle(weight("good", 70, when="2024-05-01"))
    b["entry"].append(garbage)
    record, prov = bundle_to_record(b, fmap, as_of=AS_OF)
    assert record["weight_kg"] == 70


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        ({**weight("b3"), "valueQuantity": {"value": True, "code": "kg"}}, "not_a_value"),
        ({**weight("b4"), "valueQuantity": {"value": float("nan"), "code": "kg"}}, "not_a_value"),
        ({**weight("b5"), "valueQuantity": {"value": "70", "code": "kg"}}, "not_a_value"),
        ({**weight("b6"), "effectiveDateTime": 20240530}, "date_not_readable"),
        ({**weight("b7"), "effectiveDateTime": "2024-02-30"}, "date_not_readable"),
    ],
)
def test_a_newer_broken_weight_is_not_fatal_and_leaves_the_field_empty_saying_why(
    fmap: FhirMap, broken: dict[str, Any], reason: str
) -> None:
    """A broken newest result (a value that is not a number, a date that cannot be read) is not
    skipped for the older good one: the latest value or nothing (tests/fhir/test_unreadable_latest.py)."""
    b = bundle(weight("good", 70, when="2024-05-01"), broken)
    record, prov = bundle_to_record(b, fmap, as_of=AS_OF)
    assert "weight_kg" not in record and prov["/weight_kg"] == {"missing": reason}


def _deep(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"valueString": "bottom"}
    for _ in range(levels):
        node = {"extension": [node]}
    return node


def test_nesting_bomb_is_set_aside(fmap: FhirMap) -> None:
    bomb = {**weight("bomb", 99, when="2024-05-31"), "extension": [_deep(100_000)]}
    record, prov = bundle_to_record(bundle(weight("w", 70), bomb), fmap, as_of=AS_OF)
    assert record["weight_kg"] == 70


def test_ten_megabyte_bundle_is_bounded(fmap: FhirMap) -> None:
    noise = {"text": {"status": "generated", "div": "<div>" + "x" * 120 + "</div>"}}
    resources = [
        obs(
            f"o{i}",
            "29463-7" if i % 3 else "8480-6",
            qty(60 + i % 40, "kg" if i % 3 else "mm[Hg]"),
            when=f"2024-0{1 + i % 5}-{1 + i % 28:02d}",
            **noise,
        )
        for i in range(30_000)
    ]
    resources.append(weight("latest", 64.5, when="2024-05-31"))
    b = bundle(*resources)
    size = len(json.dumps(b))
    assert size > 10_000_000
    start = time.perf_counter()
    record, prov = bundle_to_record(b, fmap, as_of=AS_OF)
    assert time.perf_counter() - start < 30
    assert record["weight_kg"] == 64.5


def test_entry_limit(fmap: FhirMap) -> None:
    small = FhirMap(
        {**fmap.data, "settings": {**fmap.settings, "limits": {**fmap.settings["limits"], "max_bundle_entries": 3}}}
    )
    with pytest.raises(FhirInputError, match="the limit is 3"):
        bundle_to_record(bundle(weight("a"), weight("b"), weight("c")), small, as_of=AS_OF)
