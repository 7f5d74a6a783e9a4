"""Review 5 N1: a record the Python API refuses at the shape check (NaN, an integer beyond 64 bits,
a value of a type JSON does not have, a lone surrogate, a key that is not a string, a record nested
too deep or containing itself) recorded `input_sha256: ""`, so every such record had one and the
same decision id. Each now has the hash of its canonical text (engine/read/canonical.py): the
records here get distinct decision ids, the same record the same id, in any process, through every
path that makes a result and at every detail level. (Values of types JSON does not have are written
as their type's name, not read: `(1, 2)` and `(3, 4)` in the same place share an id, by design.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fsgs_kb.engine.audit.shape import shape_problems
from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.load.fingerprint import canonical_json, input_sha256
from fsgs_kb.engine.read.canonical import CUT, TOO_DEEP, canonical_text, value_sha256
from fsgs_kb.engine.read.records import Record
from fsgs_kb.engine.read.shape import MAX_RECORD_BYTES, shape_problem

# Run here and, unchanged, in a fresh interpreter: builds `records`, each one the shape check refuses.
RECORDS = """
import datetime

class Opaque:
    pass

class Guarded(type):  # its classes' names cannot be read through them (review of session 10)
    def __getattribute__(cls, name):
        if name in ("__module__", "__qualname__"):
            raise RuntimeError(name)
        return type.__getattribute__(cls, name)

class Hidden(metaclass=Guarded):
    pass

cyclic = {"id": "CYC"}
cyclic["self"] = cyclic
branching = {"id": "BRANCH"}  # unrolls to 2**32 paths: the text stops at its limit
branching["a"] = branching
branching["b"] = branching
deep = {"id": "DEEP"}
node = deep
for _ in range(40):
    node["x"] = {}
    node = node["x"]
records = [
    {"age_years": float("nan")},
    {"age_years": float("inf")},
    {"age_years": float("-inf")},
    {"id": "P1", "age_years": float("nan")},
    {"id": "P2", "age_years": float("nan")},
    {"id": "P1", "weight_kg": float("nan")},
    {"weight_kg": 10**30},
    {"weight_kg": -(10**30)},
    {"weight_kg": 10**30 + 1},
    {"weight_kg": 2**64},
    {"ext": {"x": 10**5000}},
    {"ext": {"x": 10**5000 + 1}},
    {"ext": {"x": object()}},
    {"ext": {"x": Opaque()}},
    {"ext": {"x": (1, 2)}},
    {"ext": {"x": Hidden()}},
    {"ext": {"x": b"bytes"}},
    {"ext": {"x": datetime.date(2024, 1, 1)}},
    {"id": "S\\ud800"},
    {"id": "S\\udc00"},
    {"id": "S\\ud83d\\ude00"},
    {"\\ud800": 1},
    {1: "a key that is an integer"},
    {"id": "K", 1: "a key that is an integer"},
    {"id": "K", "1": "a key that is a string", 2: 0},
    {None: 1},
    {1.5: 1},
    {(1, 2): 1},
    [float("nan")],
    float("nan"),
    cyclic,
    branching,
    deep,
    {"id": "HUGE", "x": "a" * MAX_RECORD_BYTES, "n": float("nan")},
]
"""
SCRIPT = f"""
import json
import fsgs_kb
from fsgs_kb.engine.read.shape import MAX_RECORD_BYTES
scope = {{"__name__": "records", "MAX_RECORD_BYTES": MAX_RECORD_BYTES}}
exec({RECORDS!r}, scope)
kb = fsgs_kb.load()
print(json.dumps([kb.evaluate(record)["decision"]["decision_id"] for record in scope["records"]]))
"""
HEX64 = re.compile("[0-9a-f]{64}")


def _records() -> list[Any]:
    scope: dict[str, Any] = {"__name__": "records", "MAX_RECORD_BYTES": MAX_RECORD_BYTES}
    exec(RECORDS, scope)  # noqa: S102 - the test's own source, run the same way in a fresh interpreter
    records: list[Any] = scope["records"]
    return records


def _decisions(kb: KnowledgeBase, record: Any) -> list[dict[str, Any]]:
    """The decision record of `record`'s result from every path that makes one, at every level."""
    made = []
    for detail in ("full", "standard", "minimal"):
        for result in (
            kb.evaluate(record, detail=detail),
            kb.evaluate(record, detail=detail, include_input=True, timestamp="2025-01-01T00:00:00Z"),
            json.loads(kb.evaluate_json(record, detail=detail)),
            kb.reference_evaluate(record, detail=detail),
            kb.evaluate_record(Record(number=1, line=1, data=record), detail=detail),
            json.loads(kb.encode_record(Record(number=1, line=1, data=record), detail=detail)[0]),
        ):
            assert result["status"] == "invalid", result
            assert result["errors"][0]["code"].startswith("input."), result["errors"]
            assert shape_problems(result) == [], shape_problems(result)  # a well-formed result
            made.append(result["decision"])
    return made


