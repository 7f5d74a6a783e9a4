"""The README's benchmark table, written from a bench/bench.py results file.

python bench/table.py bench/out/results.json
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _size(item: tuple[str, Any]) -> int:
    return int(item[0])


def table(results: dict[str, Any]) -> str:
    before, after = results["before"], results["after"]
    lines = [
        f"{results['n']:,} generated records (seed 7, ~2 % invalid), {results['repeats']} repeats, "
        f"median (min–max); {before['machine']}; {before['date']}; load average "
        f"{', '.join(f'{x:.2f}' for x in before['load_average'])} before, "
        f"{', '.join(f'{x:.2f}' for x in after['load_average'])} after",
    ]
    if "batch_before" in results:
        first = results["batch_before"]
        lines[0] = lines[0].replace("load average", "batch measured again; load average")
        lines.append(
            f"one-process figures and memory from the first run, {first['date']}, load average "
            f"{', '.join(f'{x:.2f}' for x in first['load_average'])}"
        )
    lines += [
        "",
        "| measured | per record | records/s | parent CPU | workers CPU | other CPU | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, figure in results["one_process_us"].items():
        rate = 1e6 / figure["us"]
        lines.append(
            f"| {label} | {figure['us']:.1f} µs ({figure['min']:.1f}–{figure['max']:.1f}) | {rate:,.0f} | | | | |"
        )
    for label, figure in results.get("batch", {}).items():
        us = 1e6 / figure["records_per_s"]
        lines.append(
            f"| {label} | {us:.1f} µs | {figure['records_per_s']:,.0f} ({figure['min']:,.0f}–{figure['max']:,.0f}) "
            f"| {figure['parent_cpu_us']:.1f} µs ({figure['parent_cpu_min']:.1f}–{figure['parent_cpu_max']:.1f}) "
            f"| {_us(figure.get('workers_cpu_us'))} | {_us(figure.get('other_cpu_us'))} "
            f"| {figure['peak_rss_mib']:.0f} MiB |"
        )
    sizes = results["bytes_per_result"]
    lines += [
        "",
        f"Result size: full {sizes['full']:,.0f} bytes, standard {sizes['standard']:,.0f}, "
        f"minimal {sizes['minimal']:,.0f} (mean per record).",
    ]
    memory = results.get("peak_rss_mib")
    if memory:
        lines.append(
            "Peak RSS of `fsgs-kb batch` (2 workers, standard): "
            + ", ".join(f"{float(v):.1f} MiB at {int(k):,} records" for k, v in sorted(memory.items(), key=_size))
            + "."
        )
    lines += ["", "| ratio (same run) | measured | target |", "|---|---:|---|"]
    for name, value in results["ratios"].items():
        label, _, target = name.partition(" (target ")
        lines.append(f"| {label} | {value:.2f} | {target.rstrip(')')} |")
    return "\n".join(lines)


def _us(value: float | None) -> str:
    """A per-record CPU figure (median of the repeats), blank where the run did not measure it."""
    return "" if value is None or value != value else f"{value:.1f} µs"


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as handle:
        print(table(json.load(handle)))
