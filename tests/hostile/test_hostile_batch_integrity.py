"""Hostile: batch outputs and resume records that lie, and a batch asked for absurd resources.

Review 2, items 3, 4, 5, 6 (the resume record) and 9: standard input that is the output file,
a resume record whose byte count falls inside a line, whose record count or status counts
disagree with the output, a resume record nested 100,000 levels deep, and a worker count of
twenty digits. Each is refused as a usage error (exit 2) naming the file and what disagrees,
with the input and the output left as they were; none forks a process it does not need.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hostile_support import FSGS, assert_no_traceback, good_line, jsonl, run, run_argv

N = 150  # three chunks of 64: a run with more than one block of lines
INVALID_EVERY = 7  # every 7th record is not JSON: outputs hold two statuses


def _input(path: Path, n: int = N) -> Path:
    lines = [b"not json" if i % INVALID_EVERY == 0 else good_line(f"P{i:04d}") for i in range(1, n + 1)]
    path.write_bytes(jsonl(lines))
    return path


@pytest.fixture(scope="module")
def finished_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of one complete run on N records: its input, output and resume record."""
    folder = tmp_path_factory.mktemp("finished")
    first = run(
        "batch", _input(folder / "in.jsonl"), "-o", folder / "out.jsonl", "--workers", "2", "--quiet", timeout=60
    )
    assert first.rc == 1, first  # some records are invalid
    return folder


@pytest.fixture
def finished(tmp_path: Path, finished_once: Path) -> tuple[Path, Path]:
    """A complete run on N records, then N more records appended to its input (work for --resume):
    a copy of the module's one run, for each test to damage (a resume record names no path, so
    the copy is what the run would have left here; one run instead of one a test)."""
    for made in finished_once.iterdir():
        shutil.copyfile(made, tmp_path / made.name)
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _input(source, 2 * N)  # the first N lines unchanged
    return source, out


def _sidecar(out: Path) -> Path:
    return out.with_name(out.name + ".fsgs-kb.json")


def _refused(source: Path, out: Path, *needles: str) -> None:
    before, record_before = out.read_bytes(), _sidecar(out).read_bytes()
    result = run("batch", source, "-o", out, "--resume", "--workers", "2", "--quiet", timeout=60)
    assert result.rc == 2, result
    assert_no_traceback(result)
    assert "error[batch.resume]" in result.err, result
    for needle in needles:
        assert needle in result.err, result.err
    assert out.read_bytes() == before, "a refused resume changed the output"
    assert _sidecar(out).read_bytes() == record_before, "a refused resume changed the resume record"


def _edit_state(out: Path, **changes: object) -> None:
    saved = json.loads(_sidecar(out).read_text())
    saved["state"].update(changes)
    _sidecar(out).write_text(json.dumps(saved))


# ---- 3: standard input is the output ---------------------------------------------------------


def test_stdin_that_is_the_output_file_is_refused_before_it_is_truncated(tmp_path: Path) -> None:
    """`fsgs-kb batch - -o F < F` truncated F to its first results; now refused, F untouched."""
    source = _input(tmp_path / "b.jsonl")
    before = source.read_bytes()
    with open(source, "rb") as stdin:
        result = run("batch", "-", "-o", source, "--quiet", stdin=stdin.fileno(), timeout=60)
    assert result.rc == 2, result
    assert "error[batch.output_is_input]" in result.err, result
    assert_no_traceback(result)
    assert source.read_bytes() == before, "the input was written"
    link = tmp_path / "hard.jsonl"  # a hard link to the input, given as the output: the same file
    os.link(source, link)
    with open(source, "rb") as stdin:
        result = run("batch", "-", "-o", link, "--quiet", stdin=stdin.fileno(), timeout=60)
    assert result.rc == 2 and "error[batch.output_is_input]" in result.err, result
    assert source.read_bytes() == before


@pytest.mark.parametrize("source", ["FILE", "- < FILE"])
def test_results_appended_to_the_input_on_standard_output_are_refused(tmp_path: Path, source: str) -> None:
    """`fsgs-kb batch F >> F` appended its results to the input it was reading."""
    path = _input(tmp_path / "b.jsonl", 20)
    before = path.read_bytes()
    command = shlex.join([*FSGS, "batch", "--quiet"]) + " " + source.replace("FILE", shlex.quote(str(path)))
    result = run_argv(["sh", "-c", f"exec {command} >> {shlex.quote(str(path))}"], timeout=60)
    assert result.rc == 2, result
    assert "error[batch.output_is_input]" in result.err and "standard output is the input" in result.err, result
    assert path.read_bytes() == before, "the input was written"


