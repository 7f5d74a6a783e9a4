"""The compiled evaluator gives, byte for byte, what the interpreted reference gives: at every
detail level, on generated records (hypothesis), the cohort, every scenario and every example,
through `evaluate` (dicts), `evaluate_json` (bytes) and `encode_record` (the JSON lines batch
writes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from generate import iter_cohort
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fsgs_kb
from fsgs_kb.engine.evaluate.compiled import joined_line
from fsgs_kb.engine.evaluate.output import dumps_bytes
from fsgs_kb.engine.load.fields import catalogue
from fsgs_kb.engine.load.paths import bundled_rules_dir
from fsgs_kb.engine.load.scenario_files import load_cases
from fsgs_kb.engine.read.records import Record

ROOT = Path(__file__).resolve().parent.parent
LEVELS = ("full", "standard", "minimal")
NEAR = st.sampled_from([0, 0.5, 1e-05, 4.99, 5, 5.0, 5.0001, 5.1, 6, 11.9, 12, 12.0, 15.9, 16, 17.9, 18, 29.9, 30, 120])


def _numbers(low: float, high: float) -> st.SearchStrategy[Any]:
    return st.one_of(NEAR, st.floats(low, high, allow_nan=False), st.integers(int(low), int(high)))


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def _record(parts: dict[str, Any]) -> dict[str, Any]:
    def drop(value: Any) -> Any:
        return {k: drop(v) for k, v in value.items() if v is not None} if isinstance(value, dict) else value

    return {"id": "hyp", **drop(parts)}


PATIENTS = st.builds(
    _record,
    st.fixed_dictionaries(
        {
            "age_years": _maybe(_numbers(-1, 125)),
            "weight_kg": _maybe(_numbers(-1, 310)),
            "fsgs": _maybe(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "biopsy_proven": st.booleans(),
                        "etiology": st.sampled_from(["primary", "secondary", "genetic", "undetermined", "unknown"]),
                    },
                )
            ),
            "steroids": _maybe(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "response": st.sampled_from(["not_treated", "sensitive", "dependent", "resistant", "unknown"]),
                        "high_dose_weeks": _numbers(-1, 60),
                    },
                )
            ),
            "gc_toxicity_risk_factors": _maybe(
                st.lists(st.sampled_from(list(catalogue()["gc_toxicity_risk_factors"].enum or ())), unique=True)
            ),
            "cyclosporine": _maybe(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "status": st.sampled_from(["never", "current", "stopped"]),
                        "daily_dose": st.fixed_dictionaries(
                            {"value": _numbers(-1, 900), "unit": st.sampled_from(["mg/day", "mg/kg/day"])}
                        ),
                        "months_on_therapy": _numbers(-1, 40),
                        "best_response": st.sampled_from(
                            ["complete_remission", "partial_remission", "no_response", "not_yet_assessed"]
                        ),
                    },
                )
            ),
            "disease_status": _maybe(
                st.sampled_from(["nephrotic", "partial_remission", "complete_remission", "relapse"])
            ),
            "serum_creatinine": _maybe(
                st.fixed_dictionaries(
                    {"unit": st.sampled_from(["umol/L", "mg/dL"])},
                    optional={"current": _numbers(0, 300), "baseline": _numbers(0, 300)},
                )
            ),
            "blood_pressure": _maybe(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "systolic_mmHg": _numbers(10, 310),
                        "diastolic_mmHg": _numbers(10, 310),
                        "percentile_for_age": _numbers(-1, 101),
                    },
                )
            ),
        }
    ),
)


def same_everywhere(kb: Any, patient: Any, number: int = 1) -> None:
    raw = orjson.dumps(patient)
    record = Record(number, number, raw=raw)
    full = kb.reference_evaluate(patient)  # the interpreted evaluator is pure: once per patient, not per level
    outcomes_of_full = {r["id"]: r["outcome"] for r in full["rules"]}
    for level in LEVELS:
        reference = full if level == "full" else kb.reference_evaluate(patient, detail=level)
        assert orjson.dumps(kb.evaluate(patient, detail=level)) == orjson.dumps(reference), (level, patient)
        assert kb.evaluate_json(patient, detail=level) == orjson.dumps(reference), (level, patient)
        line, status, outcomes = kb.encode_record(record, detail=level)
        assert line == orjson.dumps({"record": number, "line": number, **reference}), (level, patient)
        assert status == reference["status"]
        assert dict(outcomes) == outcomes_of_full
    assert orjson.dumps(patient) == raw, "evaluating changed the record"  # so one reference serves every level


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PATIENTS)
def test_compiled_equals_the_reference_on_generated_records(kb: Any, patient: dict[str, Any]) -> None:
    same_everywhere(kb, patient)


def test_compiled_equals_the_reference_on_the_cohort(kb: Any) -> None:
    for number, patient in enumerate(iter_cohort(1500, seed=77, invalid_rate=0.03), start=1):
        same_everywhere(kb, patient, number)


def test_compiled_equals_the_reference_on_every_scenario_and_example(kb: Any) -> None:
    patients = [case.patient for case in load_cases(bundled_rules_dir() / "tests")]
    patients += [json.loads(path.read_text()) for path in sorted((ROOT / "examples").glob("*.json"))]
    for patient in patients:
        same_everywhere(kb, patient)


def test_options_give_the_same_result_both_ways(kb: Any) -> None:
    patient = json.loads((ROOT / "examples" / "dose-above-ceiling.json").read_text())
    for level in LEVELS:
        options = {"detail": level, "include_input": True, "mask": ("/id",), "timestamp": "2026-11-29T00:00:00Z"}
        assert kb.evaluate(patient, **options) == kb.reference_evaluate(patient, **options)


def test_results_share_nothing_mutable(kb: Any) -> None:
    patient = json.loads((ROOT / "examples" / "dose-above-ceiling.json").read_text())
    first = kb.evaluate(patient)
    expected = orjson.dumps(kb.evaluate(patient))
    for rule in first["rules"]:
        for citation in rule["citations"]:
            citation["quote"] = "edited"
        for caveat in rule.get("caveats", []):
            caveat["provenance"]["kind"] = "edited"
        for shown in rule.get("shown", []):
            shown["unit"] = "edited"
        for cond in rule["conditions"]:
            cond.get("provenance", {})["kind"] = "edited"
            if isinstance(cond["threshold"], list):
                cond["threshold"].append("edited")
            cond.get("missing", []).append("edited")
        for dv in rule["derived"]:
            dv["missing"].append("edited")
            for note in dv.get("policy", []):
                note["provenance"]["kind"] = "edited"
    first["decision"]["kb"]["id"] = "edited"
    assert orjson.dumps(kb.evaluate(patient)) == expected


def _edit_everything(value: Any) -> None:
    """Append to every list and add a key to every dict of a result, at every depth."""
    if isinstance(value, dict):
        for child in list(value.values()):
            _edit_everything(child)
        value["edited"] = True
    elif isinstance(value, list):
        for child in list(value):
            _edit_everything(child)
        value.append("edited")


def test_a_result_shares_nothing_with_the_patient_or_the_next_result(kb: Any) -> None:
    """Review 5 D3: a list-valued condition's `actual` (gc_toxicity_risk_factors) was the
    patient's own list, so editing a result edited the record. Every list and dict of every
    result, at every detail level and from both evaluators, is edited here; the patient and the
    next result stay as they were."""
    paths = sorted((ROOT / "examples").glob("*.json"))
    patients = [json.loads(path.read_text()) for path in paths]
    patients += list(iter_cohort(40, seed=5))
    assert any(isinstance(p.get("gc_toxicity_risk_factors"), list) and p["gc_toxicity_risk_factors"] for p in patients)
    for patient in patients:
        before = orjson.dumps(patient)
        for detail in ("full", "standard", "minimal"):
            for evaluate in (kb.evaluate, kb.reference_evaluate):
                expected = orjson.dumps(evaluate(patient, detail=detail))
                _edit_everything(evaluate(patient, detail=detail))
                assert orjson.dumps(patient) == before, (patient.get("id"), detail)
                assert orjson.dumps(evaluate(patient, detail=detail)) == expected, (patient.get("id"), detail)


def test_the_generated_source_holds_every_comparison(kb: Any) -> None:
    from fsgs_kb.engine.load.conditions import walk

    kb.compiled_evaluator.functions("full")
    source = kb.compiled_evaluator.sources["full"]
    compile(source, "full", "exec")
    for rule in kb.model.rules.values():
        for leaf in walk(rule.when):
            assert repr(leaf.pointer) in source, (rule.id, leaf.pointer)


def test_full_results_are_written_from_encoded_fragments_not_the_fallback(kb: Any) -> None:
    """`run_json` at full detail writes what the knowledge base says from JSON encoded at load;
    should that path fail it falls back to encoding the whole dict (same bytes, slower), so this
    checks the fragment path itself runs and gives the reference's bytes: the rule entries as JSON
    pieces, joined once with the line."""
    evaluator = kb.compiled_evaluator
    for path in sorted((ROOT / "examples").glob("*.json")):
        patient = json.loads(path.read_text())
        decision = kb.evaluation.decision_record(kb.reference_evaluate(patient)["decision"]["input_sha256"], None)
        result, _ = evaluator._evaluate(patient, "full", decision, encoded=True)  # noqa: SLF001 - the path under test
        assert isinstance(result["rules"], list) and all(type(piece) is bytes for piece in result["rules"]), path
        assert joined_line(result) == orjson.dumps(kb.reference_evaluate(patient)), path


def test_remembered_entries_never_cross_values_that_are_equal_but_written_differently(kb: Any) -> None:
    """Condition and derived-value entries are remembered across patients by value (generated
    code, `_derived_json`); Python holds 1 == 1.0 == True and 0.0 == -0.0, which orjson writes
    differently. Each record here follows one whose values compare equal to its own, so a key
    without the value's type (or a float keyed by value, not by its bits) would hand it the other's
    bytes."""
    base = json.loads((ROOT / "examples" / "dose-above-ceiling.json").read_text())
    variants = []
    for age, weeks, dose, months in (
        (45, 8, 300, 6),
        (45.0, 8.0, 300.0, 6.0),
        (45, 8, 300, 6),
        (45.0, 0.0, 300, -0.0),
        (45.0, -0.0, 300, 0.0),
        (45.0, 0, 300, 0),
    ):
        patient = json.loads(json.dumps(base))
        patient["age_years"] = age
        patient.setdefault("steroids", {})["high_dose_weeks"] = weeks
        patient.setdefault("cyclosporine", {}).setdefault("daily_dose", {})["value"] = dose
        patient["cyclosporine"]["months_on_therapy"] = months
        variants.append(patient)
    for patient in variants:  # valid, so that the compiled path (and its memo) is what runs
        assert kb.evaluate(patient)["status"] != "invalid", patient
    for number, patient in enumerate(variants * 2, start=1):
        same_everywhere(kb, patient, number)


def _asserted_texts(kb: Any, patient: dict[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
    """The texts durable-rules is given for a record at each level: (from the generated facts,
    from the wrapper's projection of Evaluation.flat_fact with the earlier levels' outcomes)."""
    from fsgs_kb.engine.compile.durable import fact_json

    ev, evaluator = kb.evaluation, kb.compiled_evaluator
    values = ev.values_of(patient)
    derived = ev.evaluator.derive(values, {})
    state = ev.domains.state(patient, values, derived)
    verdict = ev.decide(ev.flat_fact(values, derived, patient, state))
    generated, reference = [], []
    outcomes: dict[str, str] = {}
    fact = ev.flat_fact(values, derived, patient, state)
    for level, (_, rules) in enumerate(ev.verdict_names):
        made = evaluator._facts[level]  # noqa: SLF001 - the generated function under test
        assert made is not None
        facts = made[0](values, derived, state, outcomes)
        for one in facts:
            one["id"] = 7
        generated.append([fact_json(one) for one in facts])
        fact.update(outcomes)
        reference.append(ev.durable.fact_texts(level, fact, 7))
        for rid, _, _, key in rules:
            outcomes[key] = {True: "T", False: "F", None: "U"}[verdict[rid]]
    return generated, reference


def test_generated_facts_are_the_wrappers_projection_of_the_flat_fact(kb: Any) -> None:
    """engine/evaluate/facts.py builds each ruleset's fact directly; byte for byte what
    DurableRulesets.fact_texts makes of the whole flat fact, on the cohort (missing values,
    lists, derived values from every case) and on every example."""
    patients = [p for p in iter_cohort(600, seed=91, invalid_rate=0.0)]
    patients += [json.loads(path.read_text()) for path in sorted((ROOT / "examples").glob("*.json"))]
    compared = 0
    for patient in patients:
        if kb.evaluate(patient)["status"] not in ("evaluated", "out_of_scope", "scope_undetermined"):
            continue
        generated, reference = _asserted_texts(kb, patient)
        assert generated == reference, patient
        compared += 1
    assert compared > 500


_ANY_NUMBER = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 0.0, -0.0, 5e-324, 1e-7, 1e308, 1.7976931348623157e308, 2**53, 2**53 + 1, 0.1, 1.17]),
)


@settings(max_examples=3000, deadline=None)
@given(_ANY_NUMBER, _ANY_NUMBER)
def test_pair_arithmetic_gives_what_fractions_give(a: Any, b: Any) -> None:
    """The generated derived values compute on (numerator, denominator) pairs, not Fractions; each
    operation, made plain, must be the reference's bit for bit (orjson's bytes tell 1 from 1.0 and
    0.0 from -0.0): division by zero, underflow, integers beyond 2**53; beyond float range both
    refuse (OverflowError in the reference, DerivedOverflow naming the value in the generated code)."""
    from fractions import Fraction

    from fsgs_kb.engine.evaluate import compiled
    from fsgs_kb.engine.evaluate.kleene import exact, plain
    from fsgs_kb.engine.evaluate.overflow import DerivedOverflow

    fa, fb = exact(a), exact(b)
    qa, qb = compiled._q(a), compiled._q(b)  # noqa: SLF001 - the arithmetic under test
    assert Fraction(*qa) == fa and Fraction(*qb) == fb and qa[1] > 0

    def same(pair: Any, reference: Any) -> None:
        if reference is None:
            assert pair is None
            return
        try:
            expected = orjson.dumps(plain(reference))
        except OverflowError:  # beyond float range: the generated code names the derived value
            with pytest.raises(DerivedOverflow) as raised:
                compiled._qplain(pair, "d", 2)  # noqa: SLF001
            assert (raised.value.name, raised.value.case) == ("d", 2)
            return
        assert orjson.dumps(compiled._qplain(pair, "d", None)) == expected, (a, b)  # noqa: SLF001

    same(compiled._qdiv(qa, qb), fa / fb if fb else None)  # noqa: SLF001
    same(compiled._qpct(qa, qb), (fb - fa) / fa * 100 if fa else None)  # noqa: SLF001
    same((qa[0] * qb[0], qa[1] * qb[1]), fa * fb)
    same((qa[0] * qb[1] - qb[0] * qa[1], qa[1] * qb[1]), fa - fb)


def test_a_derived_value_of_thousands_of_comparisons_is_worded_as_the_reference_words_it(kb_copy: Path) -> None:
    """A derived `any` of 1,600 comparisons: its account was generated as one chain of `+` over
    ~3,200 pieces, more than CPython's compiler recurses through, and every record at full and
    standard detail came back an `eval.internal` error (review of session 10). The pieces are
    now joined once."""
    comparison = "        - field: age_years\n          lt: {param: child_age_cutoff_years}\n"
    derived = kb_copy / "derived.yaml"
    wide = "\n  wide_any:\n    title: Many comparisons\n    unit: none\n    condition:\n      any:\n"
    derived.write_text(derived.read_text(encoding="utf-8") + wide + comparison * 1600, encoding="utf-8")
    rule = kb_copy / "recommendations" / "CSA-BP-ABOVE-TARGET.yaml"
    rule.write_text(rule.read_text(encoding="utf-8").replace("derived: bp_above_target", "derived: wide_any"), "utf-8")
    wide_kb = fsgs_kb.load(str(kb_copy))
    patient = json.loads((ROOT / "examples" / "dose-above-ceiling.json").read_text())
    for detail in ("full", "standard", "minimal"):
        result = wide_kb.evaluate_json(patient, detail=detail)
        assert result == dumps_bytes(wide_kb.reference_evaluate(patient, detail=detail)), detail
        assert json.loads(result)["status"] == "evaluated", detail


def test_a_derived_value_of_many_cases_is_derived_as_the_reference_derives_it(kb_copy: Path) -> None:
    """`age_group` with 120 more cases before its own two: the generated code nested one `else:`
    a case, beyond the tokenizer's 100 levels of indentation, and every record at every detail
    level came back an `eval.internal` IndentationError from a knowledge base that validated."""
    derived = kb_copy / "derived.yaml"
    first = "    cases:\n      - when: {field: age_years, lt: {param: child_age_cutoff_years}}\n"
    more = "".join(f"      - when: {{field: weight_kg, eq: {1000 + i}}}\n        value: child\n" for i in range(120))
    text = derived.read_text(encoding="utf-8")
    assert first in text
    derived.write_text(text.replace(first, "    cases:\n" + more + first[len("    cases:\n") :], 1), encoding="utf-8")
    many = fsgs_kb.load(str(kb_copy))
    patient = json.loads((ROOT / "examples" / "dose-above-ceiling.json").read_text())
    for weight in (patient.get("weight_kg"), 1000, 1119):
        patient["weight_kg"] = weight
        for detail in ("full", "standard", "minimal"):
            result = many.evaluate_json(patient, detail=detail)
            assert result == dumps_bytes(many.reference_evaluate(patient, detail=detail)), (weight, detail)
            assert json.loads(result)["status"] != "error", (weight, detail)


@pytest.mark.parametrize("refused", ["state", "facts level 0", "full+json", "standard", "settle+json", "verdict"])
def test_a_generated_function_python_cannot_compile_leaves_the_reference_to_answer(
    refused: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The net under the generators' limits (engine/evaluate/codegen.py): generated source Python
    refuses (here by the `nocompile` drill, as Python refused ~100 and ~1,500 cases of a derived
    value) leaves every result to the interpreted reference — the same bytes, not an error."""
    monkeypatch.setenv("FSGS_KB_FAULT", f"nocompile:{refused}")
    fallen = fsgs_kb.load()
    for path in sorted((ROOT / "examples").glob("*.json")):
        patient = json.loads(path.read_text())
        for detail in ("full", "standard", "minimal"):
            result = fallen.evaluate_json(patient, detail=detail)
            assert result == dumps_bytes(fallen.reference_evaluate(patient, detail=detail)), (path.name, detail)
            assert fallen.evaluate(patient, detail=detail) == fallen.reference_evaluate(patient, detail=detail)
    assert fallen.compiled_evaluator is None and fallen.not_compiled and refused in fallen.not_compiled


