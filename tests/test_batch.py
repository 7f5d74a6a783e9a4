"""Batch runs through the real command in subprocesses: every record answered exactly once, in
order, whatever the input holds, whatever happens to a worker or to the run itself."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from generate import iter_cohort

from fsgs_kb.engine.batch.job import BatchJob, run_batch
from fsgs_kb.engine.batch.run import MAX_WORKERS, BatchRunner
from fsgs_kb.engine.errors import KBErrors
from fsgs_kb.engine.read.records import read_jsonl

ROOT = Path(__file__).resolve().parent.parent


def fsgs(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "fsgs_kb", *args],
        capture_output=True,
        cwd=ROOT,
        input=stdin,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def write_cohort(path: Path, n: int, seed: int = 1, extra: dict[int, str] | None = None) -> list[str]:
    """n generated patients as JSON Lines, with `extra` raw lines inserted after the given indexes."""
    lines = []
    for i, patient in enumerate(iter_cohort(n, seed=seed, invalid_rate=0.02)):
        lines.append(json.dumps(patient))
        if extra and i in extra:
            lines.append(extra[i])
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return lines


def results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def record_numbers(path: Path) -> list[Any]:
    """The record number of each result in `path`, every line parsed as `results` parses it, none
    kept: 20,000 results held at once are ~1 GB of Python objects, seconds to build and collect."""
    return [json.loads(line)["record"] for line in path.read_text(encoding="utf-8").splitlines()]


def test_garbage_empty_and_invalid_lines_each_get_one_result(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    lines = write_cohort(
        source, 300, extra={10: "this is not json", 20: "", 30: "[1, 2]", 40: '{"id": "x", "age_years": 200}'}
    )
    out = tmp_path / "out.jsonl"
    proc = fsgs("batch", str(source), "-o", str(out), "--summary", str(tmp_path / "s.json"), "--workers", "2")
    assert proc.returncode == 1, proc.stderr.decode()
    got = results(out)
    assert len(got) == len(lines) == 304
    assert [r["record"] for r in got] == list(range(1, 305))
    assert [r["line"] for r in got] == list(range(1, 305))
    by_line = {r["line"]: r for r in got}
    assert by_line[12]["errors"][0]["code"] == "patient.json"
    assert by_line[23]["errors"][0]["code"] == "patient.empty"
    assert by_line[34]["errors"][0]["code"] == "patient.type"
    assert by_line[45]["errors"][0]["pointer"] == "/age_years"
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["records"] == 304 and sum(summary["by_status"].values()) == 304
    assert summary["by_status"]["invalid"] == sum(1 for r in got if r["status"] == "invalid")
    for rule_counts in summary["by_rule"].values():
        assert sum(rule_counts.values()) == sum(1 for r in got if r["rules"])
    assert b"records in" in proc.stderr


def test_a_clean_batch_exits_0_and_matches_single_evaluations(tmp_path: Path, kb: Any) -> None:
    source = tmp_path / "in.jsonl"
    patients = [p for p in iter_cohort(200, seed=5)]
    source.write_text("".join(json.dumps(p) + "\n" for p in patients), encoding="utf-8")
    proc = fsgs("batch", str(source), "-o", str(tmp_path / "out.jsonl"), "--workers", "2")
    assert proc.returncode == 0, proc.stderr.decode()
    got = results(tmp_path / "out.jsonl")
    for patient, result in zip(patients, got, strict=True):  # batch writes standard detail by default
        expected = kb.evaluate(patient, detail="standard")
        assert {k: v for k, v in result.items() if k not in ("record", "line")} == expected
        assert kb.expand({k: v for k, v in result.items() if k not in ("record", "line")}) == kb.evaluate(patient)


@pytest.mark.parametrize("fault", ["segv", "kill"])
def test_a_worker_that_dies_costs_only_its_record(tmp_path: Path, fault: str) -> None:
    source = tmp_path / "in.jsonl"
    write_cohort(source, 400, seed=3)
    victims = ["P0000050", "P0000051", "P0000300"]
    spec = ",".join(f"{fault}:{v}" for v in victims)
    out = tmp_path / "out.jsonl"
    proc = fsgs("batch", str(source), "-o", str(out), "--workers", "2", env={"FSGS_KB_FAULT": spec})
    assert proc.returncode == 3, proc.stderr.decode()
    got = results(out)
    assert [r["record"] for r in got] == list(range(1, 401))
    crashed = {r["patient_id"] for r in got if r["errors"] and r["errors"][0]["code"] == "engine_crash"}
    assert crashed == set(victims)
    clean = results_without_faults(tmp_path, source)
    for a, b in zip(got, clean, strict=True):
        if a["patient_id"] not in victims:
            assert a == b


def results_without_faults(tmp_path: Path, source: Path) -> list[dict[str, Any]]:
    out = tmp_path / "clean.jsonl"
    fsgs("batch", str(source), "-o", str(out), "--workers", "1")
    return results(out)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc to find the workers")
def test_killing_a_worker_from_outside_loses_nothing(tmp_path: Path) -> None:
    """Workers SIGKILLed from outside, one each time the output has grown since the last kill
    (synchronised on observed progress: 4,000 records with a kill every 0.25 s once finished
    after the first kill on a quiet machine): every record is written once, in order."""
    n = 20000
    source = tmp_path / "in.jsonl"
    write_cohort(source, n, seed=8)
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fsgs_kb", "batch", str(source), "-o", str(out), "--workers", "2"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    killed = 0
    grown_to = 0  # the output's size at the last kill: the first once results are written (not the load's probe)
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline and killed < 3:
        try:
            size = out.stat().st_size
        except FileNotFoundError:  # not made yet
            size = 0
        if size <= grown_to:
            time.sleep(0.005)  # polling for progress, not waiting for it to happen by a time
            continue
        for child in _children(proc.pid):
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                continue
            killed += 1
            grown_to = size
            break
    _, stderr = proc.communicate(timeout=300)
    assert b"Traceback" not in stderr, stderr.decode()[-2000:]
    assert record_numbers(out) == list(range(1, n + 1))
    assert killed >= 2, "the run finished before a second kill"
    assert proc.returncode in (0, 1, 3)


def _kill_once_written(proc: subprocess.Popen[bytes], out: Path, lines: int) -> bool:
    """SIGKILL the run's process group as soon as `out` holds `lines` lines; False if it ended first.

    Synchronises on observed progress, never on a timer, so a fast machine cannot finish the run
    before the kill and a slow one cannot kill it before it wrote anything.
    """
    try:
        while proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= lines:
                os.killpg(proc.pid, signal.SIGKILL)
                return True
            time.sleep(0.002)  # polling interval only: the kill condition is the line count
        return False
    finally:
        proc.wait()


def test_killed_runs_resume_to_the_same_bytes(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    write_cohort(source, 3000, seed=4, extra={100: "garbage"})
    reference = tmp_path / "reference.jsonl"
    assert fsgs("batch", str(source), "-o", str(reference), "--workers", "2").returncode == 1
    out = tmp_path / "out.jsonl"
    rng = random.Random(12)
    total = len(reference.read_bytes().splitlines())
    partial_counts = []
    for attempt in range(3):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fsgs_kb",
                "batch",
                str(source),
                "-o",
                str(out),
                "--workers",
                "2",
                *(["--resume"] if attempt else []),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        done_before = partial_counts[-1] if partial_counts else 0
        target = done_before + rng.randint(1, (total - done_before) // 3)
        killed = _kill_once_written(proc, out, target)
        partial_counts.append(out.read_bytes().count(b"\n") if out.exists() else 0)
        assert killed, f"attempt {attempt}: the run finished before it wrote {target} lines"
    assert all(0 < n < total for n in partial_counts), partial_counts  # every kill landed mid-run
    final = fsgs("batch", str(source), "-o", str(out), "--workers", "2", "--resume")
    assert final.returncode in (0, 1), final.stderr.decode()
    assert out.read_bytes() == reference.read_bytes()


def test_resume_refuses_an_output_of_another_knowledge_base(tmp_path: Path, kb_copy: Path) -> None:
    source = tmp_path / "in.jsonl"
    write_cohort(source, 20)
    out = tmp_path / "out.jsonl"
    fsgs("batch", str(source), "-o", str(out))
    params = kb_copy / "parameters.yaml"
    params.write_text(params.read_text().replace("    value: 30\n", "    value: 25\n"), encoding="utf-8")
    proc = fsgs("batch", str(source), "-o", str(out), "--resume", "--rules", str(kb_copy))
    assert proc.returncode == 2 and b"another knowledge base" in proc.stderr


def test_stdin_to_stdout(tmp_path: Path) -> None:
    lines = [json.dumps(p) for p in iter_cohort(50, seed=2)]
    proc = fsgs("batch", "-", "--workers", "1", stdin=("\n".join(lines) + "\n").encode())
    out = proc.stdout.decode().splitlines()
    assert len(out) == 50 and [json.loads(x)["record"] for x in out] == list(range(1, 51))


def test_json_array_input(tmp_path: Path) -> None:
    patients = list(iter_cohort(30, seed=6))
    source = tmp_path / "in.json"
    source.write_text(json.dumps(patients, indent=1), encoding="utf-8")
    proc = fsgs("batch", str(source), "-o", str(tmp_path / "out.jsonl"))
    got = results(tmp_path / "out.jsonl")
    assert len(got) == 30 and [r["patient_id"] for r in got] == [p["id"] for p in patients]
    assert proc.returncode in (0, 1)


def test_csv_input_with_dotted_columns(tmp_path: Path, kb: Any) -> None:
    source = tmp_path / "in.csv"
    source.write_text(
        "id,age_years,weight_kg,fsgs.biopsy_proven,fsgs.etiology,cyclosporine.status,"
        "cyclosporine.daily_dose.value,cyclosporine.daily_dose.unit,gc_toxicity_risk_factors\n"
        "c1,45,70,true,primary,current,357,mg/day,\n"
        "c2,52,90,true,primary,never,,,uncontrolled_diabetes;obesity\n"
        "c3,forty,70,true,primary,current,300,mg/day,\n"
        ",,,,,,,,\n"
        "c5,40,70,true,secondary,never,,,\n",
        encoding="utf-8",
    )
    proc = fsgs("batch", str(source), "-o", str(tmp_path / "out.jsonl"))
    assert proc.returncode == 1
    got = results(tmp_path / "out.jsonl")
    assert len(got) == 5
    assert "CSA-DOSE-EXCEEDS" in got[0]["advice"]
    assert got[1]["status"] == "evaluated"
    assert got[2]["status"] == "invalid" and got[2]["errors"][0]["message"] == "/age_years: 'forty' is not a number"
    assert got[3]["errors"][0]["code"] == "patient.empty"
    assert got[4]["status"] == "out_of_scope"
    assert [r["line"] for r in got] == [2, 3, 4, 5, 6]


def test_resume_needs_an_output_file() -> None:
    proc = fsgs("batch", "-", "--resume", stdin=b"")
    assert proc.returncode == 2 and b"--resume needs -o" in proc.stderr


def test_missing_input_is_an_io_error(tmp_path: Path) -> None:
    proc = fsgs("batch", str(tmp_path / "nope.jsonl"))
    assert proc.returncode == 2 and b"cannot read" in proc.stderr


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    write_cohort(source, 40)
    proc = fsgs("batch", str(source), "-o", str(tmp_path / "o.jsonl"))
    assert b"\r" not in proc.stderr


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    import pty

    source = tmp_path / "in.jsonl"
    write_cohort(source, 600)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fsgs_kb", "batch", str(source), "-o", str(tmp_path / "o.jsonl")],
        cwd=ROOT,
        stderr=follower,
        stdout=subprocess.DEVNULL,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(leader)
    text = b"".join(chunks).decode("utf-8", "replace")
    assert "\r" in text and "records" in text and "/s" in text and "ETA" in text
    quiet = fsgs("batch", str(source), "-o", str(tmp_path / "q.jsonl"), "--quiet")
    assert b"\r" not in quiet.stderr


def test_workers_are_bounded_and_started_only_for_chunks_to_run(kb: Any, tmp_path: Path) -> None:
    """Review 2 item 9, through the Python API: a worker count above MAX_WORKERS is refused before
    the output is opened or a process started, and a run starts no more workers than it has chunks."""
    source = tmp_path / "in.jsonl"
    write_cohort(source, 300)
    out = tmp_path / "out.jsonl"
    for workers in (10**20, MAX_WORKERS + 1, 0):
        with pytest.raises(KBErrors, match="number of workers must be a whole number from 1 to 256"):
            run_batch(kb, BatchJob(source=str(source), output=str(out), workers=workers))
        with pytest.raises(KBErrors, match="number of workers must be a whole number from 1 to 256"):
            BatchRunner(kb, None, workers)
    assert not out.exists()
    runner = BatchRunner(kb, None, MAX_WORKERS, chunk_size=64)
    with open(source, "rb") as stream:
        chunks = list(runner.results(read_jsonl(stream)))
    assert sum(chunk.count for chunk, _ in chunks) == 300
    # five chunks of 64, two in flight a worker: a worker starts only for a chunk no other can take
    assert runner.workers_started == 3
    empty = BatchRunner(kb, None, MAX_WORKERS)
    assert list(empty.results(iter([]))) == [] and empty.workers_started == 0