def test_stdin_from_another_file_or_a_pipe_still_writes_the_output(tmp_path: Path) -> None:
    source = _input(tmp_path / "in.jsonl", 20)
    out = tmp_path / "out.jsonl"
    with open(source, "rb") as stdin:
        from_file = run("batch", "-", "-o", out, "--quiet", stdin=stdin.fileno(), timeout=60)
    assert from_file.rc == 1, from_file
    assert len(out.read_bytes().splitlines()) == 20
    from_pipe = run("batch", "-", "-o", out, "--quiet", input=source.read_bytes(), timeout=60)
    assert from_pipe.rc == 1, from_pipe
    assert len(out.read_bytes().splitlines()) == 20


# ---- 4: the recorded byte count is not at the end of a line -------------------------------------


def test_resume_refuses_an_output_whose_recorded_end_is_inside_a_line(finished: tuple[Path, Path]) -> None:
    """One byte inserted into line 1: the recorded end now falls inside the last line (it used to
    be cut there, and the next result glued onto the half line)."""
    source, out = finished
    out.write_bytes(out.read_bytes().replace(b"{", b"{ ", 1))
    _refused(source, out, "out.jsonl does not end a line at byte", "not resumable; run without --resume")


def test_resume_refuses_an_output_whose_lines_are_out_of_order(finished: tuple[Path, Path]) -> None:
    """Lines 3 and 4 swapped: the same bytes, the same count, not the results of records 3 and 4."""
    source, out = finished
    lines = out.read_bytes().splitlines(keepends=True)
    lines[2], lines[3] = lines[3], lines[2]
    out.write_bytes(b"".join(lines))
    _refused(source, out, "out.jsonl line 3 is not the result of record 3")


def test_resume_refuses_an_output_cut_short(finished: tuple[Path, Path]) -> None:
    source, out = finished
    out.write_bytes(out.read_bytes()[:-10])
    _refused(source, out, "bytes where its resume record says")


# ---- 5: the resume record's counts disagree with the output -------------------------------------


def test_resume_refuses_a_record_count_below_the_lines_kept(finished: tuple[Path, Path]) -> None:
    """state.records = 10 while the output holds 150 lines: resumed, records 11-150 came twice."""
    source, out = finished
    _edit_state(out, records=10, by_status={"evaluated": 10}, by_rule={})
    _refused(source, out, f"out.jsonl holds {N} lines where its resume record says 10", "not resumable")


def test_resume_refuses_forged_counts_by_status(finished: tuple[Path, Path]) -> None:
    """The invalid records moved into another status (the total unchanged): a resumed run would
    have exited 0 over an output holding invalid results."""
    source, out = finished
    saved = json.loads(_sidecar(out).read_text())["state"]["by_status"]
    assert saved.get("invalid"), saved
    forged = {k: v for k, v in saved.items() if k != "invalid"}
    other = next(iter(forged))
    forged[other] += saved["invalid"]
    _edit_state(out, by_status=forged)
    _refused(source, out, "out.jsonl holds results", "where its resume record says")


def test_resume_refuses_counts_that_do_not_add_up(finished: tuple[Path, Path]) -> None:
    source, out = finished
    saved = json.loads(_sidecar(out).read_text())["state"]["by_status"]
    _edit_state(out, by_status={k: v + 1 for k, v in saved.items()})
    _refused(source, out, "the resume record is damaged", "add up to")


@pytest.mark.parametrize("field", ["records", "output_bytes", "by_status", "by_rule"])
def test_resume_refuses_fields_of_the_wrong_type(finished: tuple[Path, Path], field: str) -> None:
    source, out = finished
    _edit_state(out, **{field: "12"})
    _refused(source, out, "the resume record is damaged")


def test_an_untouched_output_still_resumes_to_every_record(finished: tuple[Path, Path]) -> None:
    source, out = finished
    result = run("batch", source, "-o", out, "--resume", "--workers", "2", "--quiet", timeout=60)
    assert result.rc == 1, result
    numbers = [json.loads(line)["record"] for line in out.read_bytes().splitlines()]
    assert numbers == list(range(1, 2 * N + 1))


def test_the_resume_record_holds_the_crc32_of_the_output(finished: tuple[Path, Path]) -> None:
    """The parent combines the workers' chunk CRCs (crc32_combine): the recorded value is exactly
    zlib.crc32 of the output, after the first run and after a resumed one."""
    source, out = finished
    assert json.loads(_sidecar(out).read_text())["state"]["output_crc32"] == zlib.crc32(out.read_bytes())
    result = run("batch", source, "-o", out, "--resume", "--workers", "2", "--quiet", timeout=60)
    assert result.rc == 1, result
    assert json.loads(_sidecar(out).read_text())["state"]["output_crc32"] == zlib.crc32(out.read_bytes())


# ---- 5b: results edited without changing the output's size (review 4, item 4) -----------------


def _same_size_edit(out: Path, edit: Callable[[list[dict[str, Any]]], None]) -> None:
    lines = [json.loads(line) for line in out.read_bytes().splitlines()]
    edit(lines)
    data = b"".join(json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode() + b"\n" for line in lines)
    before = out.read_bytes()
    assert len(data) == len(before) and data != before  # the edits keep every line's length
    out.write_bytes(data)


