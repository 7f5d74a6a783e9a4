"""A knowledge base whose generated evaluator Python refuses is told of, not silently slower.

The fallback itself (the reference gives the same bytes) is tested in test_compiled.py; here:
`fsgs-kb validate` warns of each refused function (compile.fallback, exit 0), for every detail
level, whether or not the report comes from the cache; batch says so on stderr when its run is
affected; evaluate's output stays as it was. Refusals are made by the `nocompile` drill: the
generators now keep the code flat whatever the knowledge base's size (engine/evaluate/codegen.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

import fsgs_kb
from fsgs_kb.engine.kb import validate

# every generated function of the bundled knowledge base, by the name Python is given, and which
# detail level's results it makes (all: every detail level)
FUNCTIONS = {
    "state": "every result",
    "facts level 0": "every result",
    "facts level 1": "every result",
    "verdict": "every result",
    "full": "full results as dicts (evaluate, explain)",
    "settle": "full results as dicts (evaluate, explain)",
    "full+json": "full results written at once as JSON (batch)",
    "settle+json": "full results written at once as JSON (batch)",
    "standard": "results at standard detail",
    "settle+standard": "results at standard detail",
    "minimal": "results at minimal detail",
    "settle+minimal": "results at minimal detail",
}
EXAMPLE = ROOT / "examples" / "dose-above-ceiling.json"


def run(*args: str, fault: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FSGS_KB_FAULT"}
    if fault:
        env["FSGS_KB_FAULT"] = fault
    command = [sys.executable, "-m", "fsgs_kb", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_the_bundled_knowledge_base_compiles_at_every_detail_level() -> None:
    """Without a drill, no warning: and every function the drill tests below names exists."""
    kb = fsgs_kb.load()
    assert kb.fallback_warnings("full", "standard", "minimal") == []
    assert kb.compiled_evaluator is not None and set(kb.compiled_evaluator.sources) == set(FUNCTIONS)
    assert not [w for w in validate().warnings if w.code == "compile.fallback"]


@pytest.mark.parametrize("refused", sorted(FUNCTIONS))
def test_validate_warns_of_each_generated_function_python_refuses(
    refused: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whichever function Python refuses, at whichever detail level, validate compiles it and
    says so: a warning (the results stay the same), at kb.yaml, naming it and what it makes."""
    monkeypatch.setenv("FSGS_KB_FAULT", f"nocompile:{refused}")
    report = validate()
    assert report.ok
    (warning,) = [w for w in report.problems if w.code == "compile.fallback"]
    assert warning.severity == "warning" and warning.file is not None and warning.file.endswith("kb.yaml")
    assert warning.line is not None
    assert f"the generated '{refused}' function, which makes {FUNCTIONS[refused]}: RecursionError" in warning.message
    assert warning.hint is not None and "same, byte for byte" in warning.hint and "slower" in warning.hint


def test_validate_on_the_command_line_warns_and_exits_0() -> None:
    """The text and JSON reports, also when read from the cache (the loop's second run); a report
    cached without the drill is not served with it, nor the other way round."""
    plain = run("validate")
    assert plain.returncode == 0, plain.stderr
    assert "compile.fallback" not in plain.stdout and "0 warning(s)" in plain.stdout
    for _ in range(2):  # the second run reads the report the first one cached
        done = run("validate", fault="nocompile:standard")
        assert done.returncode == 0, done.stdout + done.stderr
        (line,) = [line for line in done.stdout.splitlines() if "compile.fallback" in line]
        assert line.split(":")[0].endswith("kb.yaml") and ":5:1: warning[compile.fallback] " in line
        assert "'standard' function, which makes results at standard detail" in line and "(hint: " in line
        assert done.stdout.rstrip().endswith("0 error(s), 1 warning(s)")
    assert "compile.fallback" not in run("validate").stdout
    report = json.loads(run("validate", "--format", "json", fault="nocompile:*").stdout)
    assert report["ok"] is True and report["errors"] == []
    assert [w["code"] for w in report["warnings"]] == ["compile.fallback"]  # state: nothing else is tried
    assert "'state' function, which makes every result" in report["warnings"][0]["message"]


def test_batch_says_on_stderr_when_its_run_falls_back(tmp_path: Path) -> None:
    """One stderr line at the start of a run whose detail level Python cannot compile; none for
    a run at another level; the results are the same bytes either way."""
    source = tmp_path / "in.jsonl"
    examples = sorted((ROOT / "examples").glob("*.json"))
    source.write_bytes(b"".join(json.dumps(json.loads(path.read_text())).encode() + b"\n" for path in examples))
    outputs = {}
    for fault, detail, told in (
        ("", "minimal", False),
        ("nocompile:settle+minimal", "minimal", True),
        ("nocompile:settle+minimal", "standard", False),
        ("nocompile:full+json", "full", True),
    ):
        done = run("batch", str(source), "--detail", detail, "--workers", "2", "--quiet", fault=fault)
        assert done.returncode == 0, done.stderr
        notes = [line for line in done.stderr.splitlines() if "compile.fallback" in line]
        assert len(notes) == (1 if told else 0), done.stderr
        if told:
            assert "warning[compile.fallback]" in notes[0] and fault.removeprefix("nocompile:") in notes[0]
            assert done.stderr.splitlines()[1] == notes[0]  # at the start, after the knowledge base's line
        outputs.setdefault(detail, set()).add(done.stdout)
    assert all(len(same) == 1 for same in outputs.values())


def test_evaluate_prints_the_same_whatever_python_compiles() -> None:
    """evaluate's output is its contract: a fallback changes neither stdout nor stderr."""
    plain = run("evaluate", str(EXAMPLE))
    fallen = run("evaluate", str(EXAMPLE), fault="nocompile:*")
    assert (fallen.returncode, fallen.stdout, fallen.stderr) == (plain.returncode, plain.stdout, plain.stderr)
