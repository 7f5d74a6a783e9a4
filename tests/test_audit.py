"""Audit and versioning: audit, trace, diff on real git history, replay, impact, sign-off."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from generate import iter_cohort
from support import RULES

from fsgs_kb.cli import main

ROOT = Path(__file__).resolve().parent.parent
NEXT_VERSION = "9.0.0"  # above any version the bundled knowledge base will reach in these tests
SOURCE_PROVENANCE = (
    "      source:\n        source: cattran-2003\n        sentence: S5\n"
    "        quote: Provided the total dose is kept to 5 mg/kg or less\n"
)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def set_dose_ceiling(rules: Path, value: float) -> None:
    params = rules / "parameters.yaml"
    text = params.read_text(encoding="utf-8").replace("    value: 5\n", f"    value: {value}\n", 1)
    text = text.replace(
        SOURCE_PROVENANCE, f'      local: {{rationale: ceiling {value} for a test, decided_on: "2026-11-25"}}\n', 1
    )
    params.write_text(text, encoding="utf-8")


KB_VERSION = str(yaml.safe_load((RULES / "kb.yaml").read_text(encoding="utf-8"))["version"])


def rule_version(rules: Path, rule_id: str) -> str:
    return str(yaml.safe_load((rules / "recommendations" / f"{rule_id}.yaml").read_text(encoding="utf-8"))["version"])


def bump_rule(rules: Path, rule_id: str, version: str) -> None:
    """A new version with its history entry, as an editor does after a change of meaning."""
    path = rules / "recommendations" / f"{rule_id}.yaml"
    text = re.sub(r"(?m)^version: .*$", f"version: {version}", path.read_text(encoding="utf-8"), count=1)
    text = text.rstrip("\n") + f'\n  - version: {version}\n    date: "2026-11-26"\n    change: New dose ceiling.\n'
    path.write_text(text, encoding="utf-8")


def bump_kb(rules: Path, version: str) -> None:
    manifest = rules / "kb.yaml"
    text = re.sub(r"version: \S+\nreleased", f"version: {version}\nreleased", manifest.read_text(encoding="utf-8"))
    text = text.replace(
        "changelog:\n",
        f'changelog:\n  - version: {version}\n    date: "2026-11-26"\n    changes: [Changed the dose ceiling.]\n',
        1,
    )
    manifest.write_text(text, encoding="utf-8")


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=repo, check=True, capture_output=True
    )


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real git repository whose second commit changes a threshold."""
    shutil.copytree(RULES, tmp_path / "rules")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "first")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_diff_by_revision_flags_an_unversioned_change(repo: Path) -> None:
    set_dose_ceiling(repo / "rules", 5.5)
    git(repo, "commit", "-qam", "threshold without a version bump")
    result = invoke("diff", "git:HEAD~1", "git:HEAD")
    assert result.exit_code == 1, result.output
    assert "max_daily_dose: 5 mg/kg/day (source S5) → 5.5 mg/kg/day (local (2026-11-25))" in result.output
    assert f"error[diff.unversioned] the knowledge base changed but its version is still {KB_VERSION}" in result.output
    for rule_id in ("CSA-DOSE-EXCEEDS", "CSA-DOSE-WITHIN"):  # the rules whose meaning rests on the ceiling
        assert f"{rule_id}'s meaning changed (parameter max_daily_dose) but its version is still" in result.output
    assert "CSA-DUR-EXCEEDS's meaning" not in result.output
    assert (repo / "rules" / "parameters.yaml").read_text().count("value: 5.5") == 1  # working tree untouched


def test_diff_passes_once_versioned(repo: Path) -> None:
    rules = repo / "rules"
    set_dose_ceiling(rules, 5.5)
    bump_kb(rules, NEXT_VERSION)
    git(repo, "commit", "-qam", "threshold change, knowledge base versioned, rules not")
    result = invoke("diff", "git:HEAD~1", "git:HEAD")
    assert result.exit_code == 1 and "CSA-DOSE-WITHIN's meaning changed (parameter max_daily_dose)" in result.output
    for rule_id in ("CSA-DOSE-EXCEEDS", "CSA-DOSE-WITHIN"):
        bump_rule(rules, rule_id, NEXT_VERSION)
    git(repo, "commit", "-qam", "the rules versioned too")
    result = invoke("diff", "git:HEAD~2", "git:HEAD")
    assert result.exit_code == 0, result.output
    assert f"kb.yaml: {KB_VERSION} → {NEXT_VERSION}" in result.output
    assert "CSA-DOSE-WITHIN: meaning changed through parameter max_daily_dose" in result.output


