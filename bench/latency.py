"""Single-process benchmark of `KnowledgeBase.evaluate`: latency (p50, p99), evaluations per
second and peak memory, on a seeded synthetic cohort; plus the command line's cold start.

    python bench/latency.py --n 100000      # the stress size named in the engine issue
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from generate import iter_cohort  # noqa: E402

import fsgs_kb  # noqa: E402


def measure(n: int, seed: int) -> dict[str, float]:
    kb = fsgs_kb.load()
    for record in iter_cohort(500, seed=seed + 1):  # warm-up: rulesets created, caches filled
        kb.evaluate(record)
    samples: list[float] = []
    statuses: dict[str, int] = {}
    start = time.perf_counter()
    for record in iter_cohort(n, seed=seed, invalid_rate=0.02):
        t0 = time.perf_counter()
        status = kb.evaluate(record)["status"]
        samples.append(time.perf_counter() - t0)
        statuses[status] = statuses.get(status, 0) + 1
    wall = time.perf_counter() - start
    samples.sort()
    return {
        "patients": n,
        "p50_us": samples[len(samples) // 2] * 1e6,
        "p99_us": samples[int(len(samples) * 0.99)] * 1e6,
        "mean_us": statistics.fmean(samples) * 1e6,
        "evaluations_per_s": n / sum(samples),
        "wall_s_including_generation": wall,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "statuses": statuses,  # type: ignore[dict-item]
    }


def cold_start(runs: int = 5) -> float:
    """Median wall time of `fsgs-kb evaluate examples/…json`, start-up included."""
    command = [
        str(Path(sys.executable).parent / "fsgs-kb"),
        "evaluate",
        str(ROOT / "examples" / "dose-above-ceiling.json"),
    ]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.n, args.seed)
    result["cli_cold_start_ms"] = cold_start()
    result["machine"] = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"  # type: ignore[assignment]
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"machine: {result['machine']}")
    print(f"patients: {args.n} (seed {args.seed}, ~2% invalid): {result['statuses']}")
    print(f"latency: p50 {result['p50_us']:.0f} µs, p99 {result['p99_us']:.0f} µs, mean {result['mean_us']:.0f} µs")
    print(f"throughput: {result['evaluations_per_s']:.0f} evaluations/s in one process")
    print(f"peak RSS: {result['peak_rss_mib']:.1f} MiB")
    print(f"CLI cold start (evaluate one patient): {result['cli_cold_start_ms']:.0f} ms")


if __name__ == "__main__":
    main()
