"""Input parts (`fsgs-kb batch 'GLOB' -o OUTDIR`): every match read or named (review 5 F12)."""

from __future__ import annotations

import os
from pathlib import Path

from hostile_support import assert_each_record_once, assert_no_traceback, good_line, jsonl, read_results, run


def _part(path: Path, first: int, n: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jsonl([good_line(f"P{i}") for i in range(first, first + n)]))
    return path


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
