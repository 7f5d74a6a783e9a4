"""Which knowledge base a command uses, and that every command says so.

--rules DIR > $FSGS_KB_RULES > the nearest rules/kb.yaml at or above the working directory >
the copy bundled with the package; the first line of text output (stderr where stdout is data)
names it, and JSON output carries it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, RULES

from fsgs_kb.engine.load.paths import RULES_ENV, bundled_rules_dir, locate_rules

EXAMPLE = ROOT / "examples" / "dose-above-ceiling.json"


def fsgs_kb(*args: str, cwd: Path, env_rules: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != RULES_ENV}
    if env_rules is not None:
        env[RULES_ENV] = env_rules
    return subprocess.run(
        [sys.executable, "-m", "fsgs_kb", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder holding an edited copy of the knowledge base at rules/, and a subfolder."""
    shutil.copytree(RULES, tmp_path / "rules")
    kb = tmp_path / "rules" / "kb.yaml"
    kb.write_text(kb.read_text(encoding="utf-8").replace("id: fsgs-csa", "id: site-copy"), encoding="utf-8")
    (tmp_path / "notes" / "deeper").mkdir(parents=True)
    return tmp_path


def test_the_order_option_then_environment_then_nearest_then_bundled(
    project: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(RULES_ENV, raising=False)
    deeper = project / "notes" / "deeper"
    assert locate_rules(None, deeper).path == (project / "rules").resolve()
    assert locate_rules(None, deeper).found_by == "nearest rules/kb.yaml"
    assert locate_rules(None, project / "rules" / "recommendations").path == (project / "rules").resolve()
    elsewhere = tmp_path_factory.mktemp("nothing-here")
    assert locate_rules(None, elsewhere).path == bundled_rules_dir()
    monkeypatch.setenv(RULES_ENV, "/from/the/environment")
    assert locate_rules(None, deeper).path == Path("/from/the/environment")
    assert locate_rules("given", deeper).path == Path("given")
    assert locate_rules("given", deeper).found_by == "--rules"


def test_an_edit_in_the_working_copy_is_what_commands_use(project: Path) -> None:
    deeper = project / "notes" / "deeper"
    proc = fsgs_kb("validate", cwd=deeper)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert re.match(r"knowledge base site-copy [0-9.]+, fingerprint [0-9a-f]{12}, in ", first), first
    assert f"in {project / 'rules'}/ (the nearest rules/kb.yaml at or above the working directory)" in first


def test_the_environment_beats_the_working_copy(project: Path) -> None:
    proc = fsgs_kb("validate", "--format", "json", cwd=project, env_rules=str(RULES))
    kb = json.loads(proc.stdout)["kb"]
    assert kb["id"] == "fsgs-csa" and kb["found_by"] == RULES_ENV and kb["path"] == str(RULES)
    assert len(kb["fingerprint"]) == 64 and kb["version"]


def test_without_a_working_copy_the_bundled_one_is_used_and_named(tmp_path: Path) -> None:
    proc = fsgs_kb("validate", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].endswith(f"in {bundled_rules_dir()}/ (bundled with the installed fsgs-kb)")


def test_every_command_names_its_knowledge_base(project: Path, tmp_path: Path) -> None:
    """Text output starts with the line; commands whose stdout is data put it first on stderr."""
    cwd = project
    result = project / "result.json"
    evaluate = fsgs_kb("evaluate", str(EXAMPLE), cwd=cwd)
    assert json.loads(evaluate.stdout)["decision"]["kb"]["id"] == "site-copy"
    result.write_text(evaluate.stdout, encoding="utf-8")
    patients = project / "patients.jsonl"
    patients.write_text(json.dumps(json.loads(EXAMPLE.read_text(encoding="utf-8"))) + "\n", encoding="utf-8")
    results = project / "results.jsonl"
    on_stdout = {
        "validate": ["validate"],
        "explain": ["explain", str(EXAMPLE)],
        "test": ["test", "-k", "CSA-DOSE-EXCEEDS"],
        "docs": ["docs", "-o", str(tmp_path / "site")],
        "audit": ["audit", "--rule", "CSA-DOSE-EXCEEDS"],
        "trace": ["trace", str(result)],
        "replay": ["replay", str(result), "--input", str(patients)],
    }
    on_stderr = {
        "evaluate": ["evaluate", str(EXAMPLE)],
        "compile": ["compile"],
        "batch": ["batch", str(patients), "-o", str(results), "--workers", "1", "--quiet"],
    }
    for name, args in {**on_stdout, **on_stderr}.items():
        proc = evaluate if name == "evaluate" else fsgs_kb(*args, cwd=cwd)  # evaluate: run above, same line
        assert proc.returncode == 0, (name, proc.stdout, proc.stderr)
        stream = proc.stdout if name in on_stdout else proc.stderr
        first = stream.splitlines()[0]
        assert re.match(r"knowledge base site-copy [0-9.]+, fingerprint ", first), (name, first)
        assert first.endswith("(the nearest rules/kb.yaml at or above the working directory)"), (name, first)
    for args in (["test", "--format", "json", "-k", "CSA-DOSE"], ["audit", "--format", "json"]):
        payload = json.loads(fsgs_kb(*args, cwd=cwd).stdout)
        assert payload["kb"]["id"] == "site-copy" and payload["kb"]["path"] == str(project / "rules"), args


def test_a_broken_knowledge_base_is_named_where_it_was_found(project: Path) -> None:
    (project / "rules" / "parameters.yaml").write_text("parameters: [", encoding="utf-8")
    proc = fsgs_kb("explain", str(EXAMPLE), cwd=project / "notes")
    assert proc.returncode == 2
    assert (
        f"the knowledge base in {project / 'rules'}/ (the nearest rules/kb.yaml at or above the working directory) "
        "has errors" in proc.stderr
    )


def test_the_fingerprint_does_not_depend_on_the_working_directory(project: Path) -> None:
    lines = {
        fsgs_kb("validate", cwd=where).stdout.splitlines()[0].split(", in ")[0]
        for where in (project, project / "rules", project / "rules" / "recommendations", project / "notes")
    }
    assert len(lines) == 1, lines
