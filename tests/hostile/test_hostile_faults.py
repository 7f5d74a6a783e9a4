"""Faults: signals, full disks, unwritable paths, missing stdin, and hostile inputs to replay and
impact. Timing-dependent tests synchronise on observed progress (output lines, worker pids)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import pytest
from hostile_support import (
    FSGS,
    HOSTILE_DEEP,
    RULES,
    assert_each_record_once,
    assert_each_record_once_in,
    assert_no_traceback,
    good_line,
    good_record,
    jsonl,
    line_count,
    read_results,
    run,
    run_argv,
    sigint_ignored_as_in_a_background_job,
    still_running,
    wait_until,
)


@pytest.fixture(scope="module")
def documented_exit_codes() -> set[int]:
    """The exit codes `fsgs-kb batch --help` lists (lines like '  3  some records hit ...')."""
    text = run("batch", "--help").out
    return {int(code) for code in re.findall(r"(?m)^\s+(\d{1,3})\s{2,}\S", text)}


def _interrupted(tmp_path: Path, big_input, batches, sig: signal.Signals, timeout: float = 10):
    """Start a 2-worker batch on the big input, wait for output, record workers, send `sig`,
    wait up to `timeout` s for the parent to exit."""
    source, _ = big_input
    out = tmp_path / "out.jsonl"
    batch = batches(source, "-o", out, "--workers", "2", "--quiet")
    batch.wait_for_lines(out, 1)
    assert batch.workers, "no worker process was seen while the batch was writing"
    batch.proc.send_signal(sig)
    rc, err = batch.finish(timeout=timeout)
    return batch, rc, err


def test_sigterm_exits_with_a_documented_code_and_a_resume_hint(
    tmp_path: Path, big_input, batches, documented_exit_codes: set[int]
) -> None:
    """SIGTERM (systemd stop, k8s eviction) must end the run like an error: a documented exit code,
    a hint to --resume, and no worker left behind."""
    batch, rc, err = _interrupted(tmp_path, big_input, batches, signal.SIGTERM)
    assert "Traceback" not in err
    assert rc > 0, f"killed by the signal (rc {rc}), no exit code of its own"
    assert rc in documented_exit_codes and rc not in (0, 1), f"exit {rc} is not a documented failure code"
    assert "--resume" in err, f"stderr does not say how to resume: {err[-300:]!r}"
    assert wait_until(lambda: not still_running(batch.workers), 2), f"workers left: {still_running(batch.workers)}"


def test_sigkill_of_parent_leaves_no_worker_behind(tmp_path: Path, big_input, batches) -> None:
    """When the parent is SIGKILLed, its workers must notice and exit (within 10 s)."""
    batch, rc, err = _interrupted(tmp_path, big_input, batches, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert "Traceback" not in err
    assert wait_until(lambda: not still_running(batch.workers), 10), f"orphans: {still_running(batch.workers)}"


def test_sigint_is_not_reported_as_invalid_records(tmp_path: Path, big_input, batches) -> None:
    """Ctrl-C must not exit 1, which means 'some records invalid' to a pipeline."""
    _, rc, err = _interrupted(tmp_path, big_input, batches, signal.SIGINT, timeout=12)
    assert "Traceback" not in err
    assert rc not in (0, 1), f"exit {rc} after SIGINT (stderr: {err.strip()[-120:]!r})"


def _importing(pid: int) -> bool:
    """Whether the process has mapped an extension module of site-packages: Python imports the
    package (and its dependencies), before any command could run."""
    try:
        return "/site-packages/" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def test_sigint_ignored_on_entry_stays_ignored_for_the_whole_run(tmp_path: Path, big_input, batches) -> None:
    """A script's background job (`fsgs-kb batch … &`) starts with SIGINT ignored, and the run keeps
    it ignored from start to end: a SIGINT while Python imports the package and one while the run
    writes (its stop handler's time) are both ignored, and the run completes (exit 0, each record
    once). The handler had been installed anyway: ignored while loading, exit 130 once writing."""
    source, n = big_input
    out = tmp_path / "out.jsonl"
    batch = batches(source, "-o", out, "--workers", "1", "--quiet", preexec_fn=sigint_ignored_as_in_a_background_job)
    assert wait_until(lambda: batch.proc.poll() is not None or _importing(batch.proc.pid), 60)
    assert batch.proc.poll() is None and not out.exists(), "the command was past starting"
    batch.proc.send_signal(signal.SIGINT)
    batch.wait_for_lines(out, 1)
    assert line_count(out) < n // 2, "too little left to write for the signal to be seen"
    batch.proc.send_signal(signal.SIGINT)
    rc, err = batch.finish(timeout=120)
    assert rc == 0, err[-300:]
    assert "interrupt" not in err and "SIGINT" not in err, err[-300:]
    assert_each_record_once_in(out, n)


def test_sigterm_stops_a_run_started_with_sigint_ignored(tmp_path: Path, big_input, batches) -> None:
    """Started with SIGINT ignored, a run goes on writing after a SIGINT (2,000 more results seen),
    and SIGTERM stops it as always: exit 143 and how to resume."""
    source, n = big_input
    out = tmp_path / "out.jsonl"
    batch = batches(source, "-o", out, "--workers", "1", "--quiet", preexec_fn=sigint_ignored_as_in_a_background_job)
    batch.wait_for_lines(out, 1)
    batch.proc.send_signal(signal.SIGINT)
    batch.wait_for_lines(out, line_count(out) + 2000)  # fails if the SIGINT stopped the run
    batch.proc.send_signal(signal.SIGTERM)
    rc, err = batch.finish()
    assert rc == 128 + signal.SIGTERM, err[-300:]
    assert "--resume" in err and "SIGTERM" in err, err[-300:]
    assert line_count(out) < n


def test_output_to_full_disk_is_an_io_error(tmp_path: Path) -> None:
    """ENOSPC on -o: exit 2 with one clear line, not an OSError traceback."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl([good_line(f"P{i}") for i in range(40)]))
    result = run("batch", source, "-o", "/dev/full", "--quiet")
    assert_no_traceback(result)
    assert result.rc == 2, result
    # the first line names the knowledge base (stderr: stdout is the results); then one line of error
    lines = [line for line in result.err.splitlines() if line.strip() and not line.startswith("knowledge base ")]
    assert len(lines) == 1 and re.search(r"/dev/full|no space", lines[0], re.I), f"stderr: {lines[:5]}"


