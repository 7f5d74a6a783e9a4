"""Instructions per record under valgrind's callgrind: the in-process ratio, independent of load.

    python bench/instructions.py                  # 1,000 records of the bench cohort
    python bench/instructions.py --n 2000 -o bench/out/instructions.json

On a shared 2-core VM the same code measured 246–345 µs a record an hour apart (bench/bench.py
reports that spread honestly, but a change of a few per cent drowns in it). The number of
instructions executed does not depend on the load: this counts them for the interpreted reference
(`KnowledgeBase.reference_evaluate` + orjson, full detail) and the compiled evaluator
(`KnowledgeBase.evaluate_json`) at each detail level, on the same records as bench/bench.py.

Each figure is (instructions of a run that evaluates 300 warm-up records and then `--n`) minus
(the same run without the `--n`), divided by `--n`: start-up, loading and warm-up cancel out
(the knowledge base's cache is filled by one run before any is counted).
Instructions are not time — the C core's and the allocator's memory traffic costs more per
instruction than the interpreter's loop — so the time ratio of bench/bench.py stays the
target's measure; this one tells whether a change made the work smaller. Needs `valgrind`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from bench import OUT, cohort_file  # noqa: E402

CHILD = """
import sys
import orjson
import fsgs_kb
from fsgs_kb.engine.evaluate.output import dumps_bytes
path, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
kb = fsgs_kb.load()
patients = [orjson.loads(line) for line in open(path, "rb").read().splitlines()[: 300 + n]]
if mode == "reference":
    def one(patient):
        return dumps_bytes(kb.reference_evaluate(patient, detail="full"))
else:
    def one(patient):
        return kb.evaluate_json(patient, detail=mode)
for patient in patients[:300]:  # rulesets created, generated code compiled, caches filled
    one(patient)
for patient in patients[300:]:
    one(patient)
"""

MODES = ("reference", "full", "standard", "minimal")


def instructions(path: Path, mode: str, n: int) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-c",
        CHILD,
        str(path),
        mode,
        str(n),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if found is None:
        raise SystemExit(f"valgrind printed no instruction count:\n{proc.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="records counted (after 300 warm-up records)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("-o", "--output", default=str(OUT / "instructions.json"))
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("bench/instructions.py needs valgrind (apt install valgrind)")
    path = cohort_file(20000)
    # once without valgrind: a first load compiles the knowledge base into its cache, which
    # would otherwise be counted in the first measured run only
    subprocess.run([sys.executable, "-c", CHILD, str(path), "full", "0"], check=True)
    per_record = {}
    for mode in args.modes.split(","):
        base = instructions(path, mode, 0)
        per_record[mode] = (instructions(path, mode, args.n) - base) / args.n
        print(f"{mode:10s} {per_record[mode]:12,.0f} instructions a record", flush=True)
    results = {"n": args.n, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "per_record": per_record}
    if "reference" in per_record and "full" in per_record:
        results["reference_over_full"] = per_record["reference"] / per_record["full"]
        print(f"interpreted / compiled at full detail, in instructions: {results['reference_over_full']:.2f}")
    Path(args.output).write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"saved to {args.output}")


if __name__ == "__main__":
    main()
