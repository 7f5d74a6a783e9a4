"""Batch benchmark: the floor, bare durable-rules and `fsgs-kb batch`, side by side on one input.

    python bench/batch.py --n 20000                 # throughput, ratios
    python bench/batch.py --n 100000 --memory 1000000   # plus peak memory at two sizes

Measured in one run on the same generated input, because this machine is noisy; ratios matter
more than absolute figures. Prints patients/s, µs/patient, peak RSS and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT / "tests"))


def generate(n: int, seed: int = 7) -> Path:
    """A seeded, realistic mix (in/out of scope, on/off cyclosporine, missing fields, ~2 % invalid)."""
    from generate import iter_cohort

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"patients-{n}-{seed}.jsonl"
    if not path.exists():
        with path.open("wb") as handle:
            for patient in iter_cohort(n, seed=seed, invalid_rate=0.02):
                handle.write(orjson.dumps(patient) + b"\n")
    return path


def floor(path: Path) -> float:
    """Read + parse + write JSON Lines, no evaluation: the I/O floor."""
    start = time.perf_counter()
    with path.open("rb") as src, (OUT / "floor.jsonl").open("wb") as dst:
        for line in src:
            dst.write(orjson.dumps(orjson.loads(line)) + b"\n")
    return time.perf_counter() - start


def bare_durable(path: Path) -> tuple[float, int]:
    """durable-rules alone through its Host API (Python actions), same compiled rulesets, one
    process; facts are flattened beforehand and not timed; no validation, no explanation."""
    from durable.engine import Host, MessageNotHandledException

    import fsgs_kb
    from fsgs_kb.engine.evaluate.patient import field_values, validate_patient

    kb = fsgs_kb.load()
    evaluation = kb.evaluation
    facts = []
    with path.open("rb") as src:
        for line in src:
            patient = orjson.loads(line)
            if validate_patient(patient):
                continue
            values = field_values(patient, evaluation.fields)
            facts.append(evaluation.flat_fact(values, kb.evaluator.derive(values)))
    host = Host()
    names = []
    for i, chunks in enumerate(kb.compiled.levels):
        level = []
        for j, ruleset in enumerate(chunks):
            name = f"bare_{i}_{j}"
            host.set_rulesets({name: {rule: dict(body, run=lambda c: None) for rule, body in ruleset.items()}})
            level.append(name)
        names.append(level)
    start = time.perf_counter()
    for n, fact in enumerate(facts):
        for level in names:
            message = {"sid": "0", "id": n, **fact}
            for name in level:
                try:
                    host.assert_fact(name, message)
                except MessageNotHandledException:
                    pass
                host.retract_fact(name, message)
    return time.perf_counter() - start, len(facts)


def batch(path: Path, workers: int) -> tuple[float, float]:
    """Wall time and peak RSS (MiB, largest process) of `fsgs-kb batch` on the file."""
    code = (
        "import resource, subprocess, sys, time;"
        "t = time.perf_counter();"
        f"subprocess.run([sys.executable, '-m', 'cli', 'batch', {str(path)!r}, '-o', {str(OUT / 'batch.jsonl')!r},"
        f" '--workers', '{workers}', '--quiet'], cwd={str(ROOT)!r}, stderr=subprocess.DEVNULL);"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--memory", type=int, default=0, help="also measure peak memory at this larger size")
    parser.add_argument("--memory-only", action="store_true", help="only peak memory at --n and --memory")
    args = parser.parse_args()
    path = generate(args.n)
    if args.memory_only:
        cores = os.cpu_count() or 1
        small, big = batch(path, cores)[1], batch(generate(args.memory), cores)[1]
        print(
            f"peak RSS (largest process), {cores} workers: {small:.1f} MiB at {args.n:,} records, "
            f"{big:.1f} MiB at {args.memory:,} (ratio {big / small:.3f}, target <= 1.1)"
        )
        return
    n = args.n
    cores = os.cpu_count() or 1
    t_floor = floor(path)
    t_bare, bare_n = bare_durable(path)
    t_one, rss_one = batch(path, 1)
    t_all, rss_all = batch(path, cores)
    rows = [
        ("floor (read+parse+write)", n / t_floor, None),
        ("bare durable-rules (Host, 1 process)", bare_n / t_bare, None),
        ("fsgs-kb batch, 1 worker", n / t_one, rss_one),
        (f"fsgs-kb batch, {cores} workers", n / t_all, rss_all),
    ]
    print(f"{n:,} patients, {cores} cores, Python {sys.version.split()[0]}")
    for label, rate, rss in rows:
        extra = f", peak RSS {rss:.0f} MiB" if rss else ""
        print(f"  {label:40s} {rate:>10,.0f} patients/s  {1e6 / rate:>8.1f} µs/patient{extra}")
    bare = bare_n / t_bare
    print(
        f"  ratios: all workers / bare = {n / t_all / bare:.2f} (target >= 1.5); one worker / bare = "
        f"{n / t_one / bare:.2f} (target >= 0.75); all / one = {t_one / t_all:.2f} (target >= 1.8); "
        f"all workers / floor = {n / t_all / (n / t_floor):.3f}"
    )
    result = {
        "n": n,
        "floor": n / t_floor,
        "bare": bare,
        "one": n / t_one,
        "all": n / t_all,
        "rss_one_mib": rss_one,
        "rss_all_mib": rss_all,
    }
    if args.memory:
        _, rss_big = batch(generate(args.memory), cores)
        print(
            f"  peak RSS at {args.memory:,} records: {rss_big:.0f} MiB vs {rss_all:.0f} MiB at {n:,} "
            f"(ratio {rss_big / rss_all:.2f}, target <= 1.1)"
        )
        result["rss_big_mib"] = rss_big
    print(json.dumps(result))


if __name__ == "__main__":
    main()
