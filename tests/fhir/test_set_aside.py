"""Resources the conversion sets aside reach the user: the FHIR result lists each one (`set_aside`:
type, id, where it is in the input, the field it concerns, why), `explain` prints them, a Bulk Data
export names each one's FILE:LINE, and replay still finds the decision identical.

The Bundles are written out here as FHIR JSON and go through the real command line."""

from __future__ import annotations

import json
import shutil
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fhir_helpers import (
    RXNORM,
    bundle,
    cli,
    dosage,
    enum_value,
    evaluate_bundle,
    field_obs,
    med_request,
    obs,
    project_file,
    qty,
)

from fsgs_kb.engine.fhir import FhirMap, convert_bundle
from fsgs_kb.engine.fhir.setaside import REASONS
from fsgs_kb.engine.load.schemas import load_schema, validator

AS_OF = "2025-01-15"


def weight(rid: str, value: float, when: str, unit: str = "kg", **extra: Any) -> dict[str, Any]:
    return obs(rid, "29463-7", qty(value, unit), when=when, **extra)


def cyclosporine_order(rid: str, *dosages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return med_request(rid, *dosages, authoredOn="2024-12-01", **extra)


PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "1980-03-01"}
BUNDLE = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [
        {"fullUrl": "urn:uuid:p1", "resource": PATIENT},
        {"resource": weight("w-mod", 70, "2025-01-14", modifierExtension=[{"url": "urn:x", "valueBoolean": True}])},
        {"resource": weight("w-eie", 71, "2025-01-13", status="entered-in-error")},
        {"resource": weight("w-stone", 11, "2025-01-12", unit="[stone_av]")},
        {"resource": cyclosporine_order("dnp", dosage(100, frequency=2), doNotPerform=True)},
        {"resource": cyclosporine_order("free-text", {"text": "as directed"})},
        {"resource": obs("twin", "8480-6", qty(120, "mm[Hg]"), when="2024-12-01")},
        {"resource": obs("twin", "8480-6", qty(121, "mm[Hg]"), when="2024-12-01")},
    ],
}


def by_id(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in result["set_aside"]}


def test_each_set_aside_resource_is_in_the_result_with_where_and_why(tmp_path: Path) -> None:
    result = evaluate_bundle(tmp_path, BUNDLE, "--as-of", AS_OF)
    assert not list(validator("result").iter_errors(result))
    items = by_id(result)
    assert items["w-mod"] == {
        "resourceType": "Observation",
        "id": "w-mod",
        "entry": "/entry/1",
        "reason": "modifier",
        "message": "Observation/w-mod: carries a modifierExtension this reader does not understand",
    }
    assert (items["w-eie"]["entry"], items["w-eie"]["reason"]) == ("/entry/2", "entered_in_error")
    assert items["dnp"]["reason"] == "do_not_perform" and "doNotPerform" in items["dnp"]["message"]
    stone = items["w-stone"]
    assert (stone["entry"], stone["field"], stone["reason"]) == ("/entry/3", "/weight_kg", "unit_not_convertible")
    assert "value 11 [stone_av]" in stone["message"]
    assert result["sources"]["/weight_kg"] == {"missing": "unit_not_convertible"}  # the newest usable one was 11 st
    dose = items["free-text"]
    assert (dose["field"], dose["reason"]) == ("/cyclosporine/daily_dose", "dose_not_computable")
    assert (items["twin"]["entry"], items["twin"]["reason"]) == ("/entry/7", "duplicate_conflict")


def test_a_clean_bundle_sets_nothing_aside(tmp_path: Path) -> None:
    entries = BUNDLE["entry"][:1] + [{"resource": weight("w", 70, "2025-01-10")}]
    result = evaluate_bundle(tmp_path, {**BUNDLE, "entry": entries}, "--as-of", AS_OF)
    assert result["set_aside"] == [] and result["sources"]["/weight_kg"]["id"] == "w"


