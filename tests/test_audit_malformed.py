"""A stored result edited by hand into a shape no fsgs-kb writes: replay calls that record
`unreadable` (with the JSON pointer and its place in the file) and goes on with the others;
explain refuses it with the pointer and the file (exit 2); trace says it is malformed. Never an
internal error (exit 3) or a traceback, at any detail level."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PATIENT = ROOT / "examples" / "dose-above-ceiling.json"
LEVELS = ("full", "standard", "minimal")


def _set(*path: Any, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(result: dict[str, Any]) -> None:
        node = result
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return edit


# name → (the edit, the JSON pointer the message must name, levels whose results hold the edited part)
EDITS: dict[str, tuple[Callable[[dict[str, Any]], None], str, tuple[str, ...]]] = {
    "rules_null": (_set("rules", value=None), "/rules", LEVELS),
    "rules_str": (_set("rules", value="x"), "/rules", LEVELS),
    "rule0_int": (_set("rules", 0, value=5), "/rules/0", ("full", "standard")),
    "rule0_id_list": (_set("rules", 0, "id", value=["x"]), "/rules/0/id", ("full", "standard")),
    "masked_str": (_set("decision", "masked", value="x"), "/decision/masked", LEVELS),
    "masked_not_a_pointer": (_set("decision", "masked", value=["id"]), "/decision/masked/0", LEVELS),
    # a result whose decision is not an object is still a result (explain once read it as a patient)
    "decision_str": (_set("decision", value="x"), "/decision", LEVELS),
    "decision_null": (_set("decision", value=None), "/decision", LEVELS),
}
CASES = [(name, level) for name, (_, _, levels) in EDITS.items() for level in levels]


def fsgs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fsgs_kb", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ},
        timeout=300,
    )


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The example's result at each level, with its input (compact: one line, as batch writes it)."""
    out = {}
    for level in LEVELS:
        proc = fsgs("evaluate", str(PATIENT), "--detail", level, "--include-input", "--compact")
        assert proc.returncode == 0, proc.stderr
        out[level] = proc.stdout.strip()
    return out


@pytest.fixture(scope="module")
def masked() -> str:
    """The example's result with its input, masked at /id (one line), as `evaluate` writes it;
    each forgery test edits its own copy."""
    proc = fsgs("evaluate", str(PATIENT), "--include-input", "--mask", "/id", "--compact")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def edited(stored: dict[str, str], name: str, level: str) -> dict[str, Any]:
    result = json.loads(stored[level])
    EDITS[name][0](result)
    return result


