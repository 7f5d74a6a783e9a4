"""Forged results must not pass `replay` as identical or `trace` as exact (outside review 2,
items 10 and 11): the fields replay carries instead of recomputing (record, line) are still
checked; a batch's results file numbers each record once, in increasing order, so a duplicated
line, a reversed file or swapped record numbers are findings; with --input each result must be
the one of the input record it names; and a result that claims to have masked a field its
stored input holds in clear is not a result fsgs-kb writes. The real CLI in a subprocess, on a
real batch's output."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
COHORT = ROOT / "examples" / "cohort.jsonl"


def fsgs(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(
        [sys.executable, "-m", "fsgs_kb", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=600,
    )
    assert run.returncode != 3 and "Traceback" not in run.stdout + run.stderr, run.stderr
    return run


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """20 input records and the lines batch --include-input writes for them."""
    work = tmp_path_factory.mktemp("forgery")
    inputs = work / "c20.jsonl"
    inputs.write_text("".join(COHORT.read_text().splitlines(keepends=True)[:20]))
    out = work / "r.jsonl"
    run = fsgs("batch", str(inputs), "-o", str(out), "--include-input")
    assert run.returncode in (0, 1), run.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 20
    return inputs, lines


def write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "forged.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def verdicts(results: Path, *extra: str) -> tuple[int, list[dict[str, Any]]]:
    run = fsgs("replay", str(results), "--format", "json", *extra)
    return run.returncode, json.loads(run.stdout)["decisions"]


def assert_refused(tmp_path: Path, inputs: Path, lines: list[str], expect: str) -> None:
    """Neither replay (with and without --input) nor trace lets the file pass."""
    forged = write(tmp_path, lines)
    for extra in ((), ("--input", str(inputs))):
        code, reports = verdicts(forged, *extra)
        assert code == 1, reports
        assert any(r["verdict"] == "unreadable" and expect in r["problem"] for r in reports), reports
    trace = fsgs("trace", str(forged), "--input", str(inputs))
    assert trace.returncode == 1, trace.stdout
    assert expect in trace.stdout


def test_the_untouched_output_passes(batch: tuple[Path, list[str]], tmp_path: Path) -> None:
    inputs, lines = batch
    forged = write(tmp_path, lines)
    code, reports = verdicts(forged, "--input", str(inputs))
    assert code == 0 and {r["verdict"] for r in reports} == {"identical"}
    assert fsgs("trace", str(forged), "--input", str(inputs)).returncode == 0


FORGED_PLACES = [
    (field, value) for field in ("record", "line") for value in ("3", None, 1.5, {"a": [1, 2]}, 3.0, 0, True)
]


def test_a_forged_place_is_not_identical(batch: tuple[Path, list[str]], tmp_path: Path) -> None:
    """One forged record or line per result (14 of the 20): each is unreadable, naming the field;
    the other six are identical; trace says each is malformed."""
    inputs, lines = batch
    out = list(lines)
    for i, (field, value) in enumerate(FORGED_PLACES):
        result = json.loads(lines[i])
        result[field] = value
        out[i] = json.dumps(result)
    forged = write(tmp_path, out)
    for extra in ((), ("--input", str(inputs))):
        code, reports = verdicts(forged, *extra)
        assert code == 1
        for i, (field, value) in enumerate(FORGED_PLACES):
            assert reports[i]["verdict"] == "unreadable" and f"/{field}" in reports[i]["problem"], (value, reports[i])
        assert {r["verdict"] for r in reports[len(FORGED_PLACES) :]} == {"identical"}
    trace = fsgs("trace", str(forged), "--input", str(inputs))
    assert trace.returncode == 1
    assert trace.stdout.count("NOT a valid fsgs-kb result") + trace.stdout.count(
        "is not a record number"
    ) + trace.stdout.count("is not a line number") >= len(FORGED_PLACES), trace.stdout


def test_a_duplicated_line(batch: tuple[Path, list[str]], tmp_path: Path) -> None:
    inputs, lines = batch
    assert_refused(tmp_path, inputs, [*lines, lines[-1]], "claims record 20 again")


def test_a_reversed_file(batch: tuple[Path, list[str]], tmp_path: Path) -> None:
    inputs, lines = batch
    assert_refused(tmp_path, inputs, lines[::-1], "claims record 19 after record 20")


def test_swapped_record_numbers(batch: tuple[Path, list[str]], tmp_path: Path) -> None:
    inputs, lines = batch
    first, second = json.loads(lines[0]), json.loads(lines[1])
    for key in ("record", "line"):
        first[key], second[key] = second[key], first[key]
    assert_refused(tmp_path, inputs, [json.dumps(first), json.dumps(second), *lines[2:]], "after record 2")


def test_lines_swapped_with_their_numbers_do_not_match_the_input(batch: tuple[Path, list[str]], tmp_path: Path) -> None:
    """In increasing order again, but each now names an input record it was not made from."""
    inputs, lines = batch
    first, second = json.loads(lines[0]), json.loads(lines[1])
    for key in ("record", "line"):
        first[key], second[key] = second[key], first[key]
    forged = write(tmp_path, [json.dumps(second), json.dumps(first), *lines[2:]])
    code, reports = verdicts(forged, "--input", str(inputs))
    assert code == 1
    assert [r["verdict"] for r in reports[:2]] == ["unreadable", "unreadable"]
    assert all("it was made from another record" in r["problem"] for r in reports[:2])
    assert fsgs("trace", str(forged), "--input", str(inputs)).returncode == 1


def test_a_number_beyond_the_input(batch: tuple[Path, list[str]], tmp_path: Path) -> None:
    inputs, lines = batch
    extra = json.loads(lines[-1])
    extra["record"], extra["line"] = 21, 21
    code, reports = verdicts(write(tmp_path, [*lines, json.dumps(extra)]), "--input", str(inputs))
    assert code == 1 and "which the input file does not have" in reports[-1]["problem"]


@pytest.mark.parametrize("pointer", ["/id", "/weight_kg"])
def test_a_false_claim_of_masking(batch: tuple[Path, list[str]], tmp_path: Path, pointer: str) -> None:
    """decision.masked names a field the stored input holds in clear: not exact, not identical."""
    inputs, lines = batch
    result = json.loads(lines[0])
    assert pointer.lstrip("/") in result["decision"]["input"]
    result["decision"]["masked"] = [pointer]
    forged = write(tmp_path, [json.dumps(result)])
    code, reports = verdicts(forged)
    assert code == 1 and reports[0]["verdict"] == "unreadable", reports
    assert f"decision.masked names {pointer}, but the stored input holds it in clear" in reports[0]["problem"]
    trace = fsgs("trace", str(forged))
    assert trace.returncode == 1 and "holds it in clear" in trace.stdout, trace.stdout


def test_a_mask_of_a_value_the_records_lack_replays_identical(batch: tuple[Path, list[str]], tmp_path: Path) -> None:
    """`--mask /ext/mrn` on records without one: decision.masked lists what the run was asked to
    mask; a record without the value had nothing to mask there, which is no false claim."""
    inputs, lines = batch
    assert all("ext" not in json.loads(line)["decision"]["input"] for line in lines)
    out = tmp_path / "masked-absent.jsonl"
    run = fsgs("batch", str(inputs), "-o", str(out), "--include-input", "--mask", "/id", "--mask", "/ext/mrn")
    assert run.returncode in (0, 1), run.stderr
    assert json.loads(out.read_text().splitlines()[0])["decision"]["masked"] == ["/id", "/ext/mrn"]
    code, reports = verdicts(out, "--input", str(inputs))
    assert code == 0 and {r["verdict"] for r in reports} == {"identical"}, reports


@pytest.mark.parametrize("key", [None, "a-site-secret-of-some-length"])
def test_genuinely_masked_results_replay_identical(
    batch: tuple[Path, list[str]], tmp_path: Path, key: str | None
) -> None:
    inputs, _ = batch
    out = tmp_path / "masked.jsonl"
    env = {"FSGS_KB_MASK_KEY": key} if key else {}
    run = fsgs("batch", str(inputs), "-o", str(out), "--include-input", "--mask", "/id", env=env)
    assert run.returncode in (0, 1), run.stderr
    code, reports = verdicts(out, "--input", str(inputs))
    assert code == 0 and {r["verdict"] for r in reports} == {"identical"}, reports
    if key:  # another patient's token put in (input and patient_id): the recorded hash is not of that input
        result = json.loads(out.read_text().splitlines()[0])
        result["decision"]["input"]["id"] = result["patient_id"] = "hmac-sha256:" + "0" * 64
        code, reports = verdicts(write(tmp_path, [json.dumps(result)]))
        assert code == 1 and reports[0]["verdict"] != "identical"


def test_a_deep_document_with_a_long_number_is_invalid_not_a_crash(tmp_path: Path) -> None:
    """The one JSON reader reads a document with a 19-digit number again with the standard
    library, which recursed past Python's limit at ~1,000 levels (exit 3, RecursionError)."""
    path = tmp_path / "deep.json"
    path.write_text("[" * 1000 + "1234567890123456789012" + "]" * 1000)
    run = fsgs("evaluate", str(path))
    assert run.returncode == 1, run.stderr
    assert "input.too_deep" in run.stdout


