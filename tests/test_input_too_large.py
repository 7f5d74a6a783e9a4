"""Records over the size limit, and the patients file replay and trace read (hostile sweep 14).

- A CSV row over the size limit, a patient file given to `evaluate` over it, and a FHIR Bundle
  over the map's limit (evaluate, or a line of fhir-bundles) recorded the hash of no bytes (the
  Bundle: of its first 4 KiB): two different oversized records shared one decision id. Each is
  hashed over all its bytes now, without its line end, as an oversized JSON line was, in bounded
  memory; a document that never ends stops as a line that never ends does.
- `replay`/`trace --input` read every patients file that is not CSV as one JSON document or JSON
  Lines: a batch of a JSON array over 1 MiB found none of its inputs, one of a smaller array was
  called misplaced, an oversized document given to evaluate was compared with that file read as
  a JSON line ("line 1 is larger", not "the input is larger": a MISMATCH), and the second of two
  equal unreadable records (the same bad line twice) with the first one's result.
"""

from __future__ import annotations

import hashlib
import io
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import fsgs_kb
from fsgs_kb.cli import main
from fsgs_kb.engine.errors import KBErrors
from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.read.record import BOM, MAX_SKIP, TailDigest
from fsgs_kb.engine.read.records import read_csv, read_document, read_json_array, record_value
from fsgs_kb.engine.read.shape import MAX_RECORD_BYTES

BIG = MAX_RECORD_BYTES


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return fsgs_kb.load()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hashes(kb: KnowledgeBase, records: Any) -> list[str]:
    return [kb.evaluate_record(record, detail="minimal")["decision"]["input_sha256"] for record in records]


def test_tail_digest_is_the_hash_without_the_line_end() -> None:
    for pieces in ([b"ab", b"c\r", b"\n"], [b"ab\n", b"\n", b"\r\n"], [b"\r\n"], [], [b"a\nb", b"", b"\r"]):
        digest = TailDigest()
        for piece in pieces:
            digest.update(piece)
        assert digest.hexdigest() == _sha(b"".join(pieces).rstrip(b"\r\n")), pieces


def test_each_oversized_csv_row_has_the_hash_of_its_bytes(kb: KnowledgeBase) -> None:
    rows = [
        b'P2,"' + b"a" * BIG + b'"',  # past the limit in its last piece: the bytes kept are hashed
        b'P3,"' + b"b" * (3 * BIG) + b'"',  # far past it: hashed while read, not kept
        b'P4,"' + b"a" * BIG + b'"',  # differs from P2 only by its id
        b'P5,"' + b"c\r\n" * BIG + b'"',  # line breaks in a quoted cell are its bytes
        b"P6," + b"7" * (2 * BIG),  # no quote at all
    ]
    data = b"id,age_years\r\nP1,40\r\n" + b"\r\n".join(rows) + b"\nP7,50\n" + rows[1]  # the last without line end
    records = list(read_csv(io.BytesIO(data)))
    assert [r.number for r in records] == list(range(1, 9))
    problems = [record_value(r)[1] for r in records]
    assert [p.code if p else None for p in problems] == [None, *["input.too_large"] * 5, None, "input.too_large"]
    hashes = _hashes(kb, records)
    assert hashes[1:6] + hashes[7:] == [_sha(row) for row in [*rows, rows[1]]]
    assert _sha(b"") not in hashes
    assert len(set(hashes[1:6])) == 5, "two different oversized rows share a decision id"


def test_each_oversized_document_has_the_hash_of_its_bytes(tmp_path: Path) -> None:
    bodies = [b'{"id": "A", "x": "' + b"a" * BIG + b'"}', b'{"id": "B", "x": "' + b"a" * BIG + b'"}']
    files = [
        (BOM + bodies[0] + b"\r\n", bodies[0]),
        (bodies[1] + b"\n\n", bodies[1]),
        (b"\n" * BIG + b"{}", b"\n" * BIG + b"{}"),
    ]
    runner = CliRunner()
    for i, (content, hashed) in enumerate(files):
        path = tmp_path / f"p{i}.json"
        path.write_bytes(content)
        for source, given in ((str(path), None), ("-", content)):
            done = runner.invoke(main, ["evaluate", source, "--compact"], input=given)
            assert done.exit_code == 1, done.output
            result = json.loads(done.stdout.splitlines()[-1])
            assert result["errors"][0]["code"] == "input.too_large", result
            assert result["decision"]["input_sha256"] == _sha(hashed), (i, source)


def test_a_document_that_never_ends_names_the_input(tmp_path: Path) -> None:
    link = tmp_path / "zero.json"
    link.symlink_to("/dev/zero")
    done = CliRunner().invoke(main, ["evaluate", str(link)])
    assert done.exit_code == 2, done.output
    assert f"{link}:1: error[input.unbounded] the input goes on for more than 256 MiB" in done.stderr, done.stderr


