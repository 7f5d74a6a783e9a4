"""Colour on a terminal, never where it is not wanted.

`--color auto` (the default) colours only a terminal, and not when $NO_COLOR is set to anything
(https://no-color.org) or TERM is dumb; `--color always` and `--color never` override both.
Colour is added after the text is escaped (engine.report.text), so the only escape sequences
that reach the terminal are these.
"""

from __future__ import annotations

import os
from typing import IO, Any

CHOICES = ("auto", "always", "never")
CODES = {
    "error": "1;31",  # bold red
    "fail": "1;31",
    "warning": "33",  # yellow
    "ok": "32",  # green
    "heading": "1",  # bold
    "muted": "2",  # dim
}


def wants_colour(choice: str, stream: IO[Any]) -> bool:
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Palette:
    """Paints text by role (error, fail, warning, ok, heading, muted), or leaves it as it is."""

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled

    def __call__(self, text: str, role: str) -> str:
        if not self.enabled or not text:
            return text
        return f"\x1b[{CODES[role]}m{text}\x1b[0m"


PLAIN = Palette(False)