def _swap_patient_ids(lines: list[dict[str, Any]]) -> None:
    a, b = [i for i, line in enumerate(lines) if line["status"] == "evaluated"][:2]
    lines[a]["patient_id"], lines[b]["patient_id"] = lines[b]["patient_id"], lines[a]["patient_id"]


def _swap_contents(lines: list[dict[str, Any]]) -> None:
    a, b = [i for i, line in enumerate(lines) if line["status"] == "evaluated"][:2]
    first, second = dict(lines[b]), dict(lines[a])
    first.update(record=lines[a]["record"], line=lines[a]["line"])
    second.update(record=lines[b]["record"], line=lines[b]["line"])
    lines[a], lines[b] = first, second


def _swap_statuses(lines: list[dict[str, Any]]) -> None:
    a = next(i for i, line in enumerate(lines) if line["status"] == "evaluated")
    b = next(i for i, line in enumerate(lines) if line["status"] != "evaluated")
    lines[a]["status"], lines[b]["status"] = lines[b]["status"], lines[a]["status"]


def _set_line_field(lines: list[dict[str, Any]]) -> None:
    lines[3]["line"] = 9


@pytest.mark.parametrize("edit", [_swap_patient_ids, _swap_contents, _swap_statuses, _set_line_field])
def test_resume_refuses_results_edited_at_the_same_size(
    finished: tuple[Path, Path], edit: Callable[[list[dict[str, Any]]], None]
) -> None:
    """Each of these kept the size, the numbering and the counts by status, and was resumed as if
    the results were the run's own."""
    source, out = finished
    raw = out.read_bytes()
    # the edits are made on a compact re-encoding, which must give back exactly the bytes batch wrote
    assert raw == b"".join(
        json.dumps(json.loads(line), separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        for line in raw.splitlines()
    )
    _same_size_edit(out, edit)
    _refused(source, out, "does not hold the results its resume record describes", "not resumable")


def test_resume_refuses_a_rule_outcome_changed_at_the_same_size(finished: tuple[Path, Path]) -> None:
    """`"not_fired"` → `"fired"    ` (padded): the by_rule counts were not checked against the lines."""
    source, out = finished
    raw = out.read_bytes()
    assert b'"outcome":"not_fired"' in raw
    out.write_bytes(raw.replace(b'"outcome":"not_fired"', b'"outcome":"fired"    ', 1))
    _refused(source, out, "does not hold the results its resume record describes")


def test_resume_refuses_a_resume_record_without_an_output_digest(finished: tuple[Path, Path]) -> None:
    """A resume record of format 1 (before the digest) cannot vouch for the results kept."""
    source, out = finished
    saved = json.loads(_sidecar(out).read_text())
    saved["format"] = "fsgs-kb-batch-resume-1"
    del saved["state"]["output_crc32"]
    _sidecar(out).write_text(json.dumps(saved))
    _refused(source, out, "written by an older fsgs-kb, without a digest of the output", "run without --resume")


@pytest.mark.parametrize("value", ["0", -1, 1 << 32, True, None])
def test_resume_refuses_an_output_crc32_that_is_not_one(finished: tuple[Path, Path], value: object) -> None:
    source, out = finished
    _edit_state(out, output_crc32=value)
    _refused(source, out, "the resume record is damaged")


# ---- 6: a resume record nested too deeply -------------------------------------------------------


@pytest.mark.parametrize("text", ["[" * 100_000, '{"a":' * 100_000, "[" * 100_000 + "]" * 100_000])
def test_a_deeply_nested_resume_record_cannot_be_read(finished: tuple[Path, Path], text: str) -> None:
    source, out = finished
    _sidecar(out).write_text(text)
    _refused(source, out, "the resume record cannot be read")


# ---- 9: workers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["99999999999999999999", "257", "0"])
def test_an_absurd_worker_count_is_a_usage_error(tmp_path: Path, workers: str) -> None:
    """Twenty digits forked thousands of processes (load 750, then the OOM killer)."""
    source = _input(tmp_path / "in.jsonl", 20)
    out = tmp_path / "out.jsonl"
    start = time.monotonic()
    result = run("batch", source, "-o", out, "--workers", workers, "--quiet", timeout=60)
    assert result.rc == 2, result
    assert "--workers" in result.err and "256" in result.err, result.err
    assert not out.exists(), "the output was created before the usage error"
    assert time.monotonic() - start < 30


def test_the_largest_worker_count_runs_a_small_input(tmp_path: Path) -> None:
    source = _input(tmp_path / "in.jsonl", 20)
    out = tmp_path / "out.jsonl"
    result = run("batch", source, "-o", out, "--workers", "256", "--quiet", timeout=60)
    assert result.rc == 1, result
    assert len(out.read_bytes().splitlines()) == 20
