"""A patient gives the same decision whether it arrives as a record or as FHIR: for every rule,
evaluate(record) and evaluate(to_fhir(record)) agree, over records generated like the cohorts
(tests/generate.py) and over evaluation dates; and a FHIR decision replays and traces as re-derived,
its conversion carried."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fhir_helpers import project_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fsgs_kb
from fsgs_kb.engine.fhir import FhirMap, record_to_bundle
from fsgs_kb.engine.fhir.records import FhirReader

sys.path.insert(0, str(project_file("tests")))
from generate import patient  # noqa: E402


@pytest.fixture(scope="module")
def kb() -> fsgs_kb.KnowledgeBase:
    return fsgs_kb.load()


def outcomes(result: dict[str, Any]) -> dict[str, Any]:
    return {"status": result["status"], "rules": {r["id"]: r["outcome"] for r in result["rules"]}}


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), as_of=st.dates(date(2000, 1, 1), date(2099, 12, 31)))
def test_record_and_its_fhir_bundle_give_the_same_outcome_for_every_rule(
    kb: fsgs_kb.KnowledgeBase, fmap: FhirMap, seed: int, as_of: date
) -> None:
    record = patient(random.Random(seed), seed % 10_000_000)
    direct = kb.evaluate(record)
    wire = json.dumps(record_to_bundle(record, fmap, as_of=as_of)).encode()  # as a server sends it
    framed = FhirReader(fmap, as_of).from_bytes(1, 1, wire, len(wire))
    assert framed.data == record  # the same values (12.0 and 12 are one number)
    converted = kb.evaluate_record(framed)
    assert outcomes(converted) == outcomes(direct), record
    assert converted["decision"]["fhir"]["as_of"] == as_of.isoformat()


def test_a_fhir_decision_is_re_derived_but_for_its_conversion(tmp_path: Path) -> None:
    """Replay and trace re-derive the decision from the converted record it stores, not the
    conversion (sources, set_aside, decision.fhir are carried as recorded): both say so, and trace
    does not call the trace exact (a forged `sources` was traced as exact, hostile sweep)."""
    bundle = project_file("examples/fhir/dose-above-ceiling.bundle.json")
    cmd = [sys.executable, "-m", "fsgs_kb"]
    evaluate = subprocess.run(
        [*cmd, "evaluate", "--input-format", "fhir", "--as-of", "2025-01-15", "--include-input", str(bundle)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert evaluate.returncode == 0, evaluate.stderr
    result = tmp_path / "result.json"
    result.write_text(evaluate.stdout)
    replay = subprocess.run([*cmd, "replay", str(result)], capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0 and "1 identical" in replay.stdout, replay.stdout + replay.stderr
    trace = subprocess.run([*cmd, "trace", str(result)], capture_output=True, text=True, timeout=120)
    assert trace.returncode == 0 and "the trace is exact" not in trace.stdout, trace.stdout + trace.stderr
    assert "identical; not exact, as the conversion's account (sources, set_aside, decision.fhir) is carried" in (
        trace.stdout
    ), trace.stdout
