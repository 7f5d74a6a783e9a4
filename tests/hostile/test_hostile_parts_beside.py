"""Input parts whose output parts collide with the files a run writes beside another output part:
its resume record (`OUTPUT.fsgs-kb.json`) and that record's temporary file
(`OUTPUT.fsgs-kb.json.PID.tmp`). Every output part is OUTDIR/<its input's file name>, so the names
come from the inputs; each such run is refused before anything is written, naming both parts."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hostile_support import (
    assert_each_record_once,
    assert_no_traceback,
    good_line,
    jsonl,
    read_results,
    run,
    run_with_own_pid,
)


def _part(path: Path, first: int, n: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jsonl([good_line(f"P{i}") for i in range(first, first + n)]))
    return path


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _refused(result, code: str) -> str:
    assert result.rc == 2, result
    assert_no_traceback(result)
    lines = [line for line in result.err.splitlines() if "error[" in line]
    assert len(lines) == 1 and f"error[{code}]" in lines[0], result.err
    return lines[0]


def test_an_output_part_that_is_another_parts_resume_record_is_refused(tmp_path: Path) -> None:
    """Parts x.jsonl and x.jsonl.fsgs-kb.json: the second's output part is the first's resume
    record. In this order the second part's results replaced x.jsonl's resume record (a --resume
    then refused: `the resume record cannot be read`); in the other order (a/x.jsonl.fsgs-kb.json,
    b/x.jsonl) x.jsonl's resume record replaced the first part's results, which were lost."""
    for first, second, pattern in (
        ("in/x.jsonl", "in/x.jsonl.fsgs-kb.json", "in/*"),
        ("a/x.jsonl.fsgs-kb.json", "b/x.jsonl", "*/x.*"),
    ):
        root = tmp_path / first.replace("/", "_")
        _part(root / first, 0, 2)
        _part(root / second, 2, 3)
        before = _digests(root)
        refused = run("batch", pattern, "-o", "out", "--quiet", cwd=root)
        line = _refused(refused, "batch.output")
        resume_record_of = "in/x.jsonl" if first == "in/x.jsonl" else "b/x.jsonl"
        other = second if first == "in/x.jsonl" else first
        assert line.startswith(f"{other}: ") and "out/x.jsonl.fsgs-kb.json is the resume record" in line, line
        assert f"of the input part {resume_record_of}" in line, line
        assert not (root / "out").exists() and _digests(root) == before  # nothing written, nothing touched

    # apart, each is evaluated
    root = tmp_path / "in_x.jsonl"
    (root / "out").mkdir()
    done = run("batch", "in/x.jsonl", "-o", "out", "--quiet", cwd=root)
    assert done.rc == 0, done
    assert_each_record_once(read_results(root / "out" / "x.jsonl"), 2)


def test_an_output_part_named_as_another_parts_resume_temporary_is_refused(tmp_path: Path) -> None:
    """Parts a/x.jsonl.fsgs-kb.json.PID.tmp and b/x.jsonl: b's resume record is written to
    OUTDIR/x.jsonl.fsgs-kb.json.PID.tmp, then renamed, so a's finished output part there was
    truncated, overwritten and renamed away: its results were lost, the run exit 0."""
    _part(tmp_path / "b" / "x.jsonl", 0, 2)
    refused = run_with_own_pid(
        'mkdir -p a && cp b/x.jsonl "a/x.jsonl.fsgs-kb.json.$$.tmp"',
        "batch",
        "*/x.*",
        "-o",
        "out",
        "--quiet",
        cwd=tmp_path,
    )
    line = _refused(refused, "batch.output")
    assert "is the resume record's temporary file of the output part out/x.jsonl of the input part b/x.jsonl" in line
    assert line.startswith("a/x.jsonl.fsgs-kb.json.") and not (tmp_path / "out").exists(), line


def test_an_input_part_at_a_resume_record_or_its_temporary_is_refused(tmp_path: Path) -> None:
    """OUTDIR/x.jsonl.fsgs-kb.json.PID.tmp a symbolic link to input part y.jsonl: x.jsonl's resume
    record was written through it into y.jsonl (the input destroyed, then read as a part). At the
    resume record's own name the link was replaced, the input kept; refused alike, as the resume
    record of a single batch run is refused when it is the input."""
    _part(tmp_path / "in" / "x.jsonl", 0, 2)
    y = _part(tmp_path / "in" / "y.jsonl", 2, 3)
    (tmp_path / "out").mkdir()
    before = _digests(tmp_path / "in")
    refused = run_with_own_pid(
        f'ln -s {y} "out/x.jsonl.fsgs-kb.json.$$.tmp"', "batch", "in/*.jsonl", "-o", "out", "--quiet", cwd=tmp_path
    )
    line = _refused(refused, "batch.output_is_input")
    assert "the resume record's temporary file of the output part out/x.jsonl is the input part in/y.jsonl" in line
    assert _digests(tmp_path / "in") == before

    for link in (tmp_path / "out").iterdir():
        link.unlink()
    (tmp_path / "out" / "x.jsonl.fsgs-kb.json").symlink_to(y)
    refused = run("batch", "in/*.jsonl", "-o", "out", "--quiet", cwd=tmp_path)
    line = _refused(refused, "batch.output_is_input")
    assert "the resume record of the output part out/x.jsonl is the input part in/y.jsonl" in line, line
    assert _digests(tmp_path / "in") == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x.jsonl.fsgs-kb.json"]  # nothing written


def test_an_output_part_named_as_a_part_temporary_is_refused(tmp_path: Path) -> None:
    """A Dask task writes its part into OUTDIR/.fsgs-kb-part-RANDOM.tmp, then renames it: an input
    part of that name (a stopped run's leftover) is refused rather than left to chance."""
    _part(tmp_path / "in" / ".fsgs-kb-part-abc123.tmp", 0, 1)
    refused = run("batch", "in/.fsgs-kb-part-*", "-o", "out", "--quiet", cwd=tmp_path)
    line = _refused(refused, "batch.output")
    assert "has the name of the temporary files" in line and not (tmp_path / "out").exists(), line
