"""One hostile record must never take a run down: every other record still gets its result, the
bad one is `invalid`, the exit code is 1, and no Python traceback leaks to stderr."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hostile_support import (
    HOSTILE_DEEP,
    assert_each_record_once,
    assert_no_traceback,
    good_line,
    good_record,
    jsonl,
    read_results,
    run,
)

DEEP = 1000
_good_json = good_line()

HOSTILE_JSONL = {
    "nested-1000-deep": HOSTILE_DEEP,
    "integer-10**5000": b'{"id": "BIG", "age_years": 1' + b"0" * 5000 + b"}",
    # orjson reads an integer beyond 64 bits as a float, silently: in a free-form part (`ext`)
    # the record was evaluated, its input hash taken over 1e+30 (engine/read/jsontext.py)
    "integer-10**30-in-ext": b'{"id": "B30", "ext": {"x": 1000000000000000000000000000000}}',
    "integer-2**64-in-ext": b'{"id": "B64", "ext": {"x": 18446744073709551616}}',
    "integer-below-minus-2**64-in-ext": b'{"id": "BNEG", "ext": {"x": [-18446744073709551617]}}',
    "lone-surrogate-in-id": b'{"id": "S\\ud800"}',
    "lone-surrogate-in-value": b'{"id": "SV", "fsgs": {"biopsy_proven": true, "etiology": "\\ud800"}}',
    "lone-surrogate-in-key": b'{"id": "SK", "\\ud800": 1}',
    "invalid-utf8-byte": b'{"id": "U\xff"}',
    "10mb-line": b'{"id": "HUGE", "x": "' + b"a" * 10_000_000 + b'"}',
    # a weight typed twice: JSON parsers silently keep the last (7 kg), ten times the dose per kg
    "duplicate-key": _good_json[:-1].replace(b'"id": "EX-DOSE-HIGH"', b'"id": "DUP"') + b', "weight_kg": 7}',
}


def _assert_middle_record_invalid(result, out: Path) -> None:
    assert_no_traceback(result)
    results = read_results(out)
    assert_each_record_once(results, 3)
    statuses = [r["status"] for r in results]
    assert statuses[1] == "invalid", f"statuses {statuses}: the hostile record 2 must be invalid"
    assert "invalid" not in (statuses[0], statuses[2]), f"statuses {statuses}: a good neighbour was hurt"
    assert result.rc == 1, result


@pytest.mark.parametrize("case", sorted(HOSTILE_JSONL))
def test_batch_jsonl_survives_one_hostile_record(tmp_path: Path, case: str) -> None:
    """good, hostile, good → three results, the middle one invalid, exit 1."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl([good_line("G1"), HOSTILE_JSONL[case], good_line("G3")]))
    out = tmp_path / "out.jsonl"
    _assert_middle_record_invalid(run("batch", source, "-o", out, "--quiet"), out)


HOSTILE_CSV = {
    "10mb-cell": (
        "id,fsgs.biopsy_proven,fsgs.etiology\nG1,true,primary\nBIGCELL,true," + "x" * 10_000_000 + "\nG3,true,primary\n"
    ),
    # ext.a = 1 and ext.a.b = 2 cannot both hold: ext.a cannot be a number and an object
    "ext.a-and-ext.a.b": (
        "id,fsgs.biopsy_proven,fsgs.etiology,ext.a,ext.a.b\n"
        "G1,true,primary,,\n"
        "CLASH,true,primary,1,2\n"
        "G3,true,primary,,\n"
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_CSV))
def test_batch_csv_survives_one_hostile_row(tmp_path: Path, case: str) -> None:
    """A CSV row that cannot become a record is that row's problem only."""
    source = tmp_path / "in.csv"
    source.write_text(HOSTILE_CSV[case])
    out = tmp_path / "out.jsonl"
    _assert_middle_record_invalid(run("batch", source, "-o", out, "--quiet"), out)


def _assert_invalid_result(result) -> None:
    assert_no_traceback(result)
    try:
        parsed = json.loads(result.stdout.decode("utf-8"))  # strict: the result must be clean UTF-8 JSON
    except ValueError as exc:
        raise AssertionError(f"stdout is not a UTF-8 JSON result ({exc}): {result.stdout[:200]!r}") from None
    assert parsed.get("status") == "invalid", parsed.get("status")
    assert result.rc == 1, result