def test_a_derived_value_change_reaches_the_rules_that_use_it(repo: Path) -> None:
    derived = repo / "rules" / "derived.yaml"
    derived.write_text(derived.read_text(encoding="utf-8").replace("eq: mg/kg/day}", "eq: mg/kg/day }"))
    assert invoke("diff", "git:HEAD", "rules").exit_code == 0  # formatting only: no change of meaning
    text = derived.read_text(encoding="utf-8").replace(
        "        to: {field: serum_creatinine.current}", "        to: {field: serum_creatinine.baseline}"
    )
    derived.write_text(text, encoding="utf-8")
    bump_kb(repo / "rules", NEXT_VERSION)
    result = invoke("diff", "git:HEAD", "rules")
    assert result.exit_code == 1
    assert "CSA-NEPHROTOX-SUSPECTED's meaning changed (derived value creatinine_rise_pct)" in result.output
    assert "CSA-DOSE-EXCEEDS's meaning" not in result.output


def test_a_rule_changed_without_its_version(repo: Path) -> None:
    rule = repo / "rules" / "recommendations" / "CSA-MONITOR-BP.yaml"
    text = rule.read_text()
    version = yaml.safe_load(text)["version"]
    rule.write_text(text.replace("while the patient is on cyclosporine", "during cyclosporine therapy"))
    bump_kb(repo / "rules", NEXT_VERSION)
    result = invoke("diff", "git:HEAD", "rules")
    assert result.exit_code == 1
    assert "CSA-MONITOR-BP: advice text changed" in result.output
    assert f"CSA-MONITOR-BP's meaning changed (its own text or condition) but its version is still {version}" in (
        result.output
    )


MAP_VERSION = str(yaml.safe_load((RULES / "fhir-map.yaml").read_text(encoding="utf-8"))["map_version"])


def edit_map(rules: Path, old: str, new: str) -> None:
    path = rules / "fhir-map.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count(old) >= 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def diff_cli(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`fsgs-kb diff ARGS` as a real subprocess, in the repository (git:REV is read from there)."""
    return subprocess.run(
        [sys.executable, "-m", "fsgs_kb", "diff", *args], capture_output=True, text=True, timeout=300, cwd=repo
    )


@pytest.mark.parametrize(
    ("old", "new", "shown"),
    [
        (
            'code: "29463-7"',
            'code: "3141-9"',
            [
                "fhir-map.yaml: code set body_weight (fills weight_kg): code http://loinc.org|29463-7 removed",
                "fhir-map.yaml: code set body_weight (fills weight_kg): code http://loinc.org|3141-9 added",
            ],
        ),
        (
            "unverified_codes: ignore ",
            "unverified_codes: use ",
            ["fhir-map.yaml: /settings/unverified_codes: ignore → use"],
        ),
    ],
)
def test_a_map_change_needs_a_new_map_version(repo: Path, old: str, new: str, shown: list[str]) -> None:
    """Hostile sweep: a changed FHIR map printed "no change" and passed CI's versioning check, so
    results from two maps claimed one map_version. The map is outside the KB fingerprint (it has
    its own version and sha256 in every FHIR decision): only map_version must go up."""
    edit_map(repo / "rules", old, new)
    unversioned = diff_cli(repo, "git:HEAD", "rules")
    assert unversioned.returncode == 1, unversioned.stdout + unversioned.stderr
    assert "no change" not in unversioned.stdout
    for line in shown:
        assert f"\n  {line}" in unversioned.stdout, unversioned.stdout
    lines = (repo / "rules" / "fhir-map.yaml").read_text(encoding="utf-8").splitlines()
    at = next(f"{n}:{line.index(MAP_VERSION)}" for n, line in enumerate(lines, 1) if line.startswith("map_version:"))
    assert (
        f"rules/fhir-map.yaml:{at}: error[diff.unversioned] fhir-map.yaml changed but its map_version is still "
        f"{MAP_VERSION}: raise map_version in fhir-map.yaml"
    ) in unversioned.stdout
    assert "error[diff.unversioned] the knowledge base changed" not in unversioned.stdout  # not in the fingerprint
    edit_map(repo / "rules", f'map_version: "{MAP_VERSION}"', 'map_version: "9.0.0"')
    git(repo, "commit", "-qam", "map changed, map_version raised")
    versioned = diff_cli(repo, "git:HEAD~1", "git:HEAD", "--format", "json")
    assert versioned.returncode == 0, versioned.stdout + versioned.stderr
    payload = json.loads(versioned.stdout)
    assert payload["violations"] == []
    assert payload["old"]["fingerprint"] == payload["new"]["fingerprint"]
    assert (payload["old"]["fhir_map"]["version"], payload["new"]["fhir_map"]["version"]) == (MAP_VERSION, "9.0.0")
    assert payload["old"]["fhir_map"]["sha256"] != payload["new"]["fhir_map"]["sha256"]
    bump = next(c for c in payload["changes"] if c["kind"] == "map_version")
    assert (bump["subject"], bump["detail"]) == ("fhir-map.yaml", f"map_version {MAP_VERSION} → 9.0.0")


