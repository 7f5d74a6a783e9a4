"""other_immunosuppressants from FHIR: an order is positive evidence that the patient takes (or took)
the drug; no order is not "asked, none". So an active tacrolimus order qualifies the advice with the
"another calcineurin inhibitor" caveat (clinical-notes §7), while a list from orders alone is written
only when it settles what the rules read, and a stopped, cancelled or other patient's order counts for
nothing (review 3, defect 1)."""

from __future__ import annotations

import copy
import json
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fhir_helpers import (
    bundle,
    cli,
    dosage,
    enum_value,
    evaluate_bundle,
    field_obs,
    med_request,
    project_file,
)

from fsgs_kb.engine.fhir import FhirMap, bundle_to_record, convert_bundle

AS_OF = date(2025, 1, 15)  # the examples' evaluation date
RXNORM_TAC = "http://www.nlm.nih.gov/research/umls/rxnorm|42316"
EXAMPLE = "examples/fhir/steroid-resistant-naive.bundle.json"


def tacrolimus(rid: str = "tac1", status: str = "active", subject: str | None = None, **extra: Any) -> dict[str, Any]:
    """The reviewer's order: RxNorm 42316, 2 mg twice daily from 2024-12-01."""
    order = med_request(
        rid, dosage(2, frequency=2, start="2024-12-01"), code="42316", status=status, authoredOn="2024-12-01", **extra
    )
    if subject is not None:
        order["subject"] = {"reference": subject}
    return order


def example_with(*resources: dict[str, Any]) -> dict[str, Any]:
    """The steroid-resistant, cyclosporine-naive example Bundle with resources added for its Patient."""
    doc = copy.deepcopy(json.loads(project_file(EXAMPLE).read_text()))
    pid = next(e["resource"]["id"] for e in doc["entry"] if e["resource"]["resourceType"] == "Patient")
    for res in map(copy.deepcopy, resources):
        if res["subject"]["reference"] == "Patient/p1":
            res["subject"] = {"reference": f"Patient/{pid}"}
        doc["entry"].append({"fullUrl": f"urn:uuid:{res['id']}", "resource": res})
    return doc


def run(tmp_path: Path, doc: dict[str, Any]) -> dict[str, Any]:
    return evaluate_bundle(tmp_path, doc, "--as-of", "2025-01-15", "--include-input")


def test_an_active_tacrolimus_order_gives_the_other_cni_caveat_with_the_advice(tmp_path: Path) -> None:
    """The reviewer's repro: before, advice without caveat and a source saying `no_resource`."""
    result = run(tmp_path, example_with(tacrolimus()))
    assert result["status"] == "evaluated"
    assert result["advice"] == ["CSA-SR-CANDIDATE"] and result["caveats"] == ["CAVEAT-OTHER-CNI"]
    assert result["decision"]["input"]["other_immunosuppressants"] == [{"drug": "tacrolimus", "status": "current"}]
    source = result["sources"]["/other_immunosuppressants"]
    assert (source["resourceType"], source["id"], source["code"]) == ("MedicationRequest", "tac1", RXNORM_TAC)
    assert "others" not in source  # one order
    assert result["set_aside"] == []


def test_without_the_order_the_example_has_no_caveat_and_no_list(tmp_path: Path) -> None:
    result = run(tmp_path, example_with())
    assert result["advice"] == ["CSA-SR-CANDIDATE"] and result["caveats"] == []
    assert result["sources"]["/other_immunosuppressants"] == {"missing": "no_resource"}


@pytest.mark.parametrize(
    ("status", "reason"),
    [("stopped", "medication_status_not_usable"), ("cancelled", "medication_status_not_usable")],
)
def test_a_stopped_or_cancelled_order_counts_for_nothing_and_is_set_aside(
    tmp_path: Path, status: str, reason: str
) -> None:
    """A stopped order may have been stopped before the first dose: it says neither current nor past use."""
    result = run(tmp_path, example_with(tacrolimus(status=status)))
    assert result["caveats"] == [] and "other_immunosuppressants" not in result["decision"]["input"]
    assert result["sources"]["/other_immunosuppressants"] == {"missing": "no_resource"}
    (aside,) = result["set_aside"]
    assert (aside["id"], aside["field"], aside["reason"]) == ("tac1", "/other_immunosuppressants", reason)
    assert f"status {status}" in aside["message"]


def test_a_draft_order_or_another_patients_order_does_not_count(tmp_path: Path) -> None:
    draft = tacrolimus("d", status="draft")
    other = tacrolimus("o", subject="Patient/someone-else")
    result = run(tmp_path, example_with(draft, other))
    assert result["caveats"] == [] and "other_immunosuppressants" not in result["decision"]["input"]
    assert {(a["id"], a["reason"]) for a in result["set_aside"]} == {
        ("d", "medication_status_not_usable"),
        ("o", "not_this_patient"),
    }


