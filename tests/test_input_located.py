"""Unreadable input records, as a data engineer and an auditor meet them (hostile sweep 13): each is
traceable by the hash of its own bytes and said where it goes wrong.

- Every CSV row that could not be read (a bad cell, a ragged row, an unclosed quote) and every JSON
  line over the size limit was hashed as no bytes at all: all of them, and every empty line, shared
  one input_sha256 (SHA-256 of b"") and one decision id.
- `replay`/`trace --input patients.csv` read the CSV as JSON: no result of a CSV batch could be
  replayed, each called one that "claims record 1 at line 2, which the input file has at line 1".
- A byte that is not UTF-8 was said to be at column 1 wherever it was (orjson's account), a lone
  surrogate escape (`\\ud800`, plain ASCII) was called "not valid UTF-8", and a pretty-printed
  document's error gave a column without its line; a CSV row's bad byte was counted from 0.
- A column the CSV header leaves unnamed was read as JSON under the pointer "/".
- A line that never ends (/dev/zero) stopped the run as `<input>: error[input.unbounded]`."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import fsgs_kb
from fsgs_kb.cli import main
from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.read.records import read_csv, read_jsonl, record_value
from fsgs_kb.engine.read.shape import MAX_RECORD_BYTES


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return fsgs_kb.load()


def _hashes(kb: KnowledgeBase, records: Any) -> list[str]:
    return [kb.evaluate_record(record, detail="minimal")["decision"]["input_sha256"] for record in records]


def test_each_unreadable_csv_row_has_the_hash_of_its_bytes(kb: KnowledgeBase) -> None:
    rows = [b"P1,abc", b"P2,3,4", b"P3,x", b'P4,"5']
    data = b"id,age_years\r\n" + b"\r\n".join(rows) + b"\r\n"
    results = [kb.evaluate_record(r, detail="minimal") for r in read_csv(io.BytesIO(data))]
    assert [r["status"] for r in results] == ["invalid"] * 4
    hashes = [r["decision"]["input_sha256"] for r in results]
    assert hashes[:3] == [hashlib.sha256(row).hexdigest() for row in rows[:3]]  # without the line end
    assert hashlib.sha256(b"").hexdigest() not in hashes
    assert len({r["decision"]["decision_id"] for r in results}) == 4


def test_each_oversized_line_has_the_hash_of_its_bytes(kb: KnowledgeBase) -> None:
    lines = [b'{"id": "A", "x": "' + b"a" * MAX_RECORD_BYTES + b'"}', b'{"id": "B", "x": "' + b"b" * 70000 * 16 + b'"}']
    records = list(read_jsonl(io.BytesIO(lines[0] + b"\r\n" + lines[1] + b"\n\n")))
    assert [record_value(r)[1].code for r in records] == ["input.too_large", "input.too_large", "patient.empty"]
    assert _hashes(kb, records) == [hashlib.sha256(line).hexdigest() for line in [*lines, b""]]


def test_a_csv_batch_replays_against_its_csv(tmp_path: Path) -> None:
    patients = tmp_path / "patients.csv"
    patients.write_bytes(b"id,age_years,weight_kg\nP1,40,70\nP2,abc,80\n")
    results = tmp_path / "results.jsonl"
    runner = CliRunner()
    done = runner.invoke(main, ["batch", str(patients), "-o", str(results), "--workers", "1", "--quiet"])
    assert done.exit_code == 1, done.output  # P2 is invalid
    replay = runner.invoke(main, ["replay", str(results), "--input", str(patients)])
    assert replay.exit_code == 0, replay.output
    assert "2 identical (100.0 %)" in replay.stdout, replay.stdout
    trace = runner.invoke(main, ["trace", str(results), "--input", str(patients)])
    assert trace.exit_code == 0, trace.output
    assert trace.stdout.count("the trace is exact") == 2, trace.stdout


def _problem(raw: bytes) -> dict[str, Any]:
    record = next(read_jsonl(io.BytesIO(raw)))
    return record_value(record)[1].to_dict()


def test_encoding_problems_are_placed() -> None:
    bad = _problem(b'{"id": "ok", "x": "\xff"}')
    assert bad["code"] == "input.encoding" and "column 20 (byte 0xff)" in bad["message"], bad
    accented = _problem('{"id": "é", "x": "'.encode() + b"\xfe" + b'"}')
    assert "column 19 (byte 0xfe)" in accented["message"], accented  # columns count characters
    lone = _problem(b'{"id": "\\ud800"}')
    assert lone["code"] == "input.encoding" and "UTF-8" not in lone["message"], lone
    assert "surrogate" in lone["message"] and "column 9" in lone["message"], lone


def test_a_pretty_printed_document_says_the_line(tmp_path: Path) -> None:
    path = tmp_path / "patient.json"
    path.write_bytes(b'{\n  "id": "x",\n  "age_years": 4x\n}\n')
    done = CliRunner().invoke(main, ["evaluate", str(path)])
    assert done.exit_code == 1, done.output
    errors = json.loads(done.stdout[done.stdout.index("{") :])["errors"]
    assert "at line 3, column 17" in errors[0]["message"], errors
    path.write_bytes(b'{\n  "id": "\xe9"\n}\n')
    done = CliRunner().invoke(main, ["evaluate", str(path)])
    errors = json.loads(done.stdout[done.stdout.index("{") :])["errors"]
    assert "at line 2, column 10 (byte 0xe9)" in errors[0]["message"], errors


def test_csv_problems_are_placed(kb: KnowledgeBase) -> None:
    data = b"id,,fsgs..x\nP1,,\nP2,x,\nP3,,y\nP\xff4,,\n"
    problems = [record_value(r)[1] for r in read_csv(io.BytesIO(data))]
    assert problems[0] is None
    assert problems[1] is not None and "column 2 of the header has no name" in problems[1].message
    assert problems[2] is not None and "column 3 of the header is named 'fsgs..x'" in problems[2].message
    assert problems[3] is not None and problems[3].message == "row 4: not valid UTF-8 text at column 2 (byte 0xff)"


def test_a_line_that_never_ends_names_the_input(tmp_path: Path) -> None:
    link = tmp_path / "zero.jsonl"
    link.symlink_to("/dev/zero")
    done = CliRunner().invoke(main, ["batch", str(link), "-o", str(tmp_path / "out.jsonl"), "--workers", "1"])
    assert done.exit_code == 2, done.output
    assert f"{link}:1: error[input.unbounded]" in done.stderr, done.stderr
    assert "<input>" not in done.stderr
