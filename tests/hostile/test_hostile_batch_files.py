"""The files around a batch run (review 5a): its input read once, its output, its resume record and
its --summary, none of them ever destroying another or a file the shell opened.

Every test drives the command as a real subprocess: real FIFOs and pipes, real process
substitution through bash, a real file-size limit, a real second version of the package (a
dist-info directory on PYTHONPATH). Nothing waits on a sleep.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shlex
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest
from hostile_support import (
    FSGS,
    assert_each_record_once,
    assert_each_record_once_in,
    assert_no_traceback,
    base_env,
    good_line,
    jsonl,
    read_results,
    run,
    run_argv,
)

PIPE_RECORDS = 6_000  # several commits of the resume record (one every 0.5 s) while the input is read


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(input of PIPE_RECORDS records, its output from a regular-file run with 2 workers)."""
    folder = tmp_path_factory.mktemp("many")
    source = folder / "many.jsonl"
    source.write_bytes(jsonl([good_line(f"P{i:06d}") for i in range(PIPE_RECORDS)]))
    reference = folder / "reference.jsonl"
    result = run("batch", source, "-o", reference, "--workers", "2", "--quiet", timeout=300)
    assert result.rc == 0, result
    return source, reference


def _small(tmp_path: Path, n: int = 5, name: str = "in.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(jsonl([good_line(f"S{i}") for i in range(n)]))
    return path


def _errors(result) -> list[str]:
    return [line for line in result.err.splitlines() if "error[" in line]


def _bash(cwd: Path, script: str, timeout: float = 300, **names: object):
    """Run `script` in bash, in `cwd`, with $FSGS the command (quoted) and each NAME as a quoted variable."""
    assignments = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in names.items())
    argv = ["bash", "-c", f"FSGS={shlex.quote(shlex.join(FSGS))} {assignments}\n{script}"]
    return run_argv(argv, cwd=cwd, timeout=timeout)


# ---- F1: an input that is a pipe is read once, by the reader ----------------------------------


def test_fifo_input_with_an_output_file_gives_every_record(tmp_path: Path, many: tuple[Path, Path]) -> None:
    """A named FIFO was opened a second time to hash the input: that second reader took whole
    blocks out of the pipe, so ~45 % of the records were lost and some spliced together."""
    source, reference = many
    fifo, out = tmp_path / "in.fifo", tmp_path / "out.jsonl"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", 'exec cat "$0" > "$1"', str(source), str(fifo)])
    try:
        result = run("batch", fifo, "-o", out, "--workers", "2", "--quiet", timeout=300)
    finally:
        writer.wait(timeout=60)
    assert_no_traceback(result)
    assert result.rc == 0, result
    assert_each_record_once_in(out, PIPE_RECORDS)
    assert out.read_bytes() == reference.read_bytes()
    saved = json.loads((tmp_path / "out.jsonl.fsgs-kb.json").read_text())
    assert saved["state"]["input_sha256"] is None, "a pipe's bytes cannot be read again: no digest of them"


@pytest.mark.parametrize("form", ["process-substitution", "pipe-on-dev-stdin"])
def test_piped_input_with_an_output_file_gives_every_record(tmp_path: Path, many: tuple[Path, Path], form: str) -> None:
    """`batch <(zcat x.gz) -o out` and `cat x | batch /dev/stdin -o out`: every record, the same bytes."""
    source, reference = many
    out = tmp_path / "out.jsonl"
    script = {
        "process-substitution": '$FSGS batch <(cat "$SRC") -o "$OUT" --workers 2 --quiet',
        "pipe-on-dev-stdin": 'cat "$SRC" | $FSGS batch /dev/stdin -o "$OUT" --workers 2 --quiet',
    }[form]
    result = _bash(tmp_path, script, SRC=source, OUT=out)
    assert_no_traceback(result)
    assert result.rc == 0, result
    assert_each_record_once_in(out, PIPE_RECORDS)
    assert out.read_bytes() == reference.read_bytes()


