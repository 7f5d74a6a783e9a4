"""`fsgs-kb export fhir`: every resource is valid FHIR (checked by a maintained model library, the
R4B models of fhir.resources, not by hand) and says what the knowledge base says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.library import Library
from fhir.resources.R4B.plandefinition import PlanDefinition

import fsgs_kb


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("export")
    proc = subprocess.run(
        [sys.executable, "-m", "fsgs_kb", "export", "fhir", "-o", str(out)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    (path,) = out.glob("*.fhir-bundle.json")
    rules = len(fsgs_kb.load().model.rules)
    assert proc.stdout.strip() == f"wrote {path}: 1 Library, {rules} PlanDefinitions (FHIR R4)"
    bundle: dict[str, Any] = json.loads(Path(path).read_text())
    return bundle


def test_every_resource_is_valid_fhir(exported: dict[str, Any]) -> None:
    Bundle.model_validate(exported)
    for entry in exported["entry"]:
        resource = entry["resource"]
        model = {"PlanDefinition": PlanDefinition, "Library": Library}[resource["resourceType"]]
        model.model_validate(resource)


def test_the_validator_can_fail(exported: dict[str, Any]) -> None:
    """A trigger in the wrong place (R5's shape) and a missing status are caught."""
    misplaced = json.loads(json.dumps(exported["entry"][1]["resource"]))
    misplaced["trigger"] = misplaced["action"][0].pop("trigger")
    with pytest.raises(ValueError, match="trigger"):
        PlanDefinition.model_validate(misplaced)
    unstated = json.loads(json.dumps(exported["entry"][1]["resource"]))
    del unstated["status"]
    with pytest.raises(ValueError, match="status"):
        PlanDefinition.model_validate(unstated)


def test_one_plan_definition_per_rule_saying_what_the_rule_says(exported: dict[str, Any]) -> None:
    kb = fsgs_kb.load()
    plans = {e["resource"]["identifier"][0]["value"]: e["resource"] for e in exported["entry"][1:]}
    assert set(plans) == set(kb.model.rules)
    source = kb.model.source
    for rule in kb.model.rules.values():
        plan = plans[rule.id]
        assert plan["type"]["coding"][0]["code"] == "eca-rule"
        assert plan["url"].endswith(f"/PlanDefinition/{rule.id}") and plan["version"] == rule.version
        assert plan["status"] == rule.status == "draft"  # the model library leaves code values to us
        assert plan["status"] in ("draft", "active", "retired", "unknown")
        assert plan["description"] == " ".join(rule.says.split())
        for quote, artifact in zip(rule.citations, plan["relatedArtifact"], strict=False):
            assert "doi:10.1053/snep.2003.50022" in artifact["citation"] and "PMID 12704584" in artifact["citation"]
            assert " ".join(quote.quote.split()) in artifact["citation"]
            assert " ".join(quote.quote.split()) in " ".join(source.sentences[quote.sentence].split())
        (action,) = plan["action"]
        assert [t["name"] for t in action["trigger"]] == ["patient-view", "order-sign"]
        assert action["condition"][0]["expression"]["name"] == rule.id
        assert plan["library"] == [f"{exported['entry'][0]['resource']['url']}|{kb.version}"]


def _codes(requirements: list[dict[str, Any]]) -> set[str]:
    return {f"{c['system']}|{c['code']}" for r in requirements for f in r.get("codeFilter", []) for c in f["code"]}


def test_inputs_carry_the_codes_of_the_map(exported: dict[str, Any]) -> None:
    plans = {e["resource"]["identifier"][0]["value"]: e["resource"] for e in exported["entry"][1:]}
    dose = _codes(plans["CSA-DOSE-EXCEEDS"]["action"][0]["input"])
    assert {"http://loinc.org|29463-7", "http://www.nlm.nih.gov/research/umls/rxnorm|3008"} <= dose
    assert "urn:fsgs-kb:field|fsgs.etiology" in dose
    assert "http://loinc.org|2160-0" not in dose  # creatinine does not decide the dose rules
    assert "http://loinc.org|2160-0" in _codes(plans["CSA-NEPHROTOX-SUSPECTED"]["action"][0]["input"])
    library = _codes(exported["entry"][0]["resource"]["dataRequirement"])
    assert "http://www.nlm.nih.gov/research/umls/rxnorm|68149" not in library  # unverified
    assert "http://www.nlm.nih.gov/research/umls/rxnorm|42316" in library  # tacrolimus, verified


def test_library_holds_every_parameter_with_its_provenance(exported: dict[str, Any]) -> None:
    kb = fsgs_kb.load()
    library = exported["entry"][0]["resource"]
    assert library["type"]["coding"][0]["code"] == "module-definition"
    params = {p["name"]: p for p in library["parameter"]}
    assert set(params) == set(kb.model.parameters)
    assert params["max_daily_dose"]["documentation"].endswith(": 5 mg/kg/day (from the review, S5)")
