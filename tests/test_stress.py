"""Stress: many generated patients in one process, with flat memory and no errors.

CI-sized (20,000 patients); `bench/latency.py --n 100000` runs the full 100,000.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_twenty_thousand_patients_in_one_process_with_flat_memory() -> None:
    code = textwrap.dedent("""
        import resource, fsgs_kb
        from generate import iter_cohort
        kb = fsgs_kb.load()
        def run(seed, n):
            counts = {}
            for p in iter_cohort(n, seed=seed, invalid_rate=0.02):
                status = kb.evaluate(p)["status"]
                counts[status] = counts.get(status, 0) + 1
            return counts
        run(1, 5000)
        warm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        counts = run(2, 15000)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(counts, warm, after)
        assert "error" not in counts, counts
        assert sum(counts.values()) == 15000
        assert after - warm < 8 * 1024, (warm, after)  # KiB: under 8 MiB of growth
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT / "tests", timeout=500)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