def test_unwritable_summary_path_is_an_io_error(tmp_path: Path) -> None:
    """--summary into a path whose parent is a file: exit 2, no traceback (checked as root too)."""
    if "--summary" not in run("batch", "--help").out:
        pytest.skip("batch has no --summary option")
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl([good_line("P1")]))
    (tmp_path / "afile").write_text("")
    result = run("batch", source, "-o", tmp_path / "out.jsonl", "--summary", tmp_path / "afile" / "s.json", "--quiet")
    assert_no_traceback(result)
    assert result.rc == 2, result


def _killed_run(tmp_path: Path, batches, lines: list[bytes], at_least: int) -> tuple[Path, Path]:
    """A batch SIGKILLed once its output holds `at_least` lines; returns (input, output)."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl(lines))
    out = tmp_path / "out" / "results.jsonl"
    out.parent.mkdir()
    batch = batches(source, "-o", out, "--workers", "2", "--quiet")
    batch.wait_for_lines(out, at_least)
    batch.kill()  # the parent, then each recorded worker: the whole run dies at once, as in a crash
    wait_until(lambda: not still_running(batch.workers), 5)
    assert "Traceback" not in batch.err
    assert line_count(out) < len(lines), "the run finished before it could be killed"
    return source, out


def test_resumed_run_exit_code_counts_records_before_the_kill(tmp_path: Path, batches) -> None:
    """An invalid record written before the kill still makes the whole run exit 1 after --resume
    (today the resumed run only counts what it did itself, and exits 0)."""
    n = 8000  # seconds of work: the kill lands mid-run even on a loaded machine (2,500 once finished first)
    lines = [good_line("G0"), b'{"id": "BAD", "age_years": "old"}'] + [good_line(f"G{i}") for i in range(2, n)]
    source, out = _killed_run(tmp_path, batches, lines, at_least=3)
    result = run("batch", source, "-o", out, "--resume", "--workers", "2", "--quiet", timeout=30)
    assert_no_traceback(result)
    assert_each_record_once_in(out, n)
    assert result.rc == 1, f"{result}: record 2 is invalid"


def test_killed_run_keeps_resume_state_in_a_sidecar(tmp_path: Path, big_input, batches) -> None:
    """Resume verification needs to know which input made the output: that goes in a sidecar
    next to the output, never as a header line inside it."""
    source, _ = big_input
    # all 20,000 records: with 3,000 the run once finished before its first line was observed
    _, out = _killed_run(tmp_path, batches, source.read_bytes().splitlines(), at_least=1)
    sidecars = [p for p in out.parent.iterdir() if p != out]
    assert sidecars, "no sidecar next to the output of a killed run"
    # what the sidecar vouches for: workers write their blocks at granted places, so past that a
    # killed run's output may hold a later block with a hole (zeros) before it, which resume rewrites
    (record,) = [p for p in sidecars if p.name.endswith(".fsgs-kb.json")]
    state = json.loads(record.read_text(encoding="utf-8"))["state"]
    (tmp_path / "complete.jsonl").write_bytes(out.read_bytes()[: state["output_bytes"]])
    assert_each_record_once_in(tmp_path / "complete.jsonl", state["records"])


@pytest.mark.parametrize("how", ["devnull", "closed-fd"])
def test_evaluate_without_usable_stdin(how: str) -> None:
    """`evaluate -` with stdin at EOF or closed altogether (sys.stdin is None): a message and exit
    1 or 2, never an AttributeError."""
    if how == "devnull":
        result = run("evaluate", "-", stdin=subprocess.DEVNULL)
    else:
        result = run_argv(["sh", "-c", 'exec "$0" evaluate - <&-', FSGS[0]])
    assert_no_traceback(result)
    assert result.rc in (1, 2), result
    assert result.both.strip(), "no message at all"


NOT_UTF8 = b'{"id": "U\xff"}'


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(patients.jsonl, results.jsonl) of a clean two-record batch, for replay."""
    base = tmp_path_factory.mktemp("recorded")
    patients, results = base / "patients.jsonl", base / "results.jsonl"
    patients.write_bytes(jsonl([good_line("R1"), good_line("R2")]))
    assert run("batch", patients, "-o", results, "--quiet").rc == 0
    return patients, results