def test_explain_prints_what_was_set_aside_and_why(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(BUNDLE))
    proc = cli("explain", "--input-format", "fhir", "--as-of", AS_OF, path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "Set aside (6):" in text
    assert "  /entry/1: Observation/w-mod: carries a modifierExtension this reader does not understand" in text
    assert "  /entry/3, /weight_kg: Observation/w-stone: value 11 [stone_av] is in a unit" in text
    doc = json.loads(cli("explain", "--format", "json", "--input-format", "fhir", "--as-of", AS_OF, path).stdout)
    assert {item["id"] for item in doc["set_aside"]} == {"w-mod", "w-eie", "w-stone", "dnp", "free-text", "twin"}


def test_a_bulk_export_names_the_file_and_line_of_what_it_set_aside(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    (export / "Patient.ndjson").write_text(json.dumps(PATIENT) + "\n")
    lines = [weight("w", 70, "2025-01-10"), weight("w-mod", 72, "2025-01-14", modifierExtension=[{"url": "urn:x"}])]
    (export / "Observation.ndjson").write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = tmp_path / "out.jsonl"
    proc = cli("batch", "--input-format", "fhir-bulk", "--as-of", AS_OF, export, "-o", out)
    assert proc.returncode == 0, proc.stderr
    (result,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert result["sources"]["/weight_kg"]["id"] == "w"  # the newer weight carried a modifier
    assert result["set_aside"] == [
        {
            "resourceType": "Observation",
            "id": "w-mod",
            "origin": "Observation.ndjson:2",
            "reason": "modifier",
            "message": "Observation/w-mod: carries a modifierExtension this reader does not understand",
        }
    ]


@pytest.mark.parametrize("mask", [(), ("--mask", "/id")], ids=["clear", "masked"])
def test_a_decision_with_resources_set_aside_replays_identically(tmp_path: Path, mask: tuple[str, ...]) -> None:
    """Masked too: replay compares the decision, never the conversion's account carried beside it
    (before, a masked FHIR result replayed as changed, 'differs in sources; set_aside')."""
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(BUNDLE))
    stored = tmp_path / "result.json"
    proc = cli("evaluate", "--input-format", "fhir", "--as-of", AS_OF, "--include-input", *mask, path)
    stored.write_text(proc.stdout)
    assert json.loads(proc.stdout)["set_aside"]
    replay = cli("replay", stored)
    assert replay.returncode == 0 and "1 identical" in replay.stdout, replay.stdout + replay.stderr
    # what replay did not compare is said, not covered by "identical" (outside review 4, item 11)
    assert "1 of them from FHIR input: the conversion's account (" in replay.stdout, replay.stdout
    assert "sources" in replay.stdout and "decision.fhir) is carried as recorded, not re-derived" in replay.stdout


def test_the_result_schema_knows_every_reason() -> None:
    item = load_schema("result")["$defs"]["set_aside"]
    assert tuple(item["properties"]["reason"]["enum"]) == REASONS


def test_a_bundle_of_many_resources_about_someone_else_costs_linear_time(fmap: FhirMap) -> None:
    """Each resource set aside is listed once, and listing 30,000 of them is not 30,000 squared."""
    others = [weight(f"o{i}", 70, "2025-01-10", subject="Patient/someone-else") for i in range(30_000)]
    start = time.perf_counter()
    done = convert_bundle(bundle(*others), fmap, as_of=date(2025, 1, 15))
    assert time.perf_counter() - start < 20
    assert len(done.set_aside) == 30_000 and {i.reason for i in done.set_aside} == {"not_this_patient"}


STATUS_WORDS = "not a usable result (the map reads only final, amended, corrected results)"


def test_a_result_whose_status_is_no_result_is_set_aside_saying_the_status(tmp_path: Path) -> None:
    """FHIR R4 ObservationStatus: final, amended and corrected are results; registered,
    preliminary, cancelled and unknown are not (yet). Each newer weight of such a status is passed
    over for the older final one, and listed with its field and its status, never skipped in
    silence; an entered-in-error one keeps its own reason. A field Observation is read the same way."""
    newer = [("w-prelim", "preliminary"), ("w-reg", "registered"), ("w-canc", "cancelled"), ("w-unk", "unknown")]
    resources = [weight("w-final", 70, "2025-01-05")]
    resources += [weight(rid, 90, f"2025-01-1{i}", status=status) for i, (rid, status) in enumerate(newer)]
    resources += [
        {k: v for k, v in weight("w-none", 91, "2025-01-14").items() if k != "status"},
        weight("w-odd", 92, "2025-01-14", status=5),
        weight("w-eie", 93, "2025-01-14", status="entered-in-error"),
        weight("w-old-prelim", 94, "2024-01-05", status="preliminary"),  # outside the 90-day window: not a candidate
        obs("hr-prelim", "8867-4", qty(60, "/min"), when="2025-01-14", status="preliminary"),  # no field reads it
        field_obs("etio-final", "fsgs.etiology", when="2025-01-02", **enum_value("primary")),
        field_obs("etio-prelim", "fsgs.etiology", when="2025-01-12", status="preliminary", **enum_value("genetic")),
    ]
    result = evaluate_bundle(tmp_path, bundle(*resources, patient=PATIENT), "--as-of", AS_OF)
    assert not list(validator("result").iter_errors(result))
    assert result["sources"]["/weight_kg"]["id"] == "w-final"
    assert result["sources"]["/fsgs/etiology"]["id"] == "etio-final"
    items = by_id(result)
    for rid, status in newer:
        assert items[rid] == {
            "resourceType": "Observation",
            "id": rid,
            "entry": items[rid]["entry"],
            "field": "/weight_kg",
            "reason": "status_not_usable",
            "message": f"Observation/{rid}: status {status}: {STATUS_WORDS}",
        }
    assert items["w-none"]["message"] == f"Observation/w-none: no status: {STATUS_WORDS}"
    assert items["w-odd"]["message"] == f"Observation/w-odd: status 5: {STATUS_WORDS}"
    assert items["w-eie"]["reason"] == "entered_in_error"
    etiology = items["etio-prelim"]
    assert (etiology["field"], etiology["reason"]) == ("/fsgs/etiology", "status_not_usable")
    assert "w-old-prelim" not in items and "hr-prelim" not in items
    assert len(result["set_aside"]) == len(items)  # each listed once


def test_a_preliminary_result_alone_leaves_the_field_empty_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle(weight("w", 90, "2025-01-14", status="preliminary"), patient=PATIENT)))
    proc = cli("explain", "--input-format", "fhir", "--as-of", AS_OF, path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "  /entry/1, /weight_kg: Observation/w: status preliminary: not a usable result" in proc.stdout
    assert "empty, no resource for it: /weight_kg" in proc.stdout


ORDER_WORDS = "not a usable order (the map reads only active, on-hold, completed, stopped orders)"
STATEMENT_WORDS = "not a usable statement (the map reads only active, completed, stopped, on-hold statements)"


def statement(rid: str, status: Any, code: str = "3008", **extra: Any) -> dict[str, Any]:
    res = {
        "resourceType": "MedicationStatement",
        "id": rid,
        "status": status,
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code}]},
        "effectivePeriod": {"start": "2024-12-01"},
        "dosage": [dosage(100, frequency=2)],
    }
    return {**res, **extra}


