"""The whole speed story in one run, on one generated input (tests/generate.py iter_cohort).

    python bench/bench.py                         # 20,000 records, 3 repeats
    python bench/bench.py --n 20000 --memory 100000,1000000   # plus peak RSS at those sizes
    python bench/table.py bench/out/results.json  # the README table from the saved results

Measured side by side, because the machine is shared and noisy (2 cores): every figure is the
median of the repeats, with its spread (min–max), and the load average before and after is
printed. Per record, in one process unless said otherwise:

- orjson floor: parse a JSON line and write it back (nothing evaluated);
- durable-rules C core: the knowledge base's own rulesets, facts prepared and encoded
  beforehand (as the engine builds them, level by level), assert + drain + retract;
- durable-rules Host API: the same rulesets and facts through `durable.engine.Host` with Python
  actions (the yardstick the batch targets are ratios of);
- interpreted reference: `KnowledgeBase.reference_evaluate` + orjson, full detail;
- compiled evaluator: `KnowledgeBase.evaluate_json` (evaluate and serialize in one call, as
  batch does) at full, standard and minimal detail, and `KnowledgeBase.evaluate` + orjson at full
  (the dict API); each evaluator's repeat on a knowledge base loaded anew (FreshKB): one pass
  over the records, none met before but the 300 of the warm-up;
- batch: `run_batch` with 1 and 2 workers at full and at standard detail (batch's default),
  wall time, and the parent process's own CPU per record;
- peak RSS (largest process) of `fsgs-kb batch` at the --memory sizes (generated once into
  bench/out/, which git ignores).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT / "tests"))

from generate import iter_cohort  # noqa: E402

import fsgs_kb  # noqa: E402
from fsgs_kb.engine.batch.checksum import CRC32_IMPLEMENTATION  # noqa: E402
from fsgs_kb.engine.evaluate.output import dumps_bytes  # noqa: E402

SEED = 7


def cohort_file(n: int) -> Path:
    """n generated records as JSON Lines (~2 % invalid), written once."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"patients-{n}-{SEED}.jsonl"
    if not path.exists():
        temporary = path.with_suffix(".tmp")
        with temporary.open("wb") as handle:
            for patient in iter_cohort(n, seed=SEED, invalid_rate=0.02):
                handle.write(orjson.dumps(patient) + b"\n")
        temporary.replace(path)
    return path


def per_record(action: Callable[[], int], repeats: int, prepare: Callable[[], None] | None = None) -> dict[str, Any]:
    """µs per record over `repeats` runs: median, min, max; `prepare` runs, untimed, before each."""
    samples = []
    for _ in range(repeats):
        if prepare is not None:
            prepare()
        start = time.perf_counter()
        count = action()
        samples.append((time.perf_counter() - start) / count * 1e6)
    return {"us": statistics.median(samples), "min": min(samples), "max": max(samples), "runs": samples}


# ---- one process ------------------------------------------------------------------------------------
def floor(lines: list[bytes]) -> Callable[[], int]:
    def run() -> int:
        sink = bytearray()
        for line in lines:
            sink += orjson.dumps(orjson.loads(line)) + b"\n"
        return len(lines)

    return run


