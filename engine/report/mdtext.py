"""Text from a knowledge base, a record or an EHR stays text in every Markdown output.

The Markdown handbook, `audit --format md` and the CDS cards are read through Markdown→HTML
pipelines, which pass raw HTML (`<script>`, `<img onerror=…>`) and follow links
(`[x](javascript:…)`) written in the text they render. Every Markdown writer passes its data
through `md_text`, which escapes only what could stop text being text: a `<` or `>` that could
open or close a tag or an autolink (any but a comparison), and an `&` that starts an entity, become entities (which
every Markdown dialect understands, unlike `\\<`); a `]` that would close a link's, an image's or
a reference's text, and a backslash that would escape the next character (so undo an escape
here), are backslash-escaped. The text is one line, so it cannot start a block of its own, and
its control characters are shown as visible escapes. Comparisons (`<= 0.3 g/d`), quotes,
parentheses, backticks and "[Mass/volume]" are left as written, so the prose stays readable.
"""

from __future__ import annotations

import re
from typing import Any

from fsgs_kb.engine.report.text import escape_control

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_PROSE = re.compile(
    r"[<>](?!=?(?:\s|\d|$))|(?<=[^\s(])[<>]"  # all but a comparison (`< 30`, `(<= 0.3`, `>= 50%`)
    r"|&(?=#?\w+;)"  # an entity or character reference
    r"|\\(?=[!-/:-@\[-`{-~])"  # a backslash that would escape what follows (and undo an escape here)
    r"|\](?=\s*[(\[:])"  # the end of a link's, an image's or a reference's text
)
# a card's data (from the EHR) keeps no emphasis, code, heading or table markup either
_MARKUP = re.compile(r"[\\`&<>*_\[\]|#]")


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return _ENTITIES.get(char) or "\\" + char


def md_text(value: Any, *, markup: bool = False) -> str:
    """`value` as one line of Markdown text that renders as itself: no HTML, no link (with
    `markup`, no emphasis, code, heading, bracket or table bar either)."""
    text = " ".join(str(value).split())
    return escape_control((_MARKUP if markup else _PROSE).sub(_escaped, text))


def md_cell(value: Any) -> str:
    """`md_text` inside a table cell, whose `|` would end the cell."""
    return md_text(value).replace("|", "\\|")


def md_code(value: Any) -> str:
    """Text inside a Markdown code span (no escapes apply there; backticks cannot appear)."""
    return escape_control(" ".join(str(value).replace("`", "'").split()))