def test_resume_of_a_run_that_read_a_pipe_is_refused_and_reads_nothing(tmp_path: Path) -> None:
    """A pipe cannot be read again from its start: --resume on one is refused before the output
    is touched and before a byte of the pipe is taken (the writer still finds its reader gone)."""
    source = _small(tmp_path, 20)
    out = tmp_path / "out.jsonl"
    first = _bash(tmp_path, '$FSGS batch <(cat "$SRC") -o "$OUT" --quiet', SRC=source, OUT=out)
    assert first.rc == 0, first
    before = out.read_bytes()
    again = _bash(tmp_path, '$FSGS batch <(cat "$SRC") -o "$OUT" --quiet --resume', SRC=source, OUT=out)
    assert_no_traceback(again)
    assert again.rc == 2, again
    assert "error[batch.resume]" in again.err and "cannot be resumed" in again.err, again
    assert out.read_bytes() == before
    # The output of a pipe run, resumed with the same data as a regular file: still refused (its
    # resume record holds no digest of what the pipe gave), never taken as that file's results.
    from_file = run("batch", source, "-o", out, "--quiet", "--resume")
    assert from_file.rc == 2 and "cannot be resumed" in from_file.err, from_file
    assert out.read_bytes() == before


# ---- F2: --summary never destroys data -------------------------------------------------------


def _summary_refused(result, *paths: Path) -> None:
    assert_no_traceback(result)
    assert result.rc == 2, result
    problems = _errors(result)
    assert len(problems) == 1 and "error[cli.summary]" in problems[0], result.err
    for path in paths:
        assert str(path) in problems[0], (path, problems[0])


def test_summary_that_is_the_input_is_refused(tmp_path: Path) -> None:
    source = _small(tmp_path)
    before = source.read_bytes()
    out = tmp_path / "out.jsonl"
    result = run("batch", source, "-o", out, "--summary", source, "--quiet")
    _summary_refused(result, source)
    assert source.read_bytes() == before
    assert not out.exists(), "nothing is written when the run is refused"
    os.link(source, tmp_path / "hard.jsonl")  # another name for the same file: found by device and inode
    result = run("batch", source, "-o", out, "--summary", tmp_path / "hard.jsonl", "--quiet")
    _summary_refused(result, tmp_path / "hard.jsonl", source)
    assert source.read_bytes() == before
    with open(source, "rb") as stdin:  # the file standard input reads
        result = run("batch", "-", "-o", out, "--summary", source, "--quiet", stdin=stdin.fileno())
    _summary_refused(result, source)
    assert source.read_bytes() == before


@pytest.mark.parametrize("which", ["output", "resume-record"])
@pytest.mark.parametrize("resume", [False, True], ids=["afresh", "resume"])
def test_summary_that_is_the_output_or_its_resume_record_is_refused(tmp_path: Path, which: str, resume: bool) -> None:
    source = _small(tmp_path, 20)
    out = tmp_path / "out.jsonl"
    assert run("batch", source, "-o", out, "--quiet").rc == 0
    sidecar = tmp_path / "out.jsonl.fsgs-kb.json"
    kept = {p: p.read_bytes() for p in (out, sidecar)}
    target = out if which == "output" else sidecar
    result = run("batch", source, "-o", out, "--summary", target, "--quiet", *(["--resume"] if resume else []))
    _summary_refused(result, target, out)
    assert {p: p.read_bytes() for p in kept} == kept
    assert run("batch", source, "-o", out, "--quiet", "--resume").rc == 0, "the output still resumes"


