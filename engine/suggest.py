"""'Did you mean …?' hints for misspelt names (fields, parameters, operators, enum values)."""

from __future__ import annotations

import difflib


def did_you_mean(word: str, choices: list[str] | set[str]) -> str | None:
    """A hint naming the closest known name, or None when nothing is close."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    if not close and len(word) >= 4:
        # a word the name is made of ('diabetes' for 'uncontrolled_diabetes'), when only one has it
        close = [c for c in sorted(choices) if word.lower() in c.lower().replace("_", " ").split()]
        close = close if len(close) == 1 else [c for c in close if c.lower() == word.lower()]
    return f"did you mean '{close[0]}'?" if close else None