def test_a_map_version_only_goes_up_and_layout_is_no_change(repo: Path) -> None:
    rules = repo / "rules"
    edit_map(rules, "# FHIR R4 -> fsgs-kb patient record map.", "# FHIR R4 -> patient record map (reworded).")
    statuses = "observation_statuses: [final, amended, corrected]"
    edit_map(rules, statuses, statuses.replace(", ", ","))
    same = diff_cli(repo, "git:HEAD", "rules")
    assert same.returncode == 0 and "no change" in same.stdout, same.stdout + same.stderr
    edit_map(rules, "same_time_tolerance_pct: 1.0", "same_time_tolerance_pct: 2.0")
    edit_map(rules, f'map_version: "{MAP_VERSION}"', 'map_version: "0.0.1"')
    lower = diff_cli(repo, "git:HEAD", "rules")
    assert lower.returncode == 1, lower.stdout + lower.stderr
    assert "fhir-map.yaml: /settings/same_time_tolerance_pct: 1.0 → 2.0" in lower.stdout
    assert f"fhir-map.yaml map_version went from {MAP_VERSION} to 0.0.1: versions only go up" in lower.stdout
    edit_map(rules, "same_time_tolerance_pct: 2.0", "same_time_tolerance_pct: 1.0")
    only_lower = diff_cli(repo, "git:HEAD", "rules")  # the map as it was, under a version it may have had before
    assert only_lower.returncode == 1 and "versions only go up" in only_lower.stdout, only_lower.stdout


def test_audit_one_rule_shows_quote_parameters_and_flags() -> None:
    result = invoke("audit", "--rule", "CSA-NEPHROTOX-SUSPECTED")
    assert result.exit_code == 0
    assert "cites cattran-2003 S5 (quote verified verbatim)" in result.output
    assert "parameter nephrotoxicity_creatinine_rise = 30%" in result.output and "[NOT VERIFIED]" in result.output
    assert "NOT SIGNED OFF" in result.output
    payload = json.loads(invoke("audit", "--format", "json").output)
    counts: dict[str, int] = {}
    for param in yaml.safe_load((RULES / "parameters.yaml").read_text())["parameters"].values():
        kind = next(iter(param["provenance"]))
        counts[kind] = counts.get(kind, 0) + 1
    assert payload["parameters_by_provenance"] == dict(sorted(counts.items()))
    assert counts["local"] >= 6 and counts["cited"] >= 8
    assert payload["coverage"]["S3"]["not_encoded"].startswith("An evidence caveat")


def test_trace_detects_another_knowledge_base(tmp_path: Path, kb_copy: Path) -> None:
    result_file = tmp_path / "r.json"
    result_file.write_text(invoke("evaluate", str(ROOT / "examples" / "dose-above-ceiling.json")).stdout)
    same = invoke("trace", str(result_file))
    assert same.exit_code == 0 and "consistent with the same knowledge base" in same.output
    assert "the trace is exact" not in same.output  # not re-derived: the result carries no input
    with_input = invoke("trace", str(result_file), "--input", str(ROOT / "examples" / "dose-above-ceiling.json"))
    assert with_input.exit_code == 0 and "the trace is exact" in with_input.output
    assert '← cattran-2003 S5: "Provided the total dose is kept to 5 mg/kg or less and duration' in same.output
    set_dose_ceiling(kb_copy, 6)
    bump_kb(kb_copy, NEXT_VERSION)
    other = invoke("trace", str(result_file), "--rules", str(kb_copy))
    assert other.exit_code == 1 and "NOT the one that made this decision" in other.output