def test_a_failed_run_leaves_the_previous_summary_untouched(tmp_path: Path) -> None:
    """The summary is written at the end, through a temporary file renamed over it."""
    source = _small(tmp_path)
    summary = tmp_path / "s.json"
    summary.write_text('{"old": "summary"}\n')
    result = run("batch", source, "-o", tmp_path / "missing-dir" / "x.jsonl", "--summary", summary, "--quiet")
    assert result.rc == 2, result
    assert summary.read_text() == '{"old": "summary"}\n'
    ok = run("batch", source, "-o", tmp_path / "out.jsonl", "--summary", summary, "--quiet")
    assert ok.rc == 0, ok
    assert json.loads(summary.read_text())["records"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl", "out.jsonl.fsgs-kb.json", "s.json"]


def test_summary_that_is_an_input_part_is_refused(tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    parts.mkdir()
    first = _small(parts, 5, "a.jsonl")
    _small(parts, 5, "b.jsonl")
    before = first.read_bytes()
    result = run("batch", f"{parts}/*.jsonl", "-o", tmp_path / "outdir", "--summary", first, "--quiet")
    _summary_refused(result, first)
    assert first.read_bytes() == before


# ---- F3 / F10: '-' and the standard streams as paths ----------------------------------------------


def test_output_dash_is_standard_output(tmp_path: Path) -> None:
    source = _small(tmp_path)
    result = run("batch", source, "-o", "-", "--quiet", cwd=tmp_path)
    assert result.rc == 0, result
    assert len(result.stdout.splitlines()) == 5
    assert not (tmp_path / "-").exists() and not (tmp_path / "-.fsgs-kb.json").exists()


def test_summary_dash_is_standard_output_only_when_the_results_are_not(tmp_path: Path) -> None:
    source = _small(tmp_path)
    out = tmp_path / "out.jsonl"
    result = run("batch", source, "-o", out, "--summary", "-", "--quiet", cwd=tmp_path)
    assert result.rc == 0, result
    assert json.loads(result.stdout)["records"] == 5
    assert not (tmp_path / "-").exists()
    mixed = run("batch", source, "--summary", "-", "--quiet", cwd=tmp_path)
    assert_no_traceback(mixed)
    assert mixed.rc == 2 and "error[cli.summary]" in mixed.err, mixed
    assert mixed.stdout == b"" and not (tmp_path / "-").exists()


@pytest.mark.parametrize("path", ["/dev/stdout", "/proc/self/fd/1", "/dev/fd/1", "-"])
def test_output_naming_standard_output_appends_where_the_shell_points_it(tmp_path: Path, path: str) -> None:
    """`-o /dev/stdout >> log` reopened the log without O_APPEND and truncated it (and, as root,
    wrote /dev/stdout.fsgs-kb.json): it is standard output, as without -o."""
    source = _small(tmp_path)
    log = tmp_path / "log.txt"
    log.write_bytes(b"precious line 1\nprecious line 2\n")
    result = _bash(tmp_path, '$FSGS batch "$SRC" -o "$P" --quiet >> "$LOG"', SRC=source, P=path, LOG=log, timeout=60)
    assert_no_traceback(result)
    assert result.rc == 0, result
    lines = log.read_bytes().splitlines()
    assert lines[:2] == [b"precious line 1", b"precious line 2"]
    assert [json.loads(line)["record"] for line in lines[2:]] == [1, 2, 3, 4, 5]
    assert not os.path.exists(path + ".fsgs-kb.json")
    assert not Path("/dev/stdout.fsgs-kb.json").exists()


def test_output_naming_another_open_descriptor_writes_through_it(tmp_path: Path) -> None:
    """`-o /dev/fd/3 3>>log`: appended through the shell's descriptor, never truncated; and such
    an output cannot be resumed (there is no file to continue)."""
    source = _small(tmp_path)
    log = tmp_path / "log.txt"
    log.write_bytes(b"kept\n")
    result = _bash(tmp_path, '$FSGS batch "$SRC" -o /dev/fd/3 --quiet 3>> "$LOG"', SRC=source, LOG=log, timeout=60)
    assert result.rc == 0, result
    assert log.read_bytes().splitlines()[0] == b"kept" and len(log.read_bytes().splitlines()) == 6
    resumed = _bash(
        tmp_path, '$FSGS batch "$SRC" -o /dev/fd/3 --quiet --resume 3>> "$LOG"', SRC=source, LOG=log, timeout=60
    )
    assert_no_traceback(resumed)
    assert resumed.rc == 2 and "error[batch.resume]" in resumed.err, resumed
    assert len(log.read_bytes().splitlines()) == 6


# ---- F4 / F14: the resume record is made before the output is touched ------------------------------


def test_an_output_whose_resume_record_cannot_be_named_is_left_untouched(tmp_path: Path) -> None:
    """NAME + '.fsgs-kb.json' longer than the file-name limit: refused before the output is cut,
    naming the resume record and why."""
    source = _small(tmp_path)
    out = tmp_path / ("r" * 240 + ".jsonl")
    out.write_bytes(b"an earlier run's results\n")
    result = run("batch", source, "-o", out, "--quiet")
    assert_no_traceback(result)
    assert result.rc == 2, result
    problems = _errors(result)
    assert len(problems) == 1, result.err
    assert problems[0].startswith(f"{out}.fsgs-kb.json: error["), problems[0]
    assert "resume record" in problems[0] and "File name too long" in problems[0] and "hint:" in problems[0]
    assert out.read_bytes() == b"an earlier run's results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.jsonl", out.name])


