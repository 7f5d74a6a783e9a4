"""The editors' walkthrough of rules/README.md, done literally in a fresh clone.

The test reads the walkthrough section of the guide, applies its edits (each "replace: … with:
…" and "add at the end" block, in the files the step names) and runs its shell commands, in
order, in a `git clone` of this checkout with fsgs-kb installed by `pip install .` (a snapshot,
as an editor who did not use -e has it). Then it checks what the guide promises: every command
sees the edit, the rule's title and text show the new value, and `fsgs-kb diff git:HEAD rules`
fails until the rules and the knowledge base are versioned, then passes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import ROOT, install_in_new_venv

from fsgs_kb.cli import main

GUIDE = ROOT / "rules" / "README.md"
SECTION = "## Walkthrough: lower the dose ceiling to 4.5 mg/kg/day"
FENCE = re.compile(r"^( *)```(\w*)\s*$")
PATHS = re.compile(r"`(rules/[\w./-]+\.yaml)`")


@dataclass
class Step:
    kind: str  # replace | append | run
    files: list[str]
    text: str
    replacement: str = ""


def walkthrough_steps(guide: str) -> list[Step]:
    """The guide's walkthrough as edits and commands, in order."""
    section = guide.split(SECTION, 1)[1].split("\n## ", 1)[0]
    steps: list[Step] = []
    files: list[str] = []
    expect = ""  # what the next yaml block is: before | after | append
    paragraph: list[str] = []
    lines = section.splitlines()
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            if lines[i].strip():
                paragraph.append(lines[i])
            else:
                paragraph = []
            text = " ".join(paragraph)
            if PATHS.search(text):
                files = PATHS.findall(text)
            if lines[i].rstrip().endswith("replace:"):
                expect = "before"
            elif lines[i].rstrip().endswith("with:"):
                expect = "after"
            elif "add at the end" in text and lines[i].rstrip().endswith(":"):
                expect = "append"
            i += 1
            continue
        indent, language = len(fence.group(1)), fence.group(2)
        body = []
        i += 1
        while not FENCE.match(lines[i]):
            body.append(lines[i][indent:])
            i += 1
        i += 1
        block = "\n".join(body) + "\n"
        paragraph = []
        if language == "sh":
            steps += [Step("run", [], line) for line in body if line.strip() and not line.startswith("#")]
        elif language == "yaml" and expect == "before":
            steps.append(Step("replace", list(files), block))
        elif language == "yaml" and expect == "after":
            assert steps and steps[-1].kind == "replace" and not steps[-1].replacement, "a 'with:' without 'replace:'"
            steps[-1].replacement = block
        elif language == "yaml" and expect == "append":
            steps.append(Step("append", list(files), block))
        expect = ""
    return steps


def apply(step: Step, checkout: Path) -> None:
    for name in step.files:
        path = checkout / name
        text = path.read_text(encoding="utf-8")
        if step.kind == "append":
            path.write_text(text.rstrip("\n") + "\n" + step.text, encoding="utf-8")
            continue
        found = re.findall(r"(?m)^" + re.escape(step.text), text)
        assert len(found) == 1, f"the guide's block is not found exactly once in {name}:\n{step.text}"
        path.write_text(re.sub(r"(?m)^" + re.escape(step.text), lambda m: step.replacement, text), encoding="utf-8")