def test_replay_of_ten_thousand_decisions_is_identical(tmp_path: Path) -> None:
    patients = tmp_path / "patients.jsonl"
    patients.write_text("".join(json.dumps(p) + "\n" for p in iter_cohort(10_000, seed=31, invalid_rate=0.02)))
    results = tmp_path / "results.jsonl"
    subprocess.run(
        [sys.executable, "-m", "fsgs_kb", "batch", str(patients), "-o", str(results), "--quiet"],
        cwd=ROOT,
        check=False,
        capture_output=True,
        timeout=600,
    )
    assert results.read_text().count("\n") == 10_000
    proc = subprocess.run(
        [sys.executable, "-m", "fsgs_kb", "replay", str(results), "--input", str(patients)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "10,000 identical (100.0 %), 0 changed, 0 input missing" in proc.stdout


def test_replay_reports_changes_and_missing_inputs(tmp_path: Path, kb_copy: Path) -> None:
    patients = [p for p in iter_cohort(300, seed=5)]
    source = tmp_path / "p.jsonl"
    source.write_text("".join(json.dumps(p) + "\n" for p in patients))
    results = tmp_path / "r.jsonl"
    subprocess.run(
        [sys.executable, "-m", "fsgs_kb", "batch", str(source), "-o", str(results), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        timeout=300,
    )
    set_dose_ceiling(kb_copy, 6)
    bump_kb(kb_copy, NEXT_VERSION)
    changed = invoke("replay", str(results), "--input", str(source), "--rules", str(kb_copy))
    assert changed.exit_code == 1 and "CSA-DOSE-EXCEEDS fired → not_fired" in changed.output
    missing = invoke("replay", str(results))
    assert "300 input missing" in missing.output


@pytest.mark.parametrize("key", [None, "site-secret"])
def test_replay_from_stored_masked_input(tmp_path: Path, key: str | None) -> None:
    """A masked id is an HMAC under the site's key, or removed: never a hash anyone can invert."""
    record = json.loads((ROOT / "examples" / "dose-above-ceiling.json").read_text())
    source = tmp_path / "p.jsonl"
    source.write_text(json.dumps(record) + "\n")
    results = tmp_path / "r.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "FSGS_KB_MASK_KEY"}
    if key:
        env["FSGS_KB_MASK_KEY"] = key
    subprocess.run(
        [
            sys.executable,
            "-m",
            "fsgs_kb",
            "batch",
            str(source),
            "-o",
            str(results),
            "--quiet",
            "--include-input",
            "--mask",
            "/id",
        ],
        cwd=ROOT,
        capture_output=True,
        timeout=300,
        env=env,
    )
    stored = json.loads(results.read_text())
    masked = stored["decision"]["input"]["id"]
    expected = (
        "hmac-sha256:" + hmac.new(key.encode(), b'"EX-DOSE-HIGH"', hashlib.sha256).hexdigest() if key else "[masked]"
    )
    assert stored["decision"]["masked"] == ["/id"] and masked == expected
    assert stored["patient_id"] == stored["decision"]["input"]["id"]
    assert stored["decision"]["input"]["weight_kg"] == 70
    replayed = invoke("replay", str(results))
    assert replayed.exit_code == 0 and "1 identical" in replayed.output


def test_impact_of_a_dose_ceiling_change_is_exactly_the_patients_in_between(tmp_path: Path, kb_copy: Path) -> None:
    patients = list(iter_cohort(3000, seed=44))
    source = tmp_path / "p.jsonl"
    source.write_text("".join(json.dumps(p) + "\n" for p in patients))
    set_dose_ceiling(kb_copy, 5.5)
    bump_kb(kb_copy, NEXT_VERSION)
    result = invoke("impact", str(RULES), str(kb_copy), str(source), "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)

    def in_between(p: dict[str, Any]) -> bool:  # computed independently of the engine
        csa = p.get("cyclosporine", {})
        dose = csa.get("daily_dose")
        fsgs = p.get("fsgs", {})
        if csa.get("status") != "current" or not dose or fsgs != {"biopsy_proven": True, "etiology": "primary"}:
            return False
        per_kg = dose["value"] if dose["unit"] == "mg/kg/day" else dose["value"] / p["weight_kg"]
        return 5 < per_kg <= 5.5

    expected = sorted(p["id"] for p in patients if in_between(p))
    assert expected, "the cohort must contain patients between the two ceilings"
    assert sorted(report["rules"]["CSA-DOSE-EXCEEDS"]["stop_firing"]) == expected
    assert sorted(report["rules"]["CSA-DOSE-WITHIN"]["newly_fire"]) == expected
    # besides the pair, only caveats of the dose advice may change, and only for those patients
    assert set(report["rules"]) - {"CSA-DOSE-EXCEEDS", "CSA-DOSE-WITHIN"} <= {"CAVEAT-KIDNEY-FUNCTION"}
    for change in report["rules"].get("CAVEAT-KIDNEY-FUNCTION", {}).values():
        assert set(change) <= set(expected)


def test_require_approved_refuses_draft_rules() -> None:
    result = invoke("evaluate", str(ROOT / "examples" / "dose-above-ceiling.json"), "--require-approved")
    assert result.exit_code == 2
    count = len(list((RULES / "recommendations").glob("*.yaml")))
    assert f"{count} rule(s) are not active (signed off): " in result.output and "CSA-BP-ABOVE-TARGET" in result.output


def test_require_approved_accepts_signed_rules(kb_copy: Path) -> None:
    for path in (kb_copy / "recommendations").glob("*.yaml"):
        text = path.read_text().replace(
            "status: draft", 'status: active\napproved_by: Dr Test\napproved_on: "2026-11-25"'
        )
        path.write_text(text)
    result = invoke(
        "evaluate", str(ROOT / "examples" / "dose-above-ceiling.json"), "--require-approved", "--rules", str(kb_copy)
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["drafts"] == []
