"""Exact three-valued semantics (clinical-notes §4.1), checked by brute force.

A complete generated record loses one to three of its inputs. Each removed input is filled
again from a grid that covers every threshold it meets on both sides (directly, or through a
derived value such as the dose per kg, found by bisection), its schema bounds, and its
neighbours' values; a filled value counts only when it is consistent with the values present.
The engine's outcome for every rule must be the common outcome of all those completions
(`undetermined` when they disagree), and its `missing` must be exactly the removed inputs whose
value can change the outcome with the others fixed. (A rule that asks whether an input is
recorded, such as "steroid weeks absent", is decided by the record itself: it is skipped for
that input, and its scenarios test it.)
"""

from __future__ import annotations

import copy
import itertools
from fractions import Fraction
from typing import Any

from generate import iter_cohort
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import fsgs_kb
from fsgs_kb.engine.compile.exact_form import Node, Presence
from fsgs_kb.engine.evaluate.exact import Domains
from fsgs_kb.engine.evaluate.patient import validate_patient
from fsgs_kb.engine.intervals import exact_number
from fsgs_kb.engine.load.fields import FieldInfo, catalogue
from fsgs_kb.engine.model import Const

KB = fsgs_kb.load()
FIELDS = catalogue()
EVALUATION = KB.evaluation

AGES = [0, 5, 17.9, 18, 18.1, 45, 70, 70.1, 120]
records = st.fixed_dictionaries(
    {
        "id": st.just("exact"),
        "age_years": st.sampled_from(AGES),
        "weight_kg": st.sampled_from([0.5, 20, 70, 300]),
        "fsgs": st.fixed_dictionaries(
            {
                "biopsy_proven": st.sampled_from([True, True, True, False]),
                "etiology": st.sampled_from(["primary", "primary", "primary", "primary", "secondary", "undetermined"]),
            }
        ),
        "steroids": st.fixed_dictionaries(
            {
                "response": st.sampled_from(["not_treated", "sensitive", "dependent", "resistant", "resistant"]),
                "high_dose_weeks": st.sampled_from([0, 4, 6, 10, 16, 20]),
            }
        ),
        "gc_toxicity_risk_factors": st.sampled_from([[], ["obesity"], ["uncontrolled_diabetes"]]),
        "cyclosporine": st.fixed_dictionaries(
            {
                "status": st.sampled_from(["never", "current", "current", "stopped"]),
                "daily_dose": st.fixed_dictionaries(
                    {
                        "value": st.sampled_from([3, 5, 5.1, 350, 357, 1600]),
                        "unit": st.sampled_from(["mg/day", "mg/kg/day"]),
                    }
                ),
                "months_on_therapy": st.sampled_from([0, 6, 11.9, 12, 24]),
                "best_response": st.sampled_from(["complete_remission", "partial_remission", "no_response"]),
            }
        ),
        "disease_status": st.sampled_from(["nephrotic", "partial_remission", "complete_remission", "relapse"]),
        "serum_creatinine": st.fixed_dictionaries(
            {
                "current": st.sampled_from([0.9, 1.17, 1.3, 9000]),
                "baseline": st.sampled_from([0.9, 1.0, 8000]),
                "unit": st.just("mg/dL"),
            }
        ),
        "blood_pressure": st.fixed_dictionaries(
            {
                "systolic_mmHg": st.sampled_from([110, 119, 120, 150]),
                "diastolic_mmHg": st.sampled_from([60, 96, 125]),
                "percentile_for_age": st.sampled_from([50, 89, 90, 99]),
            }
        ),
        "kidney_function": st.fixed_dictionaries(
            {
                "egfr": st.sampled_from([12, 39.9, 40, 90]),
                "creatinine_clearance": st.sampled_from([38, 60]),
                "unit": st.just("mL/min/1.73m2"),
            }
        ),
        "proteinuria": st.fixed_dictionaries(
            {
                "value": st.sampled_from([0.4, 1.9, 2, 3.5, 3.6, 150, 200, 350, 351]),
                "unit": st.sampled_from(["g/day", "g/g", "mg/mmol"]),
            }
        ),
        "other_immunosuppressants": st.sampled_from(
            [[], [{"drug": "tacrolimus", "status": "past"}], [{"drug": "mycophenolate", "status": "current"}]]
        ),
    }
)


def _fix_contradictions(record: dict[str, Any]) -> dict[str, Any]:
    record = copy.deepcopy(record)
    csa = record["cyclosporine"]
    if csa["status"] == "never":
        record["cyclosporine"] = {"status": "never"}
    if record["steroids"]["response"] == "not_treated":
        record["steroids"]["high_dose_weeks"] = 0
    if csa["status"] == "stopped":
        csa["stop_reason"] = "nephrotoxicity" if csa.get("months_on_therapy") in (6, 24) else "taper_completed"
    return record


