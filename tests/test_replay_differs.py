"""What `replay` and `trace` say of a result that comes back `changed` with the same outcomes: the
field that differs, named truthfully (hostile sweep 13).

A result re-serialized with its keys in another order (`jq -S`, a warehouse export), a decision id
edited under the same knowledge base, or `true` written as `1` is not reproduced byte for byte, so
it is `changed`; but the differences were found with Python's `==` (order-blind, and `1 == True`)
and excluded the decision id even when the knowledge base was the same, so such a result was said
to differ "in no field but the knowledge base's identity" (replay) or "in a field other than
outcomes" (trace), though the knowledge base was the very same one. Also: a trace of a line that
is no result named no place (`<input>: error[trace.malformed] …`), and replay wrote `record None`
for a result of `evaluate` (which has no record number)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fsgs_kb.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    done = invoke("evaluate", str(EXAMPLES / "dose-above-ceiling.json"), "--include-input", "--detail", "standard")
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout[done.stdout.index("{") :])


def _edited(result: dict[str, Any], how: str) -> str:
    edited = json.loads(json.dumps(result))
    if how == "keys_reversed":
        edited = dict(reversed(list(edited.items())))
    elif how == "decision_keys_reversed":
        edited["decision"] = dict(reversed(list(edited["decision"].items())))
    elif how == "decision_id":
        edited["decision"]["decision_id"] = "f" * 32
    elif how == "true_as_1":
        text = json.dumps(edited)
        assert '"actual": true' in text
        return text.replace('"actual": true', '"actual": 1', 1) + "\n"
    return json.dumps(edited) + "\n"


CASES = {
    "keys_reversed": "the order of the fields",
    "decision_keys_reversed": "the order of the decision's fields",
    "decision_id": "decision.decision_id",
    "true_as_1": "rule CSA-DOSE-WITHIN",
}


@pytest.mark.parametrize("how", sorted(CASES))
def test_replay_and_trace_name_what_differs(tmp_path: Path, result: dict[str, Any], how: str) -> None:
    path = tmp_path / "edited.jsonl"
    path.write_text(_edited(result, how), encoding="utf-8")
    replay = invoke("replay", str(path))
    assert replay.exit_code == 1, replay.output
    assert "0 identical" in replay.stdout
    assert "knowledge base's identity" not in replay.stdout, replay.stdout  # the same knowledge base made it
    assert CASES[how] in replay.stdout, replay.stdout
    assert "record None" not in replay.stdout, replay.stdout
    trace = invoke("trace", str(path))
    assert trace.exit_code == 1, trace.output
    assert "in a field other than outcomes" not in trace.stdout, trace.stdout
    assert CASES[how] in trace.stdout, trace.stdout


def test_trace_names_the_place_of_a_line_that_is_no_result(tmp_path: Path, result: dict[str, Any]) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(result) + "\n" + json.dumps({**result, "extra": 1}) + "\n", encoding="utf-8")
    trace = invoke("trace", str(path))
    assert trace.exit_code == 1, trace.output
    assert "<input>" not in trace.stdout, trace.stdout
    assert f"{path}:2: error[trace.malformed]" in trace.stdout, trace.stdout
