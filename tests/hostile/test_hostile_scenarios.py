"""Malformed scenario files (rules/tests/*.yaml): `validate` and `test` report each problem at
its file:line:col with a hint, through the one error type; never a crash, never a silent pass.

Before, `remove: ["not-a-pointer"]`, `remove: 5`, `remove: [5]` and `expect: 5` ended both
commands in `error[internal] IndexError/TypeError/AttributeError` (exit 3); `fired: ID` (a
string) was read letter by letter and `fired: [NO-SUCH-RULE]` passed validate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hostile_support import RULES, assert_no_traceback, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsgs_kb.engine.errors import KBErrors
from fsgs_kb.engine.load.scenario_files import load_cases

HEADER = "# yaml-language-server: $schema=../../schema/scenario.schema.json\nrule: CSA-MONITOR-BP\ncases:\n"
CASE = "  - name: extra\n    base: adult_on_csa\n"
FIRES = "    expect: {fired: [CSA-MONITOR-BP]}\n"
POINTER_HINT = "A JSON pointer to a field of the patient record, starting with '/', e.g. /serum_creatinine/baseline"

# name: (what follows `base:` in the one case of tests/EXTRA.yaml, the one error line expected)
DEFECTS: dict[str, tuple[str, str]] = {
    "remove-not-a-pointer": (
        '    remove: ["not-a-pointer"]\n' + FIRES,
        "6:14: error[schema.invalid] /cases/0/remove/0: 'not-a-pointer' is not written in the form this field "
        f"takes (hint: {POINTER_HINT})",
    ),
    "remove-a-number": (
        "    remove: 5\n" + FIRES,
        "6:13: error[schema.invalid] /cases/0/remove: 5 is not of type 'array' (hint: Fields to take away from the "
        "patient, as a list of JSON pointers, e.g. [/serum_creatinine])",
    ),
    "remove-a-list-of-numbers": (
        "    remove: [5]\n" + FIRES,
        f"6:14: error[schema.invalid] /cases/0/remove/0: 5 is not of type 'string' (hint: {POINTER_HINT})",
    ),
    "remove-an-unknown-field": (
        "    remove: [/serum_creatinin]\n" + FIRES,
        "6:14: error[scenario.unknown_field] /serum_creatinin is not a field of the patient record "
        "(hint: did you mean 'serum_creatinine'?)",
    ),
    "remove-inside-a-value": (
        "    remove: [/weight_kg/value]\n" + FIRES,
        "6:14: error[scenario.unknown_field] /weight_kg/value is not a field of the patient record "
        "(hint: /weight_kg is a single value: nothing is inside it)",
    ),
    "expect-a-number": (
        "    expect: 5\n",
        "6:13: error[schema.invalid] /cases/0/expect: 5 is not of type 'object' (hint: What must happen, as a "
        "mapping, e.g. {fired: [CSA-DOSE-EXCEEDS], status: evaluated})",
    ),
    "fired-a-string": (
        "    expect: {fired: CSA-MONITOR-BP}\n",
        "6:21: error[schema.invalid] /cases/0/expect/fired: 'CSA-MONITOR-BP' is not of type 'array' (hint: A list "
        "of rule ids, e.g. [CSA-DOSE-EXCEEDS] (one id too goes in brackets))",
    ),
    "fired-no-such-rule": (
        "    expect: {fired: [NO-SUCH-RULE]}\n",
        "6:22: error[scenario.unknown_rule] no rule NO-SUCH-RULE (hint: name a rule of recommendations/ by its id)",
    ),
    "not-fired-misspelt-rule": (
        "    expect: {not_fired: [CSA-MONITOR-BPP]}\n",
        "6:26: error[scenario.unknown_rule] no rule CSA-MONITOR-BPP (hint: did you mean 'CSA-MONITOR-BP'?)",
    ),
    "undetermined-unknown-rule": (
        "    expect: {undetermined: {CSA-MONITOR-BPX: [/weight_kg]}}\n",
        "6:29: error[scenario.unknown_rule] no rule CSA-MONITOR-BPX (hint: did you mean 'CSA-MONITOR-BP'?)",
    ),
    "undetermined-unknown-field": (
        "    expect: {undetermined: {CSA-MONITOR-BP: [/blood_presure]}}\n",
        "6:46: error[scenario.unknown_field] /blood_presure is not a field of the patient record "
        "(hint: did you mean 'blood_pressure'?)",
    ),
    "unknown-expectation": (
        "    expect: {fire: [CSA-MONITOR-BP]}\n",
        "6:14: error[schema.unknown_field] unknown field 'fire' (hint: did you mean 'fired'?)",
    ),
    "unknown-case-key": (
        "    expected: {fired: [CSA-MONITOR-BP]}\n",
        "6:5: error[schema.unknown_field] unknown field 'expected' (hint: did you mean 'expect'?)",
    ),
    "status-misspelt": (
        "    expect: {status: evaluate}\n",
        "6:22: error[schema.invalid] /cases/0/expect/status: 'evaluate' is not one of ['evaluated', "
        "'out_of_scope', 'scope_undetermined', 'invalid', 'error'] (hint: did you mean 'evaluated'?)",
    ),
    "unknown-base": (
        "    patient: {age_years: 30}\n" + FIRES,
        "",  # the base is replaced below
    ),
    "second-case-of-the-same-name": (
        FIRES + CASE + FIRES,
        "7:11: error[scenario.duplicate_name] a second case named 'extra' (hint: give each case of a file its "
        "own name: the test id is FILE::NAME)",
    ),
}


def _scenario_file(defect: str) -> str:
    body, _ = DEFECTS[defect]
    case = CASE.replace("adult_on_csa", "adult_on_cs") if defect == "unknown-base" else CASE
    return HEADER + case + body


def _expected(defect: str) -> str:
    if defect == "unknown-base":
        return (
            "5:11: error[scenario.unknown_base] unknown base patient 'adult_on_cs' (hint: did you mean 'adult_on_csa'?)"
        )
    return DEFECTS[defect][1]


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_a_malformed_scenario_is_one_located_error(kb_copy: Path, defect: str) -> None:
    (kb_copy / "tests" / "EXTRA.yaml").write_text(_scenario_file(defect), encoding="utf-8")
    want = f"{kb_copy}/tests/EXTRA.yaml:{_expected(defect)}"
    checked = run("validate", "--rules", kb_copy)
    assert_no_traceback(checked)
    assert checked.rc == 1, checked
    assert [line for line in checked.out.splitlines() if "error[" in line] == [want]
    tested = run("test", "--rules", kb_copy)
    assert_no_traceback(tested)
    assert tested.rc == 2, tested
    assert [line for line in tested.err.splitlines() if "error[" in line] == [want]


def test_a_malformed_bases_file_is_located_and_hides_no_other_file(kb_copy: Path) -> None:
    """tests/_bases.yaml has its own schema; its problem does not stop another file's from being
    reported (and cases naming a base are not all reported again)."""
    bases = kb_copy / "tests" / "_bases.yaml"
    bases.write_text(bases.read_text(encoding="utf-8").replace("  adult_on_csa:\n", "  Adult On CSA:\n"))
    (kb_copy / "tests" / "EXTRA.yaml").write_text(_scenario_file("fired-no-such-rule"), encoding="utf-8")
    checked = run("validate", "--rules", kb_copy, "--format", "json")
    assert_no_traceback(checked)
    assert checked.rc == 1, checked
    found = [(Path(e["file"]).name, e["code"], e["pointer"]) for e in json.loads(checked.out)["errors"]]
    assert found == [
        ("EXTRA.yaml", "scenario.unknown_rule", "/cases/0/expect/fired/0"),
        ("_bases.yaml", "schema.invalid", "/bases/Adult On CSA"),  # its name: at the key, which the pointer names
    ]


def test_the_bundled_scenario_files_are_clean_and_declare_their_schema() -> None:
    checked = run("validate", "--rules", RULES, "--format", "json")
    assert checked.rc == 0 and json.loads(checked.out)["errors"] == [], checked


# In process: whatever a case holds, loading the files raises KBErrors or gives cases, nothing else.
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12), st.sampled_from(["/", "/x", ""]))
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)
_EXPECT_KEYS = st.sampled_from(["fired", "not_fired", "undetermined", "errors", "advice", "status", "x"])
_EXPECT = st.one_of(_VALUES, st.dictionaries(_EXPECT_KEYS, _VALUES, max_size=3))
_CASES = st.lists(
    st.one_of(
        _VALUES,
        st.fixed_dictionaries(
            {"name": _VALUES, "expect": _EXPECT},
            optional={"remove": _VALUES, "base": _VALUES, "patient": _VALUES, "other": _VALUES},
        ),
    ),
    max_size=3,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=st.one_of(_VALUES, st.fixed_dictionaries({"cases": _CASES}, optional={"rule": _VALUES})))
def test_load_cases_never_crashes(tmp_path: Path, document: Any) -> None:
    tests_dir = tmp_path / "tests"
    tests_dir.mkdir(exist_ok=True)
    (tests_dir / "_bases.yaml").write_text("bases:\n  adult_on_csa: {age_years: 45}\n", encoding="utf-8")
    (tests_dir / "X.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    try:
        load_cases(tests_dir, rule_ids={"CSA-MONITOR-BP"})
    except KBErrors as exc:
        assert exc.errors and all(e.file and e.line for e in exc.errors), exc.errors
