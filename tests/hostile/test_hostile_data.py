"""Data destroyed or mixed: a batch must never eat its input, splice two runs, or lose a record."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
from pathlib import Path

import pytest
from hostile_support import (
    assert_each_record_once,
    assert_each_record_once_in,
    assert_no_traceback,
    good_line,
    jsonl,
    read_results,
    run,
)


def _small_input(tmp_path: Path, n: int = 5) -> Path:
    path = tmp_path / "c.jsonl"
    path.write_bytes(jsonl([good_line(f"P{i}") for i in range(n)]))
    return path


OUTPUT_ALIASES = {"same-name": "c.jsonl", "dot-slash": "./c.jsonl", "symlink": "link.jsonl", "hardlink": "hard.jsonl"}


@pytest.mark.parametrize("alias", list(OUTPUT_ALIASES))
def test_output_that_is_the_input_is_refused(tmp_path: Path, alias: str) -> None:
    """`batch c.jsonl -o c.jsonl` (or a link to it) would truncate the input before reading it."""
    source = _small_input(tmp_path)
    before = source.read_bytes()
    target = OUTPUT_ALIASES[alias]
    if alias == "symlink":
        (tmp_path / target).symlink_to(source)
    elif alias == "hardlink":
        os.link(source, tmp_path / target)
    result = run("batch", "c.jsonl", "-o", target, "--quiet", cwd=tmp_path)
    assert source.read_bytes() == before, "the input file was modified"
    assert result.rc == 2, result
    assert_no_traceback(result)


def test_output_that_is_a_directory_gets_the_input_name_inside_it(tmp_path: Path) -> None:
    """`batch c.jsonl -o out/` writes out/c.jsonl (as `cp` would), never fails on the
    directory; into the input's own directory it is refused (the output would be the input),
    and with standard input there is no name to take: a clear message, exit 2."""
    source = _small_input(tmp_path)
    (tmp_path / "out").mkdir()
    result = run("batch", "c.jsonl", "-o", "out/", "--quiet", cwd=tmp_path)
    assert result.rc == 0, result
    assert_each_record_once(read_results(tmp_path / "out" / "c.jsonl"), 5)
    before = source.read_bytes()
    into_itself = run("batch", "c.jsonl", "-o", ".", "--quiet", cwd=tmp_path)
    assert into_itself.rc == 2 and "output is the input" in into_itself.err, into_itself
    assert source.read_bytes() == before
    piped = run("batch", "-", "-o", "out", "--quiet", cwd=tmp_path, input=before)
    assert piped.rc == 2 and "out is a directory" in piped.err, piped
    for outcome in (into_itself, piped):
        assert_no_traceback(outcome)


def test_input_parts_with_an_unusable_output_directory_or_standard_input_are_refused(tmp_path: Path) -> None:
    """Input parts need an output directory: a file there, a path that cannot be made, or
    standard input with --dask are each one clear message and exit 2, never an internal error."""
    (tmp_path / "data").mkdir()
    for i in (1, 2):
        (tmp_path / "data" / f"part-{i}.jsonl").write_bytes(jsonl([good_line(f"P{i}")]))
    (tmp_path / "afile").write_text("")
    for output in ("afile", "afile/sub", "/proc/no-such-dir"):
        refused = run("batch", "data/part-*.jsonl", "-o", output, "--quiet", cwd=tmp_path)
        assert refused.rc == 2 and "error[batch.output]" in refused.err, refused
        assert_no_traceback(refused)
    piped = run("batch", "-", "--dask", "tcp://127.0.0.1:9", "-o", "out", cwd=tmp_path, input=good_line() + b"\n")
    assert piped.rc == 2 and "standard input cannot be split into parts" in piped.err, piped
    for pattern in (f"file://{tmp_path}/data/part-*.jsonl", "data/**/*.jsonl"):  # URLs of files; `**`
        outdir = tmp_path / "out"
        done = run("batch", pattern, "-o", str(outdir), "--quiet", cwd=tmp_path)
        assert done.rc == 0, done
        assert len(done.err.splitlines()) == 3  # --quiet: the KB line, one summary line, where the parts went
        for i in (1, 2):
            assert_each_record_once(read_results(outdir / f"part-{i}.jsonl"), 1)
        shutil.rmtree(outdir)


def test_resume_with_output_of_another_input_is_refused(tmp_path: Path) -> None:
    """Resuming run B onto run A's output would splice two cohorts into one file. Verification
    must come from a sidecar next to the output, so the output holds result lines only."""
    first = tmp_path / "a.jsonl"
    first.write_bytes(jsonl([good_line(f"A{i}") for i in range(6)]))
    second = tmp_path / "b.jsonl"
    second.write_bytes(jsonl([good_line(f"B{i}") for i in range(9)]))
    out = tmp_path / "out.jsonl"
    assert run("batch", first, "-o", out, "--quiet").rc == 0
    assert all({"record", "status", "decision"} <= r.keys() for r in read_results(out)), "a header line in output"
    before = out.read_bytes()
    result = run("batch", second, "-o", out, "--resume", "--quiet")
    assert out.read_bytes() == before, "the output of input A was changed by resuming with input B"
    assert result.rc == 2, result
    assert_no_traceback(result)


def test_two_concurrent_runs_on_one_output_never_mix(tmp_path: Path, batches) -> None:
    """Two runs writing one -o must not interleave: one is refused (exclusive lock, exit 2), or
    the file ends up as exactly one run's complete output — never more lines than records."""
    inputs = {}
    for name, n in (("a", 2000), ("b", 300)):
        path = tmp_path / f"{name}.jsonl"
        path.write_bytes(jsonl([good_line(f"{name.upper()}{i:05d}") for i in range(n)]))
        inputs[name] = [f"{name.upper()}{i:05d}" for i in range(n)]
    out = tmp_path / "out.jsonl"
    first = batches(tmp_path / "a.jsonl", "-o", out, "--workers", "1", "--quiet")
    first.wait_for_lines(out, 1)  # A is writing: start B now
    second = batches(tmp_path / "b.jsonl", "-o", out, "--workers", "1", "--quiet")
    codes = {"b": second.finish(timeout=20), "a": first.finish(timeout=20)}
    for _, err in codes.values():
        assert "Traceback" not in err
    refused = [name for name, (rc, _) in codes.items() if rc == 2]
    assert len(refused) <= 1, "both runs were refused"
    lines = out.read_bytes().splitlines()
    broken = [line for line in lines if not line.startswith(b'{"record"')]
    assert not broken, f"{len(broken)} of {len(lines)} output lines are not results (e.g. {broken[0][:24]!r})"
    ids = [r.get("patient_id") for r in read_results(out)]
    assert len(ids) <= max(len(v) for v in inputs.values()), f"{len(ids)} lines: more lines than records"
    complete = [name for name in inputs if name not in refused and ids == inputs[name]]
    assert complete, (
        f"output is not one run's complete result ({len(ids)} lines, first {ids[:2]}, last {ids[-2:]}; "
        f"exit codes a={codes['a'][0]}, b={codes['b'][0]})"
    )


