"""replay tells "decides differently" from "another knowledge-base version": after a version-only
release every decision has the same outcomes (it used to call all of them "changed", naming no
rule); a rule's new wording is named with its version; a changed outcome names its rule, old → new.
Real command lines (subprocesses) on real files: a batch of the example cohort, replayed against
edited copies of the knowledge base."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COHORT_LINES = 80


def fsgs(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fsgs_kb", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "FSGS_KB_RULES"},
        timeout=300,
    )


def release(rules: Path, change: str) -> str:
    """Raise kb.yaml's version by a patch level and add the changelog entry; the new version."""
    manifest = (rules / "kb.yaml").read_text()
    current = re.search(r"^version: (\d+)\.(\d+)\.(\d+)$", manifest, re.M)
    assert current is not None
    bumped = f"{current[1]}.{current[2]}.{int(current[3]) + 1}"
    manifest = manifest.replace(current[0], f"version: {bumped}", 1)
    assert manifest.rstrip("\n").splitlines()[-1].startswith("        ")  # the changelog ends the file
    manifest += f'  - version: {bumped}\n    date: "2026-12-01"\n    changes:\n      - {change}\n'
    (rules / "kb.yaml").write_text(manifest)
    return bumped


def reword_monitor_bp(rules: Path) -> None:
    """CSA-MONITOR-BP's advice reworded, with a new rule version and history entry."""
    path = rules / "recommendations" / "CSA-MONITOR-BP.yaml"
    text = path.read_text()
    edited = text.replace("version: 0.1.1\n", "version: 0.1.2\n", 1).replace(
        "while the patient is on cyclosporine.", "while the patient takes cyclosporine.", 1
    )
    assert edited.count("0.1.2") == 1 and "takes cyclosporine" in edited
    path.write_text(edited + '  - version: 0.1.2\n    date: "2026-12-01"\n    change: Wording only.\n')


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The first lines of the example cohort and their batch results at full and standard detail,
    made with the knowledge base of the checkout."""
    work = tmp_path_factory.mktemp("replay")
    cohort = work / "cohort.jsonl"
    lines = (ROOT / "examples" / "cohort.jsonl").read_text().splitlines(keepends=True)
    cohort.write_text("".join(lines[:COHORT_LINES]))
    out = {"cohort": cohort}
    for level in ("full", "standard"):
        out[level] = work / f"{level}.jsonl"
        made = fsgs("batch", cohort, "-o", out[level], "--detail", level, "--quiet", "--rules", ROOT / "rules")
        assert made.returncode in (0, 1), made.stderr  # some records of the cohort are invalid
    return out


def kb_copy(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", target)
    return target


def test_version_only_release_has_the_same_outcomes(recorded: dict[str, Path], tmp_path: Path) -> None:
    rules = kb_copy(tmp_path)
    version = release(rules, "Wording only.")
    assert fsgs("validate", "--rules", rules).returncode == 0
    for level in ("full", "standard"):
        proc = fsgs("replay", recorded[level], "--input", recorded["cohort"], "--rules", rules)
        assert "Traceback" not in proc.stderr, proc.stderr
        assert (
            f"0 identical (0.0 %), {COHORT_LINES} same outcomes, other KB version, 0 changed, 0 input missing"
        ) in proc.stdout, (level, proc.stdout[-1500:])
        assert not re.search(r"^changed: ", proc.stdout, re.M), proc.stdout[:1500]
        assert f"under {version} (" in proc.stdout and "decisions made by fsgs-csa " in proc.stdout
        if level == "full":
            assert "no rule entry differs: only the knowledge base's version and fingerprint changed" in proc.stdout
        assert proc.returncode == 1, proc.returncode  # not reproduced byte for byte: a finding, as before
    as_json = json.loads(
        fsgs("replay", recorded["full"], "--input", recorded["cohort"], "--rules", rules, "--format", "json").stdout
    )
    assert as_json["summary"]["same_outcomes"] == COHORT_LINES and as_json["summary"]["changed"] == 0
    decision = as_json["decisions"][0]
    assert decision["verdict"] == "same_outcomes" and decision["kb"]["new"]["version"] == version
    assert decision["differs"] == {"rules": [], "fields": []}


def test_reworded_rule_is_named_with_its_versions(recorded: dict[str, Path], tmp_path: Path) -> None:
    rules = kb_copy(tmp_path)
    reword_monitor_bp(rules)
    release(rules, "CSA-MONITOR-BP reworded.")
    assert fsgs("validate", "--rules", rules).returncode == 0
    proc = fsgs("replay", recorded["full"], "--input", recorded["cohort"], "--rules", rules)
    assert "0 changed" in proc.stdout and "same outcomes, other KB version" in proc.stdout, proc.stdout[-1500:]
    assert "rule CSA-MONITOR-BP v0.1.1 → v0.1.2: its says, version differ (not its outcome)" in proc.stdout


def test_changed_decisions_name_their_rules(recorded: dict[str, Path], tmp_path: Path) -> None:
    """A threshold change: the decisions it moves are `changed` with the rule, old → new; the
    others keep the same outcomes."""
    rules = kb_copy(tmp_path)
    parameters = (rules / "parameters.yaml").read_text()
    changed = re.sub(
        r"(  nephrotoxicity_creatinine_rise:\n(?:    .*\n)*?    value: )30\n", r"\g<1>10\n", parameters, count=1
    )
    assert changed != parameters
    (rules / "parameters.yaml").write_text(changed)
    release(rules, "Nephrotoxicity threshold lowered.")
    proc = fsgs("replay", recorded["standard"], "--input", recorded["cohort"], "--rules", rules, "--format", "json")
    decisions = json.loads(proc.stdout)["decisions"]
    moved = [d for d in decisions if d["verdict"] == "changed"]
    assert moved and all(d["changes"] for d in moved)
    assert {c["rule"] for d in moved for c in d["changes"]} == {"CSA-NEPHROTOX-SUSPECTED"}
    assert all(c["old"] != c["new"] for d in moved for c in d["changes"])
    assert {d["verdict"] for d in decisions} == {"changed", "same_outcomes"}
    text = fsgs("replay", recorded["standard"], "--input", recorded["cohort"], "--rules", rules).stdout
    assert re.search(r"^changed: record \d+ .*made by fsgs-csa .*: CSA-NEPHROTOX-SUSPECTED \w+ → \w+$", text, re.M), (
        text
    )


def test_same_knowledge_base_is_still_identical(recorded: dict[str, Path]) -> None:
    proc = fsgs("replay", recorded["full"], "--input", recorded["cohort"], "--rules", ROOT / "rules")
    assert proc.returncode == 0, proc.stdout[-1000:]
    assert f"{COHORT_LINES} identical (100.0 %), 0 changed, 0 input missing" in proc.stdout
    assert "same outcomes" not in proc.stdout


def test_masked_stored_input_under_another_knowledge_base_is_not_identical(tmp_path: Path) -> None:
    """A masked record is compared without its decision record (the identity fields were made on
    the masked input): that comparison alone called a decision of another knowledge base
    'identical'."""
    made = fsgs("evaluate", ROOT / "examples" / "dose-above-ceiling.json", "--include-input", "--mask", "/id")
    assert made.returncode == 0, made.stderr
    result = tmp_path / "masked.json"
    result.write_text(made.stdout)
    rules = kb_copy(tmp_path)
    release(rules, "Wording only.")
    proc = fsgs("replay", result, "--rules", rules)
    assert "0 identical (0.0 %), 1 same outcomes, other KB version, 0 changed" in proc.stdout, proc.stdout
    assert proc.returncode == 1
    assert "1 identical (100.0 %)" in fsgs("replay", result, "--rules", ROOT / "rules").stdout
