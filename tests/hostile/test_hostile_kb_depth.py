"""Nesting is bounded where it is read: YAML deeper than 64 levels (yaml.too_deep) and conditions
nested deeper than the compiler supports (rule.too_deep) are located errors, never a
RecursionError."""

from __future__ import annotations

from pathlib import Path

from hostile_kb import EXAMPLE, assert_refused, copy_kb, run_cli, set_when

LEAF = "{field: cyclosporine.status, eq: current}"


def not_chain(depth: int) -> str:
    condition = LEAF
    for _ in range(depth):
        condition = "{not: " + condition + "}"
    return condition


def test_yaml_nested_a_thousand_deep(tmp_path: Path) -> None:
    kb = copy_kb(tmp_path / "rules")
    set_when(kb, "CSA-MONITOR-BP", "  all: [" + "[" * 1000 + "]" * 1000 + "]\n")
    proc = run_cli("validate", "--rules", "rules", cwd=tmp_path)
    assert_refused(proc, "yaml.too_deep", "rules/recommendations/CSA-MONITOR-BP.yaml:8", 1)
    proc = run_cli("evaluate", "--rules", "rules", str(EXAMPLE), cwd=tmp_path)
    assert_refused(proc, "yaml.too_deep", "rules/recommendations/CSA-MONITOR-BP.yaml:8", 2)


def test_a_not_chain_300_deep(tmp_path: Path) -> None:
    kb = copy_kb(tmp_path / "rules")
    set_when(kb, "CSA-MONITOR-BP", f"  all: [{not_chain(300)}]\n")
    proc = run_cli("validate", "--rules", "rules", cwd=tmp_path)
    assert_refused(proc, "yaml.too_deep", "rules/recommendations/CSA-MONITOR-BP.yaml:8", 1)


def test_a_condition_deeper_than_the_compiler_supports(tmp_path: Path) -> None:
    kb = copy_kb(tmp_path / "rules")
    set_when(kb, "CSA-MONITOR-BP", f"  all: [{not_chain(20)}]\n")
    proc = run_cli("validate", "--rules", "rules", cwd=tmp_path)
    assert_refused(proc, "rule.too_deep", "rules/recommendations/CSA-MONITOR-BP.yaml:8", 1)


def test_a_deep_derived_condition(tmp_path: Path) -> None:
    kb = copy_kb(tmp_path / "rules")
    derived = kb / "derived.yaml"
    text = derived.read_text(encoding="utf-8")
    old = "        - field: fsgs.biopsy_proven\n          in: {param: in_scope_biopsy_proven}\n"
    assert old in text
    derived.write_text(text.replace(old, f"        - {not_chain(14)}\n"), encoding="utf-8")
    proc = run_cli("validate", "--rules", "rules", cwd=tmp_path)
    assert_refused(proc, "rule.too_deep", "rules/derived.yaml", 1)


def test_a_deep_scenario_file(tmp_path: Path) -> None:
    kb = copy_kb(tmp_path / "rules")
    (kb / "tests" / "ZZ-DEEP.yaml").write_text("cases: " + "[" * 500 + "]" * 500 + "\n", encoding="utf-8")
    proc = run_cli("validate", "--rules", "rules", cwd=tmp_path)
    assert_refused(proc, "yaml.too_deep", "rules/tests/ZZ-DEEP.yaml:1", 1)
    proc = run_cli("test", "--rules", "rules", cwd=tmp_path)
    assert "Traceback" not in proc.stdout + proc.stderr and proc.returncode == 2