def _inputs() -> dict[str, list[FieldInfo]]:
    """The record's inputs, by the pointer the engine asks for, with the fields of each."""
    names = {v.name for v in EVALUATION.exact.vars if v.source == "field"}
    for var in EVALUATION.exact.vars:
        if var.source == "derived":
            names |= set(EVALUATION.domains.derived_inputs(KB.model.derived[var.name]))
    out: dict[str, list[FieldInfo]] = {}
    for name in sorted(names):
        info = FIELDS[name]
        out.setdefault(info.missing_pointer, []).append(info)
    return out


INPUTS = _inputs()


def _presence_pointers(form: Any) -> set[str]:
    if isinstance(form, Presence):
        return {FIELDS[form.name].missing_pointer} if form.source == "field" else set()
    if isinstance(form, Node):
        return set().union(*(_presence_pointers(i) for i in form.items))
    return set()


PRESENCE = {rid: _presence_pointers(form) for rid, form in EVALUATION.exact.rules.items()}


def _get(record: dict[str, Any], keys: tuple[str, ...]) -> Any:
    node: Any = record
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _set(record: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    node = record
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def _remove(record: dict[str, Any], pointer: str) -> None:
    parts = pointer.split("/")[1:]
    node = record
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            return
        node = node[part]
    node.pop(parts[-1], None)


def _number(value: Fraction) -> float | int:
    return int(value) if value.denominator == 1 else float(value)


def _derived_value(record: dict[str, Any], name: str) -> Any:
    values = EVALUATION.values_of(record)
    return KB.evaluator.derive(values)[name].value


def _crossings(record: dict[str, Any], info: FieldInfo, low: float, high: float) -> set[float]:
    """Values of a numeric input at which a derived value it feeds meets one of its thresholds."""
    out: set[float] = set()
    for var in EVALUATION.exact.vars:
        if var.source != "derived" or info.path not in EVALUATION.domains.derived_inputs(KB.model.derived[var.name]):
            continue
        thresholds = {c.lo for c in var.cells if c.lo is not None}
        for threshold in thresholds:
            trial = copy.deepcopy(record)

            def at(x: float, trial: dict[str, Any] = trial, name: str = var.name) -> Any:
                _set(trial, info.keys, x)
                return _derived_value(trial, name)

            a, b = low, high
            fa, fb = at(a), at(b)
            if fa is None or fb is None or (fa - float(threshold)) * (fb - float(threshold)) > 0:
                continue
            for _ in range(80):
                mid = (a + b) / 2
                fm = at(mid)
                if (fm - float(threshold)) * (fa - float(threshold)) > 0:
                    a, fa = mid, fm
                else:
                    b = mid
            out |= {a, b, a * (1 - 1e-9), b * (1 + 1e-9)}
    return out


def _grid(record: dict[str, Any], info: FieldInfo) -> list[Any]:
    """Values for one missing field: enums, both booleans, lists by item class, and numbers at
    their bounds, around every threshold (direct or through a derived value) and around their
    neighbours' values."""
    if info.type == "boolean":
        return [True, False]
    if info.enum and info.type != "array":
        return [v for v in info.enum if v != "unknown"]
    if info.type == "array":
        return [[]] + [[item] for item in info.enum or ()]
    low = float(info.low) if info.low is not None else 0.0
    high = float(info.high) if info.high is not None else 1e4
    if info.exclusive_low:
        low = low + 1e-6
    values = {low, high}
    var = next((v for v in EVALUATION.exact.vars if v.source == "field" and v.name == info.path), None)
    points: set[Fraction] = {c.lo for c in var.cells if c.lo is not None} if var else set()
    parent = _get(record, info.keys[:-1]) if len(info.keys) > 1 else None
    if isinstance(parent, dict):
        points |= {exact_number(v) for k, v in parent.items() if isinstance(v, (int, float)) and k != info.keys[-1]}
    for point in points:
        delta = max(Fraction(1, 10**6), abs(point) / 10**6)
        values |= {float(point - delta), _number(point), float(point + delta)}
    values |= _crossings(record, info, low, high)
    return sorted(v for v in values if low <= v <= high)


def _consistent(present: dict[str, Any], info: FieldInfo, value: Any) -> bool:
    trial = copy.deepcopy(present)
    _set(trial, info.keys, value)
    return not validate_patient(trial)


def _input_options(
    present: dict[str, Any], original: dict[str, Any], pointer: str
) -> list[list[tuple[FieldInfo, Any]]]:
    """Every way to fill one missing input (a group such as the dose's value and unit together)."""
    fields = INPUTS[pointer]
    listed = [info for info in fields if info.item_key is not None]
    if listed:  # a list of objects (drugs taken): none, or one of each kind
        info = listed[0]
        keys = [k for k in ("drug", "status") if k != info.item_key]
        assert info.item_key == "drug" and keys == ["status"]
        return [[(info, [])]] + [[(info, [{"drug": d, "status": "current"}])] for d in info.enum or ()]
    options: list[list[tuple[FieldInfo, Any]]] = [[]]
    for info in sorted(fields, key=lambda i: i.type != "string"):  # units first: the value's grid needs them
        grown = []
        for option in options:
            base = copy.deepcopy(original)
            for known, v in option:
                _set(base, known.keys, v)
            grown += [option + [(info, v)] for v in _grid(base, info)]
        options = grown
    ok = []
    for option in options:
        trial = copy.deepcopy(present)
        for info, value in option:
            _set(trial, info.keys, value)
        if not validate_patient(trial):
            ok.append(option)
    return ok


def _outcomes(record: dict[str, Any]) -> dict[str, str]:
    result = EVALUATION.run_unchecked(record)
    assert result["status"] != "error", (record, result["errors"])
    return {r["id"]: r["outcome"] for r in result["rules"]}


def _base(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": "exact",
        "age_years": 45,
        "weight_kg": 70,
        "fsgs": {"biopsy_proven": True, "etiology": "primary"},
        "steroids": {"response": "resistant", "high_dose_weeks": 10},
        "gc_toxicity_risk_factors": [],
        "cyclosporine": {
            "status": "current",
            "daily_dose": {"value": 350, "unit": "mg/day"},
            "months_on_therapy": 6,
            "best_response": "partial_remission",
        },
        "disease_status": "partial_remission",
        "serum_creatinine": {"current": 1.0, "baseline": 0.9, "unit": "mg/dL"},
        "blood_pressure": {"systolic_mmHg": 150, "diastolic_mmHg": 96, "percentile_for_age": 99},
    }
    for path, value in changes.items():
        _set(record, tuple(path.split("__")), value)
    return record


# The edges of the domains, each where a shortcut would go wrong: the BP above target at any age;
# a missing systolic above a recorded diastolic of 125; 1,600 mg/day above 5 mg/kg/day at any
# weight up to 300 kg; a baseline so high that no current creatinine can be 30 % above it; a
# missing steroid response that cannot be "not treated" after 10 weeks of high-dose steroid.
@example(_base(), ["/age_years"])
@example(_base(blood_pressure__diastolic_mmHg=125), ["/blood_pressure/systolic_mmHg", "/age_years"])
@example(_base(cyclosporine__daily_dose__value=1600), ["/weight_kg"])
@example(_base(serum_creatinine__baseline=8000, serum_creatinine__current=9000), ["/serum_creatinine/current"])
@example(
    _base(cyclosporine__status="never", gc_toxicity_risk_factors=["uncontrolled_diabetes"]), ["/steroids/response"]
)
@example(_base(steroids__high_dose_weeks=16), ["/age_years", "/steroids/response"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(records, st.lists(st.sampled_from(sorted(INPUTS)), min_size=1, max_size=3, unique=True))
def test_outcome_is_the_common_outcome_of_every_completion(record: dict[str, Any], removed: list[str]) -> None:
    original = _fix_contradictions(record)
    assume(not validate_patient(original))
    partial = copy.deepcopy(original)
    for pointer in removed:
        _remove(partial, pointer)
    options = {p: _input_options(partial, original, p) for p in removed}
    assume(all(options.values()))
    assume(1 < len(list(itertools.product(*options.values()))) <= 400)
    result = KB.evaluate(partial)
    assert result["status"] not in ("invalid", "error"), result["errors"]
    got = {r["id"]: r for r in result["rules"]}

    table: list[tuple[tuple[int, ...], dict[str, str]]] = []
    for choice in itertools.product(*(range(len(options[p])) for p in removed)):
        complete = copy.deepcopy(partial)
        for pointer, index in zip(removed, choice, strict=True):
            for info, value in options[pointer][index]:
                _set(complete, info.keys, value)
        table.append((choice, _outcomes(complete)))

    for rule_id, entry in got.items():
        if entry["kind"] == "caveat":
            if any(PRESENCE[q] & set(removed) for q in KB.model.rules[rule_id].qualifies):
                continue  # it follows advice that asks whether a removed input is recorded (see above)
            # never undetermined: fired when a qualified advice fired (so in every completion too)
            # and the caveat holds in every completion
            qualified = [q for q in KB.model.rules[rule_id].qualifies if got[q]["outcome"] == "fired"]
            holds = all(outcomes[rule_id] == "fired" for _, outcomes in table)
            assert entry["outcome"] == ("fired" if qualified and holds else "not_fired"), (rule_id, partial, removed)
            assert entry["missing"] == []
            continue
        if PRESENCE[rule_id] & set(removed):
            continue  # a rule that asks whether an input is recorded is decided by the record
        seen = {outcomes[rule_id] for _, outcomes in table}
        # a completion may still lack an input the record never had (a status of `never`
        # completed to `current` has no dose): then it is undetermined, and so is the record
        expected = seen.pop() if len(seen) == 1 else "undetermined"
        assert entry["outcome"] == expected, (rule_id, partial, removed, entry["outcome"], expected)
        relevant = []
        for i, pointer in enumerate(removed):
            by_rest: dict[tuple[int, ...], set[str]] = {}
            for choice, outcomes in table:
                by_rest.setdefault(choice[:i] + choice[i + 1 :], set()).add(outcomes[rule_id])
            if any(len(s) > 1 for s in by_rest.values()):
                relevant.append(pointer)
        if expected != "undetermined":
            assert entry["missing"] == []
            continue
        named = sorted(m for m in entry["missing"] if m in removed)
        if all(outcomes[rule_id] != "undetermined" for _, outcomes in table):
            assert named == sorted(relevant), (rule_id, partial, entry["missing"], relevant)
        else:
            assert set(relevant) <= set(named), (rule_id, partial, entry["missing"], relevant)


def test_finding_1_bp_above_target_whatever_the_age() -> None:
    record = {
        "id": "bp",
        "fsgs": {"biopsy_proven": True, "etiology": "primary"},
        "cyclosporine": {"status": "current"},
        "blood_pressure": {"systolic_mmHg": 150, "diastolic_mmHg": 96, "percentile_for_age": 99},
    }
    result = KB.evaluate(record)
    assert "CSA-BP-ABOVE-TARGET" in result["advice"]
    entry = next(r for r in result["rules"] if r["id"] == "CSA-BP-ABOVE-TARGET")
    assert entry["missing"] == []
    below = copy.deepcopy(record)
    below["blood_pressure"]["percentile_for_age"] = 50
    result = KB.evaluate(below)
    entry = next(r for r in result["rules"] if r["id"] == "CSA-BP-ABOVE-TARGET")
    assert entry["outcome"] == "undetermined" and entry["missing"] == ["/age_years"]


def test_a_category_case_value_is_inlined() -> None:
    """age_group is chosen by cases with constant values, so it is inlined, not a variable."""
    spec = KB.model.derived["age_group"]
    assert all(isinstance(v, Const) for _, v in spec.cases)
    assert not any(v.source == "derived" and v.name == "age_group" for v in EVALUATION.exact.vars)


def test_memoised_cells_of_missing_derived_values_are_the_cells_worked_out_afresh() -> None:
    """The possible cells of a missing numeric derived value are remembered under a key of what
    they depend on (`Domains.derived_cells`: its inputs and the constraint values that narrow
    them, `constraint_indices`); a key that left something out would hand one record another's
    cells, in the reference and the compiled evaluator alike. Cohort records lose each input of
    each derived value in turn (the others, and the constraints, vary from record to record);
    the cells through one memo equal the cells of a memo emptied first."""
    shared, fresh = Domains(EVALUATION.exact), Domains(EVALUATION.exact)
    derived_vars = [(i, v) for i, v in enumerate(EVALUATION.exact.vars) if v.source == "derived"]
    inputs = {v.name: EVALUATION.domains.derived_inputs(KB.model.derived[v.name]) for _, v in derived_vars}
    narrowed = 0
    for patient in iter_cohort(300, seed=5, invalid_rate=0.0):
        for i, var in derived_vars:
            for path in inputs[var.name]:
                record = copy.deepcopy(patient)
                _remove(record, FIELDS[path].pointer)
                values = EVALUATION.values_of(record)
                derived = KB.evaluator.derive(values, {})
                if derived[var.name].value is not None:
                    continue
                remembered = shared.state(record, values, derived)[i]
                fresh.memo.clear()
                assert remembered == fresh.state(record, values, derived)[i], (var.name, path, record)
                narrowed += len(remembered) < len(var.cells)
    assert narrowed > 100  # records whose present values narrow the missing one