def test_a_completed_order_that_ended_is_past_use_and_still_gives_the_caveat(tmp_path: Path) -> None:
    done = med_request(
        "c", dosage(2, frequency=2, start="2023-01-01", end="2023-06-30"), code="42316", status="completed"
    )
    result = run(tmp_path, example_with(done))
    assert result["decision"]["input"]["other_immunosuppressants"] == [{"drug": "tacrolimus", "status": "past"}]
    assert result["caveats"] == ["CAVEAT-OTHER-CNI"]


def stated_list(items: list[dict[str, str]]) -> dict[str, Any]:
    """A field Observation listing other immunosuppressants, one component per {drug, status}."""
    comps = [{"code": enum_value(x["drug"])["valueCodeableConcept"], **enum_value(x["status"])} for x in items]
    return field_obs("list", "other_immunosuppressants", when="2024-05-15", component=comps)


def test_order_and_stated_list_that_agree_give_the_stated_list_naming_both(fmap: FhirMap) -> None:
    obs = stated_list([{"drug": "tacrolimus", "status": "current"}])
    record, prov = bundle_to_record(bundle(tacrolimus(), obs), fmap, as_of=AS_OF)
    assert record["other_immunosuppressants"] == [{"drug": "tacrolimus", "status": "current"}]
    source = prov["/other_immunosuppressants"]
    assert (source["resourceType"], source["id"]) == ("Observation", "list")
    assert [(o["resourceType"], o["id"], o["code"]) for o in source["others"]] == [
        ("MedicationRequest", "tac1", RXNORM_TAC)
    ]


@pytest.mark.parametrize(
    "items",
    [[], [{"drug": "mycophenolate", "status": "past"}], [{"drug": "tacrolimus", "status": "past"}]],
    ids=["asked-none", "other-drug", "tacrolimus-past"],
)
def test_an_order_the_stated_list_lacks_makes_the_field_ambiguous(fmap: FhirMap, items: list[Any]) -> None:
    record, prov = bundle_to_record(bundle(tacrolimus(), stated_list(items)), fmap, as_of=AS_OF)
    assert "other_immunosuppressants" not in record
    assert prov["/other_immunosuppressants"] == {"missing": "ambiguous"}


def site_map(fmap: FhirMap) -> FhirMap:
    """The shipped map with unverified codes used (mycophenolate's RxNorm code is unverified)."""
    return FhirMap({**fmap.data, "settings": {**fmap.settings, "unverified_codes": "use"}}, fmap.file)


def test_orders_that_do_not_settle_the_rules_leave_the_list_empty_naming_them(fmap: FhirMap) -> None:
    """A mycophenolate order alone says nothing of tacrolimus or voclosporin: no list (it would
    claim "asked, no other calcineurin inhibitor"), and the source names the order read."""
    myco = med_request("m", dosage(500, frequency=2, start="2024-01-01"), code="68149")
    record, prov = bundle_to_record(bundle(myco), site_map(fmap), as_of=AS_OF)
    assert "other_immunosuppressants" not in record
    source = prov["/other_immunosuppressants"]
    assert source["missing"] == "orders_only" and [o["id"] for o in source["orders"]] == ["m"]
    record, prov = bundle_to_record(bundle(myco, tacrolimus()), site_map(fmap), as_of=AS_OF)
    assert record["other_immunosuppressants"] == [
        {"drug": "tacrolimus", "status": "current"},
        {"drug": "mycophenolate", "status": "current"},
    ]
    source = prov["/other_immunosuppressants"]
    assert (source["id"], [o["id"] for o in source["others"]]) == ("tac1", ["m"])


def test_unverified_codes_stay_ignored_by_the_shipped_map(fmap: FhirMap) -> None:
    myco = med_request("m", dosage(500, frequency=2, start="2024-01-01"), code="68149")
    done = convert_bundle(bundle(myco), fmap, as_of=AS_OF)
    assert done.sources["/other_immunosuppressants"] == {"missing": "no_resource"} and done.set_aside == []


def test_validate_refuses_settled_by_that_a_rule_reading_the_list_would_not_be_decided_by(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(project_file("rules"), rules)
    caveat = rules / "recommendations" / "CAVEAT-OTHER-CNI.yaml"
    text = caveat.read_text()
    caveat.write_text(text.replace("includes_any: {param: other_calcineurin_inhibitors}", "includes_any: [tacrolimus]"))
    assert caveat.read_text() != text
    proc = cli("validate", "--rules", rules)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "CAVEAT-OTHER-CNI.yaml:9:3: error[fhirmap.settled_by]" in proc.stdout
    assert "rule CAVEAT-OTHER-CNI asks includes_any without ['voclosporin']" in proc.stdout