def test_a_long_output_name_whose_resume_record_fits_runs_and_resumes(tmp_path: Path) -> None:
    """The resume record's temporary file must not be what makes a legal name too long."""
    source = _small(tmp_path)
    out = tmp_path / ("r" * 236 + ".jsonl")  # the resume record's name is 255 bytes, the limit
    result = run("batch", source, "-o", out, "--quiet")
    assert result.rc == 0, result
    assert run("batch", source, "-o", out, "--quiet", "--resume").rc == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.jsonl", out.name, out.name + ".fsgs-kb.json"])


def _file_size_limit(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_resume_record_that_cannot_be_written_leaves_the_output_and_no_temporary(tmp_path: Path) -> None:
    """A file-size limit below the resume record's size (as a full disk): the output is left as it
    was, no OUTPUT.fsgs-kb.json.PID.tmp stays behind, and the message names the resume record."""
    source = _small(tmp_path)
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"x" * 50 + b"\n")
    result = run("batch", source, "-o", out, "--quiet", "--workers", "1", preexec_fn=_file_size_limit(64))
    assert_no_traceback(result)
    assert result.rc == 2, result
    problems = _errors(result)
    assert len(problems) == 1 and problems[0].startswith(f"{out}.fsgs-kb.json: error["), result.err
    assert "resume record" in problems[0] and "hint:" in problems[0], problems[0]
    assert out.read_bytes() == b"x" * 50 + b"\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]
    out.unlink()  # an output this run would have made: not left behind, empty
    result = run("batch", source, "-o", out, "--quiet", "--workers", "1", preexec_fn=_file_size_limit(64))
    assert result.rc == 2 and "resume record" in result.err, result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


# ---- F5: the engine's versions are part of what a resume must match -----------------------------