def test_each_refused_record_has_a_decision_id_of_its_own(kb: KnowledgeBase) -> None:
    records = _records()
    assert all(shape_problem(record)[0] is not None for record in records)
    ids = []
    for record in records:
        decisions = _decisions(kb, record)
        assert {d["decision_id"] for d in decisions} == {decisions[0]["decision_id"]}, "paths or levels disagree"
        assert {d["input_sha256"] for d in decisions} == {value_sha256(record)}
        assert HEX64.fullmatch(decisions[0]["input_sha256"])
        ids.append(decisions[0]["decision_id"])
    assert len(set(ids)) == len(ids), "two different records share a decision id"
    # the same records built again (new objects, new NaNs): the same ids
    assert [kb.evaluate(record)["decision"]["decision_id"] for record in _records()] == ids


def test_the_same_refused_record_has_the_same_id_in_a_fresh_process(kb: KnowledgeBase) -> None:
    here = [kb.evaluate(record)["decision"]["decision_id"] for record in _records()]
    assert len(set(here)) == len(here)
    for seed in ("0", "12345"):  # no object addresses, no hash randomisation in the text
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == here


def test_a_refused_record_never_hashes_as_a_valid_one(kb: KnowledgeBase) -> None:
    """orjson writes NaN as null and json.dumps a tuple as a list: the refused record must not take
    the hash (and so the decision id) of the valid record those would stand for."""
    pairs = [
        ({"age_years": float("nan")}, {"age_years": None}),
        ({"weight_kg": 10**30}, {"weight_kg": 1e30}),
        ({"ext": {"x": (1, 2)}}, {"ext": {"x": [1, 2]}}),
        ({1: "a"}, {"1": "a"}),
        ({"ext": {"x": float("inf")}}, {"ext": {"x": "Infinity"}}),
    ]
    for refused, valid in pairs:
        assert shape_problem(valid)[0] is None
        assert kb.evaluate(refused)["decision"]["input_sha256"] != kb.evaluate(valid)["decision"]["input_sha256"]


def test_the_canonical_text_of_records_beyond_the_limits() -> None:
    records = _records()
    cyclic, branching, deep = records[-4], records[-3], records[-2]
    assert canonical_text(cyclic).count(TOO_DEEP) == 1
    assert canonical_text(deep).count(TOO_DEEP) == 1
    text = canonical_text(branching)
    assert text.endswith(CUT) and len(text) == MAX_RECORD_BYTES + len(CUT)
    assert canonical_text({"age_years": float("nan"), "big": -(2**2001)}) == (
        '{"age_years":NaN,"big":-0x2' + "0" * 500 + "}"
    )
    assert canonical_text({"id": "\ud800\\ud800"}) == '{"id":"\\ud800\\\\ud800"}'  # the lone one escaped, not the text


# ---- a valid record's hash is unchanged: for JSON data the text is canonical JSON -------------------
TEXT = st.one_of(st.text(), st.sampled_from(["e-5", "\u2028", "\x00", "\U0001f600", "<tuple>", "NaN"]))
NUMBERS = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**64) + 1, 2**64 - 1))
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=1000, deadline=None)
@given(JSON)
def test_the_canonical_text_of_json_data_is_canonical_json(value: Any) -> None:
    if shape_problem(value)[0] is not None:  # a lone surrogate drawn by st.text()
        return
    assert canonical_text(value) == canonical_json(value)
    assert value_sha256(value) == input_sha256(value)


def test_a_stored_result_of_a_refused_record_traces_as_consistent_not_exact(kb: KnowledgeBase, tmp_path: Path) -> None:
    """Before, its empty input hash made the engine's own result `NOT a valid fsgs-kb result` to
    trace. It is well-formed now; with no input stored (none can be) it is consistent, never exact,
    and replay finds no input for it."""
    for detail in ("full", "standard", "minimal"):
        stored = tmp_path / f"{detail}.json"
        stored.write_bytes(kb.evaluate_json({"id": "NAN", "age_years": float("nan")}, detail=detail))
        traced = subprocess.run(
            [sys.executable, "-m", "fsgs_kb", "trace", str(stored)], capture_output=True, text=True, timeout=300
        )
        assert traced.returncode == 0, traced.stdout + traced.stderr
        assert "consistent with the same knowledge base" in traced.stdout
        assert "refused at input" in traced.stdout and "exact" not in traced.stdout
        replayed = subprocess.run(
            [sys.executable, "-m", "fsgs_kb", "replay", str(stored)], capture_output=True, text=True, timeout=300
        )
        assert replayed.returncode == 1 and "1 input missing" in replayed.stdout, replayed.stdout + replayed.stderr
