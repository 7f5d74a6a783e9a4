"""No control character in a knowledge base's text (hostile sweep g).

YAML's double-quoted escapes ("\\e[31m", "\\a", "\\x9b") put control characters into a title or
a note, and every output that shows the text carried them: a terminal recoloured, retitled or
rewritten by `docs`, `audit`, `explain` or `test`, a handbook page or Markdown file with raw
escape sequences. No prose needs one, so a file holding one is refused where it is read, at the
text's line and column: C0 and C1 controls and DEL (a tab and a line break excepted: folded and
literal blocks hold line breaks), the Unicode line and paragraph separators, and the
bidirectional overrides and isolates that reorder what a reader sees (the characters every text
output escapes, engine/report/text.py).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import Any

from fsgs_kb.engine.errors import pointer_join

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMES = {"\x1b": "ESC", "\x07": "BEL", "\x00": "NUL", "\r": "carriage return", "\x08": "backspace", "\x9b": "CSI"}
HINT = "remove it: it would rewrite the terminal or page showing the text (a line break is a YAML line break)"


def control_problem(text: str) -> str | None:
    """What is wrong with a text holding a control character, or None."""
    if text.isprintable():  # the fast path: printable text holds none (and no tab or line break)
        return None
    found = _CONTROL.search(text)
    if found is None:
        return None
    char = found.group()
    name = _NAMES.get(char) or unicodedata.name(char, "") or "a control character"
    return f"the text holds the control character \\u{ord(char):04x} ({name}) at character {found.start() + 1}"


def control_strings(data: Any, pointer: str = "") -> Iterator[tuple[str, bool, str]]:
    """(pointer, is a key, problem) of every key and string in a YAML document holding a control
    character."""
    if isinstance(data, str):
        problem = control_problem(data)
        if problem is not None:
            yield pointer, False, problem
    elif isinstance(data, dict):
        for key, value in data.items():
            child = pointer_join(pointer, str(key))
            problem = control_problem(str(key))
            if problem is not None:
                yield child, True, "a key: " + problem
            yield from control_strings(value, child)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from control_strings(value, pointer_join(pointer, i))
