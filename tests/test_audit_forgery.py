"""Forged results must not pass `replay` as identical or `trace` as exact (outside review 2,
items 10 and 11): the fields replay carries instead of recomputing (record, line) are still
checked; a batch's results file numbers each record once, in increasing order, so a duplicated
line, a reversed file or swapped record numbers are findings; with --input each result must be
the one of the input record it names; and a result that claims to have masked a field its
stored input holds in clear is not a result fsgs-kb writes. The real CLI in a subprocess, on a
real batch's output."""

from __future__ import annotations

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
