"""Hostile sweep 13 of `batch --resume`, `-o` and `--summary`: what the earlier sweeps left.

- A resume record whose counts by rule were edited (one outcome moved to another, a rule that no
  result names) was resumed, and the summary of the whole output counted outcomes no result holds:
  at standard and full detail every line lists its rules' outcomes, so they are recounted.
- A resume refused for another option named the whole recorded set of options, cut at 40
  characters (`{"detail": "standard", "mask_key_id":…`): it names the option that differs.
- A resume record whose input extent was edited was refused as "a line that has grown since".
- `-o ""` sent the results nowhere (exit 1, no output), `--summary ""` failed after the whole run,
  and `--summary new/` wrote a file named `new`: each is a usage error before anything runs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hostile_support import assert_no_traceback, good_line, good_record, jsonl, run

N = 70  # two chunks of 64


def _input(path: Path) -> Path:
    lines = []
    for i in range(1, N + 1):
        record = good_record(f"P{i:04d}")
        if i % 3 == 0:
            record["cyclosporine"]["daily_dose"]["value"] = 100  # within the ceiling: other outcomes
        if i % 5 == 0:
            del record["weight_kg"]  # undetermined outcomes
        lines.append(b"not json" if i % 7 == 0 else json.dumps(record).encode())
    path.write_bytes(jsonl(lines))
    return path


def _sidecar(out: Path) -> Path:
    return out.with_name(out.name + ".fsgs-kb.json")


def _finished(tmp_path: Path, *options: str) -> tuple[Path, Path]:
    source = _input(tmp_path / "in.jsonl")
    out = tmp_path / "out.jsonl"
    first = run("batch", source, "-o", out, "--workers", "1", "--quiet", *options, timeout=60)
    assert first.rc == 1, first
    return source, out


def _refused(source: Path, out: Path, *options: str) -> str:
    before, record_before = out.read_bytes(), _sidecar(out).read_bytes()
    result = run("batch", source, "-o", out, "--resume", "--workers", "1", "--quiet", *options, timeout=60)
    assert result.rc == 2, result
    assert_no_traceback(result)
    assert "error[batch.resume]" in result.err, result
    assert out.read_bytes() == before, "a refused resume changed the output"
    assert _sidecar(out).read_bytes() == record_before, "a refused resume changed the resume record"
    return result.err


def _edit_by_rule(out: Path, edit) -> None:
    saved = json.loads(_sidecar(out).read_text())
    edit(saved["state"]["by_rule"])
    _sidecar(out).write_text(json.dumps(saved))


def _move_one_outcome(by_rule: dict[str, dict[str, int]]) -> None:
    rule, counts = next((r, c) for r, c in sorted(by_rule.items()) if len(c) > 1)
    first, second = sorted(counts)[:2]
    counts[first] -= 1
    counts[second] += 1


@pytest.mark.parametrize("detail", ["standard", "full"])
def test_resume_refuses_counts_by_rule_that_the_results_do_not_hold(tmp_path: Path, detail: str) -> None:
    source, out = _finished(tmp_path, "--detail", detail)
    _edit_by_rule(out, _move_one_outcome)
    err = _refused(source, out, "--detail", detail)
    assert "results in which rule" in err and "its resume record says" in err, err


def test_resume_refuses_a_rule_no_result_names(tmp_path: Path) -> None:
    source, out = _finished(tmp_path)
    _edit_by_rule(out, lambda by_rule: by_rule.update({"NO-SUCH-RULE": {"fired": 3}}))
    err = _refused(source, out)
    assert "holds 0 results in which rule NO-SUCH-RULE is fired; its resume record says 3" in err, err


def test_an_untouched_resume_record_is_resumed_at_every_detail_level(tmp_path: Path) -> None:
    """The recount agrees with what the run recorded, crashed records included (no rules listed)."""
    for detail in ("minimal", "standard", "full"):
        folder = tmp_path / detail
        folder.mkdir()
        source, out = _finished(folder, "--detail", detail)
        before = out.read_bytes()
        again = run("batch", source, "-o", out, "--resume", "--quiet", "--detail", detail, timeout=60)
        assert again.rc == 1, again
        assert out.read_bytes() == before


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (("--detail", "full"), 'detail "standard" there, "full" in this run'),
        (("--include-input",), "include_input not set there, true in this run"),
        (("--input-format", "json"), '"jsonl" there, "json" in this run'),
    ],
)
def test_a_resume_with_other_options_names_the_option_that_differs(
    tmp_path: Path, options: tuple[str, ...], named: str
) -> None:
    source, out = _finished(tmp_path)
    err = _refused(source, out, *options)
    assert named in err, err


def test_an_edited_input_extent_is_not_called_a_growing_line(tmp_path: Path) -> None:
    source, out = _finished(tmp_path)
    saved = json.loads(_sidecar(out).read_text())
    saved["state"].update(input_bytes=0, input_sha256=hashlib.sha256(b"").hexdigest())
    _sidecar(out).write_text(json.dumps(saved))
    err = _refused(source, out)
    assert f"record {N} (line {N}) ends at byte {source.stat().st_size} of the input, not at byte 0" in err, err
    assert "or the resume record was changed" in err, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-o", ""), "an empty path names no file"),
        (("-o", "out.jsonl", "--summary", ""), "an empty path names no file"),
        (("-o", "out.jsonl", "--summary", "new/"), "names a directory"),
    ],
)
def test_output_and_summary_paths_that_name_no_file_are_refused_before_the_run(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    (tmp_path / "in.jsonl").write_bytes(jsonl([good_line("P1")]))
    result = run("batch", "in.jsonl", *args, "--quiet", cwd=tmp_path)
    assert result.rc == 2, result
    assert message in result.err, result.err
    assert_no_traceback(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"], "nothing is written"


def test_the_batch_api_refuses_an_empty_output_path(tmp_path: Path) -> None:
    from fsgs_kb.engine.batch.job import BatchJob, run_batch
    from fsgs_kb.engine.errors import KBErrors
    from fsgs_kb.engine.kb import load

    (tmp_path / "in.jsonl").write_bytes(jsonl([good_line("P1")]))
    with pytest.raises(KBErrors, match="empty path"):
        run_batch(load(), BatchJob(source=str(tmp_path / "in.jsonl"), output=""))


def test_as_of_without_fhir_input_names_the_fhir_formats_batch_has(tmp_path: Path) -> None:
    """The hint said `add --input-format fhir`, a format batch refuses."""
    (tmp_path / "in.jsonl").write_bytes(jsonl([good_line("P1")]))
    result = run("batch", "in.jsonl", "--as-of", "2025-01-15", cwd=tmp_path)
    assert result.rc == 2, result
    assert "add --input-format fhir-bundles or --input-format fhir-bulk" in result.err, result.err
