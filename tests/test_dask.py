"""The Dask recipe on a real distributed.LocalCluster with two worker processes."""

from __future__ import annotations

import json
import os
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
def _fsgs(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fsgs_kb", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def _batch_on_a_cluster(data: Path, out: Path, summary: Path) -> subprocess.CompletedProcess[str]:
    """`fsgs-kb batch 'DATA/part-*.jsonl' --dask` on a fresh LocalCluster of two worker processes."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        return _fsgs(
            "batch", str(data / "part-*.jsonl"), "--dask", cluster.scheduler_address, "-o", str(out),
            "--summary", str(summary),
        )  # fmt: skip


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
    proc = _batch_on_a_cluster(data, out, summary)
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


def test_a_record_that_crashes_its_worker_on_dask_costs_only_itself(
    parts: tuple[Path, dict[str, bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fault hook crashes the interpreter for real (a null-pointer read, a SIGKILL) on the
    victims, which every part holds (P0000010 and P0000011 in one chunk): on the cluster each
    part still comes out complete, in order and byte for byte as the local batch writes it, the
    victims `error` / `engine_crash`, every other record as without the fault."""
    data, clean = parts
    victims = {"P0000010", "P0000011", "P0000100"}
    monkeypatch.setenv("FSGS_KB_FAULT", "segv:P0000010,kill:P0000011,segv:P0000100")  # the cluster's too
    local, out, summary = tmp_path / "local", tmp_path / "out", tmp_path / "summary.json"
    reference = _fsgs("batch", str(data / "part-*.jsonl"), "-o", str(local), "--workers", "2")
    assert reference.returncode == 3, reference.stderr  # engine_crash: an internal error
    proc = _batch_on_a_cluster(data, out, summary)
    assert proc.returncode == 3, proc.stderr
    for name, clean_bytes in clean.items():
        got = (out / name).read_bytes()
        assert got == (local / name).read_bytes(), name  # record for record, byte for byte
        results = [json.loads(line) for line in got.splitlines()]
        assert [r["record"] for r in results] == list(range(1, 122))
        crashed = {r["patient_id"] for r in results if r["status"] == "error"}
        assert crashed == victims, name
        assert all(r["errors"][0]["code"] == "engine_crash" for r in results if r["status"] == "error")
        for result, expected in zip(results, clean_bytes.splitlines(), strict=True):
            if result["patient_id"] not in victims:
                assert result == json.loads(expected)
    payload = json.loads(summary.read_text())
    assert payload["records"] == 363 and payload["by_status"]["error"] == 9
    assert payload["worker_crashes"] >= 9  # each victim killed a worker at least once, alone


def test_a_scheduler_that_cannot_be_reached_leaves_no_output_directory(
    parts: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    """The scheduler is asked before OUTDIR is made: a mistyped address leaves nothing to clean up."""
    data, _ = parts
    out = tmp_path / "out"
    proc = _fsgs("batch", str(data / "part-*.jsonl"), "--dask", "no-port-here", "-o", str(out))
    assert proc.returncode == 2 and "error[batch.dask] cannot reach the Dask scheduler no-port-here" in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (
            "dropbox://box/part-*.jsonl",
            "error[batch.fsspec] dropbox:// is read through a package that is not installed",
        ),
        ("nosuchprotocol://box/part-*.jsonl", "error[batch.fsspec] fsspec cannot read this URL: Protocol not known"),
    ],
)
def test_a_url_fsspec_cannot_read_is_a_clear_error_not_an_internal_one(url: str, said: str, tmp_path: Path) -> None:
    if url.startswith("dropbox"):
        try:
            import dropboxdrivefs  # noqa: F401
        except ImportError:
            pass
        else:
            pytest.skip("dropboxdrivefs is installed here")
    proc = _fsgs("batch", url, "-o", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr
    assert f"{url}: {said}" in proc.stderr and "Traceback" not in proc.stderr and "internal" not in proc.stderr


def test_relative_paths_reach_workers_that_run_elsewhere(parts: tuple[Path, dict[str, bytes]], tmp_path: Path) -> None:
    """The cluster's workers run in their own working directory (here the test's, the checkout),
    not the command's: relative input parts, OUTDIR and --rules are made absolute before they
    are sent (each part failed: 'cannot open the output part: No such file or directory')."""
    data, expected = parts
    rules = os.path.relpath(ROOT / "rules", data.parent)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        proc = _fsgs(
            "batch", "data/part-*.jsonl", "--dask", cluster.scheduler_address, "-o", "out-relative", "--rules", rules,
            cwd=data.parent,
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # each part has a line that is not JSON
    for name, reference in expected.items():
        assert (data.parent / "out-relative" / name).read_bytes() == reference, name


def test_parts_written_on_a_cluster_are_ordinary_files_and_a_file_url_outdir_is_a_directory(
    parts: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    """A part written on the cluster had mkstemp's mode 0600 (a local batch's part: 0644 under the
    usual umask); an OUTDIR given as a file:// URL was not made (each part: 'No such file')."""
    data, expected = parts
    out = tmp_path / "made" / "here"
    local = tmp_path / "local"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        proc = _fsgs("batch", str(data / "part-*.jsonl"), "--dask", cluster.scheduler_address, "-o", f"file://{out}")
    assert proc.returncode == 1, proc.stderr
    assert _fsgs("batch", str(data / "part-*.jsonl"), "-o", f"file://{local}").returncode == 1
    for name, reference in expected.items():
        assert (out / name).read_bytes() == reference == (local / name).read_bytes(), name
        assert (out / name).stat().st_mode & 0o777 == (local / name).stat().st_mode & 0o777, name
