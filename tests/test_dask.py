"""The Dask recipe on a real distributed.LocalCluster with two worker processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from generate import iter_cohort

ROOT = Path(__file__).resolve().parent.parent
db = pytest.importorskip("dask.bag", reason="the dask extra is not installed")
distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")


def test_bag_on_a_local_cluster_equals_single_machine_results(kb: Any) -> None:
    from fsgs_kb.engine.batch.dask_bag import evaluate_bag

    lines = [json.dumps(p) for p in iter_cohort(300, seed=21, invalid_rate=0.02)] + ["not json", ""]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster):
            bag = db.from_sequence(lines, npartitions=6)
            got = evaluate_bag(bag).compute()
    assert len(got) == len(lines)
    for line, result in zip(lines[:-2], got, strict=False):
        assert result == kb.evaluate(json.loads(line))
    assert got[-2]["errors"][0]["code"] == "patient.json"
    assert got[-1]["errors"][0]["code"] == "patient.empty"


# ---- parts from the command line: locally and on a Dask cluster ---------------------------------------
def _fsgs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fsgs_kb", *args], capture_output=True, text=True, cwd=ROOT, timeout=600
    )


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    """Three input parts and what `fsgs-kb batch PART -o OUT` writes for each."""
    folder = tmp_path_factory.mktemp("parts")
    data = folder / "data"
    data.mkdir()
    expected = {}
    for i, seed in enumerate((3, 4, 5)):
        part = data / f"part-{i:04d}.jsonl"
        lines = [json.dumps(p) for p in iter_cohort(120, seed=seed, invalid_rate=0.03)] + ["not json"]
        part.write_text("\n".join(lines) + "\n", encoding="utf-8")
        reference = folder / f"reference-{i}.jsonl"
        proc = _fsgs("batch", str(part), "-o", str(reference), "--workers", "1", "--quiet")
        assert proc.returncode == 1, proc.stderr
        expected[part.name] = reference.read_bytes()
    return data, expected


def test_a_glob_of_parts_runs_locally_one_output_part_each(
    parts: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    data, expected = parts
    out = tmp_path / "out"
    proc = _fsgs("batch", str(data / "part-*.jsonl"), "-o", str(out), "--workers", "2")
    assert proc.returncode == 1, proc.stderr  # each part has a line that is not JSON
    assert sorted(p.name for p in out.glob("*.jsonl")) == sorted(expected)
    for name, reference in expected.items():
        assert (out / name).read_bytes() == reference, name
    assert "363 records" in proc.stderr and "3 part(s) written" in proc.stderr


def test_parts_on_a_local_cluster_equal_the_local_batch(parts: tuple[Path, dict[str, bytes]], tmp_path: Path) -> None:
    data, expected = parts
    out = tmp_path / "out"
    summary = tmp_path / "summary.json"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        proc = _fsgs(
            "batch", str(data / "part-*.jsonl"), "--dask", cluster.scheduler_address, "-o", str(out),
            "--summary", str(summary),
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    for name, reference in expected.items():
        assert (out / name).read_bytes() == reference, name  # record for record, byte for byte
    payload = json.loads(summary.read_text())
    assert payload["records"] == 363 and payload["workers"] == 2 and len(payload["parts"]) == 3
    assert payload["by_status"]["invalid"] >= 3


def test_parts_need_an_output_directory_and_refuse_resume_on_dask(parts: tuple[Path, dict[str, bytes]]) -> None:
    data, _ = parts
    no_out = _fsgs("batch", str(data / "part-*.jsonl"))
    assert no_out.returncode == 2 and "-o OUTDIR" in no_out.stderr
    resume = _fsgs("batch", str(data / "part-*.jsonl"), "--dask", "tcp://127.0.0.1:1", "-o", str(data), "--resume")
    assert resume.returncode == 2 and "--resume is for local runs" in resume.stderr
    over = _fsgs("batch", str(data / "part-*.jsonl"), "-o", str(data))
    assert over.returncode == 2 and "error[batch.output_is_input]" in over.stderr