def test_evaluate_stdin_with_invalid_utf8_is_an_invalid_record(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are a bad record (exit 1, result invalid), not a crash; and the
    result must not echo the raw byte back as broken UTF-8."""
    _assert_invalid_result(run("evaluate", "-", input=b'{"id": "U\xff", "age_years": 40}'))


def test_evaluate_stdin_with_1000_deep_record_is_an_invalid_record() -> None:
    """A record nested 1000 deep exhausts Python's recursion limit in json: it must be invalid."""
    _assert_invalid_result(run("evaluate", "-", input=HOSTILE_JSONL["nested-1000-deep"]))


@pytest.mark.parametrize("depth", [500, DEEP])
def test_evaluate_include_input_on_a_deep_record(tmp_path: Path, depth: int) -> None:
    """--include-input copies the record into the decision; a deep record must not crash that copy
    (depth 500 is a valid record under ext, 1000 an unreadable one)."""
    record = good_record("DEEPIN")
    source = tmp_path / "deep.json"
    source.write_text(json.dumps(record)[:-1] + ', "ext": ' + '{"a": ' * depth + "1" + "}" * depth + "}")
    result = run("evaluate", source, "--include-input", "--compact")
    assert_no_traceback(result)
    assert result.rc in (0, 1), result
    assert json.loads(result.stdout.decode("utf-8"))["status"] in ("evaluated", "invalid")


@pytest.mark.parametrize(
    ("text", "pointer"),
    [
        (b'{"id": "B30", "ext": {"x": 1000000000000000000000000000000}}', "/ext/x"),
        (b'{"id": "BNEG", "ext": {"y": [1, -18446744073709551617]}}', "/ext/y/1"),
        (b'{"id": "B300", "ext": {"z": 1' + b"0" * 300 + b"}}", "/ext/z"),
    ],
)
def test_an_integer_beyond_64_bits_is_named_by_evaluate_as_by_the_python_api(
    tmp_path: Path, text: bytes, pointer: str
) -> None:
    """The command line reads the file as the Python API reads the dict: the record is invalid,
    the error names where the integer is, never evaluated with a float in its place."""
    import fsgs_kb

    source = tmp_path / "big.json"
    source.write_bytes(text)
    result = run("evaluate", source, "--compact")
    assert_no_traceback(result)
    printed = json.loads(result.out)
    assert printed["status"] == "invalid", printed
    assert [(e["code"], e["pointer"]) for e in printed["errors"]] == [("input.number_too_large", pointer)]
    api = fsgs_kb.load().evaluate(json.loads(text))
    assert api["status"] == "invalid" and api["errors"][0]["pointer"] == pointer
    # the same 19-or-more-digit runs inside a string or a float change nothing
    fine = tmp_path / "fine.json"
    fine.write_bytes(
        good_line("LONG12345678901234567890").replace(b'"weight_kg": 70', b'"weight_kg": 70.00000000000000000001')
    )
    ok = run("evaluate", fine, "--compact")
    assert_no_traceback(ok)
    assert json.loads(ok.out)["status"] == "evaluated", ok
    assert json.loads(ok.out)["patient_id"] == "LONG12345678901234567890"


def test_an_integer_orjson_would_round_keeps_its_value_and_hash(tmp_path: Path) -> None:
    """−2**63 − 1 is within the reader's limits (64 bits and a sign) but beyond orjson's integers:
    the command line must hash and keep the integer the Python API is given, not a float."""
    import fsgs_kb

    record = good_record("NEG63")
    record["ext"] = {"x": -(2**63) - 1}
    source = tmp_path / "neg.json"
    source.write_text(json.dumps(record))
    result = run("evaluate", source, "--compact", "--include-input")
    assert_no_traceback(result)
    printed = json.loads(result.out)
    api = fsgs_kb.load().evaluate(record)
    assert printed["decision"]["input_sha256"] == api["decision"]["input_sha256"]
    assert printed["decision"]["input"]["ext"]["x"] == -(2**63) - 1


@pytest.mark.parametrize("pid", ["\udfff", "S\ud800", "caf\u00e9\udc80"])
def test_the_python_api_writes_a_record_whose_id_is_not_unicode(pid: str) -> None:
    """Review 5 D2: a lone surrogate in `id` (only the Python API can be handed one: orjson
    refuses it on the wire) is `input.encoding`, and the result named it as `patient_id`, so
    `evaluate_json` raised UnicodeEncodeError. Its result names no patient and encodes."""
    import fsgs_kb

    kb = fsgs_kb.load()
    for detail in ("full", "standard", "minimal"):
        line = kb.evaluate_json({"id": pid, "age_years": -1}, detail=detail)
        result = json.loads(line)
        assert result["patient_id"] is None
        assert result["status"] == "invalid"
        assert "input.encoding" in [e["code"] for e in result["errors"]]
    assert kb.evaluate({"id": "caf\u00e9", "age_years": -1})["patient_id"] == "caf\u00e9"


@pytest.mark.parametrize("ending", [b"", b"\n", b"\r\n"])
def test_an_unreadable_record_has_one_decision_id_from_evaluate_and_batch(tmp_path: Path, ending: bytes) -> None:
    """Review 5 N2: an unreadable record's input hash is taken over its raw bytes; `evaluate FILE`
    took the file's last line ending with them, batch (a line) did not, so one record had two
    decision ids. The line ending is not part of the record."""
    source = tmp_path / "garbage.json"
    source.write_bytes(b"not json at all" + ending)
    out = tmp_path / "out.jsonl"
    single = run("evaluate", source)
    batch = run("batch", source, "-o", out, "--quiet")
    assert single.rc == 1 and batch.rc == 1, (single, batch)
    alone = json.loads(single.stdout)["decision"]
    (framed,) = [r["decision"] for r in read_results(out)]
    assert alone["input_sha256"] == framed["input_sha256"] == hashlib.sha256(b"not json at all").hexdigest()
    assert alone["decision_id"] == framed["decision_id"]
