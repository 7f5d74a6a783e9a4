"""The editors' workbench: `fsgs-kb test`, its coverage report, and a failure an editor can act on."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from fsgs_kb.cli import main

GOLDEN = Path(__file__).parent / "golden"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_bundled_scenarios_pass_with_full_coverage() -> None:
    code, output = run("test", "--coverage")
    assert code == 0, output
    assert "coverage: 19/19 rules with all three outcomes (caveats: both of theirs), 15/15 numeric parameters" in output


def test_json_report() -> None:
    code, output = run("test", "--coverage", "--format", "json")
    payload = json.loads(output)
    assert code == 0 and payload["failed"] == 0 and payload["coverage"]["complete"] is True
    assert payload["coverage"]["rules"]["CSA-DOSE-EXCEEDS"] == ["fired", "not_fired", "undetermined"]


def test_selection_by_rule_id() -> None:
    code, output = run("test", "-k", "CSA-DOSE-EXCEEDS")
    assert code == 0 and output.strip().endswith("(5 cases; selection: -k CSA-DOSE-EXCEEDS)")


def test_an_empty_selection_exits_5_as_pytest_does() -> None:
    code, _ = run("test", "-k", "NO-SUCH-RULE")
    assert code == 5


def test_changed_threshold_shows_an_actionable_failure(kb_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lowering the dose ceiling to 4.5 breaks the 5.0-is-within cases: the editor sees which
    case, where it is written, what was expected, and the rule's conditions with the values."""
    params = kb_copy / "parameters.yaml"
    text = params.read_text(encoding="utf-8").replace("    value: 5\n", "    value: 4.5\n", 1)
    text = text.replace(
        "      source:\n        source: cattran-2003\n        sentence: S5\n"
        "        quote: Provided the total dose is kept to 5 mg/kg or less\n",
        '      local: {rationale: a stricter site ceiling, decided_on: "2026-11-25"}\n',
        1,
    )
    params.write_text(text, "utf-8")
    monkeypatch.chdir(kb_copy.parent)
    code, output = run("test", "--rules", "rules", "-k", "CSA-DOSE-WITHIN")
    expected_file = GOLDEN / "test-failure.expected"
    # the knowledge base's version and fingerprint change with every release: not what this checks
    output = re.sub(r"fsgs-csa \S+, fingerprint [0-9a-f]{12}", "fsgs-csa …, fingerprint …", output)
    actual = f"exit: {code}\n{output}"
    if os.environ.get("FSGS_UPDATE_GOLDENS"):
        expected_file.write_text(actual, encoding="utf-8")
    assert actual == expected_file.read_text(encoding="utf-8")


def test_coverage_gap_is_reported_and_fails(kb_copy: Path) -> None:
    (kb_copy / "tests" / "CAVEAT-AGE-OVER-70.yaml").unlink()  # the only cases where it fires
    code, output = run("test", "--rules", str(kb_copy), "--coverage")
    assert code == 1
    assert "coverage: 18/19 rules with all three outcomes" in output
    line = next(x for x in output.splitlines() if x.strip().startswith("CAVEAT-AGE-OVER-70"))
    assert "fires ✗" in line and "undetermined (never: a caveat)" in line
