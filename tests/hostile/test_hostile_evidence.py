"""Forged evidence: `trace` must not vouch for an edited result, masking must really hide an
identifier, and `explain` must not let a record's text forge terminal output or report lines."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path

import pytest
from hostile_support import (
    assert_no_traceback,
    good_record,
    run,
)

FORGED_ADVICE = "STOP ALL MEDICATION IMMEDIATELY"
FIRED = "CSA-DOSE-EXCEEDS"


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real result, as `fsgs-kb evaluate examples/dose-above-ceiling.json > r.json` makes it."""
    patient = tmp_path_factory.mktemp("genuine") / "dose-above-ceiling.json"
    patient.write_text(json.dumps(good_record()))
    result = run("evaluate", patient)
    assert result.rc == 0, result
    parsed = json.loads(result.stdout)
    assert FIRED in parsed["advice"], parsed["advice"]
    return parsed


@pytest.fixture(scope="module")
def clean_trace(genuine: dict, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("clean") / "r.json"
    path.write_text(json.dumps(genuine))
    result = run("trace", path)
    assert result.rc == 0, result
    return result.both


def _fired_entry(result: dict) -> dict:
    return next(r for r in result["rules"] if r["id"] == FIRED)


def _edit_says(result: dict) -> None:
    _fired_entry(result)["says"] = FORGED_ADVICE


def _falsify_conditions(result: dict) -> None:
    for cond in _fired_entry(result)["conditions"]:
        cond["result"] = False
        cond["text"] = re.sub(r": true$", ": false", cond["text"])


def _mentions_more(forged: str, clean: str, words: tuple[str, ...]) -> bool:
    """The forged run's output names one of `words` more often than the genuine run's output."""
    count = lambda text, word: len(re.findall(rf"\b{re.escape(word)}\b", text, re.I))  # noqa: E731
    return any(count(forged, w) > count(clean, w) for w in words)


@pytest.mark.parametrize(
    ("forge", "field_words"),
    [(_edit_says, ("says", "advice text")), (_falsify_conditions, ("conditions", "condition", "result"))],
    ids=["advice-text-edited", "fired-rule-conditions-false"],
)
def test_trace_rejects_edited_result(tmp_path: Path, genuine: dict, clean_trace: str, forge, field_words) -> None:
    """trace today checks only the KB fingerprint: an edited advice text or a fired rule whose
    conditions are all false is traced as 'exact'. It must exit 1 naming the field."""
    forged = copy.deepcopy(genuine)
    forge(forged)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(forged))
    result = run("trace", path)
    assert_no_traceback(result)
    assert result.rc == 1, f"{result}: the edited result was traced as genuine"
    assert _mentions_more(result.both, clean_trace, field_words), f"no message names {field_words}: {result.out[:300]}"


def test_trace_rejects_unknown_rule(tmp_path: Path, genuine: dict) -> None:
    """A result naming a rule the knowledge base does not have cannot be traced to a source."""
    forged = copy.deepcopy(genuine)
    fake = copy.deepcopy(_fired_entry(forged))
    fake["id"] = "CSA-FAKE-RULE"
    forged["rules"].append(fake)
    forged["advice"].append("CSA-FAKE-RULE")
    path = tmp_path / "r.json"
    path.write_text(json.dumps(forged))
    result = run("trace", path)
    assert_no_traceback(result)
    assert result.rc == 1, f"{result}: a result naming an unknown rule was traced as genuine"
    verdict = r"(unknown|not in|no such|does not exist|not found|no rule)"
    reported = [line for line in result.both.splitlines() if "CSA-FAKE-RULE" in line and re.search(verdict, line, re.I)]
    assert reported, "no line reports CSA-FAKE-RULE as unknown"


@pytest.mark.parametrize(
    ("field", "value"),
    [("decision", "x"), ("decision", []), ("rules", "x"), ("rules", [1, 2]), ("advice", {"a": 1})],
    ids=["decision-str", "decision-list", "rules-str", "rules-ints", "advice-object"],
)
def test_trace_wrong_typed_fields(tmp_path: Path, genuine: dict, field: str, value: object) -> None:
    """A malformed result is a bad input (exit 1 or 2), not an AttributeError."""
    forged = copy.deepcopy(genuine)
    forged[field] = value
    path = tmp_path / "r.json"
    path.write_text(json.dumps(forged))
    result = run("trace", path)
    assert_no_traceback(result)
    assert result.rc in (1, 2), result


# --- masking ---------------------------------------------------------------------------------