def prepared_facts(kb: Any, patients: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Per valid patient, the fact of each level exactly as the engine asserts it (its
    conclusions from the levels before included); prepared beforehand, not timed."""
    evaluation = kb.evaluation
    compiled = kb.compiled
    out = []
    for patient in patients:
        if kb.evaluate(patient)["status"] in ("invalid", "error"):
            continue
        values = evaluation.values_of(patient)
        derived = kb.evaluator.derive(values)
        state = evaluation.domains.state(patient, values, derived)
        fact = evaluation.flat_fact(values, derived, patient, state)
        levels = []
        for level, (_, rids) in enumerate(zip(compiled.level_derived, compiled.level_rules, strict=True)):
            levels.append(dict(fact))
            fired = kb.durable.fire(level, fact)
            for rid in rids:
                truth = True if f"{rid}|T" in fired else False if f"{rid}|F" in fired else None
                fact[f"r__{rid}"] = {True: "T", False: "F", None: "U"}[truth]
        out.append(levels)
    return out


def core_floor(kb: Any, facts: list[list[dict[str, Any]]]) -> Callable[[], int]:
    import durable_rules_engine as core

    handles = kb.durable._ensure()  # noqa: SLF001 - the benchmark measures the core under the wrapper
    texts = [  # each ruleset's fact as the wrapper hands it over (projected, renamed, encoded)
        [kb.durable.fact_texts(level, fact, i * 10 + level) for level, fact in enumerate(levels)]
        for i, levels in enumerate(facts)
    ]

    def run() -> int:
        for levels in texts:
            for level, level_texts in enumerate(levels):
                for handle, text in zip(handles[level], level_texts, strict=True):
                    code, state = core.assert_fact(handle, text)
                    if code == 0:
                        action = core.start_action_for_state(handle, state)
                        message = action[1] if action else None
                        while message:
                            message = core.complete_and_start_action(handle, state)
                    core.retract_fact(handle, text)
        return len(texts)

    return run


def host_api(kb: Any, facts: list[list[dict[str, Any]]]) -> Callable[[], int]:
    from durable.engine import Host, MessageNotHandledException

    host = Host()
    names = []
    for i, chunks in enumerate(kb.compiled.levels):
        level = []
        for j, ruleset in enumerate(chunks):
            name = f"bench_{i}_{j}"
            host.set_rulesets({name: {rule: dict(body, run=lambda c: None) for rule, body in ruleset.items()}})
            level.append(name)
        names.append(level)
    counter = iter(range(10**12))

    def run() -> int:
        for levels in facts:
            for level, fact in enumerate(levels):
                message = {"sid": "0", "id": next(counter), **fact}
                for name in names[level]:
                    try:
                        host.assert_fact(name, message)
                    except MessageNotHandledException:
                        pass
                    host.retract_fact(name, message)
        return len(facts)

    return run


class FreshKB:
    """The knowledge base the evaluator figures use, loaded anew before each repeat and warmed on
    the same 300 records: its remembered condition entries, possible cells and decisions are then
    those of one pass over the records, as in a batch worker. Measured over the same records three
    times in one knowledge base, the compiled evaluator met every record again from the second
    repeat on (10 % faster at full detail: 149 against 164 µs), which the interpreted reference,
    uncached, never does."""

    def __init__(self, patients: list[dict[str, Any]]) -> None:
        self.patients = patients
        self.kb: Any = None

    def prepare(self) -> None:
        self.kb = None
        gc.collect()
        self.kb = fsgs_kb.load()
        for patient in self.patients[:300]:  # rulesets created, generated code compiled, caches warmed
            self.kb.evaluate(patient)
            self.kb.reference_evaluate(patient)


def evaluate(fresh: FreshKB, patients: list[dict[str, Any]], detail: str, reference: bool = False) -> Callable[[], int]:
    def run() -> int:
        method = fresh.kb.reference_evaluate if reference else fresh.kb.evaluate
        for patient in patients:
            dumps_bytes(method(patient, detail=detail))
        return len(patients)

    return run


def evaluate_json(fresh: FreshKB, patients: list[dict[str, Any]], detail: str) -> Callable[[], int]:
    def run() -> int:
        kb = fresh.kb
        for patient in patients:
            kb.evaluate_json(patient, detail=detail)
        return len(patients)

    return run


# ---- batch --------------------------------------------------------------------------------------------
BATCH_CHILD = """
import json, os, resource, sys, time
import fsgs_kb
from fsgs_kb.engine.batch.job import BatchJob, run_batch
source, output, workers, detail = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
kb = fsgs_kb.load()
job = BatchJob(source=source, output=output, workers=workers, options={"detail": detail})

def busy():  # the machine's CPU seconds not idle (all processes, kernel threads, interrupts)
    try:
        with open("/proc/stat") as handle:
            fields = [int(x) for x in handle.readline().split()[1:]]
    except OSError:
        return float("nan")
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")

machine, before = busy(), os.times()
cpu, wall = time.process_time(), time.perf_counter()
summary = run_batch(kb, job)
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
after = os.times()
workers_cpu = after.children_user + after.children_system - before.children_user - before.children_system
print(json.dumps({"records": summary.records, "wall_s": wall, "parent_cpu_s": cpu, "workers_cpu_s": workers_cpu,
    "other_cpu_s": busy() - machine - cpu - workers_cpu,
    "rss_self_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "rss_children_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


# Linux keeps a process's peak RSS across exec, and a child forked from this (large) process
# starts with this process's pages: a small launcher in between makes the batch process's peak
# its own.
LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def batch_once(path: Path, workers: int, detail: str) -> dict[str, Any]:
    output = OUT / f"batch-{workers}-{detail}.jsonl"
    for stale in (output, Path(str(output) + ".fsgs-kb.json")):
        stale.unlink(missing_ok=True)
    child = [sys.executable, "-c", BATCH_CHILD, str(path), str(output), str(workers), detail]
    proc = subprocess.run([sys.executable, "-c", LAUNCHER, *child], capture_output=True, text=True, check=True)
    # removed at once: its ~840 MB of dirty pages (full detail) would otherwise be written back
    # by the kernel's flusher 30 s later, during the runs measured next
    for done in (output, Path(str(output) + ".fsgs-kb.json")):
        done.unlink(missing_ok=True)
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def batch(path: Path, workers: int, detail: str, repeats: int) -> dict[str, Any]:
    runs = [batch_once(path, workers, detail) for _ in range(repeats)]
    rates = [r["records"] / r["wall_s"] for r in runs]
    parent = [r["parent_cpu_s"] / r["records"] * 1e6 for r in runs]
    workers_cpu = [r.get("workers_cpu_s", float("nan")) / r["records"] * 1e6 for r in runs]
    other_cpu = [r.get("other_cpu_s", float("nan")) / r["records"] * 1e6 for r in runs]
    return {
        "workers_cpu_us": statistics.median(workers_cpu),
        "other_cpu_us": statistics.median(other_cpu),
        "records_per_s": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "parent_cpu_us": statistics.median(parent),
        "parent_cpu_min": min(parent),
        "parent_cpu_max": max(parent),
        "peak_rss_mib": max(max(r["rss_self_mib"], r["rss_children_mib"]) for r in runs),
        "runs": runs,
    }


# ---- main ---------------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"CRC-32 by {CRC32_IMPLEMENTATION}",
        "load_average": list(os.getloadavg()),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000, help="records for the throughput figures")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory", default="", help="comma-separated sizes for peak RSS, e.g. 100000,1000000")
    parser.add_argument("--skip-batch", action="store_true")
    parser.add_argument(
        "--batch-again",
        metavar="RESULTS",
        default=None,
        help="keep the one-process figures (and memory) of RESULTS, measure batch again (a quieter moment)",
    )
    parser.add_argument("-o", "--output", default=str(OUT / "results.json"))
    args = parser.parse_args()
    path = cohort_file(args.n)
    if args.batch_again:
        batch_again(path, args)
        return
    lines = path.read_bytes().splitlines()
    patients = [orjson.loads(line) for line in lines]
    results: dict[str, Any] = {"n": args.n, "repeats": args.repeats, "before": machine()}
    kb = fsgs_kb.load()
    for patient in patients[:300]:  # warm up: rulesets created, caches filled
        kb.evaluate(patient)
        kb.reference_evaluate(patient)
    facts = prepared_facts(kb, patients)
    one: dict[str, Any] = {}
    one["orjson floor"] = per_record(floor(lines), args.repeats)
    one["durable-rules C core"] = per_record(core_floor(kb, facts), args.repeats)
    one["durable-rules Host API"] = per_record(host_api(kb, facts), args.repeats)
    fresh = FreshKB(patients)
    one["interpreted reference, full"] = per_record(
        evaluate(fresh, patients, "full", reference=True), args.repeats, fresh.prepare
    )
    for detail in ("full", "standard", "minimal"):
        one[f"compiled, {detail}"] = per_record(evaluate_json(fresh, patients, detail), args.repeats, fresh.prepare)
    dict_api = evaluate(fresh, patients, "full")
    one["compiled, full, dict API + orjson"] = per_record(dict_api, args.repeats, fresh.prepare)
    results["one_process_us"] = one
    sizes = {d: statistics.mean(len(dumps_bytes(kb.evaluate(p, detail=d))) for p in patients[:2000]) for d in
             ("full", "standard", "minimal")}  # fmt: skip
    results["bytes_per_result"] = sizes
    for label, figure in one.items():
        print(f"{label:34s} {figure['us']:9.1f} µs/record  ({figure['min']:.1f}–{figure['max']:.1f})", flush=True)
    if not args.skip_batch:
        runs = {
            f"batch, {w} worker{'s' if w > 1 else ''}, {d}": batch(path, w, d, args.repeats)
            for d in ("full", "standard")
            for w in (1, 2)
        }
        results["batch"] = runs
        for label, figure in runs.items():
            print(
                f"{label:34s} {figure['records_per_s']:9.0f} records/s ({figure['min']:.0f}–{figure['max']:.0f}); "
                f"parent CPU {figure['parent_cpu_us']:.1f} µs/record; peak RSS {figure['peak_rss_mib']:.0f} MiB",
                flush=True,
            )
    if args.memory:
        memory = {}
        for size in (int(s) for s in args.memory.split(",")):
            run = batch_once(cohort_file(size), 2, "standard")
            memory[str(size)] = max(run["rss_self_mib"], run["rss_children_mib"])
            print(f"peak RSS at {size:,} records (2 workers, standard): {memory[str(size)]:.1f} MiB", flush=True)
        results["peak_rss_mib"] = memory
    results["after"] = machine()
    results["ratios"] = ratios(results)
    for name, value in results["ratios"].items():
        print(f"{name:60s} {value:.2f}")
    print(f"machine: {results['before']['machine']}; load average before {results['before']['load_average']}, "
          f"after {results['after']['load_average']}")  # fmt: skip
    Path(args.output).write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"saved to {args.output}; python bench/table.py {args.output} writes the README table")


def batch_again(path: Path, args: argparse.Namespace) -> None:
    results = json.loads(Path(args.batch_again).read_text(encoding="utf-8"))
    results["batch_before"] = results["before"]
    results["before"] = machine()
    results["batch"] = {
        f"batch, {w} worker{'s' if w > 1 else ''}, {d}": batch(path, w, d, args.repeats)
        for d in ("full", "standard")
        for w in (1, 2)
    }
    for label, figure in results["batch"].items():
        print(f"{label:34s} {figure['records_per_s']:9.0f} records/s; parent CPU {figure['parent_cpu_us']:.1f} µs")
    results["after"] = machine()
    results["ratios"] = ratios(results)
    for name, value in results["ratios"].items():
        print(f"{name:60s} {value:.2f}")
    print(f"load average before {results['before']['load_average']}, after {results['after']['load_average']}")
    Path(args.output).write_text(json.dumps(results, indent=2), encoding="utf-8")


def ratios(results: dict[str, Any]) -> dict[str, float]:
    one = results["one_process_us"]
    host_rate = 1e6 / one["durable-rules Host API"]["us"]
    out = {
        "evaluate+serialize full: interpreted / compiled (target >= 4)": one["interpreted reference, full"]["us"]
        / one["compiled, full"]["us"],
        "standard bytes / full bytes (target <= 0.35)": results["bytes_per_result"]["standard"]
        / results["bytes_per_result"]["full"],
        "minimal bytes / full bytes (target <= 0.05)": results["bytes_per_result"]["minimal"]
        / results["bytes_per_result"]["full"],
    }
    batch = results.get("batch")
    if batch:
        one_worker = batch["batch, 1 worker, full"]["records_per_s"]
        two = batch["batch, 2 workers, full"]["records_per_s"]
        out["batch 1 worker full / Host API (target >= 0.8)"] = one_worker / host_rate
        out["batch 2 workers full / Host API (target >= 1.5)"] = two / host_rate
        out["batch 2 workers / 1 worker, full (target >= 1.8)"] = two / one_worker
        out["batch 2 workers / 1 worker, standard (target >= 1.8)"] = (
            batch["batch, 2 workers, standard"]["records_per_s"] / batch["batch, 1 worker, standard"]["records_per_s"]
        )
    memory = results.get("peak_rss_mib")
    if memory and len(memory) >= 2:
        sizes = sorted(memory, key=int)
        out[f"peak RSS {int(sizes[-1]):,} / {int(sizes[0]):,} (target <= 1.1)"] = memory[sizes[-1]] / memory[sizes[0]]
    return out


if __name__ == "__main__":
    main()
