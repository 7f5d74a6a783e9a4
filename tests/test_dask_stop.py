"""`fsgs-kb batch GLOB --dask` when a part fails, on a real LocalCluster of two worker processes
(review 5 F6): the error is the local run's (exit 2, naming the part), and the command stops its
other tasks and waits for them, so none writes into OUTDIR after it has exited."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from generate import iter_cohort

ROOT = Path(__file__).resolve().parent.parent
distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")


def _fsgs(*args: object) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "fsgs_kb", *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=600)


def _listing(folder: Path) -> dict[str, int]:
    """Every file under `folder` (hidden ones too: a task's temporary file) and its size."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def _nothing(_: Any) -> None:
    return None


def test_a_part_that_cannot_be_written_exits_2_and_no_task_writes_after_the_command(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    big = data / "a.jsonl"  # seconds of work on one worker: still running when b fails
    big.write_text("".join(json.dumps(p) + "\n" for p in iter_cohort(1500, seed=8)), encoding="utf-8")
    (data / "b.jsonl").write_text("".join(json.dumps(p) + "\n" for p in iter_cohort(5, seed=9)), encoding="utf-8")
    (out / "b.jsonl").mkdir(parents=True)  # b's output part is a directory: its task cannot write it
    reference = tmp_path / "reference.jsonl"
    assert _fsgs("batch", big, "-o", reference, "--workers", "2", "--quiet").returncode in (0, 1)

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        proc = _fsgs("batch", data / "*.jsonl", "--dask", cluster.scheduler_address, "-o", out, "--quiet")
        at_exit = _listing(out)
        assert proc.returncode == 2, proc.stderr  # an I/O error, as in a local run; not 3 (internal)
        errors = [line for line in proc.stderr.splitlines() if "error[" in line]
        assert errors == [f"{out / 'b.jsonl'}: error[batch.output] cannot open the output part: Is a directory"], (
            proc.stderr
        )
        # Each worker has one thread: a task pinned to it starts only once the thread is free, so
        # once both have run, no task of the command is still running anywhere.
        with distributed.Client(cluster) as client:
            for worker in client.scheduler_info()["workers"]:
                client.submit(_nothing, worker, workers=[worker], allow_other_workers=False, pure=False).result()
        assert _listing(out) == at_exit  # nothing written into OUTDIR after the command exited
    assert not [name for name in at_exit if ".fsgs-kb-part-" in name]  # no temporary file left
    assert "a.jsonl" not in at_exit or (out / "a.jsonl").read_bytes() == reference.read_bytes()

    later = _fsgs("batch", big, "-o", out / "a.jsonl", "--workers", "2", "--quiet")  # a later local run owns it
    assert later.returncode in (0, 1), later.stderr
    assert (out / "a.jsonl").read_bytes() == reference.read_bytes()