@pytest.mark.parametrize("bad", ["deep", "not-utf8"])
@pytest.mark.parametrize("where", ["replay-results", "replay-input", "impact-patients"])
def test_replay_and_impact_survive_hostile_lines(tmp_path: Path, kb_copy: Path, recorded, where: str, bad: str) -> None:
    """replay and impact read JSON Lines too: a 1000-deep or non-UTF-8 line is a bad line, not a crash."""
    hostile = HOSTILE_DEEP if bad == "deep" else NOT_UTF8
    patients, results = recorded
    damaged = tmp_path / "damaged.jsonl"
    if where == "replay-results":
        damaged.write_bytes(results.read_bytes() + hostile + b"\n")
        result = run("replay", damaged, "--input", patients)
    elif where == "replay-input":
        damaged.write_bytes(patients.read_bytes() + hostile + b"\n")
        result = run("replay", results, "--input", damaged)
    else:
        damaged.write_bytes(patients.read_bytes() + hostile + b"\n")
        result = run("impact", kb_copy, kb_copy, damaged)
    assert_no_traceback(result)
    assert result.rc in (0, 1, 2), result


def test_impact_reports_unreadable_patients(tmp_path: Path, kb_copy: Path) -> None:
    """A cohort of garbage lines is not a cohort where 'no patient's outcome changes': the
    unreadable lines must be reported."""
    patients = tmp_path / "garbage.jsonl"
    patients.write_bytes(b"garbage line one\ngarbage line two\n{broken\n")
    result = run("impact", kb_copy, kb_copy, patients)
    assert_no_traceback(result)
    assert re.search(r"\binvalid\b|\bunreadable\b|\bnot (valid )?json\b|\bskipped\b", result.both, re.I), (
        f"the 3 unreadable lines are not reported: {result.out.strip()[-200:]!r}"
    )


# Every command that writes its result to standard output, as (name, argv builder). Each must
# answer a full disk (/dev/full) or a closed standard output (`>&-`, sys.stdout is None) with one
# line and exit 2: a full disk was `error[internal] OSError` (exit 3), a closed standard output
# an AttributeError (batch) or exit 0 with the result dropped (every other command).
STDOUT_COMMANDS = {
    "validate": lambda p, r, patients: ["validate", "--rules", RULES],
    "validate-json": lambda p, r, patients: ["validate", "--rules", RULES, "--format", "json"],
    "evaluate": lambda p, r, patients: ["evaluate", p, "--rules", RULES],
    "explain": lambda p, r, patients: ["explain", p, "--rules", RULES],
    "explain-json": lambda p, r, patients: ["explain", p, "--rules", RULES, "--format", "json"],
    "batch": lambda p, r, patients: ["batch", patients, "--rules", RULES, "--quiet", "--workers", "1"],
    "test": lambda p, r, patients: ["test", "--rules", RULES, "-k", "DOSE"],
    "audit": lambda p, r, patients: ["audit", "--rules", RULES, "--rule", "CSA-DOSE-EXCEEDS"],
    "trace": lambda p, r, patients: ["trace", r, "--rules", RULES],
    "replay": lambda p, r, patients: ["replay", r, "--input", patients, "--rules", RULES],
    "diff": lambda p, r, patients: ["diff", RULES, RULES],
    "impact": lambda p, r, patients: ["impact", RULES, RULES, patients],
    "compile": lambda p, r, patients: ["compile", "--rules", RULES],
}