def without_status(res: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in res.items() if k != "status"}


def test_an_order_whose_status_is_not_read_is_set_aside_saying_the_status(tmp_path: Path) -> None:
    """FHIR R4 MedicationRequestStatus: the map reads active, on-hold, completed and stopped orders;
    a draft, cancelled or unknown cyclosporine order (or one with no status) is listed once, under
    the first field it would have fed, with its status, never skipped in silence; entered-in-error
    keeps its own reason, and a draft plan its intent's. What counts is unchanged: the sources are
    those of the active order alone. Not listed: what would not have counted with any status (an
    order starting after the evaluation date, prednisone, which feeds no field, an ophthalmic
    product) and a statement, which is not read while an order counts."""
    active = cyclosporine_order("o-active", dosage(100, frequency=2))
    passed = [("o-draft", "draft"), ("o-canc", "cancelled"), ("o-unk", "unknown")]
    resources = [active]
    resources += [cyclosporine_order(rid, dosage(150, frequency=2), status=status) for rid, status in passed]
    resources += [
        without_status(cyclosporine_order("o-none", dosage(150, frequency=2))),
        cyclosporine_order("o-odd", dosage(150, frequency=2), status=5),
        cyclosporine_order("o-eie", dosage(150, frequency=2), status="entered-in-error"),
        cyclosporine_order("o-plan", dosage(150, frequency=2), status="draft", intent="plan"),
        med_request("o-future", dosage(150, frequency=2, start="2025-03-01"), status="draft"),
        cyclosporine_order("o-pred", dosage(40), code="8640", status="draft"),
        cyclosporine_order("o-eye", dosage(1, frequency=2), code="402092", status="draft"),
        statement("s-not-taken", "not-taken"),
    ]
    result = evaluate_bundle(tmp_path, bundle(*resources, patient=PATIENT), "--as-of", AS_OF)
    assert not list(validator("result").iter_errors(result))
    items = by_id(result)
    for rid, status in passed:
        assert items[rid] == {
            "resourceType": "MedicationRequest",
            "id": rid,
            "entry": items[rid]["entry"],
            "field": "/cyclosporine/status",
            "reason": "medication_status_not_usable",
            "message": f"MedicationRequest/{rid}: status {status}: {ORDER_WORDS}",
        }
    assert items["o-none"]["message"] == f"MedicationRequest/o-none: no status: {ORDER_WORDS}"
    assert items["o-odd"]["message"] == f"MedicationRequest/o-odd: status 5: {ORDER_WORDS}"
    assert items["o-eie"]["reason"] == "entered_in_error"
    assert items["o-plan"]["reason"] == "medication_intent_not_usable"
    assert set(items) == {"o-draft", "o-canc", "o-unk", "o-none", "o-odd", "o-eie", "o-plan"}
    assert len(result["set_aside"]) == len(items)  # each listed once, not once per cyclosporine field
    alone = evaluate_bundle(tmp_path, bundle(active, patient=PATIENT), "--as-of", AS_OF)
    assert result["sources"] == alone["sources"] and result["sources"]["/cyclosporine/daily_dose"]["id"] == "o-active"


