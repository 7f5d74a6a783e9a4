"""Workers that write their own results into the output (engine/batch/workers.py, run.py).

With `-o FILE` each worker writes its block where the parent says; the parent keeps the order
and the counts. These tests hold that path to the one where the parent writes every byte (the
same bytes), and drive its failures for real: a worker SIGKILLed halfway through writing a block
(FSGS_KB_FAULT=killwrite), the same again when the block is made a second time, and a file-size
limit that makes the workers' writes fail (EFBIG, as a full disk would)."""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from generate import iter_cohort

import fsgs_kb
from fsgs_kb.engine.batch.job import BatchJob, run_batch

ROOT = Path(__file__).resolve().parent.parent


def cohort(path: Path, n: int, seed: int) -> list[str]:
    ids = []
    with path.open("w", encoding="utf-8") as handle:
        for patient in iter_cohort(n, seed=seed, invalid_rate=0.02):
            handle.write(json.dumps(patient) + "\n")
            ids.append(patient.get("id") if isinstance(patient, dict) else None)
    return ids


def batch(
    *args: str | Path, env: dict[str, str] | None = None, limit_bytes: int | None = None
) -> subprocess.CompletedProcess[bytes]:
    def limit() -> None:
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, "-m", "fsgs_kb", "batch", *map(str, args)],
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        preexec_fn=limit,  # noqa: PLW1509 - the limit must bind the batch and its workers only
        timeout=180,  # a hang fails in minutes, not the suite's whole budget
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], bytes, int]:
    """300 records (5 chunks of 64), their ids, and the output a one-worker run writes."""
    folder = tmp_path_factory.mktemp("direct")
    path = folder / "in.jsonl"
    ids = cohort(path, 300, seed=11)
    clean = batch(path, "-o", folder / "clean.jsonl", "--workers", "1", "--quiet")
    return path, ids, (folder / "clean.jsonl").read_bytes(), clean.returncode


@pytest.mark.parametrize("detail", ["full", "standard"])
def test_workers_write_the_bytes_the_parent_would(tmp_path: Path, detail: str) -> None:
    source = tmp_path / "in.jsonl"
    cohort(source, 300, seed=5)
    kb = fsgs_kb.load()
    out = tmp_path / "out.jsonl"
    summary = run_batch(kb, BatchJob(source=str(source), output=str(out), workers=2, options={"detail": detail}))
    piped = io.BytesIO()
    run_batch(kb, BatchJob(source=str(source), workers=2, options={"detail": detail}), stdout=piped)
    assert summary.records == 300
    assert out.read_bytes() == piped.getvalue()
    assert out.read_bytes().count(b"\n") == 300


@pytest.mark.parametrize("victim", [140, 298], ids=["middle", "last-chunk"])
def test_a_worker_killed_while_writing_is_replaced_and_its_block_written_again(
    tmp_path: Path, source: tuple[Path, list[str], bytes, int], victim: int
) -> None:
    """In the last chunk, the hole is filled again after every result was counted: the run's
    end waits for it as a commit does."""
    path, ids, clean, clean_code = source
    marker = tmp_path / "killed-once"
    out = tmp_path / "out.jsonl"
    env = {"FSGS_KB_FAULT": f"killwrite:{ids[victim]}", "FSGS_KB_FAULT_ONCE": str(marker)}
    proc = batch(path, "-o", out, "--workers", "2", "--summary", tmp_path / "s.json", env=env)
    assert marker.exists(), "the drill did not kill a worker"
    assert proc.returncode == clean_code, proc.stderr.decode()
    assert out.read_bytes() == clean
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["worker_crashes"] == 1 and summary["records"] == 300


def test_a_block_that_cannot_be_written_again_stops_the_run_and_resume_finishes_it(
    tmp_path: Path, source: tuple[Path, list[str], bytes, int]
) -> None:
    path, ids, clean, clean_code = source
    out = tmp_path / "out.jsonl"
    proc = batch(path, "-o", out, "--workers", "2", env={"FSGS_KB_FAULT": f"killwrite:{ids[140]}"})
    stderr = proc.stderr.decode()
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr
    assert "error[batch.write_failed]" in stderr and "--resume" in stderr, stderr
    resumed = batch(path, "-o", out, "--workers", "2", "--resume", "--quiet")
    assert resumed.returncode == clean_code, resumed.stderr.decode()
    assert out.read_bytes() == clean


