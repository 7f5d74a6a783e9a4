"""Realistic editing mistakes made in a copy of rules/, and what the editor's commands say of them:
each named at the file, line and column where the fix goes, with how to fix it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from fsgs_kb.cli import main


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.fixture
def rules(kb_copy: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The copy, as `rules` in the working directory, so that errors name rules/…"""
    monkeypatch.chdir(kb_copy.parent)
    return kb_copy


@pytest.mark.parametrize(
    ("folder", "name"),
    [
        ("recommendations", "CSA-DOSE-EXCEEDS"),
        ("tests", "CSA-DOSE-EXCEEDS"),
        ("sources", "cattran-2003"),
    ],
)
def test_a_file_saved_as_yml_is_an_error_not_silently_skipped(rules: Path, folder: str, name: str) -> None:
    """Only *.yaml is read. A rule saved as .yml vanished (every case naming it got 'did you mean
    CSA-DUR-EXCEEDS?'), and a scenario file saved as .yml or .YAML never ran while `test` passed.
    Each is an error at the file, with the name it needs; a validated KB cached before the file
    appeared is not taken for this one."""
    assert run("validate", "--rules", "rules")[0] == 0  # cached: clean
    shutil.copy(rules / folder / f"{name}.yaml", rules / folder / "NEW-FILE.yml")
    code, output = run("validate", "--rules", "rules")
    assert code == 1 and "rules/" + folder + "/NEW-FILE.yml:1:1: error[load.yml_name]" in output, output
    (rules / folder / f"{name}.yaml").rename(rules / folder / f"{name}.YAML")
    code, output = run("validate", "--rules", "rules")
    assert code == 1, output
    for bad in ("NEW-FILE.yml", f"{name}.YAML"):
        assert (
            f"rules/{folder}/{bad}:1:1: error[load.yml_name] {bad} is not read: only files named *.yaml are "
            f"(hint: rename it to {bad.split('.')[0]}.yaml)"
        ) in output
    code, output = run("test", "--rules", "rules")
    assert code == 2 and "error[load.yml_name]" in output, output


def test_a_required_file_saved_as_yml_is_named_in_the_hint(rules: Path) -> None:
    (rules / "parameters.yaml").rename(rules / "parameters.yml")
    code, output = run("validate", "--rules", "rules")
    assert code == 1
    assert (
        "error[kb.missing_file] no parameters.yaml in the rules directory (the thresholds rules compare with) "
        "(hint: rename parameters.yml to parameters.yaml: only files named *.yaml are read)"
    ) in output


@pytest.mark.parametrize(
    ("file", "old", "new", "at"),
    [
        ("sources/cattran-2003.yaml", "  S5: >-", "  S5a: >-", "/sentences: 'S5a'"),
        ("parameters.yaml", "  max_duration_months:", "  Max-Duration:", "/parameters: 'Max-Duration'"),
        ("derived.yaml", "  age_group:", "  age-group:", "/derived: 'age-group'"),
        ("tests/_bases.yaml", "  child_on_csa:", "  Child-On-CSA:", "/bases: 'Child-On-CSA'"),
    ],
)
def test_a_name_out_of_its_form_is_located_at_that_name(rules: Path, file: str, old: str, new: str, at: str) -> None:
    """A sentence id renumbered S5a, a parameter renamed with dashes: the error named the
    mapping's first key (sentence T, line 24, for S5a on line 38), so the editor looked at a
    line that was right. It is at the name itself."""
    path = rules / file
    lines = path.read_text(encoding="utf-8").splitlines()
    line = lines.index(old) + 1
    path.write_text(path.read_text(encoding="utf-8").replace(old + "\n", new + "\n", 1), encoding="utf-8")
    code, output = run("validate", "--rules", "rules")
    assert code in (1, 2)
    assert f"rules/{file}:{line}:3: error[schema.invalid] {at} is not written in the form this field takes" in output


@pytest.mark.parametrize(
    ("copy", "hint"),
    [
        ("CSA-DOSE-EXCEEDS copy.yaml", "give each rule its own id; ids are stable forever"),
        ("CSA-DOSE-EXCEEDED.yaml", "this file is named CSA-DOSE-EXCEEDED.yaml: give it id CSA-DOSE-EXCEEDED; ids are "),
        ("ABC-NEW.yaml", "this file is named ABC-NEW.yaml: give it id ABC-NEW; ids are stable forever"),
    ],
)
def test_a_copied_rule_with_its_id_left_is_the_duplicate(rules: Path, copy: str, hint: str) -> None:
    """A rule copied to make a new one, its id left as it was: the error is at the copy, whatever
    its name sorts as. 'CSA-DOSE-EXCEEDS copy.yaml' sorts before the original, which was told
    that its id was taken by the copy."""
    folder = rules / "recommendations"
    shutil.copy(folder / "CSA-DOSE-EXCEEDS.yaml", folder / copy)
    code, output = run("validate", "--rules", "rules")
    assert code == 1
    assert (
        f"rules/recommendations/{copy}:2:5: error[rule.duplicate_id] rule id 'CSA-DOSE-EXCEEDS' is already used by "
        f"rules/recommendations/CSA-DOSE-EXCEEDS.yaml (hint: {hint}"
    ) in output
    assert "rules/recommendations/CSA-DOSE-EXCEEDS.yaml:2:5: error" not in output


