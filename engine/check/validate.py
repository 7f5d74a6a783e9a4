"""`validate`: load a knowledge base, run every check, and say how much of the source it covers."""

from __future__ import annotations

from pathlib import Path

from fsgs_kb.engine.check.cases import case_problems
from fsgs_kb.engine.check.checks import Checker, run_checks
from fsgs_kb.engine.check.expansion import expansion_problems
from fsgs_kb.engine.check.links import check_links
from fsgs_kb.engine.check.magnitudes import magnitude_problems
from fsgs_kb.engine.check.maplists import list_settling_problems
from fsgs_kb.engine.check.overflow import overflow_problems
from fsgs_kb.engine.check.prose import literal_thresholds
from fsgs_kb.engine.check.report import ValidationReport
from fsgs_kb.engine.check.static import meaning_problems, untested_problems
from fsgs_kb.engine.check.valid import valid_part
from fsgs_kb.engine.errors import KBError, KBErrors
from fsgs_kb.engine.fhir.checkmap import MAP_FILE, check_map
from fsgs_kb.engine.load.loader import LoadResult, read_rules_dir
from fsgs_kb.engine.load.scenario_files import load_cases, rule_ids_tested


def validate_dir(rules_dir: Path, *, fhir_map: bool = True) -> ValidationReport:
    """Every problem of a rules directory, sorted by file, line and column. fhir_map=False leaves
    out the FHIR map (diff compares knowledge bases; an old revision's map is checked against
    today's patient schema, which it may predate)."""
    load = read_rules_dir(rules_dir)
    problems = list(load.errors)
    # one pass over the model, one catalogue
    checker = Checker(load.model, load.docs, set(load.failed), frozenset(load.broken_derived))
    coverage = run_checks(checker)
    check_links(checker)
    problems.extend(checker.errors)
    problems.extend(literal_thresholds(load.model, load.docs))
    if fhir_map and (rules_dir / MAP_FILE).is_file():  # the FHIR map: schema, references, patient fields
        fmap, map_problems = check_map(rules_dir / MAP_FILE)
        problems.extend(map_problems)
        if fmap is not None:
            problems.extend(list_settling_problems(load.model, load.docs, fmap))
    tested, scenario_errors = _scenarios(rules_dir, load)
    problems.extend(scenario_errors)  # whatever else is wrong: one broken file never hides another's errors
    valid = valid_part(load.model, problems)  # one error hides what reads the part it is in, not the rest
    problems.extend(expansion_problems(valid, load.docs))
    problems.extend(magnitude_problems(valid, load.docs))
    problems.extend(overflow_problems(valid, load.docs))
    problems.extend(meaning_problems(valid, load.docs))
    problems.extend(case_problems(valid, load.docs))
    if tested is not None:
        problems.extend(untested_problems(load.model, load.docs, tested))
    unique = sorted(set(problems), key=KBError.sort_key)
    return ValidationReport(load, unique, coverage)


def _scenarios(rules_dir: Path, load: LoadResult) -> tuple[set[str] | None, list[KBError]]:
    """Which rules the scenario files (rules/tests) exercise (None when they have problems), and
    their problems; the rule ids they name are checked when every rule file loaded."""
    tests_dir = rules_dir / "tests"
    if not tests_dir.is_dir():
        return set(), []
    rule_ids = None if "rule" in load.failed else set(load.model.rules)
    try:
        return rule_ids_tested(load_cases(tests_dir, rule_ids=rule_ids)), []
    except KBErrors as exc:
        return None, exc.errors