def test_the_guide_parses_into_edits_and_commands() -> None:
    steps = walkthrough_steps(GUIDE.read_text(encoding="utf-8"))
    kinds = [s.kind for s in steps]
    assert kinds.count("run") >= 7 and kinds.count("replace") == 3 and kinds.count("append") == 2
    assert all(s.replacement for s in steps if s.kind == "replace")
    assert steps[0].files == ["rules/parameters.yaml"]
    assert [s.files for s in steps if s.kind == "append"] == [
        ["rules/kb.yaml"],
        ["rules/recommendations/CSA-DOSE-EXCEEDS.yaml", "rules/recommendations/CSA-DOSE-WITHIN.yaml"],
    ]


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_walkthrough_in_a_fresh_clone(tmp_path: Path) -> None:
    clean = subprocess.run(["git", "status", "--porcelain", "--", "rules"], cwd=ROOT, capture_output=True, text=True)
    if clean.returncode != 0:
        pytest.skip("not a git checkout")
    checkout = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(checkout)], check=True, timeout=300)
    # the clone is of the last commit: give it this checkout's guide and rules as they are now
    shutil.copy(GUIDE, checkout / "rules" / "README.md")
    venv = install_in_new_venv(checkout, tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FSGS_KB_", "PYTEST_", "VIRTUAL_ENV"))}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", FSGS_KB_CACHE=str(tmp_path / "cache"))
    runs: dict[str, list[subprocess.CompletedProcess[str]]] = {}
    for step in walkthrough_steps(GUIDE.read_text(encoding="utf-8")):
        if step.kind != "run":
            apply(step, checkout)
            continue
        proc = subprocess.run(
            ["bash", "-c", step.text], cwd=checkout, env=env, capture_output=True, text=True, timeout=900
        )
        runs.setdefault(step.text, []).append(proc)

    def only(command: str, index: int = 0) -> subprocess.CompletedProcess[str]:
        return runs[command][index]

    seen = "in rules/ (the nearest rules/kb.yaml at or above the working directory)"
    validate = only("fsgs-kb validate")
    assert validate.returncode == 0 and seen in validate.stdout.splitlines()[0], validate.stdout + validate.stderr
    assert "0 error(s)" in validate.stdout
    test = only("fsgs-kb test -k CSA-DOSE")
    assert test.returncode == 1 and seen in test.stdout.splitlines()[0]
    assert "FAIL rules/tests/CSA-DOSE-WITHIN.yaml" in test.stdout and "CSA-DOSE-WITHIN::5.0-mg-kg-within" in test.stdout
    assert "Current cyclosporine dose within the 4.5 mg/kg/day ceiling" in test.stdout
    pytest_run = only("python -m pytest -p no:cacheprovider tests/test_scenarios.py -k CSA-DOSE")
    assert pytest_run.returncode == 1, pytest_run.stdout[-3000:] + pytest_run.stderr[-2000:]
    assert "FAILED tests/test_scenarios.py::test_scenario[CSA-DOSE-WITHIN::5.0-mg-kg-within]" in pytest_run.stdout
    docs = only("fsgs-kb docs -o handbook")
    assert docs.returncode == 0 and seen in docs.stdout.splitlines()[0]
    page = (checkout / "handbook" / "rules" / "CSA-DOSE-EXCEEDS.html").read_text(encoding="utf-8")
    assert "<h1>Current cyclosporine dose above the 4.5 mg/kg/day ceiling</h1>" in page
    assert "The total daily dose is above 4.5 mg/kg/day" in page and "4.5 mg/kg/day (local policy" in page
    unversioned, versioned = runs["fsgs-kb diff git:HEAD rules"]
    assert unversioned.returncode == 1, unversioned.stdout + unversioned.stderr
    for rule in ("CSA-DOSE-EXCEEDS", "CSA-DOSE-WITHIN"):
        assert f"error[diff.unversioned] {rule}'s meaning changed (parameter max_daily_dose)" in unversioned.stdout
    assert "the knowledge base changed but its version is still" in unversioned.stdout
    assert "CSA-DUR-EXCEEDS's meaning" not in unversioned.stdout
    assert versioned.returncode == 0, versioned.stdout + versioned.stderr
    assert "kb.yaml: 0.3.5 → 0.4.0" in versioned.stdout
    assert only("fsgs-kb validate", 1).returncode == 0


def test_the_guide_quotes_commands_that_exist() -> None:
    """Every `fsgs-kb WORD` the guide mentions is a command."""
    guide = GUIDE.read_text(encoding="utf-8")
    mentioned = set(re.findall(r"(?:`|^ *)(?:\.venv/bin/)?fsgs-kb ([a-z]+)", guide, re.M))
    assert {"validate", "test", "docs", "diff"} <= mentioned
    help_text = CliRunner().invoke(main, ["--help"]).output
    missing = [word for word in mentioned if not re.search(rf"^\s+{word}\s", help_text, re.M)]
    assert not missing, textwrap.shorten(str(missing), 200)