class _Endless(io.RawIOBase):
    """A pipe of `head`, `size` bytes of x, then `tail`, made as they are read: no copy holds them."""

    def __init__(self, head: bytes, size: int, tail: bytes) -> None:
        self.parts = [head, tail]
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.parts[0]:
            data, self.parts[0] = self.parts[0][: len(buffer)], self.parts[0][len(buffer) :]
        elif self.left:
            data = b"x" * min(len(buffer), self.left)
            self.left -= len(data)
        else:
            data, self.parts[1] = self.parts[1][: len(buffer)], self.parts[1][len(buffer) :]
        buffer[: len(data)] = data
        return len(data)


@pytest.mark.parametrize("reader", ["csv", "document"])
def test_an_oversized_record_is_hashed_in_bounded_memory(reader: str) -> None:
    size = 40 * BIG
    # a pipe: a quoted cell past the limit is taken as unclosed at once (csvframe.py), so the cell is plain
    head, tail = (b"id,x\nP1,", b"\nP2,y\n") if reader == "csv" else (b'{"x": "', b'"}\n')
    stream = io.BufferedReader(_Endless(head, size, tail))
    tracemalloc.start()
    try:
        records = list(read_csv(stream) if reader == "csv" else read_document(stream))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert record_value(records[0])[1].code == "input.too_large"
    assert peak < 6 * BIG, f"{peak:,} bytes held to read a {size:,}-byte record"
    cell = b"x" * size
    expected = b"P1," + cell if reader == "csv" else b'{"x": "' + cell + b'"}'
    assert records[0].digest == _sha(expected)
    assert [r.number for r in records] == ([1, 2] if reader == "csv" else [1])


def _batch(tmp_path: Path, name: str, data: bytes, *options: str) -> tuple[Path, Path]:
    patients, results = tmp_path / name, tmp_path / f"{name}.out"
    patients.write_bytes(data)
    done = CliRunner().invoke(main, ["batch", str(patients), "-o", str(results), "--workers", "1", "--quiet", *options])
    assert done.exit_code in (0, 1), done.output
    return patients, results


def _replays_exactly(results: Path, patients: Path, n: int) -> None:
    runner = CliRunner()
    replay = runner.invoke(main, ["replay", str(results), "--input", str(patients)])
    assert replay.exit_code == 0, replay.stdout
    assert f"{n:,} identical (100.0 %)" in replay.stdout, replay.stdout
    trace = runner.invoke(main, ["trace", str(results), "--input", str(patients)])
    assert trace.exit_code == 0, trace.stdout
    assert trace.stdout.count("the trace is exact") == n, trace.stdout
    assert "MISMATCH" not in trace.stdout


def test_oversized_and_repeated_bad_csv_rows_replay_against_their_input(tmp_path: Path) -> None:
    rows = [b"P1,40", b'P2,"' + b"a" * BIG + b'"', b'P3,"' + b"b" * BIG + b'"', b"P4,4\xff", b"P4,4\xff"]
    rows.append(rows[1])  # the same oversized row again: its result says its own line
    patients, results = _batch(tmp_path, "p.csv", b"id,age_years\n" + b"\n".join(rows) + b"\n")
    _replays_exactly(results, patients, len(rows))


def test_repeated_oversized_json_lines_replay_against_their_input(tmp_path: Path) -> None:
    big = b'{"id": "A", "x": "' + b"a" * BIG + b'"}'
    patients, results = _batch(tmp_path, "p.jsonl", b"\n".join([big, b'{"id": "P1"}', big, b"not json", b"not json"]))
    _replays_exactly(results, patients, 5)


@pytest.mark.parametrize("pretty", [False, True])
def test_an_oversized_document_replays_against_itself(tmp_path: Path, pretty: bool) -> None:
    record = {"id": "A", "ext": {"x": "a" * BIG}}
    patient = tmp_path / "patient.json"
    patient.write_text(json.dumps(record, indent=2 if pretty else None) + "\n")
    result = tmp_path / "result.json"
    done = CliRunner().invoke(main, ["evaluate", str(patient)])
    assert done.exit_code == 1, done.output
    result.write_text(done.stdout)
    _replays_exactly(result, patient, 1)


def test_a_json_array_batch_replays_against_its_array(tmp_path: Path) -> None:
    small = [{"id": f"P{i}", "age_years": 40 + i} for i in range(3)]
    text = json.dumps(small, indent=2)[:-2] + ',\n  {"id": "bad", "age_years": 4x}\n]'  # one bad element
    patients, results = _batch(tmp_path, "small.json", text.encode())
    _replays_exactly(results, patients, 4)
    large = [{"id": f"P{i}", "ext": {"pad": "x" * 1000}} for i in range(1200)]  # over 1 MiB
    patients, results = _batch(tmp_path, "large.json", json.dumps(large, indent=1).encode())
    _replays_exactly(results, patients, 1200)