def test_a_statement_whose_status_is_not_read_is_set_aside_when_statements_are_read(tmp_path: Path) -> None:
    """No order counts (the only one is a draft), so statements are read (FHIR R4
    MedicationStatementStatus): the active one gives cyclosporine's status; intended, not-taken and
    unknown ones are listed with their status, and so is the draft order."""
    passed = [("s-int", "intended"), ("s-nt", "not-taken"), ("s-unk", "unknown")]
    resources = [statement("s-active", "active"), *(statement(rid, status) for rid, status in passed)]
    resources += [statement("s-eie", "entered-in-error"), cyclosporine_order("o-draft", dosage(100), status="draft")]
    result = evaluate_bundle(tmp_path, bundle(*resources, patient=PATIENT), "--as-of", AS_OF)
    assert not list(validator("result").iter_errors(result))
    assert result["sources"]["/cyclosporine/status"]["id"] == "s-active"
    items = by_id(result)
    for rid, status in passed:
        assert (items[rid]["resourceType"], items[rid]["field"], items[rid]["reason"]) == (
            "MedicationStatement",
            "/cyclosporine/status",
            "medication_status_not_usable",
        )
        assert items[rid]["message"] == f"MedicationStatement/{rid}: status {status}: {STATEMENT_WORDS}"
    assert items["o-draft"]["message"] == f"MedicationRequest/o-draft: status draft: {ORDER_WORDS}"
    assert items["s-eie"]["reason"] == "entered_in_error"
    assert set(items) == {"s-int", "s-nt", "s-unk", "s-eie", "o-draft"}


