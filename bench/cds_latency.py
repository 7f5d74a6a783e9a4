"""CDS Hooks latency: signed patient-view calls to `fsgs-kb serve` on loopback.

    python bench/cds_latency.py --calls 2000            # 1 and 2 workers

For each worker count: start the real server (a subprocess), publish the test EHR's key from a
local JWKS server, sign one token per call beforehand (EC P-384, a fresh jti each), then send the
calls: one client with one worker, one client per worker otherwise, keep-alive connections, the
example patients in turn, each with its full prefetch. Latency is the client's wall time per call
(request out, cards in). Reports p50, p99 and max, the throughput, the server's CPU time per call
(all its processes, from /proc: the figure that does not depend on what else the machine runs),
the time inside the application (its Server-Timing header: token check to cards, HTTP excluded)
and the 1-minute load average before and after. The server, JWKS server and prefetch helpers are
the tests' (tests/service).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "service"))

from cds_support import (  # noqa: E402 - the path above makes the tests' helpers importable
    EXAMPLES,
    ISS,
    PUBLIC,
    KeyServer,
    Server,
    Signer,
    hook_request,
    patient_bundle,
    patient_id,
    prefetch_for,
    write_config,
)

PV = "/cds-services/fsgs-csa-patient-view"


def _tree(pid: int) -> list[int]:
    """A process and its descendants (uvicorn's workers), from /proc."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            todo += [int(c) for c in task.read_text().split()]
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the server's processes so far (Linux)."""
    total = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def requests(templates: dict[str, str], n: int) -> list[dict[str, Any]]:
    bodies = []
    for path in EXAMPLES:
        bundle = patient_bundle(json.loads(path.read_text()))
        pid = patient_id(bundle)
        bodies.append((pid, prefetch_for(templates, bundle, pid)))
    return [hook_request("patient-view", *bodies[i % len(bodies)]) for i in range(n)]


def run(workers: int, calls: int, work: Path) -> dict[str, Any]:
    signer = Signer()
    keys = KeyServer([signer.jwk()])
    issuers = [{"iss": ISS, "jwks_url": keys.url}]
    config = write_config(work / f"cds-{workers}.yaml", issuers, decision_log=f"log-{workers}.sqlite")
    server = Server(config, workers=workers)
    try:
        auth = {"Authorization": "Bearer " + signer.token(PUBLIC + "/cds-services")}
        templates = server.client.get("/cds-services", headers=auth).json()["services"][0]["prefetch"]
        warm = requests(templates, 20 * workers)
        bodies = requests(templates, calls)
        tokens = [signer.token(PUBLIC + PV) for _ in range(len(warm) + calls)]
        latencies: list[float] = []
        app_times: list[float] = []
        lock = threading.Lock()

        def client(part: list[tuple[dict[str, Any], str]], record: bool) -> None:
            with httpx.Client(base_url=server.base, timeout=30) as http:
                mine: list[float] = []
                inside: list[float] = []
                for body, token in part:
                    start = time.perf_counter()
                    answer = http.post(PV, json=body, headers={"Authorization": f"Bearer {token}"})
                    mine.append(time.perf_counter() - start)
                    if answer.status_code != 200:
                        raise RuntimeError(f"{answer.status_code}: {answer.text[:200]}")
                    inside.append(float(answer.headers["server-timing"].split("dur=")[1]) / 1000)
                if record:
                    with lock:
                        latencies.extend(mine)
                        app_times.extend(inside[-len(part) :])

        def fan_out(items: list[tuple[dict[str, Any], str]], record: bool) -> float:
            threads = [threading.Thread(target=client, args=(items[i::workers], record)) for i in range(workers)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return time.perf_counter() - start

        fan_out(list(zip(warm, tokens[: len(warm)], strict=True)), record=False)
        load_before, cpu_before = os.getloadavg()[0], cpu_seconds(server.proc.pid)
        elapsed = fan_out(list(zip(bodies, tokens[len(warm) :], strict=True)), record=True)
        load_after, cpu_after = os.getloadavg()[0], cpu_seconds(server.proc.pid)
    finally:
        server.stop()
        keys.close()
    if len(latencies) != calls:
        raise RuntimeError(f"{calls - len(latencies)} calls failed")
    cuts = statistics.quantiles(latencies, n=100)
    inside = statistics.quantiles(app_times, n=100)
    return {
        "workers": workers,
        "calls": calls,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
        "max_ms": max(latencies) * 1000,
        "per_s": calls / elapsed,
        "load": (load_before, load_after),
        "jwks_fetches": keys.requests,
        "server_cpu_ms": (cpu_after - cpu_before) / calls * 1000,
        "app_p50_ms": inside[49] * 1000,
        "app_p99_ms": inside[98] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    python = sys.version.split()[0]
    print(f"{args.calls:,} signed patient-view calls on loopback, {os.cpu_count()} cores, Python {python}")
    with tempfile.TemporaryDirectory() as tmp:
        for workers in args.workers:
            r = run(workers, args.calls, Path(tmp))
            print(
                f"  {workers} worker{'s' if workers > 1 else ' '} ({workers} client{'s' if workers > 1 else ''}): "
                f"p50 {r['p50_ms']:5.1f} ms  p99 {r['p99_ms']:5.1f} ms  max {r['max_ms']:6.1f} ms  "
                f"{r['per_s']:6.0f} calls/s  server CPU {r['server_cpu_ms']:.1f} ms/call, in the app "
                f"p50 {r['app_p50_ms']:.1f} ms p99 {r['app_p99_ms']:.1f} ms  "
                f"load average {r['load'][0]:.2f} → {r['load'][1]:.2f}  "
                f"(JWKS fetched {r['jwks_fetches']}×)"
            )


if __name__ == "__main__":
    main()
