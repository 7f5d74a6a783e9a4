"""Forged summaries: without the input, `trace` must still check that a result's top-level fields
are what its rule outcomes and the knowledge base make of them (status, advice, caveats, drafts,
undetermined, no_recommendation, errors, one rule entry per rule), at every detail level.

An outside review found each forgery below traced as "consistent … check out", exit 0. Each
forged result is built from a real evaluation of examples/dose-above-ceiling.json; one trace run
per level reads them all (one JSON Lines file), and every decision's block must name its field
with what it should be and what it is."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hostile_support import RULES, assert_no_traceback, run

EXAMPLE = RULES.parent / "examples" / "dose-above-ceiling.json"
LEVELS = ("full", "standard", "minimal")
DROPPED = "CSA-NEPHROTOX-SUSPECTED"  # fires for this example


def _set(field: str, value: object) -> Callable[[dict], None]:
    def forge(result: dict) -> None:
        result[field] = value

    return forge


def _drop_fired_rule(result: dict) -> None:
    assert DROPPED in result["advice"]
    result["advice"].remove(DROPPED)
    if "rules" in result:
        result["rules"] = [entry for entry in result["rules"] if entry["id"] != DROPPED]
    if "says" in result:
        del result["says"][DROPPED]


# forgery → a field its mismatch may name (a minimal result has no rule entries: there an added
# caveat shows in drafts, an added undetermined rule in `missing`); the first six are the review's
FORGERIES: dict[str, tuple[Callable[[dict], None], tuple[str, ...]]] = {
    "status-out-of-scope": (_set("status", "out_of_scope"), ("status",)),
    "caveat-added": (_set("caveats", ["CAVEAT-KIDNEY-FUNCTION"]), ("caveats", "drafts")),
    "drafts-emptied": (_set("drafts", []), ("drafts",)),
    "fired-rule-removed": (_drop_fired_rule, ("drafts",)),
    "no-recommendation": (_set("no_recommendation", True), ("no_recommendation",)),
    "errors-injected": (_set("errors", [{"code": "x", "message": "y"}]), ("status",)),
    "status-scope-undetermined": (_set("status", "scope_undetermined"), ("status",)),
    "status-error-without-errors": (_set("status", "error"), ("status",)),
    "advice-reordered": (lambda r: r["advice"].reverse(), ("advice",)),
    "undetermined-added": (_set("undetermined", ["CSA-DOSE-WITHIN"]), ("undetermined", "missing")),
}


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The example's result at each level, as `fsgs-kb evaluate --detail LEVEL` writes it."""
    out = {}
    for level in LEVELS:
        result = run("evaluate", EXAMPLE, "--detail", level)
        assert result.rc == 0, result
        out[level] = json.loads(result.stdout)
        assert DROPPED in out[level]["advice"] and out[level]["status"] == "evaluated"
    return out


def _blocks(stdout: str) -> list[str]:
    """trace's output, one block per decision (each starts with 'Decision ')."""
    return ["Decision " + block for block in stdout.split("\nDecision ")[1:]]


def _trace_all(tmp_path: Path, results: list[dict]) -> tuple[int, list[str]]:
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in results))
    traced = run("trace", path, timeout=120)
    assert_no_traceback(traced)
    blocks = _blocks(traced.out)
    assert len(blocks) == len(results), traced.out[-2000:]
    return traced.rc, blocks


@pytest.mark.parametrize("level", LEVELS)
def test_genuine_result_is_consistent(tmp_path: Path, genuine: dict[str, dict], level: str) -> None:
    rc, blocks = _trace_all(tmp_path, [genuine[level]])
    assert rc == 0 and "MISMATCH" not in blocks[0], blocks[0]


@pytest.mark.parametrize("level", LEVELS)
def test_forged_summaries_are_mismatches(tmp_path: Path, genuine: dict[str, dict], level: str) -> None:
    forged = []
    for forge, _ in FORGERIES.values():
        result = copy.deepcopy(genuine[level])
        forge(result)
        assert result != genuine[level]
        forged.append(result)
    rc, blocks = _trace_all(tmp_path, forged)
    assert rc == 1
    for (name, (_, fields)), block in zip(FORGERIES.items(), blocks, strict=True):
        assert "MISMATCH" in block and "check out" not in block, f"{level} {name}: traced as consistent\n{block}"
        named = [line for line in block.splitlines() if line.startswith(tuple(f"  - {f}: expected " for f in fields))]
        assert named and ", found " in named[0], f"{level} {name}: no mismatch names {fields}\n{block}"


def test_missing_rule_entry_is_named(tmp_path: Path, genuine: dict[str, dict]) -> None:
    """A rule entry removed (with its advice and draft) leaves the lists agreeing with each
    other: the missing entry itself must be reported, at full and standard detail."""
    forged = []
    for level in ("full", "standard"):
        result = copy.deepcopy(genuine[level])
        _drop_fired_rule(result)
        result["drafts"].remove(DROPPED)
        forged.append(result)
    rc, blocks = _trace_all(tmp_path, forged)
    assert rc == 1
    for block in blocks:
        assert "  - rules: expected an entry for each of the knowledge base's" in block, block
        assert f"found none for {DROPPED}" in block, block


def test_forged_record_that_was_never_evaluated(tmp_path: Path) -> None:
    """A result of a record that never reached evaluation (no scope, no rule entries) carries no
    advice and its problem in `errors`, whatever its level."""
    patient = tmp_path / "garbage.json"
    patient.write_text("not json")
    made = run("evaluate", patient)
    assert made.rc == 1, made
    invalid = json.loads(made.stdout)
    assert invalid["status"] == "invalid" and invalid["scope"] is None and invalid["rules"] == []
    forged = []
    for field, value in (("advice", ["CSA-DOSE-EXCEEDS"]), ("errors", []), ("status", "evaluated")):
        result = copy.deepcopy(invalid)
        result[field] = value
        forged.append(result)
    rc, blocks = _trace_all(tmp_path, [invalid, *forged])
    assert rc == 1
    assert "MISMATCH" not in blocks[0], blocks[0]
    for field, block in zip(("advice", "errors", "status"), blocks[1:], strict=True):
        assert f"  - {field}: expected " in block, block


@pytest.mark.parametrize("command", ["trace", "replay"])
@pytest.mark.parametrize("source", ["file", "stdin"])
def test_no_result_at_all_is_an_input_error(tmp_path: Path, command: str, source: str) -> None:
    """An empty file holds no result: checking nothing must not pass (it exited 0, printing no
    verdict). It is an input error, exit 2, saying so."""
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    given = run(command, empty) if source == "file" else run(command, "-", input=b"")
    assert_no_traceback(given)
    assert given.rc == 2, given
    assert "error[input.empty]" in given.err and "no result in" in given.err, given.err