@pytest.fixture(scope="module")
def one_patient(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("one") / "patient.json"
    path.write_text(json.dumps(good_record("ONE")))
    return path


def _error_lines(result) -> list[str]:
    return [line for line in result.err.splitlines() if line.strip() and not line.startswith("knowledge base ")]


@pytest.mark.parametrize("command", list(STDOUT_COMMANDS))
@pytest.mark.parametrize("stdout", ["full-disk", "closed"])
def test_unwritable_stdout_is_an_io_error(command: str, stdout: str, one_patient: Path, recorded) -> None:
    patients, results = recorded
    args = [str(a) for a in STDOUT_COMMANDS[command](one_patient, results, patients)]
    redirect = ">/dev/full" if stdout == "full-disk" else ">&-"
    result = run_argv(["sh", "-c", f'exec "$0" "$@" {redirect}', FSGS[0], *args])
    assert_no_traceback(result)
    assert result.rc == 2, result
    lines = _error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("standard output: error["), lines
    assert "internal" not in lines[0]
    if stdout == "full-disk":
        assert lines[0].endswith("cannot write: No space left on device"), lines
    else:
        assert "closed" in lines[0] and "(hint: " in lines[0], lines


def test_batch_to_a_file_needs_no_stdout(tmp_path: Path, recorded) -> None:
    """With -o the results go to the file: a closed standard output is no reason to fail."""
    patients, _ = recorded
    out = tmp_path / "out.jsonl"
    result = run_argv(["sh", "-c", 'exec "$0" "$@" >&-', FSGS[0], "batch", str(patients), "-o", str(out), "--quiet"])
    assert_no_traceback(result)
    assert result.rc == 0, result
    assert_each_record_once(read_results(out), 2)


def test_batch_to_a_closed_stdout_is_refused_before_anything_is_written(tmp_path: Path, recorded) -> None:
    """Without -o the results go to standard output: closed, the run is refused up front (no
    --summary file is created for a run that cannot write its results)."""
    patients, _ = recorded
    summary = tmp_path / "summary.json"
    argv = ["sh", "-c", 'exec "$0" "$@" >&-', FSGS[0], "batch", str(patients), "--summary", str(summary), "--quiet"]
    result = run_argv(argv)
    assert_no_traceback(result)
    assert result.rc == 2 and "standard output: error[cli.output]" in result.err, result
    assert not summary.exists()


@pytest.mark.parametrize("summary", ["-", "/dev/stdout"])
@pytest.mark.parametrize("parts", [False, True], ids=["file", "parts"])
def test_a_summary_to_a_closed_stdout_is_refused_as_every_command_refuses_it(
    tmp_path: Path, recorded, summary: str, parts: bool
) -> None:
    """`--summary -` with the results in a file and standard output closed was checked as
    descriptor 1 (`cannot write the summary: Bad file descriptor`, and after a whole run when the
    process had opened a file there, the lowest free descriptor, by the time of the check): it is
    the closed standard output every command refuses up front (Python's sys.stdout is None)."""
    patients, _ = recorded
    source = str(patients)
    if parts:
        folder = tmp_path / "in"
        folder.mkdir()
        (folder / "a.jsonl").write_bytes(patients.read_bytes())
        source = f"{folder}/*.jsonl"
    out = tmp_path / "out"
    argv = ["sh", "-c", 'exec "$0" "$@" >&-', FSGS[0], "batch", source, "-o", str(out), "--summary", summary, "--quiet"]
    result = run_argv(argv)
    assert_no_traceback(result)
    assert result.rc == 2, result
    lines = _error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("standard output: error[cli.output]"), lines
    assert "closed before the command started" in lines[0] and "(hint: " in lines[0], lines
    assert not out.exists(), "nothing is written for a run that cannot write its summary"


@pytest.mark.parametrize("option", ["--summary", "--junit-xml"])
def test_full_disk_for_a_report_file_is_an_io_error(tmp_path: Path, recorded, option: str) -> None:
    """--summary (batch) and --junit-xml (test) on a full disk: one line naming the file, exit 2
    (--summary was `error[internal] OSError`, exit 3: it is opened early, but written at the end)."""
    patients, _ = recorded
    if option == "--summary":
        args = ["batch", patients, "-o", tmp_path / "out.jsonl", "--summary", "/dev/full", "--quiet"]
    else:
        args = ["test", "--rules", RULES, "-k", "DOSE", "--junit-xml", "/dev/full"]
    result = run(*args)
    assert_no_traceback(result)
    assert result.rc == 2, result
    problems = [line for line in result.err.splitlines() if "error[" in line]
    assert len(problems) == 1 and problems[0].startswith("/dev/full: error[cli."), problems
    assert problems[0].endswith(": No space left on device"), problems
