"""Knowledge base: a rule file that is legal YAML but pathologically shaped must be rejected at
`validate` with a located error, or work; never validate cleanly and then fail every patient."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hostile_support import KB_REJECT_EXIT, RULES, assert_no_traceback, good_line, run

RULE_FILE = "CSA-DOSE-EXCEEDS.yaml"
# The comparison that makes CSA-DOSE-EXCEEDS fire; every shape below is logically equal to it.
COMPARISON_BLOCK = "    - derived: dose_mg_per_kg_day\n      gt: {param: max_daily_dose}\n"
COMPARISON = "{derived: dose_mg_per_kg_day, gt: {param: max_daily_dose}}"


def _nested(depth: int) -> str:
    """any/all alternating `depth` levels deep, each level holding the comparison and the next."""
    node = COMPARISON
    for level in range(depth):
        node = f"{{{'any' if level % 2 == 0 else 'all'}: [{COMPARISON}, {node}]}}"
    return node


SHAPES = {
    "any-all-16-deep": _nested(16),
    "any-of-200": "{any: [" + ", ".join([COMPARISON] * 200) + "]}",
}
PATHOLOGICAL = {
    "yaml-1000-deep": "{all: [" * 1000 + COMPARISON + "]}" * 1000,
    "not-chain-300": "{not: " * 300 + COMPARISON + "}" * 300,
}


def _rewrite_rule(rules: Path, condition: str) -> Path:
    path = rules / "recommendations" / RULE_FILE
    text = path.read_text()
    assert COMPARISON_BLOCK in text, "the bundled rule changed shape; update this test"
    path.write_text(text.replace(COMPARISON_BLOCK, f"    - {condition}\n"))
    return path


def _evaluate(rules: Path, tmp_path: Path) -> dict:
    patient = tmp_path / "patient.json"
    patient.write_bytes(good_line())
    result = run("evaluate", "--rules", rules, patient, "--compact")
    assert_no_traceback(result)
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def baseline_advice(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return _evaluate(RULES, tmp_path_factory.mktemp("baseline"))["advice"]


def _located(output: str, name: str) -> bool:
    return re.search(rf"{re.escape(name)}:\d+:\d+", output) is not None


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_wide_or_deep_condition_is_rejected_or_works(
    tmp_path: Path, kb_copy: Path, baseline_advice, shape: str
) -> None:
    """durable-rules cannot build some large rulesets (errors 107, 113): a KB that validates must
    also evaluate, giving the same advice as the plain comparison it is equivalent to."""
    _rewrite_rule(kb_copy, SHAPES[shape])
    check = run("validate", "--rules", kb_copy)
    assert_no_traceback(check)
    if check.rc != 0:
        assert check.rc == KB_REJECT_EXIT, check
        assert _located(check.both, RULE_FILE), f"rejection not located at {RULE_FILE}:LINE:COL"
        return
    result = _evaluate(kb_copy, tmp_path)
    assert result["status"] != "error", f"validate passed, then every patient errors: {result['errors'][:1]}"
    assert result["advice"] == baseline_advice


@pytest.mark.parametrize("shape", sorted(PATHOLOGICAL))
def test_pathological_nesting_is_a_located_error(kb_copy: Path, shape: str) -> None:
    """Nesting past Python's recursion limit must be a located validation error, not a
    RecursionError traceback."""
    _rewrite_rule(kb_copy, PATHOLOGICAL[shape])
    result = run("validate", "--rules", kb_copy)
    assert_no_traceback(result)
    assert result.rc == KB_REJECT_EXIT, result
    assert _located(result.both, RULE_FILE), f"no {RULE_FILE}:LINE:COL in the output"


def test_missing_parameters_file_is_a_named_error(kb_copy: Path) -> None:
    """Without parameters.yaml every {param: ...} dangles: say so, do not KeyError."""
    (kb_copy / "parameters.yaml").unlink()
    result = run("validate", "--rules", kb_copy)
    assert_no_traceback(result)
    assert result.rc == KB_REJECT_EXIT, result
    assert "parameters.yaml" in result.both, "the missing file is not named"