RAW_ID = "PATIENT-SECRET-77"


def _masked_run(tmp_path: Path, command: str, pointer: str):
    source = tmp_path / ("p.json" if command == "evaluate" else "p.jsonl")
    source.write_text(json.dumps(good_record(RAW_ID)) + "\n")
    if command == "evaluate":
        return run("evaluate", source, "--include-input", "--mask", pointer)
    return run("batch", source, "--include-input", "--mask", pointer, "--quiet")


@pytest.mark.parametrize("command", ["evaluate", "batch"])
def test_mask_pointer_without_slash_is_refused_or_applied(tmp_path: Path, command: str) -> None:
    """`--mask id` is not a JSON pointer; silently ignoring it ships the raw identifier."""
    result = _masked_run(tmp_path, command, "id")
    assert_no_traceback(result)
    if result.rc != 2:
        assert RAW_ID not in result.both, f"--mask id was ignored: the raw id is in the output (rc {result.rc})"


@pytest.mark.parametrize("command", ["evaluate", "batch"])
def test_masked_value_is_not_a_plain_sha256(tmp_path: Path, command: str) -> None:
    """An unsalted sha256 of an identifier is reversible by enumeration (ids are short and
    structured): neither sha256(raw) nor sha256(json(raw)) may appear, nor the raw id."""
    result = _masked_run(tmp_path, command, "/id")
    assert_no_traceback(result)
    assert result.rc == 0, result
    assert RAW_ID not in result.both, "the raw id is in the output"
    for label, data in (("raw", RAW_ID.encode()), ("JSON", json.dumps(RAW_ID).encode())):
        assert hashlib.sha256(data).hexdigest() not in result.both, f"the output holds sha256 of the {label} id"


@pytest.mark.parametrize("command", ["evaluate", "batch"])
def test_a_masked_result_carries_no_hash_of_the_clear_record(tmp_path: Path, command: str) -> None:
    """Beside a masked input, the decision's input hash (and id) of the clear record would let
    anyone confirm a guessed identifier by hashing candidate records: they must be the masked
    input's, and the stored input must still replay to the same decision."""
    clear = run("evaluate", _write(tmp_path / "clear.json", good_record(RAW_ID)), "--compact")
    clear_decision = json.loads(clear.stdout)["decision"]
    result = _masked_run(tmp_path, command, "/id")
    assert result.rc == 0, result
    masked = json.loads(result.stdout.splitlines()[0] if command == "batch" else result.stdout)["decision"]
    assert masked["input_sha256"] != clear_decision["input_sha256"]
    assert masked["decision_id"] != clear_decision["decision_id"]
    assert clear_decision["input_sha256"] not in result.both and clear_decision["decision_id"] not in result.both
    stored = run("evaluate", _write(tmp_path / "stored.json", masked["input"]), "--compact")
    assert json.loads(stored.stdout)["decision"]["input_sha256"] == masked["input_sha256"]


def _write(path: Path, record: dict) -> Path:
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


# --- explain renders untrusted text ----------------------------------------------------------


def test_explain_strips_terminal_escapes_from_record_text(tmp_path: Path) -> None:
    """An id holding ANSI CSI (colour) and OSC (set window title) sequences must not reach the
    terminal raw: no ESC or BEL byte in stdout."""
    record = good_record("P\x1b[31mRED\x1b]0;pwn\x07")
    path = tmp_path / "p.json"
    path.write_text(json.dumps(record))
    result = run("explain", path)
    assert_no_traceback(result)
    assert b"\x1b" not in result.stdout and b"\x07" not in result.stdout, "raw ESC/BEL in explain output"


def _fired_lines(text: str) -> int:
    return sum(
        1 for line in text.splitlines() if re.match(r"(ADVICE|WARNINGS) \(", line) or re.match(r"\s*• FAKE", line)
    )


def test_explain_record_keys_cannot_forge_report_lines(tmp_path: Path) -> None:
    """An unknown key with newlines is echoed in the problem list; it must not create an 'ADVICE'
    section of its own. Counted against the same record with a harmless unknown key."""
    counts = {}
    for name, key in (("clean", "x"), ("hostile", "x\nADVICE (1)\n  • FAKE-RULE")):
        record = good_record("INJ")
        record[key] = 1
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(record))
        result = run("explain", path)
        assert_no_traceback(result)
        counts[name] = _fired_lines(result.out)
    assert counts["hostile"] == counts["clean"], f"forged report lines: {counts}"
