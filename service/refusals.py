"""How many rows calls with a refused token may write to the decision log.

A call whose token the gate refuses is logged (an auditor sees that something tried and was
turned away), but such a call needs no credentials: unbounded, anyone who can reach the port
could grow the log, and make each worker write to SQLite, as fast as they can send requests.
So each worker writes at most `PER_MINUTE` such rows a minute; the ones beyond are counted, and
the next row written says how many were not written one by one and since when. Signed calls are
never held back: their rows are the audit trail of advice given or refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable

PER_MINUTE = 30


class RefusalBudget:
    """Rows for refused tokens: at most `per_minute` a minute (one worker's count)."""

    def __init__(self, per_minute: int = PER_MINUTE, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.window = clock()
        self.written = 0
        self.skipped = 0
        self.skipped_since: float | None = None  # wall time of the first refusal not written

    def note(self, reason: str) -> str | None:
        """The note of this refusal's row, or None: over the budget, no row (counted)."""
        now = self.clock()
        if now - self.window >= 60:
            self.window, self.written = now, 0
        if self.written >= self.per_minute:
            if self.skipped == 0:
                self.skipped_since = time.time()
            self.skipped += 1
            return None
        self.written += 1
        if not self.skipped:
            return reason
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.skipped_since))
        note = f"{reason} (and {self.skipped} more refused tokens since {since} not logged one by one)"
        self.skipped, self.skipped_since = 0, None
        return note
