"""The command line: in-process with click's CliRunner, plus real subprocesses of the entry point."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fsgs_kb.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def invoke(*args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args), input=stdin)


def test_validate_clean_kb_exits_0() -> None:
    result = invoke("validate")
    assert result.exit_code == 0, result.output
    assert "0 error(s)" in result.output


def test_validate_json_format() -> None:
    payload = json.loads(invoke("validate", "--format", "json").output)
    assert payload["ok"] is True and payload["coverage"]["sentences"] == 8


@pytest.mark.parametrize(
    "command", [["validate"], ["test"], ["audit"], ["evaluate", str(EXAMPLES / "dose-above-ceiling.json")]]
)
@pytest.mark.parametrize("where", ["missing", "file", "env-missing", "env-file"])
def test_a_rules_dir_that_is_not_a_directory_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str], where: str
) -> None:
    """--rules nodir exited 1 for validate (a finding) but --rules FILE exited 2 (click's check);
    both, from --rules or $FSGS_KB_RULES, are now one usage error, exit 2, for every command."""
    target = tmp_path / "nope"
    if where.endswith("file"):
        target.write_text("not a knowledge base\n")
    if where.startswith("env"):
        monkeypatch.setenv("FSGS_KB_RULES", str(target))
        result = invoke(*command)
        how = "from $FSGS_KB_RULES"
    else:
        result = invoke(*command, "--rules", str(target))
        how = "given with --rules"
    what = "not a directory" if where.endswith("file") else "no such directory"
    hint = "(hint: give the knowledge-base directory, the one that holds kb.yaml)"
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [f"{target}: error[cli.rules] {what} ({how}) {hint}"]


def test_usage_error_exits_2() -> None:
    assert invoke("validate", "--format", "xml").exit_code == 2
    assert invoke("no-such-command").exit_code == 2


def test_evaluate_example(tmp_path: Path) -> None:
    result = invoke("evaluate", str(EXAMPLES / "dose-above-ceiling.json"))
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload["status"] == "evaluated" and "CSA-DOSE-EXCEEDS" in payload["advice"]


def test_evaluate_stdin_invalid_record_exits_1() -> None:
    result = invoke("evaluate", "-", stdin='{"id": "x", "weight_kg": 0}')
    assert result.exit_code == 1
    assert json.loads(result.stdout)["errors"][0]["pointer"] == "/weight_kg"


def test_explain_names_an_invalid_value_once() -> None:
    """Review 5: the problem's message starts with its pointer, and explain wrote it again
    (`/weight_kg: /weight_kg: -1 kg is out of range …`)."""
    result = invoke("explain", "-", stdin='{"id": "x", "weight_kg": -1}')
    assert result.exit_code == 1
    assert "  /weight_kg: -1 kg is out of range" in result.output and "/weight_kg: /weight_kg" not in result.output


def test_evaluate_garbage_is_an_invalid_record_not_a_traceback() -> None:
    result = invoke("evaluate", "-", stdin="this is not json")
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["errors"][0]["code"] == "patient.json" and "Traceback" not in result.output


def test_evaluate_missing_file_exits_2(tmp_path: Path) -> None:
    result = invoke("evaluate", str(tmp_path / "missing.json"))
    assert result.exit_code == 2 and "cannot read" in result.output


def test_evaluate_with_broken_kb_exits_2(kb_copy: Path) -> None:
    (kb_copy / "kb.yaml").write_text("id: [", encoding="utf-8")
    result = invoke("evaluate", "--rules", str(kb_copy), str(EXAMPLES / "dose-above-ceiling.json"))
    assert result.exit_code == 2 and "yaml.syntax" in result.output


def test_explain_names_the_rule_the_value_and_the_quote() -> None:
    result = invoke("explain", str(EXAMPLES / "dose-above-ceiling.json"))
    assert result.exit_code == 0
    assert "CSA-DOSE-EXCEEDS" in result.output
    assert "total daily cyclosporine dose per kilogram of actual body weight is 5.1 mg/kg/day, above" in result.output
    assert "= 357 mg/day ÷ 70 kg" in result.output
    assert '"Provided the total dose is kept to 5 mg/kg or less"' in result.output


def test_compile_prints_loadable_rulesets() -> None:
    payload = json.loads(invoke("compile").stdout)
    rulesets = [rs for level in payload["levels"] for rs in level["rulesets"]]
    assert any("CSA-DOSE-EXCEEDS|T" in rs for rs in rulesets)


def _recorder(fired: list[str], rule: str):  # type: ignore[no-untyped-def]
    return lambda c: fired.append(rule)


def test_compiled_rulesets_load_into_durable_host() -> None:
    """The printed form is durable-rules' own JSON ruleset form: Host().set_rulesets accepts it."""
    from durable.engine import Host, MessageNotHandledException

    payload = json.loads(invoke("compile").stdout)
    host = Host()
    fired: list[str] = []
    fact = {
        "sid": "0",
        "id": 1,
        "k": 1,
        "fsgs__etiology": "primary",
        "fsgs__biopsy_proven": 1,
        "cyclosporine__status": "current",
        "b__in_scope": "T",
    }
    for i, level in enumerate(payload["levels"]):
        for j, ruleset in enumerate(level["rulesets"]):
            name = f"check_{i}_{j}"
            host.set_rulesets({name: {rule: dict(body, run=_recorder(fired, rule)) for rule, body in ruleset.items()}})
            try:  # Python actions update the session state: a rule must not fire on that state again
                host.assert_fact(name, fact)
            except MessageNotHandledException:
                pass
    assert "derived:in_scope|T" in fired and "CSA-MONITOR-BP|T" in fired
    assert len(fired) < 3 * len(set(fired))  # an $or fires once per true branch, but never without end


def test_same_input_gives_byte_identical_output() -> None:
    first = invoke("evaluate", str(EXAMPLES / "dose-above-ceiling.json")).output
    second = invoke("evaluate", str(EXAMPLES / "dose-above-ceiling.json")).output
    assert first == second


def _entry_point() -> str | None:
    beside = Path(sys.executable).parent / "fsgs-kb"
    return str(beside) if beside.is_file() else shutil.which("fsgs-kb")


@pytest.mark.skipif(_entry_point() is None, reason="the fsgs-kb entry point is not installed")
def test_installed_entry_point_from_another_directory(tmp_path: Path) -> None:
    command = str(_entry_point())
    proc = subprocess.run([command, "validate"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "coverage: 5/8" in proc.stdout
    patient = tmp_path / "p.json"
    shutil.copy(EXAMPLES / "dose-above-ceiling.json", patient)
    proc = subprocess.run([command, "explain", str(patient)], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0 and "CSA-DOSE-EXCEEDS" in proc.stdout


def test_module_invocation_without_entry_point(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "fsgs_kb", "validate"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_mutating_a_result_does_not_change_the_next_one(kb) -> None:  # type: ignore[no-untyped-def]
    record = json.loads((EXAMPLES / "relapse-after-remission.json").read_text())
    first = kb.evaluate(record)
    rule = next(r for r in first["rules"] if r["id"] == "CSA-RELAPSE-REINTRODUCE")
    cond = next(c for c in rule["conditions"] if c.get("parameter") == "reintroduce_after_responses")
    cond["provenance"]["kind"] = "tampered"
    rule["citations"][0]["quote"] = "tampered"
    second = kb.evaluate(record)
    assert json.dumps(second) != json.dumps(first)
    assert "tampered" not in json.dumps(second)
    assert kb.model.parameters["reintroduce_after_responses"].value == ["complete_remission", "partial_remission"]
