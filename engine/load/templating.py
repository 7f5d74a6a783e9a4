"""Prose that cannot contradict the parameters: `{max_daily_dose}` in a rule's title, advice text
or interpretation notes is the parameter's value as a clinician writes it ("5 mg/kg/day").

Templates are rendered when the knowledge base is loaded, so every reader (explain, the
handbook, results, audits) sees the rendered text, and changing a parameter changes every
sentence that names it. An unknown `{name}` is a validation error with a did-you-mean; `{{` and
`}}` are literal braces. Quotes of the source are never templated: they stay verbatim.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|[{}]")
TEMPLATED_FIELDS = ("title", "says", "interpretation")  # of a rule; quotes (citations, evidence) never
_ABBREVIATIONS = {"gc": "glucocorticoid"}  # in enum values: prior_gc_intolerance


def number(value: Any) -> str:
    """5 not 5.0, 4.5 not 4.5000000001."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return float_text(value)
    return str(value)


def float_text(value: float) -> str:
    """A float as a clinician writes it: six significant digits (4.96454; 5.1, not
    5.1000000000000005), but never a rounding that reads as a rounder number than the value is.
    350.0003 mg/day at 70 kg is 5.0000043 mg/kg/day: written "5" it read "5 mg/kg/day, above
    5 mg/kg/day" (review 5). More digits are written until the text is the value, or shows
    every digit it was rounded to (5.000004: the `#` form, which keeps trailing zeros and the
    point, is the same text).

    Most values a record holds (45.3, 5.1, 0.25) have a shortest round-trip text (`repr`) of at
    most seven characters with no exponent: at most six significant digits, below 10^5 and at
    least 10^-4 (smaller ones are written with an exponent), so the six-digit text is that
    text without a trailing ".0" — taken at once, without formatting twice and parsing back
    (tests/test_fastpaths.py compares both on generated floats)."""
    text = repr(value)
    if len(text) <= 7 and "e" not in text and "n" not in text:  # not 1e-05, nan, inf
        return text[:-2] if text.endswith(".0") else text
    return float_text_rounded(value)


def float_text_rounded(value: float) -> str:
    """`float_text` by its definition: six digits, more until the text is the value or visibly
    rounded."""
    for precision in range(6, 18):  # six digits nearly always: exact, or visibly rounded (nan, inf too)
        text = f"{value:.{precision}g}"
        if float(text) == value or text == f"{value:#.{precision}g}":
            return text
    return repr(value)


def word(value: Any) -> str:
    """An enum value, boolean or number as a clinician writes it."""
    if isinstance(value, str):
        return " ".join(_ABBREVIATIONS.get(part, part) for part in value.split("_"))
    return number(value)


def words(values: Any, last: str = "or") -> str:
    """`complete remission or partial remission`; `none` for an empty list."""
    items = [word(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    if not items:
        return "none"
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {last} {items[-1]}"


def quantity(value: Any, unit: str | None) -> str:
    """5 mg/kg/day, 30%, the 95th percentile; lists as words; never a `none` unit."""
    if isinstance(value, (list, tuple)):
        return words(value)
    text = word(value)
    if not unit or unit == "none":
        return text
    if unit == "%":
        return f"{text}%"
    if unit == "percentile" and isinstance(value, (int, float)) and float(value).is_integer():
        n = int(value)
        suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
        return f"the {n}{suffix} percentile"
    return f"{text} {unit}"


def placeholders(text: str) -> tuple[list[str], list[str]]:
    """(the parameter names a text refers to, stray braces that are not placeholders)."""
    names, stray = [], []
    for match in PLACEHOLDER.finditer(text):
        if match.group(1):
            names.append(match.group(1))
        elif match.group() in ("{", "}"):
            stray.append(match.group())
    return names, stray


def render(text: str, values: Mapping[str, tuple[Any, str]]) -> str:
    """The text with each `{name}` replaced by its (value, unit) in words; unknown names are left
    as they are (validation reports them)."""

    def one(match: re.Match[str]) -> str:
        token = match.group()
        if token in ("{{", "}}"):
            return token[0]
        name = match.group(1)
        if name and name in values:
            return quantity(*values[name])
        return token

    return PLACEHOLDER.sub(one, text)


def fill(text: str, values: Mapping[str, str]) -> str:
    """The text with each `{name}` replaced by the string given for it (`{{`, `}}`: braces);
    for texts filled per patient (a scope reason's {missing}), so plain text is returned as is."""
    if "{" not in text and "}" not in text:
        return text

    def one(match: re.Match[str]) -> str:
        token = match.group()
        if token in ("{{", "}}"):
            return token[0]
        return values.get(match.group(1) or "", token)

    return PLACEHOLDER.sub(one, text)
