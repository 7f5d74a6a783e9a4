"""`validate` proves the knowledge base can run: conditions beyond durable-rules' fixed limits are
located errors (compile.engine_limit), and the real core is asked, in a child process that may
crash or hang without taking validate along (compile.engine_rejected)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hostile_kb import EXAMPLE, assert_refused, copy_kb, run_cli, set_when

from fsgs_kb.engine.check.validate import validate_dir
from fsgs_kb.engine.compile import durable
from fsgs_kb.engine.compile.durable import DurableRulesets, probe
from fsgs_kb.engine.compile.proof import prove
from fsgs_kb.engine.load.paths import locate_rules

AGE = "{field: age_years, gt: {param: child_age_cutoff_years}}"
DOSE = "{derived: dose_mg_per_kg_day, gt: {param: max_daily_dose}}"
LEAF = "{field: cyclosporine.status, eq: current}"
WHERE = "rules/recommendations/CSA-MONITOR-BP.yaml:8:3"  # the rule's `when`


def nested_any_all(depth: int) -> str:
    condition = LEAF
    for i in range(depth):
        condition = f"{{{'any' if i % 2 else 'all'}: [{condition}, {AGE if i % 3 else DOSE}]}}"
    return condition


def test_any_all_nested_16_deep(tmp_path: Path) -> None:
    kb = copy_kb(tmp_path / "rules")
    set_when(kb, "CSA-MONITOR-BP", f"  all: [{{derived: in_scope, eq: true}}, {nested_any_all(16)}]\n")
    proc = run_cli("validate", "--rules", "rules", cwd=tmp_path)
    assert_refused(proc, "rule.too_deep", "rules/recommendations/CSA-MONITOR-BP.yaml:8", 1)


def _refused_or_runs(tmp_path: Path, error: str) -> None:
    """The compiler may rewrite a condition into a form the core runs (the exact three-valued
    compiler merges equivalent alternatives); what may never happen is a KB that validates and
    then gives every patient `error`. Either validate refuses it, located, naming the core's
    error, and evaluate refuses it too; or both succeed and the patient is evaluated."""
    proc = run_cli("validate", "--rules", "rules", cwd=tmp_path)
    if proc.returncode != 0:
        assert_refused(proc, "compile.engine_limit", WHERE, 1)
        assert error in proc.stdout
        proc = run_cli("evaluate", "--rules", "rules", str(EXAMPLE), cwd=tmp_path)  # refused, not `error` per patient
        assert_refused(proc, "compile.engine_limit", WHERE, 2)
        return
    assert " 0 error(s)" in proc.stdout, proc.stdout
    proc = run_cli("evaluate", "--rules", "rules", str(EXAMPLE), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "evaluated"


def test_sixteen_groups_side_by_side_error_113(tmp_path: Path) -> None:
    """Shallow, but 16 all/any groups in one pattern: as written, the core refuses it (error 113)."""
    kb = copy_kb(tmp_path / "rules")
    groups = ", ".join(f"{{any: [{AGE}, {DOSE}]}}" for _ in range(16))
    set_when(kb, "CSA-MONITOR-BP", f"  all: [{{derived: in_scope, eq: true}}, {groups}]\n")
    _refused_or_runs(tmp_path, "error 113")


def test_two_hundred_any_conditions_error_303(tmp_path: Path) -> None:
    kb = copy_kb(tmp_path / "rules")
    items = ", ".join(AGE if i % 2 else DOSE for i in range(200))
    set_when(kb, "CSA-MONITOR-BP", f"  all: [{{derived: in_scope, eq: true}}, {{any: [{items}]}}]\n")
    _refused_or_runs(tmp_path, "error 303")


def test_two_hundred_distinct_conditions_are_refused_or_run(tmp_path: Path) -> None:
    """200 alternatives the compiler cannot merge (each its own threshold)."""
    kb = copy_kb(tmp_path / "rules")
    items = ", ".join(f"{{field: age_years, gt: {i}}}" for i in range(200))
    set_when(kb, "CSA-MONITOR-BP", f"  all: [{{derived: in_scope, eq: true}}, {{any: [{items}]}}]\n")
    proc = run_cli("validate", "--rules", "rules", cwd=tmp_path)
    if proc.returncode != 0:
        assert "Traceback" not in proc.stdout + proc.stderr and "error[" in proc.stdout, proc.stdout
        return
    proc = run_cli("evaluate", "--rules", "rules", str(EXAMPLE), cwd=tmp_path)
    assert proc.returncode == 0 and json.loads(proc.stdout)["status"] == "evaluated", proc.stdout[-500:]


def test_a_rule_within_the_limits_validates_and_runs(tmp_path: Path) -> None:
    """The limits are not over-cautious for real rules: 12 alternatives and 11 nested groups run."""
    kb = copy_kb(tmp_path / "rules")
    items = ", ".join(AGE if i % 2 else DOSE for i in range(12))
    set_when(
        kb, "CSA-MONITOR-BP", f"  all: [{{derived: in_scope, eq: true}}, {{any: [{items}]}}, {nested_any_all(11)}]\n"
    )
    proc = run_cli("validate", "--rules", "rules", cwd=tmp_path)
    assert proc.returncode == 0 and " 0 error(s)" in proc.stdout, proc.stdout + proc.stderr
    proc = run_cli("evaluate", "--rules", "rules", str(EXAMPLE), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "evaluated"


def test_an_exponent_threshold_reaches_the_core_intact() -> None:
    """0.00001 is `1e-05` to Python and error 204 to the core: rulesets are written for the core."""
    rules = {
        "a|T": {"all": [{"m": {"$and": [{"k": 1}, {"$gt": {"x": 1e-05}}]}}]},
        "a|F": {"all": [{"m": {"$and": [{"k": 1}, {"$lte": {"x": 1e-05}}]}}]},
    }
    assert probe(((rules,),)) == []
    assert DurableRulesets(((rules,),), "exponent").fire(0, {"x": 0.5}) == {"a|T"}


def test_the_probe_finds_what_the_core_refuses() -> None:
    wide = {"w|T": {"all": [{"m": {"$or": [{"$gte": {"x": i}} for i in range(70)]}}]}}
    failures = probe(((wide,),))
    assert [f.rules for f in failures] == [("w|T",)] and "303" in failures[0].message


def test_a_crash_of_the_core_does_not_take_validate_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child that talks to the core dies of SIGSEGV after announcing a step: validate reports
    compile.engine_rejected at the rules of that step and carries on. (The child stands in for a
    crashing core: the real core's crashes need heap states no ruleset of ours reaches.)"""
    crash = (
        "import json, os, signal, sys\n"
        "request = json.load(sys.stdin)\n"
        "print(json.dumps({'step': 'create', 'level': 0, 'chunk': 0, 'rules': list(request['levels'][0][0][1]),"
        " 'fact': None}), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGSEGV)\n"
    )
    monkeypatch.setattr(durable, "_CHILD", crash)
    report = prove(validate_dir(locate_rules(None).path))
    rejected = [e for e in report.errors if e.code == "compile.engine_rejected"]
    assert rejected and all("crashed (SIGSEGV)" in e.message for e in rejected)
    assert all(e.file and e.line and e.pointer.endswith(("/when", "/condition")) for e in rejected)


def test_a_hanging_core_is_timed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(durable, "_CHILD", "import time\ntime.sleep(60)\n")
    failures = probe(((({"a|T": {"all": [{"m": {"x": 1}}]}}),),), timeout=1)
    assert len(failures) == 1 and "did not answer within 1 s" in failures[0].message
