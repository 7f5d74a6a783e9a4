"""A batch run for a person: the progress line while it runs, the summary when it ends."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class ProgressLine:
    """A one-line progress bar: records, records/s and, when the input size is known, ETA."""

    def __init__(self, total_bytes: int | None, write: Callable[[str], None]) -> None:
        self.total = total_bytes
        self.write = write
        self.start = time.monotonic()
        self.last = 0.0

    def __call__(self, records: int, bytes_read: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < 0.2:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        text = f"\r{records:,} records  {records / elapsed:,.0f}/s"
        if self.total and bytes_read:
            share = min(bytes_read / self.total, 1.0)
            eta = elapsed * (1 - share) / share if share else 0
            text += f"  {share:5.1%}  ETA {int(eta) // 60}:{int(eta) % 60:02d}"
        self.write(text + ("\n" if final else ""))


def summary_text(payload: dict[str, Any], command: str | None = None) -> str:
    """The summary of `BatchSummary.to_dict()`; `command` is how to resume an interrupted run."""
    statuses = ", ".join(f"{k} {v:,}" for k, v in payload["by_status"].items()) or "none"
    lines = [
        f"{payload['records']:,} records in {payload['elapsed_s']:.1f} s "
        f"({payload['records_per_s']:,.0f}/s, {payload['workers']} workers): {statuses}"
    ]
    if payload["interrupted_by"]:
        lines.insert(0, f"stopped by {payload['interrupted_by']} after {payload['records']:,} records were written")
        if command:
            lines.insert(1, f"to continue: {command} --resume")
    if payload["resumed_after"]:
        lines.append(f"resumed after record {payload['resumed_after']:,}")
    if payload["worker_crashes"]:
        lines.append(f"worker crashes survived: {payload['worker_crashes']}")
    for rule, counts in payload["by_rule"].items():
        lines.append(f"  {rule:26s} " + "  ".join(f"{k} {v:,}" for k, v in counts.items()))
    return "\n".join(lines)
