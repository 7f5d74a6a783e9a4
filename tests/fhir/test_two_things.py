"""FHIR resources that say two things are never read as one of them.

An order coded with two drugs of the map (cyclosporine and tacrolimus), a resource giving one
choice element in two types (valueQuantity and valueString, by one rule for every [x]), an
Observation whose focus is someone else (a fetus, a donor), a timing whose times of day say another
count than its frequency: each is set aside (or its dose not computed) with the reason, and no
value is read from it, nor from an older resource in its place where it may be the latest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fhir_helpers import (
    AS_OF,
    RXNORM,
    bundle,
    dosage,
    evaluate_bundle,
    med_request,
    obs,
    qty,
)

from fsgs_kb.engine.fhir import FhirMap, convert_bundle
from fsgs_kb.engine.fhir.choices import choice_problem
from fsgs_kb.engine.fhir.dosage import daily_dose

WEIGHT, STATUS, DOSE, OTHERS = (
    "/weight_kg",
    "/cyclosporine/status",
    "/cyclosporine/daily_dose",
    "/other_immunosuppressants",
)
MG = {"mg": {"to": "mg/day", "factor": 1}}
TACROLIMUS = {"system": RXNORM, "code": "42316"}


def convert(fmap: FhirMap, *resources: dict[str, Any]) -> Any:
    return convert_bundle(bundle(*resources), fmap, as_of=AS_OF)


def aside(done: Any) -> list[tuple[str | None, str, str | None]]:
    return [(a.id, a.reason, a.field) for a in done.set_aside]


def weight(rid: str = "w", kg: float = 70, when: str = "2024-05-30", **extra: Any) -> dict[str, Any]:
    return obs(rid, "29463-7", qty(kg, "kg"), when, **extra)


def two_drug_order(rid: str = "csa-tac") -> dict[str, Any]:
    order = med_request(rid, dosage(300, start="2024-01-10"))
    order["medicationCodeableConcept"]["coding"].append(TACROLIMUS)
    return order


# a. an order naming two drugs of the map


def test_an_order_coded_as_two_drugs_is_neither(fmap: FhirMap) -> None:
    done = convert(fmap, two_drug_order())
    assert aside(done) == [("csa-tac", "medication_not_identified", None)]
    message = done.set_aside[0].message
    assert "its codes name 2 drugs the map tells apart, cyclosporine (" in message
    assert f"{RXNORM}|3008), tacrolimus ({RXNORM}|42316): which drug it is cannot be told" in message
    assert done.sources[STATUS] == {"missing": "no_resource"} and done.sources[OTHERS] == {"missing": "no_resource"}
    assert "cyclosporine" not in done.record and "other_immunosuppressants" not in done.record


def test_a_statement_or_a_medication_naming_two_drugs_is_neither(fmap: FhirMap) -> None:
    statement = {
        "resourceType": "MedicationStatement",
        "id": "st",
        "status": "active",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "3008"}, TACROLIMUS]},
        "effectivePeriod": {"start": "2024-01-10"},
    }
    medication = {
        "resourceType": "Medication",
        "id": "m",
        "code": {"coding": [TACROLIMUS]},
        "ingredient": [{"itemCodeableConcept": {"coding": [{"system": RXNORM, "code": "3008"}]}}],
    }
    order = med_request("ref", dosage(300, start="2024-01-10"), code=None, medicationReference={"reference": "#m"})
    order["contained"] = [medication]
    done = convert(fmap, statement, order)
    assert aside(done) == [("st", "medication_not_identified", None), ("ref", "medication_not_identified", None)]


def test_two_codes_of_one_drug_are_that_drug(fmap: FhirMap) -> None:
    order = med_request("csa", dosage(150, frequency=2, start="2024-01-10"))
    order["medicationCodeableConcept"]["coding"].append({"system": RXNORM, "code": "835911"})  # Neoral 100 mg
    done = convert(fmap, order)
    assert done.set_aside == [] and done.record["cyclosporine"]["daily_dose"] == {"value": 300, "unit": "mg/day"}


def test_the_command_line_sets_the_two_drug_order_aside(tmp_path: Path) -> None:
    result = evaluate_bundle(tmp_path, bundle(two_drug_order(), weight()), "--as-of", AS_OF.isoformat())
    assert [(a["id"], a["reason"]) for a in result["set_aside"]] == [("csa-tac", "medication_not_identified")]
    assert result["sources"][STATUS] == {"missing": "no_resource"}
    assert result["sources"][OTHERS] == {"missing": "no_resource"}
    assert "CAVEAT-OTHER-CNI" not in result["caveats"]


# b. one rule for every choice element [x]


@pytest.mark.parametrize(
    ("resource", "element", "where"),
    [
        ({"resourceType": "Observation", "valueQuantity": {}, "valueString": "50 kg"}, "value", ""),
        ({"resourceType": "Observation", "effectiveDateTime": "x", "effectivePeriod": {}}, "effective", ""),
        (
            {"resourceType": "Observation", "component": [{}, {"valueQuantity": {}, "valueBoolean": True}]},
            "value",
            "component[1] ",
        ),
        (
            {"resourceType": "MedicationRequest", "medicationCodeableConcept": {}, "medicationReference": {}},
            "medication",
            "",
        ),
        ({"resourceType": "MedicationRequest", "reportedBoolean": True, "reportedReference": {}}, "reported", ""),
        (
            {
                "resourceType": "MedicationRequest",
                "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {}, "doseRange": {}}]}],
            },
            "dose",
            "dosageInstruction[0].doseAndRate[0] ",
        ),
        (
            {
                "resourceType": "MedicationStatement",
                "dosage": [{"timing": {"repeat": {"boundsPeriod": {}, "boundsDuration": {}}}}],
            },
            "bounds",
            "dosage[0].timing.repeat ",
        ),
        ({"resourceType": "Condition", "onsetDateTime": "2020", "onsetAge": {}}, "onset", ""),
        (
            {"resourceType": "Medication", "ingredient": [{"itemCodeableConcept": {}, "itemReference": {}}]},
            "item",
            "ingredient[0] ",
        ),
    ],
)
def test_every_choice_element_given_twice_is_found(resource: dict[str, Any], element: str, where: str) -> None:
    found = choice_problem(resource)
    assert found is not None and found[0] == element
    assert found[1].startswith(f"{where}gives both ") and found[1].endswith(f"(FHIR R4: one {element}[x])")


@pytest.mark.parametrize(
    "resource",
    [
        {"resourceType": "Observation", "valueQuantity": {}, "_valueString": {"extension": []}},  # an extension
        {"resourceType": "Observation", "valueQuantity": {}, "component": [{"valueString": "x"}]},  # two elements
        {
            "resourceType": "MedicationRequest",
            "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {}, "rateRatio": {}}]}],
        },
        {
            "resourceType": "Observation",
            "component": "not a list",
            "focus": [[{"valueQuantity": {}, "valueString": ""}]],
        },
    ],
)
def test_one_type_of_each_choice_element_is_no_conflict(resource: dict[str, Any]) -> None:
    assert choice_problem(resource) is None


def test_a_weight_given_as_a_quantity_and_a_string_is_not_read_nor_an_older_one(fmap: FhirMap) -> None:
    done = convert(fmap, weight("old", 60, "2024-05-01"), weight("new", valueString="50 kg"))
    assert aside(done) == [("new", "choice_conflict", WEIGHT)]
    assert done.set_aside[0].message == (
        "Observation/new: gives both valueQuantity and valueString (FHIR R4: one value[x]): "
        "which one it says cannot be told"
    )
    assert done.sources[WEIGHT] == {"missing": "ambiguous"} and "weight_kg" not in done.record


def test_a_weight_with_two_dates_may_be_the_latest(fmap: FhirMap) -> None:
    done = convert(fmap, weight("old", 60, "2024-05-01"), weight("new", effectivePeriod={"start": "2020-01-01"}))
    assert aside(done) == [("new", "choice_conflict", WEIGHT)]
    assert "effectiveDateTime and effectivePeriod (FHIR R4: one effective[x])" in done.set_aside[0].message
    assert done.sources[WEIGHT] == {"missing": "date_not_readable"}


def test_an_order_with_two_doses_leaves_what_it_could_change_empty(fmap: FhirMap) -> None:
    older = med_request("old", dosage(200, start="2023-01-01", end="2023-06-01"), status="completed")
    twice = med_request("new", dosage(150, frequency=2, start="2024-01-10"))
    twice["dosageInstruction"][0]["doseAndRate"][0]["doseRange"] = {"low": qty(100, "mg"), "high": qty(150, "mg")}
    done = convert(fmap, older, twice)
    assert aside(done) == [("new", "choice_conflict", STATUS)]
    assert "dosageInstruction[0].doseAndRate[0] gives both doseQuantity and doseRange" in done.set_aside[0].message
    for field in (STATUS, DOSE, "/cyclosporine/months_on_therapy"):
        assert done.sources[field] == {"missing": "ambiguous"}, field  # not "stopped" from the older order
    assert "cyclosporine" not in done.record


def test_a_condition_with_two_onsets_is_not_read(fmap: FhirMap) -> None:
    cond = {
        "resourceType": "Condition",
        "id": "dx",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "444977005"}]},  # autosomal dominant FSGS
        "onsetDateTime": "2020-01-01",
        "onsetString": "in childhood",
    }
    done = convert(fmap, cond)
    assert aside(done) == [("dx", "choice_conflict", "/fsgs/etiology")]
    assert done.sources["/fsgs/etiology"] == {"missing": "ambiguous"}  # not "genetic" from the code


def test_the_command_line_sets_the_two_valued_weight_aside(tmp_path: Path) -> None:
    result = evaluate_bundle(tmp_path, bundle(weight(valueString="50 kg")), "--as-of", AS_OF.isoformat())
    assert [(a["id"], a["reason"], a["field"]) for a in result["set_aside"]] == [("w", "choice_conflict", WEIGHT)]
    assert result["sources"][WEIGHT] == {"missing": "ambiguous"}


# c. an Observation about someone or something else


@pytest.mark.parametrize(
    "focus",
    [
        [{"reference": "Patient/fetus"}],
        [{"reference": "Patient/p1"}, {"reference": "Device/scale"}],
        [{"display": "donor"}],
    ],
)
def test_a_weight_about_another_focus_is_not_the_patients(fmap: FhirMap, focus: Any) -> None:
    done = convert(fmap, weight("own", 60, "2024-05-01"), weight("fetal", 3.1, focus=focus))
    assert aside(done) == [("fetal", "focus_not_the_patient", None)]
    assert "not about the patient itself" in done.set_aside[0].message
    assert done.record["weight_kg"] == 60 and done.sources[WEIGHT]["id"] == "own"  # the patient's own


def test_a_focus_on_the_patient_is_the_patients(fmap: FhirMap) -> None:
    done = convert(fmap, weight(focus=[{"reference": "Patient/p1"}]))
    assert done.set_aside == [] and done.record["weight_kg"] == 70


def test_the_command_line_sets_the_fetal_weight_aside(tmp_path: Path) -> None:
    doc = bundle(weight(focus=[{"reference": "Patient/OTHER"}]))
    result = evaluate_bundle(tmp_path, doc, "--as-of", AS_OF.isoformat())
    assert [(a["id"], a["reason"]) for a in result["set_aside"]] == [("w", "focus_not_the_patient")]
    assert result["sources"][WEIGHT] == {"missing": "no_resource"}


# d. times that say another count than the frequency


def _dose(repeat: dict[str, Any]) -> Any:
    return daily_dose([{"timing": {"repeat": repeat}, "doseAndRate": [{"doseQuantity": qty(100, "mg")}]}], MG)


DAILY = {"period": 1, "periodUnit": "d"}
THREE = ["08:00:00", "12:00:00", "20:00:00"]


@pytest.mark.parametrize(
    "repeat",
    [
        {"timeOfDay": THREE, "frequency": 2, **DAILY},
        {"timeOfDay": THREE[:1], "frequency": 2, **DAILY},
        {"timeOfDay": THREE[:1], "frequency": 1, "period": 8, "periodUnit": "h"},  # every 8 hours at 08:00
        {"timeOfDay": THREE[:1], "period": 36, "periodUnit": "h"},
        {"timeOfDay": THREE[:2], "frequency": 3, "period": 1, "periodUnit": "wk"},  # 1.5 days of two times
        {"timeOfDay": THREE[:1], "when": ["MORN"]},  # FHIR R4 tim-10
        {"when": ["MORN", "EVE", "NIGHT"], "frequency": 2, **DAILY},
        {"when": ["C"]},  # at meals: how many a day is not said
    ],
)
def test_times_that_disagree_with_the_frequency_give_no_dose(repeat: dict[str, Any]) -> None:
    assert _dose(repeat) is None


@pytest.mark.parametrize(
    ("repeat", "per_day"),
    [
        ({"timeOfDay": THREE, "frequency": 3, **DAILY}, 300),
        ({"timeOfDay": THREE[:2]}, 200),
        ({"timeOfDay": THREE[:1], "period": 2, "periodUnit": "d"}, 50),  # every other day at 08:00
        ({"timeOfDay": THREE[:1], "frequency": 1, "period": 24, "periodUnit": "h"}, 100),
        ({"timeOfDay": THREE[:2], "frequency": 4, "period": 1, "periodUnit": "wk"}, 57.142857),  # two days a week
        ({"when": ["MORN", "EVE"], "frequency": 2, **DAILY}, 200),
        ({"when": ["C"], "frequency": 3, **DAILY}, 300),  # three meals: the frequency says how many
    ],
)
def test_times_that_agree_with_the_frequency_give_the_dose(repeat: dict[str, Any], per_day: float) -> None:
    assert _dose(repeat) == (per_day, "mg/day")


def test_the_command_line_gives_no_dose_for_three_times_twice_a_day(tmp_path: Path) -> None:
    order = med_request("csa", dosage(178.5, frequency=2, start="2024-01-10"))
    order["dosageInstruction"][0]["timing"]["repeat"]["timeOfDay"] = THREE
    result = evaluate_bundle(tmp_path, bundle(order, weight()), "--as-of", AS_OF.isoformat())
    assert result["sources"][DOSE] == {"missing": "dose_not_computable"}
    assert [(a["id"], a["reason"], a["field"]) for a in result["set_aside"]] == [("csa", "dose_not_computable", DOSE)]
    assert "CSA-DOSE-EXCEEDS" not in result["advice"]