def write_edited(stored: dict[str, str], name: str, level: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{level}-{name}.json"
    path.write_text(json.dumps(edited(stored, name, level), indent=2))
    return path


def assert_no_crash(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode != 3, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout and "error[internal]" not in proc.stderr, proc.stderr


@pytest.mark.parametrize(("name", "level"), CASES)
def test_explain_refuses_an_edited_result_with_its_pointer_and_file(
    stored: dict[str, str], name: str, level: str, tmp_path: Path
) -> None:
    path = write_edited(stored, name, level, tmp_path)
    proc = fsgs("explain", str(path))
    assert_no_crash(proc)
    assert proc.returncode == 2 and proc.stdout == "", (proc.returncode, proc.stdout, proc.stderr)
    pointer = EDITS[name][1]
    assert f"{path}:1: error[explain.malformed] not a well-formed fsgs-kb result: {pointer}:" in proc.stderr, (
        proc.stderr
    )


@pytest.mark.parametrize(("name", "level"), CASES)
def test_replay_calls_an_edited_result_unreadable_with_its_pointer(
    stored: dict[str, str], name: str, level: str, tmp_path: Path
) -> None:
    path = write_edited(stored, name, level, tmp_path)
    proc = fsgs("replay", str(path))
    assert_no_crash(proc)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    pointer = EDITS[name][1]
    assert f"unreadable: record 1 (line 1): {pointer}: " in proc.stdout or (
        # a minimal result may not hold `rules` at all: the schema's "no such field" comes first
        "unreadable: record 1 (line 1): /: False schema does not allow" in proc.stdout and pointer == "/rules"
    ), proc.stdout
    assert "0 identical (0.0 %), 0 changed, 0 input missing, 1 unreadable" in proc.stdout, proc.stdout
    report = json.loads(fsgs("replay", "--format", "json", str(path)).stdout)["decisions"][0]
    assert report["verdict"] == "unreadable" and report["record"] == 1 and report["line"] == 1, report
    assert pointer in [problem["pointer"] for problem in report["problems"]], report


@pytest.mark.parametrize("level", LEVELS)
def test_replay_goes_on_past_an_edited_record(stored: dict[str, str], level: str, tmp_path: Path) -> None:
    """Good, edited, good in one JSON Lines file: the good ones are replayed (identical), the
    edited one is unreadable at its line; exit 1 since not every decision is identical."""
    path = tmp_path / "mixed.jsonl"
    bad = json.dumps(edited(stored, "rules_null", level))
    path.write_text("\n".join([stored[level], bad, stored[level]]) + "\n")
    proc = fsgs("replay", "--format", "json", str(path))
    assert_no_crash(proc)
    assert proc.returncode == 1, proc.stderr
    payload = json.loads(proc.stdout)
    verdicts = [(r["verdict"], r.get("line")) for r in payload["decisions"]]
    assert verdicts == [("identical", None), ("unreadable", 2), ("identical", None)], verdicts
    assert payload["summary"] == {
        "identical": 2,
        "same_outcomes": 0,
        "changed": 0,
        "input_missing": 0,
        "unreadable": 1,
    }
    text = fsgs("replay", str(path))
    assert text.returncode == 1 and "unreadable: record 2 (line 2): /" in text.stdout, text.stdout
    assert "3 decisions replayed" in text.stdout and "2 identical (66.7 %)" in text.stdout, text.stdout


def test_trace_says_a_mask_that_is_no_pointer_is_malformed(stored: dict[str, str], tmp_path: Path) -> None:
    """`masked: ["id"]` passed the shape check before (a string) and crashed re-evaluation."""
    path = tmp_path / "masked.json"
    path.write_text(json.dumps(edited(stored, "masked_not_a_pointer", "full")))
    proc = fsgs("trace", str(path))
    assert_no_crash(proc)
    # named by its place in the file, then the pointer (tests/test_replay_differs.py)
    assert proc.returncode == 1 and f"{path}:1: error[trace.malformed] /decision/masked/0:" in proc.stdout, proc.stdout


@pytest.mark.parametrize(
    "forge",
    [
        _set("decision", "engine_version", value="9.9.9"),
        _set("decision", "decision_id", value="0" * 32),
        _set("decision", "kb", "version", value="9.9.9"),
        _set("decision", "engine", "durable_rules", value="0.0.1"),
    ],
)
def test_a_masked_result_with_a_forged_decision_record_is_not_identical(
    masked: str, tmp_path: Path, forge: Callable[[dict[str, Any]], None]
) -> None:
    """A masked result's input hash was taken before masking, so replay cannot recompute it; the
    rest of its decision record must still be what the knowledge base writes, and its decision id
    the one its hash gives: a forged engine version, KB version or decision id is `changed`, never
    `identical` (the genuine record beside it is)."""
    genuine = json.loads(masked)
    forged = json.loads(masked)
    forge(forged)
    results = tmp_path / "r.jsonl"
    results.write_text(json.dumps(genuine) + "\n" + json.dumps(forged) + "\n")
    replayed = fsgs("replay", str(results), "--format", "json")
    assert_no_crash(replayed)
    verdicts = [line["verdict"] for line in json.loads(replayed.stdout)["decisions"]]
    assert verdicts == ["identical", "changed"], replayed.stdout
    assert replayed.returncode == 1
