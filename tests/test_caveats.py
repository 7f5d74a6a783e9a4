"""Evidence applicability (clinical-notes §7): caveats qualify advice, with their provenance, and
never change, hide or replace it (issue 12)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from fsgs_kb.cli import main
from fsgs_kb.engine.load.paths import bundled_rules_dir

ROOT = Path(__file__).resolve().parent.parent
BASES = yaml.safe_load((bundled_rules_dir() / "tests" / "_bases.yaml").read_text())["bases"]


def patient(base: str, **changes: Any) -> dict[str, Any]:
    record = copy.deepcopy(BASES[base])
    record["id"] = f"caveat-{base}"
    for key, value in changes.items():
        record[key] = value
    return record


def entry(result: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return next(r for r in result["rules"] if r["id"] == rule_id)


def test_the_advice_lists_its_fired_caveats_with_their_provenance(kb: Any) -> None:
    record = patient(
        "naive_resistant_on_tacrolimus",
        serum_creatinine={"current": 450, "unit": "umol/L"},
        kidney_function={"egfr": 12, "unit": "mL/min/1.73m2"},
    )
    result = kb.evaluate(record)
    assert result["advice"] == ["CSA-SR-CANDIDATE"], "a caveat never replaces or hides the advice"
    assert result["caveats"] == ["CAVEAT-KIDNEY-FUNCTION", "CAVEAT-OTHER-CNI"]
    advice = entry(result, "CSA-SR-CANDIDATE")
    assert [c["id"] for c in advice["caveats"]] == result["caveats"]
    for caveat in advice["caveats"]:
        assert caveat["provenance"]["kind"] == "cited" and caveat["provenance"]["verified"] is False
        assert caveat["says"] == entry(result, caveat["id"])["says"]
    kidney = entry(result, "CAVEAT-KIDNEY-FUNCTION")
    assert kidney["kind"] == "caveat" and kidney["qualifies"][0] == "CSA-SR-CANDIDATE"
    assert {"field": "kidney_function.egfr", "value": 12, "unit": "mL/min/1.73m2"} in kidney["shown"]
    assert "CAVEAT-KIDNEY-FUNCTION" in result["drafts"], "caveats are unsigned drafts like every rule"


def test_restart_after_nephrotoxicity_shows_the_creatinine_values(kb: Any) -> None:
    record = patient("relapse_after_csa", serum_creatinine={"current": 160, "baseline": 90, "unit": "umol/L"})
    record["cyclosporine"]["stop_reason"] = "nephrotoxicity"
    result = kb.evaluate(record)
    assert result["advice"] == ["CSA-RELAPSE-REINTRODUCE"]
    caveat = entry(result, "CAVEAT-RESTART-AFTER-NEPHROTOXICITY")
    assert caveat["outcome"] == "fired" and caveat["provenance"]["sentence"] == "S5"
    shown = {s.get("field") or s.get("derived"): s for s in caveat["shown"]}
    assert shown["serum_creatinine.current"]["value"] == 160 and shown["serum_creatinine.current"]["unit"] == "umol/L"
    assert shown["serum_creatinine.baseline"]["value"] == 90
    assert round(shown["creatinine_rise_pct"]["value"], 1) == 77.8
    advice = entry(result, "CSA-RELAPSE-REINTRODUCE")
    assert advice["caveats"][0]["id"] == "CAVEAT-RESTART-AFTER-NEPHROTOXICITY"


def test_a_caveat_is_never_undetermined_nor_asked_for(kb: Any) -> None:
    """Missing kidney function: no caveat, not listed as missing for the advice; the entry says
    the applicability check could not be made."""
    result = kb.evaluate(patient("naive_resistant_adult", serum_creatinine={"current": 450, "unit": "umol/L"}))
    advice = entry(result, "CSA-SR-CANDIDATE")
    assert advice["outcome"] == "fired" and advice["missing"] == [] and "caveats" not in advice
    caveat = entry(result, "CAVEAT-KIDNEY-FUNCTION")
    assert caveat["outcome"] == "not_fired" and caveat["missing"] == []
    assert set(caveat["unchecked"]) == {
        "/kidney_function/egfr",
        "/kidney_function",
        "/kidney_function/creatinine_clearance",
    }
    assert result["undetermined"] == [] and result["caveats"] == []


def test_a_caveat_without_its_advice_does_not_fire(kb: Any) -> None:
    record = patient("relapse_after_csa", disease_status="complete_remission")
    record["cyclosporine"]["stop_reason"] = "nephrotoxicity"
    result = kb.evaluate(record)
    assert entry(result, "CAVEAT-RESTART-AFTER-NEPHROTOXICITY")["outcome"] == "not_fired"
    assert "unchecked" not in entry(result, "CAVEAT-RESTART-AFTER-NEPHROTOXICITY")
    assert result["no_recommendation"] is True


def test_audit_lists_every_caveat_with_its_provenance_and_the_advice_it_qualifies() -> None:
    output = CliRunner().invoke(main, ["audit"]).output
    caveats = sorted(p.stem for p in (bundled_rules_dir() / "recommendations").glob("CAVEAT-*.yaml"))
    assert len(caveats) == 6
    for caveat in caveats:
        block = output.split(f"\n{caveat} v", 1)[1].split("\n\n", 1)[0]
        assert "[caveat, draft, NOT SIGNED OFF]" in block
        assert "\nqualifies: CSA-" in block
        assert "\ncaveat provenance: " in block
    assert "caveat provenance: from the review, S5 (quote verified verbatim)" in output
    assert "qualified by caveats: CAVEAT-KIDNEY-FUNCTION, CAVEAT-RELAPSE-BELOW-DEFINITION" in output
    payload = json.loads(CliRunner().invoke(main, ["audit", "--format", "json"]).output)
    assert payload["not_verified"]["caveats"] == ["CAVEAT-AGE-OVER-70", "CAVEAT-KIDNEY-FUNCTION", "CAVEAT-OTHER-CNI"]


def test_the_handbook_shows_caveats_with_the_advice(tmp_path: Path) -> None:
    assert CliRunner().invoke(main, ["docs", "-o", str(tmp_path)]).exit_code == 0
    advice = (tmp_path / "rules" / "CSA-SR-CANDIDATE.html").read_text()
    assert 'href="CAVEAT-OTHER-CNI.html"' in advice and "Caveats" in advice
    caveat = (tmp_path / "rules" / "CAVEAT-OTHER-CNI.html").read_text()
    assert "Qualifies" in caveat and 'href="CSA-PRIMARY-GC-RISK.html"' in caveat
    assert "not verified against the primary document" in caveat


def test_csv_takes_the_list_of_drugs_as_a_json_cell(tmp_path: Path) -> None:
    """A list of objects has no dotted column: its CSV cell holds the JSON list. A column named
    after one key of the items (other_immunosuppressants.drug) is an invalid record, with its
    pointer, never a silent loss."""
    good = tmp_path / "good.csv"
    good.write_text(
        "id,fsgs.biopsy_proven,fsgs.etiology,steroids.response,cyclosporine.status,other_immunosuppressants\n"
        'p1,true,primary,resistant,never,"[{""drug"": ""tacrolimus"", ""status"": ""past""}]"\n'
    )
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "id,fsgs.biopsy_proven,fsgs.etiology,steroids.response,cyclosporine.status,other_immunosuppressants.drug\n"
        "p2,true,primary,resistant,never,tacrolimus\n"
    )
    out = []
    for source in (good, bad):
        target = tmp_path / (source.stem + ".jsonl")
        subprocess.run(
            [sys.executable, "-m", "fsgs_kb", "batch", str(source), "-o", str(target), "--workers", "1", "--quiet"],
            capture_output=True,
            timeout=120,
        )
        out.append(json.loads(target.read_text().splitlines()[0]))
    assert out[0]["status"] == "evaluated" and out[0]["caveats"] == ["CAVEAT-OTHER-CNI"]
    assert out[1]["status"] == "invalid" and out[1]["errors"][0]["pointer"] == "/other_immunosuppressants"


def test_a_value_recorded_in_another_unit_decides_the_check(kb: Any) -> None:
    """Review of issue 13: a proteinuria recorded in g/day (or a clearance in mL/min) left the
    other units' comparisons open, so the caveat said "record proteinuria" of a record holding
    it. Each comparison is now made under its unit: the check is made, nothing is asked for."""
    for name in ("relapse-after-remission.json", "relapse-after-nephrotoxicity-stop.json"):
        record = json.loads((ROOT / "examples" / name).read_text())
        for result in (kb.evaluate(record), kb.reference_evaluate(record)):
            caveat = entry(result, "CAVEAT-RELAPSE-BELOW-DEFINITION")
            assert caveat["outcome"] == "not_fired" and "unchecked" not in caveat, name
    record = patient(
        "naive_resistant_adult", kidney_function={"egfr": 45, "creatinine_clearance": 30, "unit": "mL/min"}
    )
    for result in (kb.evaluate(record), kb.reference_evaluate(record)):
        caveat = entry(result, "CAVEAT-KIDNEY-FUNCTION")
        assert result["status"] == "evaluated"
        assert caveat["outcome"] == "not_fired" and "unchecked" not in caveat
    below = patient("relapse_after_csa", proteinuria={"value": 2.0, "unit": "g/day"})
    assert entry(kb.evaluate(below), "CAVEAT-RELAPSE-BELOW-DEFINITION")["outcome"] == "fired"