def test_a_draft_order_alone_leaves_cyclosporine_empty_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle(cyclosporine_order("d", dosage(100), status="draft"), patient=PATIENT)))
    proc = cli("explain", "--input-format", "fhir", "--as-of", AS_OF, path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "  /entry/1, /cyclosporine/status: MedicationRequest/d: status draft: not a usable order" in proc.stdout
    assert "/cyclosporine/status" in proc.stdout.partition("empty, no resource for it:")[2]


def test_an_order_of_another_immunosuppressant_is_set_aside_only_where_the_map_reads_its_code(tmp_path: Path) -> None:
    """A cancelled mycophenolate order feeds /other_immunosuppressants only where the site's map uses its
    unverified code: there it is listed under that field; with the shipped map, which ignores the code,
    it would not have counted with any status and is not listed."""
    rules = tmp_path / "rules"
    shutil.copytree(project_file("rules"), rules)
    path = rules / "fhir-map.yaml"
    shipped = path.read_text()
    path.write_text(shipped.replace("\n  unverified_codes: ignore ", "\n  unverified_codes: use ", 1))
    assert path.read_text() != shipped
    doc = bundle(cyclosporine_order("t", dosage(500, frequency=2), code="68149", status="cancelled"), patient=PATIENT)
    assert evaluate_bundle(tmp_path, doc, "--as-of", AS_OF)["set_aside"] == []
    (item,) = evaluate_bundle(tmp_path, doc, "--as-of", AS_OF, "--rules", rules)["set_aside"]
    assert (item["field"], item["reason"]) == ("/other_immunosuppressants", "medication_status_not_usable")
    assert item["message"] == f"MedicationRequest/t: status cancelled: {ORDER_WORDS}"


INTENT_WORDS = (
    "not an order to give the drug (the map reads only orders of intent order, original-order, "
    "reflex-order, filler-order, instance-order)"
)


def test_an_order_whose_intent_is_not_read_is_set_aside_saying_the_intent(tmp_path: Path) -> None:
    """FHIR R4 MedicationRequest.intent: a proposal, plan or option is no order to give the drug.
    Each such cyclosporine order is listed once, under the first field it would have fed, naming
    its intent (with a status the map does not read either, the intent is said, once); what
    counts is unchanged: the active order alone. Before, they were skipped in silence. One that
    would not have counted with any intent (starting after the evaluation date) is not listed."""
    active = cyclosporine_order("o-active", dosage(100, frequency=2))
    passed = [("o-prop", "proposal"), ("o-plan", "plan"), ("o-opt", "option")]
    resources = [active, *(cyclosporine_order(rid, dosage(150, frequency=2), intent=i) for rid, i in passed)]
    resources += [
        cyclosporine_order("o-both", dosage(150, frequency=2), intent="proposal", status="draft"),
        without_intent(cyclosporine_order("o-none", dosage(150, frequency=2))),
        med_request("o-future", dosage(150, frequency=2, start="2025-03-01"), intent="plan"),
    ]
    result = evaluate_bundle(tmp_path, bundle(*resources, patient=PATIENT), "--as-of", AS_OF)
    assert not list(validator("result").iter_errors(result))
    items = by_id(result)
    for rid, intent in [*passed, ("o-both", "proposal")]:
        assert items[rid] == {
            "resourceType": "MedicationRequest",
            "id": rid,
            "entry": items[rid]["entry"],
            "field": "/cyclosporine/status",
            "reason": "medication_intent_not_usable",
            "message": f"MedicationRequest/{rid}: intent {intent}: {INTENT_WORDS}",
        }
    assert items["o-none"]["message"] == f"MedicationRequest/o-none: no intent: {INTENT_WORDS}"
    assert set(items) == {"o-prop", "o-plan", "o-opt", "o-both", "o-none"}
    assert len(result["set_aside"]) == len(items)  # each listed once, not once per cyclosporine field
    alone = evaluate_bundle(tmp_path, bundle(active, patient=PATIENT), "--as-of", AS_OF)
    assert result["sources"] == alone["sources"] and result["sources"]["/cyclosporine/daily_dose"]["id"] == "o-active"


def without_intent(res: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in res.items() if k != "intent"}


def test_a_proposal_alone_leaves_cyclosporine_empty_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle(cyclosporine_order("p", dosage(100), intent="proposal"), patient=PATIENT)))
    proc = cli("explain", "--input-format", "fhir", "--as-of", AS_OF, path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "  /entry/1, /cyclosporine/status: MedicationRequest/p: intent proposal: not an order" in proc.stdout
    assert "/cyclosporine/status" in proc.stdout.partition("empty, no resource for it:")[2]


def test_a_bulk_export_sets_aside_a_plan_with_its_file_and_line(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    (export / "Patient.ndjson").write_text(json.dumps(PATIENT) + "\n")
    orders = [cyclosporine_order("o-active", dosage(100, frequency=2)), cyclosporine_order("o-plan", intent="plan")]
    (export / "MedicationRequest.ndjson").write_text("".join(json.dumps(r) + "\n" for r in orders))
    out = tmp_path / "out.jsonl"
    proc = cli("batch", "--input-format", "fhir-bulk", "--as-of", AS_OF, export, "-o", out)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    (result,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert result["sources"]["/cyclosporine/status"]["id"] == "o-active"
    assert result["set_aside"] == [
        {
            "resourceType": "MedicationRequest",
            "id": "o-plan",
            "origin": "MedicationRequest.ndjson:2",
            "field": "/cyclosporine/status",
            "reason": "medication_intent_not_usable",
            "message": f"MedicationRequest/o-plan: intent plan: {INTENT_WORDS}",
        }
    ]


def _questionnaire_bundle(levels: int) -> dict[str, Any]:
    """A Patient and a QuestionnaireResponse whose items nest `levels` deep (two JSON levels each)."""
    top: dict[str, Any] = {"linkId": "top"}
    node = top
    for i in range(levels):
        node["item"] = [{"linkId": f"l{i}"}]
        node = node["item"][0]
    answers = {"resourceType": "QuestionnaireResponse", "id": "q1", "status": "completed", "item": [top]}
    answers["subject"] = {"reference": "Patient/p1"}
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1980-01-01"}
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": patient}, {"resource": answers}]}


def test_a_deep_resource_is_set_aside_by_the_maps_limit_not_the_bundle_refused(tmp_path: Path) -> None:
    """The map's max_json_depth (64) sets a deeper resource aside; the reader's own limit for a
    patient record (32) refused the whole Bundle first (a QuestionnaireResponse of ~15 nested
    groups made the Bundle invalid). A nesting bomb is still refused whole."""
    shallow = evaluate_bundle(tmp_path, _questionnaire_bundle(14), "--as-of", "2025-01-15")
    assert shallow["status"] not in ("invalid", "error") and not shallow.get("set_aside"), shallow
    deep = evaluate_bundle(tmp_path, _questionnaire_bundle(40), "--as-of", "2025-01-15")
    assert deep["status"] not in ("invalid", "error")
    assert [(s["resourceType"], s["reason"]) for s in deep["set_aside"]] == [("QuestionnaireResponse", "too_deep")]
    path = tmp_path / "bomb.json"
    path.write_text(json.dumps(_questionnaire_bundle(100)))
    proc = cli("evaluate", "--input-format", "fhir", "--as-of", "2025-01-15", path)
    bomb = json.loads(proc.stdout)
    assert proc.returncode == 1 and bomb["status"] == "invalid" and bomb["errors"][0]["code"] == "input.too_deep"