def test_impact_reads_a_json_array_over_the_limit_as_an_array(tmp_path: Path) -> None:
    cohort = [{"id": f"P{i}", "age_years": 40, "ext": {"pad": "x" * 1000}} for i in range(1200)]
    path = tmp_path / "cohort.json"
    path.write_text(json.dumps(cohort, indent=1))
    done = CliRunner().invoke(main, ["impact", "rules", "rules", str(path), "--format", "json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["invalid"] == [] and report["patients"] == 1200, report["invalid"][:3]


def _bundle(patient_id: str) -> bytes:
    """A Bundle over the FHIR map's limit (4,000,000 bytes) whose first 4 KiB are the same for every id."""
    pad = {"resourceType": "Basic", "id": "pad", "text": {"div": "x" * 4_000_000}}
    patient = {"resourceType": "Patient", "id": patient_id}
    entry = [{"resource": pad}, {"resource": patient}]
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entry}).encode()


def test_each_oversized_bundle_has_the_hash_of_its_bytes(tmp_path: Path) -> None:
    bundles = [_bundle("a"), _bundle("b")]
    assert bundles[0][:4096] == bundles[1][:4096]
    runner = CliRunner()
    lines = tmp_path / "bundles.ndjson"
    lines.write_bytes(b"\n".join(bundles) + b"\n")
    out = tmp_path / "out.jsonl"
    args = ["--as-of", "2025-01-15", "--detail", "minimal"]
    done = runner.invoke(
        main, ["batch", str(lines), "--input-format", "fhir-bundles", "-o", str(out), "--quiet", *args]
    )
    assert done.exit_code == 1, done.output
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["errors"][0]["code"] for r in results] == ["input.too_large"] * 2
    assert [r["decision"]["input_sha256"] for r in results] == [_sha(b) for b in bundles]
    for bundle in bundles:
        (tmp_path / "bundle.json").write_bytes(bundle)
        done = runner.invoke(main, ["evaluate", str(tmp_path / "bundle.json"), "--input-format", "fhir", *args])
        assert done.exit_code == 1, done.output
        assert json.loads(done.stdout)["decision"]["input_sha256"] == _sha(bundle)


def test_each_bad_or_oversized_array_element_has_the_hash_of_its_bytes(kb: KnowledgeBase) -> None:
    """An element over the limit and a malformed one (up to the line the scan resumes at) were hashed
    as no bytes: all of them shared one decision id."""
    elements = [
        b'{"id": "A", "x": "' + b"a" * BIG + b'"}',
        b'{"id": "B", "x": "' + b"b" * BIG + b'"}',
        b'{"id": "c", "x": "open,',
        b'{"id": "d", "x": "open,',
    ]
    data = b'[\n{"id": "P1"},\n' + b",\n".join(elements[:2]) + b",\n" + b"\n".join(elements[2:]) + b'\n{"id": "P2"}\n]'
    records = list(read_json_array(io.BytesIO(data)))
    assert [record_value(r)[1] is None for r in records] == [True, False, False, False, False, True]
    hashes = _hashes(kb, records)
    assert hashes[1:5] == [_sha(element) for element in elements]


def test_a_long_string_in_an_array_element_is_read_through_in_bounded_memory() -> None:
    """A string longer than the limit was kept whole and scanned again from its quote at every
    64 KiB read: a 400 MB one took gigabytes and ran for minutes."""
    size = 8 * BIG
    stream = io.BufferedReader(_Endless(b'[{"id": "a", "x": "', size, b'\\"q"},\n{"id": "b"}]'))
    tracemalloc.start()
    try:
        records = list(read_json_array(stream))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 * BIG, f"{peak:,} bytes held to read a {size:,}-byte string"
    assert [r.number for r in records] == [1, 2]
    assert record_value(records[0])[1].code == "input.too_large"
    assert records[0].digest == _sha(b'{"id": "a", "x": "' + b"x" * size + b'\\"q"}')
    assert record_value(records[1]) == ({"id": "b"}, None)


def test_an_array_element_that_never_ends_stops_the_run() -> None:
    """As a JSON line or a CSV row that never ends: it was read to the end of the input (forever
    from a device or a pipe that does not end)."""
    stream = io.BufferedReader(_Endless(b"[1", MAX_SKIP + 2 * BIG, b"]"))
    with pytest.raises(KBErrors) as raised:
        list(read_json_array(stream))
    assert raised.value.errors[0].code == "input.unbounded"
    assert raised.value.errors[0].message == "the element at line 1 does not end: reading stopped"