LOCKED = "another fsgs-kb batch run is writing this output"
LOCKED_RUN_RECORDS = 6_000


@pytest.fixture(scope="module")
def held_input(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """Enough records that the first run is still running when its first lines appear (its first
    256 KiB flush comes after a few hundred of them), so it can be held still there; not the
    20,000 of big_input, which the interruption tests need but this test then runs to the end."""
    path = tmp_path_factory.mktemp("held") / "held.jsonl"
    path.write_bytes(jsonl([good_line(f"P{i:06d}") for i in range(LOCKED_RUN_RECORDS)]))
    return path, LOCKED_RUN_RECORDS


@pytest.mark.parametrize("resume", [False, True], ids=["afresh", "resume"])
def test_second_run_on_a_locked_output_is_refused_cleanly(tmp_path: Path, held_input, batches, resume: bool) -> None:
    """A second run on an output another run is writing: refused with one line, exit 2 (it used to
    close the output's descriptor twice and end in `error[internal] OSError: Bad file descriptor`,
    exit 3). The first run is held still (SIGSTOP) once its output has lines, so it certainly holds
    the lock while the second runs; afterwards it must finish with every record once."""
    source, n = held_input
    out = tmp_path / "out.jsonl"
    first = batches(source, "-o", out, "--workers", "2", "--quiet")
    first.wait_for_lines(out, 1)
    os.kill(first.proc.pid, signal.SIGSTOP)
    try:
        assert first.proc.poll() is None, "the first run ended before it was held: input too short"
        second = run("batch", source, "-o", out, "--quiet", *(["--resume"] if resume else []))
    finally:
        os.kill(first.proc.pid, signal.SIGCONT)
    assert_no_traceback(second)
    assert second.rc == 2, second
    problems = [line for line in second.err.splitlines() if "error[" in line]
    hint = "(hint: wait for it to finish, or write to another file)"
    assert problems == [f"{out}: error[batch.output_locked] {LOCKED} {hint}"]
    rc, err = first.finish(timeout=120)
    assert rc == 0 and "error[" not in err, err[-300:]
    assert_each_record_once_in(out, n)


def test_output_locked_by_another_process_is_refused(tmp_path: Path) -> None:
    """The same refusal when anything else holds the lock (no timing involved), and the held
    output is left as it was."""
    source, out = _small_input(tmp_path), tmp_path / "out.jsonl"
    out.write_bytes(b"kept\n")
    with open(out, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = run("batch", source, "-o", out, "--quiet")
    assert_no_traceback(result)
    assert result.rc == 2 and LOCKED in result.err, result
    assert "internal" not in result.err
    assert out.read_bytes() == b"kept\n"


def test_json_array_with_one_malformed_element_keeps_the_others(tmp_path: Path) -> None:
    """One broken element of a JSON array must cost that element only, not the rest of the array."""
    elements = [good_line("A1"), b'{"id": "BAD", oops}', good_line("A3"), good_line("A4")]
    source = tmp_path / "in.json"
    source.write_bytes(b"[\n" + b",\n".join(elements) + b"\n]\n")
    out = tmp_path / "out.jsonl"
    result = run("batch", source, "-o", out, "--quiet")
    assert_no_traceback(result)
    results = read_results(out)
    assert_each_record_once(results, len(elements))
    assert [r["status"] == "invalid" for r in results] == [False, True, False, False]
    assert result.rc == 1, result
