"""One error hides only what depends on it: `validate` judges the valid part of a broken knowledge
base (engine.check.valid). Each defect of tests/kb_invalid, combined with a derived value read
for records its cases do not cover (62-derived-case-unguarded-use), still reports that warning
beside its own errors - unless the defect breaks what the warning reads - and never crashes.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from support import RULES
from test_kb_goldens import apply_edit

from fsgs_kb.cli import main

CASES_DIR = Path(__file__).parent / "kb_invalid"
UNGUARDED = CASES_DIR / "62-derived-case-unguarded-use.yaml"
WARNING = "warning[derived.case_uncovered]"
# The same edit as UNGUARDED, or one of the same lines: they cannot be combined with it.
OVERLAPPING = {"62-derived-case-unguarded-use", "64-derived-case-guard-reversed", "67-case-uncovered-beside-rule-error"}
# Defects that break what the warning reads: CAVEAT-KIDNEY-FUNCTION's condition, the derived
# value creatinine_clearance_per_1_73m2 and the parameter it is compared with.
HIDES = {
    "18-yaml-duplicate-key": "parameters.yaml does not load: the caveat's threshold is unknown",
    "19-yaml-11-boolean": "derived.yaml does not load: the derived value is unknown",
    "30-two-provenances": "parameters.yaml does not load: the caveat's threshold is unknown",
    "78-yaml-lone-surrogate": "derived.yaml does not load: the derived value is unknown",
    "83-parameter-nan": "parameters.yaml does not load: the caveat's threshold is unknown",
    "85-yaml-11-octal-threshold": "parameters.yaml does not load: the caveat's threshold is unknown",
    "87-yaml-integer-too-long": "parameters.yaml does not load: the caveat's threshold is unknown",
    "113-derived-without-unit": "derived.yaml fails its schema: the derived value is unknown",
}
CASES = [c for c in sorted(CASES_DIR.glob("*.yaml")) if c.stem not in OVERLAPPING]


def _edits(case_file: Path) -> list[dict[str, object]]:
    edits: list[dict[str, object]] = yaml.safe_load(case_file.read_text(encoding="utf-8"))["edits"]
    return edits


def _errors(output: str) -> set[str]:
    return {line for line in output.splitlines() if re.search(r": error\[", line)}


@pytest.mark.parametrize("case_file", CASES, ids=[c.stem for c in CASES])
def test_a_defect_hides_only_what_depends_on_it(
    case_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(RULES, tmp_path / "rules")
    for edit in _edits(UNGUARDED) + _edits(case_file):
        apply_edit(tmp_path / "rules", edit)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["validate", "--rules", "rules"])
    alone = case_file.with_suffix(".expected").read_text(encoding="utf-8")
    assert "Traceback" not in result.output and "error[internal]" not in result.output, result.output
    assert f"exit: {result.exit_code}\n" == alone.splitlines(keepends=True)[0]
    assert _errors(result.output) == _errors(alone)  # the warning's edit adds no error and hides none
    assert (WARNING in result.output) == (case_file.stem not in HIDES), result.output


def test_the_defects_that_hide_the_warning_are_defects() -> None:
    """HIDES names real cases (a renamed golden would silently leave the rule untested)."""
    assert set(HIDES) <= {c.stem for c in CASES}