def test_a_write_refused_to_a_worker_is_one_clear_error_and_resume_finishes(
    tmp_path: Path, source: tuple[Path, list[str], bytes, int]
) -> None:
    path, _, clean, clean_code = source
    out = tmp_path / "out.jsonl"
    proc = batch(path, "-o", out, "--workers", "2", limit_bytes=len(clean) // 3)
    stderr = proc.stderr.decode()
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr
    problems = [line for line in stderr.splitlines() if "error[" in line]
    assert len(problems) == 1 and "error[batch.write_failed]" in problems[0], stderr
    assert "too large" in problems[0].lower(), problems
    resumed = batch(path, "-o", out, "--workers", "2", "--resume", "--quiet")
    assert resumed.returncode == clean_code, resumed.stderr.decode()
    assert out.read_bytes() == clean


@pytest.mark.parametrize(
    ("written", "crashing", "fault"),
    [(99, 129, "kill"), (99, 100, "segv")],
    ids=["kill-in-the-next-chunk", "segv-in-the-same-chunk"],
)
def test_a_death_while_writing_is_never_charged_to_a_record(
    tmp_path: Path, source: tuple[Path, list[str], bytes, int], written: int, crashing: int, fault: str
) -> None:
    """A worker killed while writing, with a record that crashes workers nearby (outside review
    7): only that record gets engine_crash, and the run completes as one worker would make it.
    Before, the writing worker's death was charged to the record it was evaluating alone (an
    innocent record marked engine_crash), or the crashing record's death to the block being made
    again (the run stopped with batch.write_failed)."""
    path, ids, _, _ = source
    reference = tmp_path / "reference.jsonl"
    one = batch(path, "-o", reference, "--workers", "1", "--quiet", env={"FSGS_KB_FAULT": f"{fault}:{ids[crashing]}"})
    assert one.returncode == 3, one.stderr.decode()
    out = tmp_path / "out.jsonl"
    env = {
        "FSGS_KB_FAULT": f"killwrite:{ids[written]},{fault}:{ids[crashing]}",
        "FSGS_KB_FAULT_ONCE": str(tmp_path / "killed-once"),
    }
    proc = batch(path, "-o", out, "--workers", "2", "--quiet", env=env)
    assert proc.returncode == 3, proc.stderr.decode()
    assert (tmp_path / "killed-once").exists(), "the drill did not kill a worker while writing"
    crashed = [json.loads(line)["record"] for line in out.read_bytes().splitlines() if b'"engine_crash"' in line]
    assert crashed == [crashing + 1]
    assert out.read_bytes() == reference.read_bytes()


def test_a_disk_slower_than_the_workers_does_not_pile_results_up_in_them(tmp_path: Path) -> None:
    """Granted, unwritten blocks count as in flight: while one block cannot be written
    (stallwrite: until its worker has nothing left to evaluate), the parent stops handing out
    chunks, so the worker holds a few blocks, not the rest of the input (on an 8.7 GB output,
    dirty-page throttling had grown the workers' peak RSS from 38 to 44 MiB at 1M records)."""
    source = tmp_path / "in.jsonl"
    ids = cohort(source, 2000, seed=13)
    victim = next(i for i in range(100, 200) if isinstance(ids[i], str))
    clean = batch(source, "-o", tmp_path / "clean.jsonl", "--workers", "1", "--quiet")
    out = tmp_path / "out.jsonl"
    proc = batch(source, "-o", out, "--workers", "2", "--quiet", env={"FSGS_KB_FAULT": f"stallwrite:{ids[victim]}"})
    said = [line for line in proc.stderr.decode().splitlines() if "stallwrite:" in line]
    assert len(said) == 1, proc.stderr.decode()
    held = int(said[0].split("stallwrite: ")[1].split()[0])
    assert held <= 2 * 4, f"{held} blocks piled up behind the stalled write (of {2000 // 64} in the run)"
    assert proc.returncode == clean.returncode
    assert out.read_bytes() == (tmp_path / "clean.jsonl").read_bytes()