# ---- a forged decision kept consistent with itself (hostile sweep) -----------------------------------
# Each rule entry was checked alone: a condition's value, truth and the rule's outcome edited
# together passed `trace` ("consistent … check out", exit 0) and `explain` (no dose warning),
# though the same result recorded the other value for the same input elsewhere. Now every entry
# is rebuilt from the one value the result records per input and compared.
DOSE = ROOT / "examples" / "dose-above-ceiling.json"
EXCEEDS = "CSA-DOSE-EXCEEDS"


@pytest.fixture(scope="module")
def dose(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The dose example's result at full and standard detail, and at full with its input."""
    out = {}
    for name, options in (("full", ()), ("standard", ()), ("with_input", ("--include-input",))):
        level = "standard" if name == "standard" else "full"
        run = fsgs("evaluate", str(DOSE), "--detail", level, *options)
        assert run.returncode == 0, run.stderr
        out[name] = json.loads(run.stdout)
    return out


def _entry(result: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return next(entry for entry in result["rules"] if entry["id"] == rule_id)


def _unfire(result: dict[str, Any]) -> None:
    """The dose warning made not to fire, the lists made to agree (no summary mismatch left)."""
    _entry(result, EXCEEDS)["outcome"] = "not_fired"
    result["advice"].remove(EXCEEDS)
    result["drafts"].remove(EXCEEDS)


def _dose_below(result: dict[str, Any]) -> None:
    """The sweep's forgery: the dose condition says 4.9, false; `derived` still says 5.1."""
    condition = _entry(result, EXCEEDS)["conditions"][2]
    condition.update(actual=4.9, result=False)
    _unfire(result)


def _dose_below_worded(result: dict[str, Any]) -> None:
    """Full detail, the condition's own words edited to match (text, distance, margin), and this
    rule's derived entry too: only the other rules' records of the dose still say 5.1."""
    _dose_below(result)
    entry = _entry(result, EXCEEDS)
    entry["conditions"][2].update(
        text="dose_mg_per_kg_day = 4.9 mg/kg/day (needs > 5 mg/kg/day): false", distance="4.9 vs > 5", margin=-0.1
    )
    for derived in entry["derived"]:
        if derived["name"] == "dose_mg_per_kg_day":
            derived.update(value=4.9, how=derived["how"].replace("5.1", "4.9"))


def _text_only(result: dict[str, Any]) -> None:
    _entry(result, EXCEEDS)["conditions"][2]["text"] = "dose_mg_per_kg_day = 5.1 mg/kg/day (needs > 5 mg/kg/day): false"


def _status_stopped(result: dict[str, Any]) -> None:
    """A field this rule reads recorded otherwise than in every other rule that reads it."""
    condition = _entry(result, EXCEEDS)["conditions"][1]
    condition.update(actual="stopped", result=False)
    if "text" in condition:
        condition["text"] = "cyclosporine.status = stopped (needs = current): false"
    _unfire(result)


def _derived_twice(result: dict[str, Any]) -> None:
    result["derived"].append({"name": "dose_mg_per_kg_day", "value": 4.9, "how": "4.9", "missing": []})


def _decided_without(result: dict[str, Any]) -> None:
    _entry(result, EXCEEDS)["decided_without"] = ["/weight_kg"]


def _shown(result: dict[str, Any]) -> None:
    _entry(result, "CAVEAT-RESTART-AFTER-NEPHROTOXICITY")["shown"][0]["value"] = 2.5


def _caveat_noted(result: dict[str, Any]) -> None:
    note = {"id": "CAVEAT-AGE-OVER-70", "title": "x", "says": "y", "provenance": {"kind": "local"}}
    _entry(result, "CSA-DUR-WITHIN")["caveats"] = [note]


FORGED_ENTRIES = {  # name → (levels, forgery, what trace must say)
    "dose-below": (
        ("full", "standard"),
        _dose_below,
        "condition /when/all/2 records dose_mg_per_kg_day = 4.9, but dose_mg_per_kg_day = 5.1 in",
    ),
    "dose-below-worded": (("full",), _dose_below_worded, "dose_mg_per_kg_day = 5.1 in rule CSA-DOSE-WITHIN's"),
    "text-only": (("full",), _text_only, "condition /when/all/2 is not what the knowledge base writes"),
    "status-stopped": (("full", "standard"), _status_stopped, 'cyclosporine.status = "current" in rule CSA-'),
    "derived-twice": (("standard",), _derived_twice, "derived: expected ["),
    "decided-without": (("full", "standard"), _decided_without, "decided_without is recorded"),
    "shown": (("full", "standard"), _shown, "its shown value 0 is"),
    "caveat-noted": (("full",), _caveat_noted, "the caveats noted beside it are"),
}
FORGED_CASES = [(name, level) for name, (levels, _, _) in FORGED_ENTRIES.items() for level in levels]


def _trace_blocks(tmp_path: Path, results: list[dict[str, Any]]) -> tuple[int, list[str]]:
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(result) + "\n" for result in results))
    run = fsgs("trace", str(path))
    blocks = ["Decision " + block for block in run.stdout.split("\nDecision ")[1:]]
    assert len(blocks) == len(results), run.stdout[-2000:]
    return run.returncode, blocks


