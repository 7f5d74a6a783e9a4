"""Input parts (`fsgs-kb batch 'GLOB' -o OUTDIR`): every match read or named, no input overwritten,
messages that name the parts (review 5 F9, F12, F16)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from hostile_support import assert_each_record_once, assert_no_traceback, good_line, jsonl, read_results, run


def _part(path: Path, first: int, n: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jsonl([good_line(f"P{i}") for i in range(first, first + n)]))
    return path


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.jsonl")}


def test_an_output_part_linked_to_another_input_part_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """OUTDIR/x.jsonl a hard link (or a symbolic link) to input part y.jsonl: writing x's results
    there would overwrite y before it is read. Refused by device and inode, naming both, exit 2."""
    x, y = _part(tmp_path / "in" / "x.jsonl", 0, 3), _part(tmp_path / "in" / "y.jsonl", 3, 4)
    for link in (os.link, os.symlink):
        out = tmp_path / f"out-{link.__name__}"
        out.mkdir()
        link(y, out / "x.jsonl")
        before = _digests(tmp_path / "in")
        refused = run("batch", tmp_path / "in" / "*.jsonl", "-o", out, "--quiet")
        assert refused.rc == 2, refused
        assert_no_traceback(refused)
        lines = [line for line in refused.err.splitlines() if "error[" in line]
        assert len(lines) == 1 and "error[batch.output_is_input]" in lines[0], refused.err
        assert str(out / "x.jsonl") in lines[0] and str(y) in lines[0], lines[0]  # the output and the input it is
        assert _digests(tmp_path / "in") == before  # no input part touched
        assert sorted(p.name for p in out.iterdir()) == ["x.jsonl"]  # nothing written: no y.jsonl, no resume record
    assert x.exists()


def test_glob_matches_that_cannot_be_read_are_an_error_listing_each_and_directories_a_warning(
    tmp_path: Path,
) -> None:
    """A dangling symbolic link (a volume not mounted) or a FIFO matched by the glob is data the run
    cannot read: exit 2 with one `input.unreadable` line for each, before anything is written. A
    matched directory is not a part: a warning names it, and the files are evaluated."""
    data = tmp_path / "data"
    _part(data / "part-1.jsonl", 0, 2)
    (data / "part-2.jsonl").symlink_to(tmp_path / "missing-volume" / "part-2.jsonl")
    os.mkfifo(data / "part-3.jsonl")
    (data / "part-4.jsonl").mkdir()
    out = tmp_path / "out"
    refused = run("batch", data / "part-*.jsonl", "-o", out, "--quiet", timeout=60)
    assert refused.rc == 2, refused
    assert_no_traceback(refused)
    errors = [line for line in refused.err.splitlines() if "error[" in line]
    assert len(errors) == 2 and all("error[input.unreadable]" in line for line in errors), refused.err
    assert str(data / "part-2.jsonl") in errors[0] and "missing-volume" in errors[0], errors[0]
    assert str(data / "part-3.jsonl") in errors[1] and "FIFO" in errors[1], errors[1]
    assert not out.exists()  # refused before the output directory was made

    (data / "part-2.jsonl").unlink()
    (data / "part-3.jsonl").unlink()
    done = run("batch", data / "part-*.jsonl", "-o", out, "--quiet", timeout=60)
    assert done.rc == 0, done
    warning = [line for line in done.err.splitlines() if "warning[batch.parts_skipped]" in line]
    assert len(warning) == 1 and str(data / "part-4.jsonl") in warning[0], done.err
    assert "1 part(s) written" in done.err
    assert_each_record_once(read_results(out / "part-1.jsonl"), 2)


def test_two_parts_with_one_file_name_are_refused_naming_both_and_the_cause(tmp_path: Path) -> None:
    """The second run of `batch 'tree/**/*.jsonl' -o tree/out` finds its own outputs among the
    parts: the message names both parts, where they would both go, and that OUTDIR lies inside
    the glob; two directories that merely share a file name get another hint."""
    tree = tmp_path / "tree"
    first = _part(tree / "a" / "p.jsonl", 0, 2)
    pattern, out = tree / "**" / "*.jsonl", tree / "out"
    assert run("batch", pattern, "-o", out, "--quiet").rc == 0
    before = (out / "p.jsonl").read_bytes()
    again = run("batch", pattern, "-o", out, "--quiet")
    assert again.rc == 2, again
    assert_no_traceback(again)
    line = next(line for line in again.err.splitlines() if "error[" in line)
    assert "<input>" not in line and "error[batch.output]" in line, line
    assert str(first) in line and str(out / "p.jsonl") in line, line  # both parts (the second is the output)
    assert "inside the glob" in line, line
    assert (out / "p.jsonl").read_bytes() == before

    _part(tmp_path / "a" / "p.jsonl", 5, 1)
    _part(tmp_path / "b" / "p.jsonl", 6, 1)
    elsewhere = run("batch", tmp_path / "[ab]" / "p.jsonl", "-o", tmp_path / "elsewhere", "--quiet")
    assert elsewhere.rc == 2, elsewhere
    line = next(line for line in elsewhere.err.splitlines() if "error[" in line)
    assert str(tmp_path / "a" / "p.jsonl") in line and str(tmp_path / "b" / "p.jsonl") in line, line
    assert "distinct file names" in line, line