def _fake_version(tmp_path: Path, number: str) -> dict[str, str]:
    """An environment in which the installed fsgs-kb reports `number` (a dist-info first on the path)."""
    meta = tmp_path / "fakemeta" / f"fsgs_kb-{number}.dist-info"
    meta.mkdir(parents=True)
    (meta / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fsgs-kb\nVersion: {number}\n")
    return base_env(PYTHONPATH=str(meta.parent))


def test_resume_by_another_engine_version_is_refused(tmp_path: Path) -> None:
    source = _small(tmp_path, 20)
    out = tmp_path / "out.jsonl"
    assert run("batch", source, "-o", out, "--quiet").rc == 0
    before = out.read_bytes()
    with open(source, "ab") as more:
        more.write(jsonl([good_line("LATER")]))
    current = version("fsgs-kb")
    newer = "99.0.0"
    result = run("batch", source, "-o", out, "--quiet", "--resume", env=_fake_version(tmp_path, newer))
    assert_no_traceback(result)
    assert result.rc == 2, result
    problems = _errors(result)
    assert len(problems) == 1 and "error[batch.resume]" in problems[0], result.err
    assert current in problems[0] and newer in problems[0] and "hint:" in problems[0], problems[0]
    assert out.read_bytes() == before
    assert run("batch", source, "-o", out, "--quiet", "--resume").rc == 0, "the same version still resumes"
    assert_each_record_once(read_results(out), 21)


def test_a_resume_record_that_names_no_engine_version_is_refused_clearly(tmp_path: Path) -> None:
    source = _small(tmp_path)
    out = tmp_path / "out.jsonl"
    assert run("batch", source, "-o", out, "--quiet").rc == 0
    sidecar = tmp_path / "out.jsonl.fsgs-kb.json"
    saved = json.loads(sidecar.read_text())
    saved.pop("engine")
    saved["format"] = "fsgs-kb-batch-resume-2"
    sidecar.write_text(json.dumps(saved))
    result = run("batch", source, "-o", out, "--quiet", "--resume")
    assert result.rc == 2, result
    assert "error[batch.resume]" in result.err and "engine version" in result.err, result


# ---- F7: a last line read before it was finished -------------------------------------------------


def test_resume_never_keeps_the_result_of_a_last_line_that_has_grown(tmp_path: Path) -> None:
    source = tmp_path / "grow.jsonl"
    source.write_bytes(jsonl([good_line(f"G{i}") for i in range(10)]) + b'{"id":"X","age_years":5}')
    out = tmp_path / "out.jsonl"
    assert run("batch", source, "-o", out, "--quiet").rc in (0, 1)
    with open(source, "ab") as more:  # the producer finishes the line, and writes another
        more.write(b',"weight_kg":20}\n{"id":"Z"}\n')
    fresh = tmp_path / "fresh.jsonl"
    run("batch", source, "-o", fresh, "--quiet")
    result = run("batch", source, "-o", out, "--quiet", "--resume")
    assert_no_traceback(result)
    if result.rc == 2:  # refused: the output is left as the first run made it, still 11 results
        assert "error[batch.resume]" in result.err and "line 11" in result.err, result
        assert_each_record_once(read_results(out), 11)
    else:  # or evaluated again: then the same bytes as a fresh run
        assert out.read_bytes() == fresh.read_bytes()


def test_resume_keeps_a_last_line_that_was_whole_without_its_newline(tmp_path: Path) -> None:
    """An unterminated last line that did not change is kept: the resumed output is a fresh run's."""
    source = tmp_path / "grow.jsonl"
    source.write_bytes(jsonl([good_line(f"G{i}") for i in range(10)]) + good_line("LAST"))
    out = tmp_path / "out.jsonl"
    assert run("batch", source, "-o", out, "--quiet").rc == 0
    assert run("batch", source, "-o", out, "--quiet", "--resume").rc == 0
    assert_each_record_once(read_results(out), 11)


# ---- a resume with nothing left to read keeps the recorded input -----------------------------------


def _resume_record_state(out: Path) -> dict:
    return json.loads((out.parent / (out.name + ".fsgs-kb.json")).read_text())["state"]


def _finished_then_resumed(tmp_path: Path, source: Path) -> tuple[Path, dict]:
    """`source`'s output, run to the end and then resumed with nothing left to read, and the state
    the first run recorded (which the second must leave as it was)."""
    out = tmp_path / "out.jsonl"
    assert run("batch", source, "-o", out, "--quiet").rc == 0
    recorded = _resume_record_state(out)
    assert recorded["input_bytes"] == source.stat().st_size
    result = run("batch", source, "-o", out, "--resume")
    assert result.rc == 0 and "resumed after record 20" in result.err, result
    assert _resume_record_state(out) == recorded, "a resume with nothing to do recorded another input"
    return out, recorded


def test_a_resume_with_nothing_left_refuses_a_replaced_input(tmp_path: Path) -> None:
    """The resume record said input_bytes 0 and the digest of no bytes after such a resume: any
    other input then "resumed after record 20", and its results were appended to the first's."""
    source = _small(tmp_path, 20)
    out, _ = _finished_then_resumed(tmp_path, source)
    kept = out.read_bytes()
    source.write_bytes(jsonl([good_line(f"OTHER{i}") for i in range(3)]))
    result = run("batch", source, "-o", out, "--quiet", "--resume")
    assert_no_traceback(result)
    assert result.rc == 2, result
    assert "error[batch.resume]" in result.err and "not the one this output was made from" in result.err, result
    assert out.read_bytes() == kept


def test_a_resume_with_nothing_left_then_an_appended_input_resumes_to_a_fresh_runs_bytes(tmp_path: Path) -> None:
    """Records appended to the input after such a resume are evaluated by the next one (it was
    refused, "the input is not the one this output was made from"), into what a fresh run of the
    whole input writes, byte for byte, with the resume record a fresh run leaves."""
    source = _small(tmp_path, 20)
    out, _ = _finished_then_resumed(tmp_path, source)
    with open(source, "ab") as more:
        more.write(jsonl([good_line(f"MORE{i}") for i in range(7)]))
    result = run("batch", source, "-o", out, "--resume")
    assert_no_traceback(result)
    assert result.rc == 0 and "resumed after record 20" in result.err, result
    fresh = tmp_path / "fresh.jsonl"
    assert run("batch", source, "-o", fresh, "--quiet").rc == 0
    assert out.read_bytes() == fresh.read_bytes()
    assert _resume_record_state(out) == _resume_record_state(fresh)
    assert run("batch", source, "-o", out, "--quiet", "--resume").rc == 0
    assert out.read_bytes() == fresh.read_bytes()
    assert _resume_record_state(out) == _resume_record_state(fresh)


# ---- F11: the resume record is never the input ---------------------------------------------------


def test_an_input_named_like_the_outputs_resume_record_is_refused(tmp_path: Path) -> None:
    source = _small(tmp_path, 5, "data.fsgs-kb.json")
    before = source.read_bytes()
    result = run("batch", source, "-o", tmp_path / "data", "--quiet", "--input-format", "jsonl")
    assert_no_traceback(result)
    assert result.rc == 2, result
    assert "error[batch.output_is_input]" in result.err and "resume record" in result.err, result
    assert source.read_bytes() == before
    assert not (tmp_path / "data").exists()


# ---- a Bulk Data export's files are input: never the output, a resume record or the summary --------

BULK = ("batch", "--input-format", "fhir-bulk", "--as-of", "2025-01-15")


def _export(tmp_path: Path) -> Path:
    """A small Bulk Data export: two Patients and an Observation of each, in two files."""
    export = tmp_path / "export"
    export.mkdir()
    patients = [{"resourceType": "Patient", "id": p, "birthDate": "1980-01-01"} for p in ("a", "b")]
    weights = [
        {
            "resourceType": "Observation",
            "id": f"w{p}",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "subject": {"reference": f"Patient/{p}"},
            "effectiveDateTime": "2025-01-10",
            "valueQuantity": {"value": 70, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
        }
        for p in ("a", "b")
    ]
    (export / "Patient.001.ndjson").write_bytes(jsonl([json.dumps(r).encode() for r in patients]))
    (export / "Observation.001.ndjson").write_bytes(jsonl([json.dumps(r).encode() for r in weights]))
    return export


def _tree(folder: Path) -> dict[str, bytes | str]:
    """Every name in `folder` and what it holds (a link: its target, unfollowed)."""
    return {p.name: os.readlink(p) if p.is_symlink() else p.read_bytes() for p in sorted(folder.iterdir())}


# (what is planted in tmp_path before the run, the arguments after the export, the error code)
BULK_CLASHES = {
    "output-is-a-part": (lambda t, e: None, ["-o", "export/Patient.001.ndjson"], "batch.output_is_input"),
    "output-links-to-a-part": (
        lambda t, e: (t / "x.jsonl").symlink_to("export/Observation.001.ndjson"),
        ["-o", "x.jsonl"],
        "batch.output_is_input",
    ),
    "output-is-a-hard-link-to-a-part": (
        lambda t, e: os.link(e / "Patient.001.ndjson", t / "hard.jsonl"),
        ["-o", "hard.jsonl"],
        "batch.output_is_input",
    ),
    "output-is-a-new-part": (lambda t, e: None, ["-o", "export/Results.ndjson"], "batch.output_is_input"),
    "output-is-where-a-part-links": (
        lambda t, e: (e / "Late.ndjson").symlink_to("../out.jsonl"),
        ["-o", "out.jsonl"],
        "batch.output_is_input",
    ),
    "resume-record-is-where-a-part-links": (
        lambda t, e: (e / "Late.ndjson").symlink_to("../out.jsonl.fsgs-kb.json"),
        ["-o", "out.jsonl"],
        "batch.output_is_input",
    ),
    "resume-record-links-to-a-part": (
        lambda t, e: (t / "out.jsonl.fsgs-kb.json").symlink_to("export/Patient.001.ndjson"),
        ["-o", "out.jsonl"],
        "batch.output_is_input",
    ),
    "summary-is-a-part": (
        lambda t, e: None,
        ["-o", "out.jsonl", "--summary", "export/Patient.001.ndjson"],
        "cli.summary",
    ),
    "summary-links-to-a-part": (
        lambda t, e: (t / "s.json").symlink_to("export/Observation.001.ndjson"),
        ["-o", "out.jsonl", "--summary", "s.json"],
        "cli.summary",
    ),
    "summary-is-a-new-part": (lambda t, e: None, ["-o", "out.jsonl", "--summary", "export/S.ndjson"], "cli.summary"),
}


@pytest.mark.parametrize("case", list(BULK_CLASHES))
def test_nothing_batch_writes_is_a_file_of_the_bulk_export_it_reads(tmp_path: Path, case: str) -> None:
    """`-o export/Patient.001.ndjson` overwrote that part with the run's results (and read them
    back as input, exit 1), as did an -o or a --summary linked to a part. A new *.ndjson in the
    export would be read as part of it (the files are listed once the output exists). Each is
    refused, exit 2, before anything is written: the export and the folder are as they were."""
    export = _export(tmp_path)
    plant, args, code = BULK_CLASHES[case]
    plant(tmp_path, export)
    before = (_tree(tmp_path / "export"), sorted(p.name for p in tmp_path.iterdir()))
    result = run(*BULK, "export", *args, "--quiet", cwd=tmp_path)
    assert_no_traceback(result)
    assert result.rc == 2, result
    problems = _errors(result)
    assert len(problems) == 1 and f"error[{code}]" in problems[0] and "Bulk Data export" in problems[0], result.err
    assert (_tree(tmp_path / "export"), sorted(p.name for p in tmp_path.iterdir())) == before


def test_results_appended_to_a_file_of_the_bulk_export_are_refused(tmp_path: Path) -> None:
    export = _export(tmp_path)
    before = _tree(export)
    result = _bash(
        tmp_path,
        '$FSGS batch --input-format fhir-bulk --as-of 2025-01-15 export --quiet >> "$PART"',
        PART=export / "Patient.001.ndjson",
    )
    assert_no_traceback(result)
    assert result.rc == 2 and "error[batch.output_is_input]" in result.err, result
    assert _tree(export) == before


def test_a_bulk_export_beside_its_output_and_summary_is_read_whole(tmp_path: Path) -> None:
    """Outside the export's *.ndjson files, the output, its resume record and the summary may be
    anywhere, in the export's directory too: each patient once, the export untouched."""
    export = _export(tmp_path)
    before = _tree(export)
    out = export / "results.jsonl"
    result = run(*BULK, export, "-o", out, "--summary", export / "summary.json", "--quiet")
    assert result.rc == 0, result
    assert [r["patient_id"] for r in read_results(out)] == ["a", "b"]
    assert json.loads((export / "summary.json").read_text())["records"] == 2
    assert {k: v for k, v in _tree(export).items() if k in before} == before


# ---- F15: a lock that cannot be taken is not "another run" ------------------------------------------


def test_a_lock_error_other_than_held_is_reported_as_itself(tmp_path: Path) -> None:
    """flock failing with ENOLCK (NFS without a lock manager; injected here at the system-call
    boundary, since no such mount exists on a test machine) is that error, not another run."""
    inject = tmp_path / "nolck"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(
        "import errno, fcntl, os\n"
        "def flock(fd, op):\n"
        "    raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))\n"
        "fcntl.flock = flock\n"
    )
    source = _small(tmp_path)
    out = tmp_path / "out.jsonl"
    result = run("batch", source, "-o", out, "--quiet", env=base_env(PYTHONPATH=str(inject)))
    assert_no_traceback(result)
    assert result.rc == 2, result
    problems = _errors(result)
    assert len(problems) == 1, result.err
    assert "another fsgs-kb batch run" not in problems[0] and "output_locked" not in problems[0], problems[0]
    assert os.strerror(errno.ENOLCK) in problems[0] and "hint:" in problems[0], problems[0]