def test_forged_entries_kept_consistent_with_themselves_are_mismatches(
    dose: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """One trace run over every forgery at its levels: each block is a MISMATCH naming it; the
    untouched results first, which still check out."""
    forged = []
    for name, level in FORGED_CASES:
        result = copy.deepcopy(dose[level])
        FORGED_ENTRIES[name][1](result)
        forged.append(result)
    code, blocks = _trace_blocks(tmp_path, [dose["full"], dose["standard"], *forged])
    assert code == 1
    for block in blocks[:2]:
        assert "MISMATCH" not in block and "check out" in block, block
    for (name, level), block in zip(FORGED_CASES, blocks[2:], strict=True):
        assert "MISMATCH" in block and "check out" not in block, f"{name} at {level}: traced as consistent\n{block}"
        assert FORGED_ENTRIES[name][2] in block, f"{name} at {level}\n{block}"


@pytest.mark.parametrize("level", ["full", "standard"])
def test_explain_refuses_the_sweeps_forged_dose(dose: dict[str, dict[str, Any]], tmp_path: Path, level: str) -> None:
    """The sweep's file: explain showed no dose warning (exit 0); it is refused (exit 2)."""
    result = copy.deepcopy(dose[level])
    _dose_below(result)
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(result))
    run = fsgs("explain", str(path))
    assert run.returncode == 2 and f"{path}:1: error[explain.inconsistent]" in run.stderr, run.stderr
    assert "records dose_mg_per_kg_day = 4.9, but dose_mg_per_kg_day = 5.1" in run.stderr, run.stderr
    trace = fsgs("trace", str(path))
    assert trace.returncode == 1 and "outcome not_fired contradicts its conditions (fired)" in trace.stdout