def test_a_rule_expected_in_two_outcomes_is_an_error_where_written(rules: Path) -> None:
    """A case copied and half edited, expecting a rule both fired and undetermined (or a rule of
    `advice` also under `not_fired`), can never pass; the run said only 'expected fired, got
    undetermined'. It is an error at the second mention, before anything runs; a missing field
    listed twice is the schema's error."""
    path = rules / "tests" / "CSA-DOSE-EXCEEDS.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace(
        "expect: {undetermined: {CSA-DOSE-WITHIN: [/weight_kg], CSA-DOSE-EXCEEDS: [/weight_kg]}}",
        "expect: {undetermined: {CSA-DOSE-WITHIN: [/weight_kg], CSA-DOSE-EXCEEDS: [/weight_kg, /weight_kg]}, "
        "fired: [CSA-DOSE-WITHIN]}",
    )
    text = text.replace(
        "    patient: {cyclosporine: {daily_dose: {value: 5.1, unit: mg/kg/day}}}\n"
        "    expect: {fired: [CSA-DOSE-EXCEEDS], not_fired: [CSA-DOSE-WITHIN]}",
        "    patient: {cyclosporine: {daily_dose: {value: 5.1, unit: mg/kg/day}}}\n"
        "    expect: {not_fired: [CSA-DOSE-WITHIN], advice: [CSA-DOSE-EXCEEDS, CSA-DOSE-WITHIN]}",
    )
    path.write_text(text, encoding="utf-8")
    code, output = run("test", "--rules", "rules")
    assert code == 2
    hint = "(hint: a rule has one outcome per patient: keep the one you mean, or make two cases)"
    assert (
        "rules/tests/CSA-DOSE-EXCEEDS.yaml:16:71: error[scenario.contradiction] CSA-DOSE-WITHIN is expected "
        f"not fired and fired in one case {hint}"
    ) in output
    assert (
        "rules/tests/CSA-DOSE-EXCEEDS.yaml:25:113: error[scenario.contradiction] CSA-DOSE-WITHIN is expected "
        f"undetermined and fired in one case {hint}"
    ) in output
    assert (  # at the second copy, the one to remove
        "rules/tests/CSA-DOSE-EXCEEDS.yaml:25:91: error[schema.invalid] "
        "/cases/4/expect/undetermined/CSA-DOSE-EXCEEDS/1: '/weight_kg' is listed twice "
        "(also at /cases/4/expect/undetermined/CSA-DOSE-EXCEEDS/0) "
        "(hint: remove this '/weight_kg': each entry once)"
    ) in output


def test_an_invalid_value_of_a_base_patient_is_named_where_it_is_written(rules: Path) -> None:
    """A base patient made invalid (age -45 in tests/_bases.yaml) failed 42 cases, each saying
    'record error /age_years: /age_years: -45 years is out of range': the pointer twice, and no
    line, in a record built from two files. Each record error names the line that writes the
    value: the base's, or the case's own when the case writes it."""
    bases = rules / "tests" / "_bases.yaml"
    line = bases.read_text(encoding="utf-8").splitlines().index("    age_years: 45") + 1
    text = bases.read_text(encoding="utf-8")
    bases.write_text(text.replace("    age_years: 45\n", "    age_years: -45\n", 1), "utf-8")
    scenarios = rules / "tests" / "CSA-DOSE-EXCEEDS.yaml"
    text = scenarios.read_text(encoding="utf-8")
    scenarios.write_text(text.replace("{value: 5.1, unit: mg/kg/day}", "{value: -5.1, unit: mg/kg/day}"), "utf-8")
    code, output = run("test", "--rules", "rules", "-k", "CSA-DOSE-EXCEEDS", "-q")
    assert code == 1
    assert (
        f"  record error /age_years (written at rules/tests/_bases.yaml:{line}:16): "
        "-45 years is out of range (must be ≥ 0 and ≤ 120 years)\n"
    ) in output
    assert (
        "  record error /cyclosporine/daily_dose/value (written at rules/tests/CSA-DOSE-EXCEEDS.yaml:15:50): "
        "-5.1 is out of range"
    ) in output


@pytest.mark.parametrize("folder_too", [False, True])
def test_a_knowledge_base_without_rule_files_says_so_once(rules: Path, folder_too: bool) -> None:
    """Every rule file moved away (or the folder): one error at recommendations/, not one
    `scenario.unknown_rule` per rule each scenario names (205) and a `param.unused` per threshold."""
    for path in (rules / "recommendations").glob("*.yaml"):
        path.unlink()
    if folder_too:
        (rules / "recommendations").rmdir()
    code, output = run("validate", "--rules", "rules")
    assert code == 1
    errors = [line for line in output.splitlines() if "error[" in line or "warning[" in line]
    missing = " (the folder is missing)" if folder_too else ""
    assert errors == [
        f"rules/recommendations: error[kb.no_rules] no rule files in recommendations/{missing}: a knowledge base "
        "without rules advises nothing (hint: put each rule in recommendations/ID.yaml, one rule per file "
        "(rules/README.md))"
    ], output
