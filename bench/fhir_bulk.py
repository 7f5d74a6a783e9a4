"""FHIR Bulk Data benchmark: peak memory of `fsgs-kb batch --input-format fhir-bulk` at two sizes.

    python bench/fhir_bulk.py                      # 10,000 vs 100,000 patients (target: ratio <= 1.2)
    python bench/fhir_bulk.py --small 1000 --large 10000

Each export is generated once into bench/out/ (gitignored) from tests/generate.py cohorts through
record_to_bundle, every resource type split over four NDJSON files with lines shuffled, so the
reader must group by patient through its on-disk index. Prints, per size: wall time, patients/s,
peak RSS of the largest process (the parent that indexes, groups and converts, or a worker), the
load average before and after, and the ratio of the peaks.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
AS_OF = date(2025, 1, 15)
sys.path.insert(0, str(ROOT / "tests"))


def export(n: int, seed: int = 7) -> Path:
    """The Bulk Data export of n generated patients (made once, then reused)."""
    from generate import iter_cohort

    from fsgs_kb.engine.fhir import default_map_path, load_map
    from fsgs_kb.engine.fhir.bulkwrite import write_bulk_export

    directory = OUT / f"fhir-bulk-{n}-{seed}"
    done = directory / ".complete"
    if not done.exists():
        start = time.perf_counter()
        count, names = write_bulk_export(
            iter_cohort(n, seed=seed), directory, load_map(default_map_path()), AS_OF, seed=seed, files_per_type=4
        )
        done.write_text(f"{count}\n")
        print(f"  generated {count:,} patients in {time.perf_counter() - start:.0f} s: {len(names)} files", flush=True)
    return directory


def run(directory: Path, workers: int) -> tuple[float, float, int]:
    """(wall time, peak RSS in MiB of the largest process, result lines) of one batch run."""
    out = OUT / f"{directory.name}.results.jsonl"
    code = (
        "import resource, subprocess, sys, time;"
        "t = time.perf_counter();"
        f"p = subprocess.run([sys.executable, '-m', 'fsgs_kb', 'batch', '--input-format', 'fhir-bulk', "
        f"{str(directory)!r}, '--as-of', {AS_OF.isoformat()!r}, '-o', {str(out)!r}, '--workers', '{workers}', "
        "'--quiet'], stderr=subprocess.DEVNULL);"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.returncode)"
    )
    wall, rss, rc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    if rc not in ("0", "1"):
        raise SystemExit(f"fsgs-kb batch exited {rc}")
    with out.open("rb") as handle:
        lines = sum(1 for _ in handle)
    return float(wall), float(rss) / 1024, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.uname().machine}, {os.cpu_count()} cores, Python {sys.version.split()[0]}", flush=True)
    peaks = []
    for n in (args.small, args.large):
        directory = export(n)
        before = os.getloadavg()
        wall, rss, lines = run(directory, args.workers)
        after = os.getloadavg()
        peaks.append(rss)
        print(
            f"{n:>9,} patients: {wall:7.1f} s, {n / wall:6.0f} patients/s, peak RSS {rss:6.1f} MiB (largest process), "
            f"{lines:,} results; load average {before[0]:.2f} before, {after[0]:.2f} after",
            flush=True,
        )
    print(f"peak RSS ratio {args.large:,} / {args.small:,} patients: {peaks[1] / peaks[0]:.3f} (target <= 1.2)")
    print(f"this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (generation)")


if __name__ == "__main__":
    main()
