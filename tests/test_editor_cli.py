"""Editors' command-line conventions: pytest's -k/-x/-v/-q and exit 5, JUnit XML, CI annotations
(GitHub, SARIF) and colour that respects NO_COLOR."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import RULES

from fsgs_kb.cli import main
from fsgs_kb.engine.errors import KBErrors
from fsgs_kb.engine.scenarios.keywords import keyword_matcher

IDS = [
    "CSA-DOSE-EXCEEDS::5.1-mg-kg-exceeds",
    "CSA-DOSE-WITHIN::5.0-mg-kg-within",
    "CSA-DUR-WITHIN::11.9-months",
    "CSA-MONITOR-BP::current",
]


def chosen(expression: str) -> list[str]:
    matches = keyword_matcher([expression])
    return [i for i in IDS if matches(i)]


def test_k_expressions_read_as_pytest_reads_them() -> None:
    assert chosen("DOSE and not WITHIN") == ["CSA-DOSE-EXCEEDS::5.1-mg-kg-exceeds"]
    assert chosen("dose or bp") == IDS[:2] + ["CSA-MONITOR-BP::current"]
    assert chosen("not (DOSE or DUR)") == ["CSA-MONITOR-BP::current"]
    assert chosen("WITHIN and not DOSE or BP") == ["CSA-DUR-WITHIN::11.9-months", "CSA-MONITOR-BP::current"]
    assert chosen("CSA-D*-WITHIN") == ["CSA-DOSE-WITHIN::5.0-mg-kg-within", "CSA-DUR-WITHIN::11.9-months"]
    for bad in ("DOSE and", "(DOSE", "DOSE )", "and", "not"):
        with pytest.raises(KBErrors):
            keyword_matcher([bad])


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_selection_verbosity_and_the_summary() -> None:
    code, output = invoke("test", "-k", "CSA-DOSE and not WITHIN", "-v")
    lines = output.splitlines()
    assert code == 0 and lines[0].startswith("knowledge base fsgs-csa")
    passed = sum(line.startswith("PASS rules/tests/CSA-DOSE-EXCEEDS.yaml:") for line in lines)
    assert passed >= 5 and len([line for line in lines if line.startswith(("PASS", "FAIL"))]) == passed
    assert lines[-1] == f"{passed} passed, 0 failed ({passed} cases; selection: -k 'CSA-DOSE and not WITHIN')"
    code, output = invoke("test", "-k", "CSA-DOSE and not WITHIN")
    assert code == 0 and "PASS" not in output
    code, output = invoke("test", "-k", "(")
    assert code == 2 and "error[cli.k_expression]" in output


def test_an_empty_selection_exits_5(tmp_path: Path) -> None:
    assert invoke("test", "-k", "NO-SUCH-RULE")[0] == 5
    shutil.copytree(RULES, tmp_path / "rules", ignore=shutil.ignore_patterns("tests"))
    code, output = invoke("test", "--rules", str(tmp_path / "rules"))
    assert code == 5 and "0 cases selected" in output


@pytest.fixture
def lowered_ceiling(kb_copy: Path) -> Path:
    """The dose ceiling at 4.5 mg/kg/day (a local decision): two WITHIN cases now fail."""
    params = kb_copy / "parameters.yaml"
    text = params.read_text(encoding="utf-8").replace("    value: 5\n", "    value: 4.5\n", 1)
    text = text.replace(
        "      source:\n        source: cattran-2003\n        sentence: S5\n"
        "        quote: Provided the total dose is kept to 5 mg/kg or less\n",
        '      local: {rationale: a stricter site ceiling, decided_on: "2026-11-25"}\n',
        1,
    )
    params.write_text(text, "utf-8")
    return kb_copy


def test_exitfirst_quiet_and_junit_xml(lowered_ceiling: Path, tmp_path: Path) -> None:
    rules = str(lowered_ceiling)
    code, full = invoke("test", "--rules", rules, "-k", "DOSE-WITHIN")
    assert code == 1 and full.count("FAIL ") == 2 and "✗ " in full
    code, quiet = invoke("test", "--rules", rules, "-k", "DOSE-WITHIN", "-q")
    assert code == 1 and quiet.count("FAIL ") == 2 and "✗ " not in quiet
    code, first = invoke("test", "--rules", rules, "-k", "DOSE-WITHIN", "-x")
    assert code == 1 and first.count("FAIL ") == 1
    assert first.splitlines()[-1].endswith("stopped at the first failure (-x), 1 not run)")
    report = tmp_path / "junit.xml"
    code, _ = invoke("test", "--rules", rules, "-k", "DOSE", "--junit-xml", str(report))
    assert code == 1
    suite = ET.parse(report).getroot().find("testsuite")
    selected = invoke("test", "--rules", rules, "-k", "DOSE", "-q")[1].splitlines()[-1]
    assert (
        suite is not None
        and suite.get("failures") == "2"
        and selected.endswith(f"({suite.get('tests')} cases; selection: -k DOSE)")
    )
    failed = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert len(failed) == 2 and {c.get("classname") for c in failed} == {"tests.CSA-DOSE-WITHIN"}
    assert all(c.get("file", "").endswith("tests/CSA-DOSE-WITHIN.yaml") and c.get("line") for c in failed)
    assert "expected fired, got not_fired" in (failed[0].find("failure").text or "")  # type: ignore[union-attr]
    kb_id = [p.get("value") for p in suite.iter("property") if p.get("name") == "kb.id"]
    assert kb_id == ["fsgs-csa"]


def test_validate_for_ci(kb_copy: Path) -> None:
    rule = kb_copy / "recommendations" / "CSA-DOSE-EXCEEDS.yaml"
    rule.write_text(rule.read_text(encoding="utf-8").replace("{param: max_daily_dose}", "{param: max_daily_dos}"))
    code, output = invoke("validate", "--rules", str(kb_copy), "--format", "github")
    assert code == 1
    (annotation,) = [line for line in output.splitlines() if line.startswith("::")]
    assert annotation.startswith(f"::error file={kb_copy}/recommendations/CSA-DOSE-EXCEEDS.yaml,line=15,col=19,")
    assert annotation.endswith("::unknown parameter 'max_daily_dos' (hint: did you mean 'max_daily_dose'?)")
    code, output = invoke("validate", "--rules", str(kb_copy), "--format", "sarif")
    sarif = json.loads(output)
    assert code == 1 and sarif["version"] == "2.1.0"
    (run,) = sarif["runs"]
    (result,) = run["results"]
    assert result["ruleId"] == "rule.unknown_parameter" and result["level"] == "error"
    assert run["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == "rule.unknown_parameter"
    place = result["locations"][0]["physicalLocation"]
    assert place["artifactLocation"]["uri"].endswith("recommendations/CSA-DOSE-EXCEEDS.yaml")
    assert place["region"] == {"startLine": 15, "startColumn": 19}
    assert run["properties"]["kb"]["id"] == "fsgs-csa"


def on_a_terminal(*args: str, env: dict[str, str]) -> str:
    """Run the command with its stdout on a pseudo-terminal; return what it printed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fsgs_kb", *args], stdout=follower, stderr=subprocess.DEVNULL, env=env
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=300)
    os.close(leader)
    return b"".join(chunks).decode("utf-8")


def test_colour_on_a_terminal_unless_no_color(kb_copy: Path) -> None:
    rule = kb_copy / "recommendations" / "CSA-DOSE-EXCEEDS.yaml"
    rule.write_text(rule.read_text(encoding="utf-8").replace("{param: max_daily_dose}", "{param: max_daily_dos}"))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    assert "\x1b[1;31merror[rule.unknown_parameter]\x1b[0m" in on_a_terminal(
        "validate", "--rules", str(kb_copy), env=env
    )
    assert "\x1b[" not in on_a_terminal("validate", "--rules", str(kb_copy), env={**env, "NO_COLOR": "1"})
    forced = on_a_terminal("validate", "--rules", str(kb_copy), "--color", "always", env={**env, "NO_COLOR": "1"})
    assert "\x1b[1;31m" in forced
    assert "\x1b[" not in on_a_terminal("test", "-k", "DOSE-EXCEEDS", "--color", "never", env=env)
    piped = subprocess.run(
        [sys.executable, "-m", "fsgs_kb", "validate", "--rules", str(kb_copy)], capture_output=True, text=True, env=env
    )
    assert "\x1b[" not in piped.stdout and "error[rule.unknown_parameter]" in piped.stdout
