"""Results at three levels of detail: standard rebuilds the full record byte for byte, every level
follows the result schema, and trace, explain, replay and impact work on each."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from generate import iter_cohort

from fsgs_kb.engine.evaluate.detail import CannotExpand
from fsgs_kb.engine.load.paths import bundled_rules_dir
from fsgs_kb.engine.load.scenario_files import load_cases
from fsgs_kb.engine.load.schemas import validator

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
LEVELS = ("full", "standard", "minimal")


def fsgs(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fsgs_kb", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        input=stdin.decode() if stdin else None,
        env={**os.environ},
        timeout=300,
    )


def every_patient() -> list[Any]:
    patients: list[Any] = [json.loads(p.read_text()) for p in EXAMPLES]
    patients += [case.patient for case in load_cases(bundled_rules_dir() / "tests")]
    patients += list(iter_cohort(1500, seed=41, invalid_rate=0.05))
    return patients


def test_standard_expands_to_the_full_record_byte_for_byte(kb: Any) -> None:
    for patient in every_patient():
        full = orjson.dumps(kb.evaluate(patient))
        standard = orjson.loads(orjson.dumps(kb.evaluate(patient, detail="standard")))  # through JSON, as read back
        assert orjson.dumps(kb.expand(standard)) == full


def test_every_level_follows_the_result_schema(kb: Any) -> None:
    schema = validator("result")
    for patient in every_patient()[:400]:
        for level in LEVELS:
            errors = list(schema.iter_errors(kb.evaluate(patient, detail=level)))
            assert not errors, (level, errors[0].message)


def test_a_level_carries_only_its_own_fields(kb: Any) -> None:
    schema = validator("result")
    patient = json.loads((ROOT / "examples" / "dose-above-ceiling.json").read_text())
    full, standard, minimal = (kb.evaluate(patient, detail=level) for level in LEVELS)
    assert not schema.is_valid({**full, "detail": "minimal"})  # full rules where minimal has none
    assert not schema.is_valid({**standard, "rules": full["rules"]})  # standard rules are not full ones
    assert not schema.is_valid({**minimal, "rules": standard["rules"]})
    assert minimal["says"] == {r["id"]: r["says"] for r in full["rules"] if r["id"] in full["advice"]}
    assert "citations" not in json.dumps(standard) and "provenance" not in json.dumps(standard)
    assert len(orjson.dumps(minimal)) < len(orjson.dumps(standard)) < len(orjson.dumps(full))


def test_minimal_lists_what_each_undetermined_rule_needs(kb: Any) -> None:
    patient = json.loads((ROOT / "examples" / "missing-weight.json").read_text())
    full, minimal = kb.evaluate(patient), kb.evaluate(patient, detail="minimal")
    assert minimal["undetermined"] == full["undetermined"] != []
    assert minimal["missing"] == {r["id"]: r["missing"] for r in full["rules"] if r["outcome"] == "undetermined"}


def test_invalid_records_keep_their_errors_at_every_level(kb: Any) -> None:
    for level in LEVELS:
        result = kb.evaluate({"id": "x", "age_years": -1}, detail=level)
        assert result["status"] == "invalid" and result["errors"][0]["pointer"] == "/age_years"


def test_unknown_detail_is_refused(kb: Any) -> None:
    with pytest.raises(ValueError, match="detail"):
        kb.evaluate({"id": "x"}, detail="everything")


def test_expand_refuses_what_it_cannot_rebuild(kb: Any) -> None:
    patient = json.loads((ROOT / "examples" / "dose-above-ceiling.json").read_text())
    with pytest.raises(CannotExpand, match="minimal"):
        kb.expand(kb.evaluate(patient, detail="minimal"))
    other = kb.evaluate(patient, detail="standard")
    other["decision"]["kb"]["fingerprint"] = "0" * 64
    with pytest.raises(CannotExpand, match="not this one"):
        kb.expand(other)
    short = kb.evaluate(patient, detail="standard")
    short["rules"][0]["conditions"].pop()
    with pytest.raises(CannotExpand, match="conditions recorded"):
        kb.expand(short)


# ---- the commands on every level ------------------------------------------------------------------
@pytest.fixture(scope="module")
def dose_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("levels")
    out = {}
    for level in LEVELS:
        proc = fsgs("evaluate", str(ROOT / "examples" / "dose-above-ceiling.json"), "--detail", level)
        assert proc.returncode == 0, proc.stderr
        out[level] = folder / f"{level}.json"
        out[level].write_text(proc.stdout, encoding="utf-8")
    return out


def test_trace_is_exact_at_every_level(dose_results: dict[str, Path]) -> None:
    patient = str(ROOT / "examples" / "dose-above-ceiling.json")
    for level, path in dose_results.items():
        proc = fsgs("trace", str(path), "--input", patient)
        assert proc.returncode == 0 and "the trace is exact" in proc.stdout, (level, proc.stdout, proc.stderr)
        assert "advice: The total daily dose is above 5 mg/kg" in proc.stdout, level
        assert '← cattran-2003 S5: "Provided the total dose is kept' in proc.stdout, level
    full = fsgs("trace", str(dose_results["full"])).stdout
    assert fsgs("trace", str(dose_results["standard"])).stdout == full  # rebuilt in full from the knowledge base


def test_explain_reads_a_stored_result_at_every_level(tmp_path: Path) -> None:
    """A result that holds its input is explained as its patient is, after the knowledge base at
    hand reproduced it; one without its input, or edited, is refused with the reason (exit 2)."""
    patient = str(ROOT / "examples" / "dose-above-ceiling.json")
    expected = fsgs("explain", patient).stdout
    for level in LEVELS:
        stored = tmp_path / f"{level}.json"
        stored.write_text(fsgs("evaluate", patient, "--detail", level, "--include-input").stdout)
        proc = fsgs("explain", str(stored))
        assert proc.returncode == 0 and proc.stdout == expected, (level, proc.stderr)
    bare = tmp_path / "bare.json"
    bare.write_text(fsgs("evaluate", patient, "--detail", "minimal").stdout)
    proc = fsgs("explain", str(bare))
    assert proc.returncode == 2 and f"{bare}:1: error[explain.minimal_no_input]" in proc.stderr, proc.stderr
    edited = json.loads((tmp_path / "minimal.json").read_text())
    edited["advice"] = ["CSA-DOSE-WITHIN"]
    bare.write_text(json.dumps(edited))
    proc = fsgs("explain", str(bare))
    assert proc.returncode == 2 and f"{bare}:1: error[explain.not_reproduced]" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_trace_of_a_whole_cohort_is_exact_and_knows_caveats(tmp_path: Path) -> None:
    """A caveat whose conditions hold is `not_fired` when none of the advice it qualifies fired:
    trace must not call that a mismatch (it did, on a quarter of the cohort), and must call the
    opposite one."""
    cohort = tmp_path / "cohort.jsonl"
    cohort.write_text("".join((ROOT / "examples" / "cohort.jsonl").read_text().splitlines(keepends=True)[:150]))
    for level in ("full", "standard"):
        output = tmp_path / f"{level}.jsonl"
        assert fsgs("batch", str(cohort), "-o", str(output), "--detail", level, "--quiet").returncode in (0, 1)
        proc = fsgs("trace", str(output))
        assert proc.returncode == 0 and "MISMATCH" not in proc.stdout, (level, proc.stdout[-2000:])
    results = [json.loads(line) for line in (tmp_path / "full.jsonl").read_text().splitlines()]
    held = next(
        (r, e)
        for r in results
        for e in r["rules"]
        if e["kind"] == "caveat" and e["outcome"] == "not_fired" and all(c["result"] for c in e["conditions"])
    )
    result, entry = held
    entry["outcome"] = "fired"  # forged: its conditions hold, but none of the advice it qualifies fired
    result["caveats"].append(entry["id"])
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(result))
    proc = fsgs("trace", str(forged))
    assert proc.returncode == 1 and f"rule {entry['id']}: outcome fired contradicts" in proc.stdout, proc.stdout


def test_trace_against_another_knowledge_base_says_what_is_not_recorded(
    dose_results: dict[str, Path], tmp_path: Path
) -> None:
    """A standard or minimal result holds no texts or versions of its own: traced with another
    knowledge base it cannot be rebuilt, so trace warns and shows what the result does record."""
    other = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", other)
    manifest = (other / "kb.yaml").read_text()
    current = re.search(r"^version: (\d+)\.(\d+)\.(\d+)$", manifest, re.M)
    assert current is not None
    bumped = f"{current[1]}.{current[2]}.{int(current[3]) + 1}"
    manifest = manifest.replace(current[0], f"version: {bumped}", 1).replace(
        "changelog:\n", f'changelog:\n  - version: {bumped}\n    date: "2026-11-29"\n    changes: [a release]\n', 1
    )
    (other / "kb.yaml").write_text(manifest)
    for level in ("standard", "minimal"):
        proc = fsgs("trace", "--rules", str(other), str(dose_results[level]))
        assert proc.returncode == 1 and "NOT the one that made this decision" in proc.stdout, proc.stderr
        assert "None" not in proc.stdout and "rule CSA-DOSE-EXCEEDS (version not recorded" in proc.stdout, proc.stdout


def test_impact_reads_stored_results_at_every_level(tmp_path: Path) -> None:
    """A results file whose lines hold their input measures the same impact as the patients file;
    lines without their input are listed as unusable, with the reason."""
    new = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", new)
    parameters = (new / "parameters.yaml").read_text()
    changed = re.sub(
        r"(  nephrotoxicity_creatinine_rise:\n(?:    .*\n)*?    value: )30\n", r"\g<1>10\n", parameters, count=1
    )
    assert changed != parameters  # a cited threshold: another value is still a valid knowledge base
    (new / "parameters.yaml").write_text(changed)
    cohort = tmp_path / "cohort.jsonl"
    cohort.write_text("".join((ROOT / "examples" / "cohort.jsonl").read_text().splitlines(keepends=True)[:60]))
    expected = fsgs("impact", str(ROOT / "rules"), str(new), str(cohort))
    assert "CSA-NEPHROTOX-SUSPECTED" in expected.stdout, expected.stdout
    for level in LEVELS:
        results = tmp_path / f"{level}.jsonl"
        fsgs("batch", str(cohort), "-o", str(results), "--detail", level, "--include-input", "--quiet")
        measured = fsgs("impact", str(ROOT / "rules"), str(new), str(results))
        assert (measured.returncode, measured.stdout) == (expected.returncode, expected.stdout), level
    bare = tmp_path / "bare.jsonl"
    fsgs("batch", str(cohort), "-o", str(bare), "--detail", "minimal", "--quiet")
    unusable = fsgs("impact", str(ROOT / "rules"), str(new), str(bare))
    assert "a stored result without its input" in unusable.stdout, unusable.stdout


def test_trace_catches_an_edited_standard_result(dose_results: dict[str, Path], tmp_path: Path) -> None:
    result = json.loads(dose_results["standard"].read_text())
    exceeds = next(r for r in result["rules"] if r["id"] == "CSA-DOSE-EXCEEDS")
    exceeds["conditions"][-1]["actual"] = 4.0  # the dose no longer exceeds, the outcome still says fired
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(result))
    proc = fsgs("trace", str(forged))
    assert proc.returncode == 1 and "MISMATCH" in proc.stdout, proc.stdout


def test_trace_catches_an_edited_minimal_advice(dose_results: dict[str, Path], tmp_path: Path) -> None:
    result = json.loads(dose_results["minimal"].read_text())
    result["says"]["CSA-DOSE-EXCEEDS"] = "Double the dose."
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(result))
    proc = fsgs("trace", str(forged))
    assert proc.returncode == 1 and "says differs from the knowledge base's" in proc.stdout, proc.stdout


def test_batch_defaults_to_standard_and_replays_at_every_level(tmp_path: Path) -> None:
    patients = tmp_path / "patients.jsonl"
    patients.write_text("".join(json.dumps(p) + "\n" for p in iter_cohort(300, seed=8, invalid_rate=0.03)))
    summaries = {}
    for level in (None, *LEVELS):
        out = tmp_path / f"{level}.jsonl"
        options = ["--detail", level] if level else []
        proc = fsgs("batch", str(patients), "-o", str(out), "--quiet", "--summary", str(out) + ".s", *options)
        assert proc.returncode == 1, proc.stderr  # some records are invalid
        summary = json.loads(Path(str(out) + ".s").read_text())
        summaries[level] = (summary["by_status"], summary["by_rule"])
        first = json.loads(out.read_text().splitlines()[0])
        assert first.get("detail") == ("standard" if level is None else None if level == "full" else level)
        replay = fsgs("replay", str(out), "--input", str(patients))
        assert replay.returncode == 0 and "300 identical (100.0 %)" in replay.stdout, (level, replay.stdout)
    assert len({json.dumps(s) for s in summaries.values()}) == 1  # counts by rule do not depend on the detail


def test_resume_refuses_another_detail_level(tmp_path: Path) -> None:
    patients = tmp_path / "patients.jsonl"
    patients.write_text("".join(json.dumps(p) + "\n" for p in iter_cohort(50, seed=8)))
    out = tmp_path / "out.jsonl"
    assert fsgs("batch", str(patients), "-o", str(out), "--quiet", "--detail", "minimal").returncode == 0
    again = fsgs("batch", str(patients), "-o", str(out), "--quiet", "--resume")
    assert again.returncode == 2 and "another set of options" in again.stderr, again.stderr
    same = fsgs("batch", str(patients), "-o", str(out), "--quiet", "--resume", "--detail", "minimal")
    assert same.returncode == 0, same.stderr


def test_replay_reports_a_changed_minimal_decision(kb: Any) -> None:
    from fsgs_kb.engine.audit.replay import replay_one

    patient = json.loads((ROOT / "examples" / "dose-above-ceiling.json").read_text())
    old = kb.evaluate(patient, detail="minimal", include_input=True)
    edited = copy.deepcopy(old)
    edited["advice"] = [a for a in edited["advice"] if a != "CSA-DOSE-EXCEEDS"]
    assert replay_one(kb, old, {})["verdict"] == "identical"
    verdict = replay_one(kb, edited, {})
    assert verdict["verdict"] == "changed"
    assert {"rule": "CSA-DOSE-EXCEEDS", "old": "absent", "new": "fired"} in verdict["changes"]


def test_explain_reads_a_stored_result_without_its_input(tmp_path: Path) -> None:
    """Review 5 (issue 13: explain works on every level): batch's default output keeps no input,
    and explain refused it. A full or standard result is traced against the knowledge base, then
    explained from the values it records, saying so; a forged one is refused with what is wrong."""
    patient = str(ROOT / "examples" / "child-bp-above-target.json")
    alone = fsgs("explain", patient).stdout
    alone_ids = {r["id"] for r in json.loads(fsgs("explain", patient, "--format", "json").stdout)["rules"]}
    texts = {}
    for level in ("full", "standard"):
        stored = tmp_path / f"{level}.json"
        stored.write_text(fsgs("evaluate", patient, "--detail", level).stdout)
        proc = fsgs("explain", str(stored))
        assert proc.returncode == 0, (level, proc.stderr)
        assert "explained from the stored result (its input was not kept)" in " ".join(proc.stdout.split())
        texts[level] = proc.stdout
        for heading in ("WARNINGS (2)", "Blood pressure above the ideal level on cyclosporine", "Source (S5)"):
            assert heading in proc.stdout and heading in alone, heading
        assert "as the result records it: [age_group = child (needs = adult): false" in proc.stdout
        assert "✓ months on cyclosporine (current course) is 13 months, at least 12 months" in proc.stdout
        as_json = json.loads(fsgs("explain", str(stored), "--format", "json").stdout)
        assert as_json["status"] == "evaluated" and {r["id"] for r in as_json["rules"]} == alone_ids
    assert texts["full"] == texts["standard"]
    forged = json.loads((tmp_path / "standard.json").read_text())
    forged["advice"] = [a for a in forged["advice"] if a != "CSA-BP-ABOVE-TARGET"]
    bad = tmp_path / "forged.json"
    bad.write_text(json.dumps(forged))
    proc = fsgs("explain", str(bad))
    assert proc.returncode == 2 and f"{bad}:1: error[explain.inconsistent]" in proc.stderr, proc.stderr
    assert "advice" in proc.stderr
