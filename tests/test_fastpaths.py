"""The hot path's shortcuts stay honest: each gives what the slow, obvious code gives.

- the generated accept-only patient check accepts only records the detailed validator and the
  shape check accept, and accepts every valid record of the benchmark cohort;
- the input hash computed with orjson equals sha256 of the canonical JSON of today;
- facts encoded with orjson reach durable-rules with their exact numbers (error 204 avoided).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from typing import Any

from generate import iter_cohort
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsgs_kb.engine.compile.durable import DurableRulesets, fact_json
from fsgs_kb.engine.evaluate.accept import accepts
from fsgs_kb.engine.evaluate.patient import validate_patient
from fsgs_kb.engine.load.fingerprint import canonical_json, input_sha256
from fsgs_kb.engine.load.templating import float_text, float_text_rounded
from fsgs_kb.engine.read.shape import shape_problem

# ---- values that stress the fast paths -----------------------------------------------------------
ANY_FLOAT = st.floats(allow_nan=False, allow_infinity=False)
ODD_FLOATS = st.sampled_from([1e-05, 3e-07, 9.999e-05, 0.0001, 5e-324, 1e16, 1e22, 1.5e300, -0.0, 0.1, 2.5e-8])
NUMBERS = st.one_of(ANY_FLOAT, ODD_FLOATS, st.integers(-(2**64) + 1, 2**64 - 1), st.integers())
TEXT = st.one_of(st.text(), st.sampled_from(["e-5", "0.00001", "P-0001", "é", "\u2028", "\x00", "\U0001f600"]))
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=1500, deadline=None)
@given(JSON)
def test_orjson_input_hash_equals_the_canonical_json_hash(value: Any) -> None:
    try:
        expected = hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
    except (UnicodeEncodeError, ValueError):  # lone surrogates: the shape check rejects them first
        return
    assert input_sha256(value) == expected


def test_input_hash_falls_back_for_small_floats_and_odd_keys() -> None:
    for value in ({"a": 1e-05}, {"a": 3e-07}, {1: "int key"}, {"big": 2**70}, {"id": "e-mail"}):
        assert input_sha256(value) == hashlib.sha256(canonical_json(value).encode()).hexdigest()


def test_cohort_hashes_are_unchanged() -> None:
    for patient in iter_cohort(2000, seed=3, invalid_rate=0.05):
        assert input_sha256(patient) == hashlib.sha256(canonical_json(patient).encode()).hexdigest()


# ---- the accept-only check --------------------------------------------------------------------------
def _valid_in_every_way(record: Any) -> bool:
    return shape_problem(record)[0] is None and not validate_patient(record)


def test_every_valid_cohort_record_is_accepted_and_no_invalid_one() -> None:
    seen = 0
    for patient in iter_cohort(5000, seed=11, invalid_rate=0.05):
        assert accepts(patient) == _valid_in_every_way(patient), patient
        seen += accepts(patient)
    assert seen > 4000


DEEP: Any = 1
for _ in range(40):
    DEEP = [DEEP]
MUTATIONS = st.sampled_from(
    [
        ("age_years", -1),
        ("age_years", math.nan),
        ("age_years", math.inf),
        ("age_years", True),
        ("age_years", "45"),
        ("age_years", 2**70),
        ("weight_kg", 0),
        ("weight_kg", 300.0001),
        ("id", ""),
        ("id", "x" * 201),
        ("id", "é"),
        ("id", "\ud800"),
        ("id", 5),
        ("unknown_key", 1),
        ("ext", {"deep": DEEP}),
        ("ext", {"site": {"ward": "A"}}),
        ("ext", {"bad": math.nan}),
        ("gc_toxicity_risk_factors", ["obesity", "obesity"]),
        ("gc_toxicity_risk_factors", ["obesity", "nonsense"]),
        ("gc_toxicity_risk_factors", "obesity"),
        ("fsgs", {"etiology": "primary", "extra": 1}),
        ("fsgs", {"biopsy_proven": 1}),
        ("fsgs", {"secondary_cause": "x" * 501}),
        ("cyclosporine", {"status": "never", "daily_dose": {"value": 5, "unit": "mg/kg/day"}}),
        ("cyclosporine", {"status": "current", "daily_dose": {"value": 0, "unit": "mg/day"}}),
        ("cyclosporine", {"status": "current", "daily_dose": {"value": 5}}),
        ("cyclosporine", {"status": "sometimes"}),
        ("blood_pressure", {"systolic_mmHg": 100, "diastolic_mmHg": 100}),
        ("blood_pressure", {"systolic_mmHg": 100.0, "diastolic_mmHg": 60}),
        ("serum_creatinine", {"current": 1.0}),
        ("serum_creatinine", {"unit": "mg/dL", "baseline": 1e-05, "current": 3e-07}),
        ("disease_status", None),
        ("steroids", []),
        (
            "other_immunosuppressants",
            [{"drug": "rituximab", "status": "past"}, {"status": "past", "drug": "rituximab"}],
        ),  # noqa: E501
        ("other_immunosuppressants", [{"drug": "rituximab", "status": "past"}] * 2),
        ("other_immunosuppressants", [{"drug": "rituximab", "status": "past", "dose": 1}]),
        ("other_immunosuppressants", [{"drug": "rituximab"}]),
        ("kidney_function", {"egfr": 40}),
    ]
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.lists(MUTATIONS, max_size=3))
def test_accepting_implies_valid_and_within_shape_limits(seed: int, mutations: list[tuple[str, Any]]) -> None:
    record = next(iter_cohort(1, seed=seed))
    for key, value in mutations:
        record[key] = copy.deepcopy(value)
    if accepts(record):
        assert _valid_in_every_way(record), (record, validate_patient(record), shape_problem(record))


def test_non_records_are_not_accepted() -> None:
    for value in (None, [], "x", 1, {"no_id": 1}, {"id": "p", "fsgs": None}):
        assert not accepts(value)


# ---- facts for durable-rules encoded with orjson --------------------------------------------------------
def _threshold_rules(threshold: float) -> DurableRulesets:
    ruleset = {
        "x|T": {"all": [{"m": {"$and": [{"k": 1}, {"$gte": {"x": threshold}}]}}]},
        "x|F": {"all": [{"m": {"$and": [{"k": 1}, {"$lt": {"x": threshold}}]}}]},
    }
    return DurableRulesets(((ruleset,),), "fastpath_facts")


@settings(max_examples=300, deadline=None)
@given(st.one_of(ANY_FLOAT, ODD_FLOATS, st.integers(-(2**63), 2**63 - 1)))
def test_orjson_facts_are_read_by_the_core_as_the_same_number(value: float) -> None:
    text = fact_json({"sid": "0", "id": 1, "x": value})
    assert not re.search(r'"x":-?\d+e', text), text  # the core rejects an exponent without a point
    assert json.loads(text)["x"] == value
    rules = _threshold_rules(0.0)
    fired = rules.fire(0, {"x": value})
    assert fired == ({"x|T"} if value >= 0 else {"x|F"}), (value, text)


# ---- a line of JSON straight to evaluation ------------------------------------------------------------
def _lines() -> list[bytes]:
    out = []
    for patient in iter_cohort(1500, seed=5, invalid_rate=0.05):
        text = json.dumps(patient).encode()
        out.append(text)
        out.append(text.replace(b'{"id"', b'{"age_years": 200, "id"', 1))  # a key given twice
        out.append(text.replace(b'"fsgs": {', b'"fsgs": {"etiology": "primary", ', 1))
        out.append(text[:-1] + b', "ext": {"a": ' + b"[" * 40 + b"]" * 40 + b"}}")
        out.append(text.replace(b'"id": "', b'"id": "\\ud800', 1))
    return out


def test_a_line_is_taken_whole_only_when_the_reader_would_accept_it() -> None:
    from fsgs_kb.engine.evaluate.accept import parse_accepted
    from fsgs_kb.engine.read.records import parse_json

    taken = 0
    for raw in _lines():
        fast = parse_accepted(raw)
        value, problem = parse_json(raw)
        if fast is not None:
            taken += 1
            assert problem is None and fast == value and not validate_patient(value), raw
        elif problem is None and not validate_patient(value):
            assert b"ext" in raw or b"\\u" in raw, raw  # only what the generated check leaves to the detailed path
    assert taken > 1000


# ---- float wording: the short-text shortcut ------------------------------------------------------
SHORT_FLOATS = st.one_of(
    st.floats(min_value=-99999, max_value=99999).map(lambda x: round(x, 2)),
    st.decimals(min_value=-1, max_value=1, places=5).map(float),
    st.sampled_from([0.0, -0.0, 1e-4, 1.2e-4, 9.9999e-5, 99999.0, 100000.0, 999999.0, 1e6, 123456.0, 5.0000043]),
    st.integers(-(10**7), 10**7).map(float),
)


@settings(max_examples=3000, deadline=None)
@given(st.one_of(SHORT_FLOATS, ANY_FLOAT, st.sampled_from([math.nan, math.inf, -math.inf])))
def test_float_text_shortcut_writes_what_its_definition_writes(value: float) -> None:
    """`float_text` takes a short `repr` as it is; the definition formats to six digits and more."""
    assert float_text(value) == float_text_rounded(value)