def test_a_batch_whose_generated_evaluator_cannot_compile_writes_the_same_results(tmp_path: Path) -> None:
    """The same through the command line, in batch workers (each falls back on its own)."""
    source = tmp_path / "in.jsonl"
    examples = sorted((ROOT / "examples").glob("*.json"))
    source.write_bytes(b"".join(json.dumps(json.loads(path.read_text())).encode() + b"\n" for path in examples))
    outputs = {}
    for fault in ("", "nocompile:full+json"):
        out = tmp_path / f"out-{bool(fault)}.jsonl"
        env = {k: v for k, v in os.environ.items() if k != "FSGS_KB_FAULT"}
        if fault:
            env["FSGS_KB_FAULT"] = fault
        command = [sys.executable, "-m", "fsgs_kb", "batch", str(source), "-o", str(out), "--workers", "2"]
        done = subprocess.run([*command, "--detail", "full"], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        outputs[fault] = out.read_bytes()
    assert outputs[""] == outputs["nocompile:full+json"] and outputs[""].count(b"\n") == len(examples)


def test_a_long_chain_of_categories_loads_and_derives_as_the_reference(kb_copy: Path) -> None:
    """Forty category derived values, each with two cases reading the one before: each case was
    inlined anew wherever it was read, 2^N forms for N links (sixteen: 5 s to load, twenty: 164 s;
    hostile sweep of session 10); each distinct comparison's form is now made once. A generous
    bound catches the old behaviour, which would take years, without timing anything close."""
    chain, prev = [], "age_group"
    for i in range(40):
        chain.append(
            f"  k_{i}:\n    title: Link {i}\n    unit: none\n    cases:\n"
            f"      - when: {{derived: {prev}, eq: child}}\n        value: child\n"
            f"      - when: {{derived: {prev}, eq: adult}}\n        value: adult\n"
        )
        prev = f"k_{i}"
    derived = kb_copy / "derived.yaml"
    derived.write_text(derived.read_text(encoding="utf-8") + "\n" + "".join(chain), encoding="utf-8")
    caveat = kb_copy / "recommendations" / "CAVEAT-RELAPSE-BELOW-DEFINITION.yaml"
    text = caveat.read_text(encoding="utf-8")
    assert text.count("- derived: age_group\n") >= 1
    caveat.write_text(text.replace("- derived: age_group\n", f"- derived: {prev}\n", 1), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "fsgs_kb", "validate", "--rules", str(kb_copy)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    chained = fsgs_kb.load(str(kb_copy))
    for line in (ROOT / "bench").parent.joinpath("examples").glob("*.json"):
        patient = json.loads(line.read_text())
        for detail in ("full", "minimal"):
            assert chained.evaluate_json(patient, detail=detail) == dumps_bytes(
                chained.reference_evaluate(patient, detail=detail)
            )