@pytest.mark.parametrize("value", [[1, 2], {"a": 1}, "5.1"])
def test_a_value_no_threshold_compares_with_is_refused_not_a_crash(
    dose: dict[str, dict[str, Any]], tmp_path: Path, value: Any
) -> None:
    """A standard result's dose edited to a list, an object or a text: rebuilding its full record
    stopped at the distance to the threshold (error[internal], exit 3); now it is a mismatch."""
    result = copy.deepcopy(dose["standard"])
    _entry(result, EXCEEDS)["conditions"][2]["actual"] = value
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(result))
    trace = fsgs("trace", str(path))
    assert trace.returncode == 1 and "which cannot be compared with its threshold 5" in trace.stdout, trace.stdout
    explain = fsgs("explain", str(path))
    assert explain.returncode == 2 and "error[explain.inconsistent]" in explain.stderr, explain.stderr


FORGED_SOURCES = {"/weight_kg": {"resourceType": "Observation", "id": "forged", "code": "x", "effective": "2025-01-01"}}
FORGED_FHIR = {"as_of": "2025-01-15", "map": {"version": "0.3.1", "sha256": "0" * 64}, "bundle_sha256": "0" * 64}


@pytest.mark.parametrize("part", ["sources", "decision.fhir"])
def test_a_forged_fhir_account_is_not_called_exact(dose: dict[str, dict[str, Any]], tmp_path: Path, part: str) -> None:
    """A result of JSON input given a FHIR conversion's account: the decision re-derives
    identical, the account is not re-derived; replay says it is carried, and so must trace (it
    said "the trace is exact") and explain (it listed the forged Observation as the source)."""
    genuine = tmp_path / "genuine.json"
    genuine.write_text(json.dumps(dose["with_input"]))
    assert "the trace is exact" in fsgs("trace", str(genuine)).stdout
    result = copy.deepcopy(dose["with_input"])
    if part == "sources":
        result["sources"] = FORGED_SOURCES
    else:
        result["decision"]["fhir"] = FORGED_FHIR
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(result))
    carried = f"the conversion's account ({part}) is carried as recorded, not re-derived"
    replay = fsgs("replay", str(path))
    assert replay.returncode == 0 and carried in replay.stdout, replay.stdout
    trace = fsgs("trace", str(path))
    assert trace.returncode == 0 and "the trace is exact" not in trace.stdout, trace.stdout
    assert f"identical; not exact, as {carried}" in trace.stdout, trace.stdout
    if part == "sources":
        explain = fsgs("explain", str(path))
        assert explain.returncode == 0 and "/weight_kg ← Observation/forged" in explain.stdout, explain.stderr
        said = " ".join(explain.stdout.split("Data from FHIR:")[1].split())
        assert said.startswith(carried), explain.stdout


def test_an_input_file_holding_some_of_the_records_leaves_the_others_input_missing(tmp_path: Path) -> None:
    """Issue 5: decisions are matched with their inputs by input_sha256, and a decision whose
    input the file does not hold is `input_missing`, not a forged place (it was `unreadable`:
    "claims record 6, which the input file does not have")."""
    inputs = tmp_path / "c12.jsonl"
    inputs.write_text("".join(COHORT.read_text().splitlines(keepends=True)[:12]))
    out = tmp_path / "r.jsonl"
    assert fsgs("batch", str(inputs), "-o", str(out)).returncode in (0, 1)
    some = tmp_path / "c5.jsonl"
    some.write_text("".join(inputs.read_text().splitlines(keepends=True)[:5]))
    code, reports = verdicts(out, "--input", str(some))
    assert code == 1
    assert [r["verdict"] for r in reports] == ["identical"] * 5 + ["input_missing"] * 7, reports
