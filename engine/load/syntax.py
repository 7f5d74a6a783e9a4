"""Where a YAML syntax error really is, for the editor.

PyYAML reports a syntax error where it notices it. For an unclosed quote that is far from the
mistake: a quoted text may run over several lines, so the scanner reads on to the next quote
character (often in a later field's prose) and fails there, dozens of lines below the quote that
was never closed. When the token just before the failure is a quoted text spanning lines, the
error is placed at its opening quote, which is what the editor has to fix.
"""

from __future__ import annotations

import yaml

__all__ = ["syntax_problem"]

GENERIC_HINT = "check indentation and quotes around this place"


def syntax_problem(exc: yaml.MarkedYAMLError, text: str) -> tuple[str, str, tuple[int, int]]:
    """(message, hint, (line, column)) of a syntax error in `text`."""
    message = f"{exc.problem or 'invalid YAML'}" + (f" ({exc.context})" if exc.context else "")
    if exc.context == "while scanning a quoted scalar" and exc.context_mark is not None:
        start = exc.context_mark
        return (
            f"the quoted text that starts here is never closed ({exc.problem})",
            f"close it with {_quote_at(text, start)} on the same line, or remove the quote (plain text needs none)",
            (start.line + 1, start.column + 1),
        )
    mark = exc.problem_mark or exc.context_mark
    pos = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    runaway = _runaway_quote(text, exc.problem_mark)
    if runaway is not None:
        start, end = runaway
        quote = _quote_at(text, start)
        return (
            f"the quoted text that starts here runs on to line {end.line + 1}, column {end.column + 1}, "
            f"where the file stops making sense ({message})",
            f"close the quote with {quote} on line {start.line + 1}, or remove it (plain text needs none)",
            (start.line + 1, start.column + 1),
        )
    return message, GENERIC_HINT, pos


def _runaway_quote(text: str, problem: yaml.Mark | None) -> tuple[yaml.Mark, yaml.Mark] | None:
    """(start, end) of a quoted text over several lines that ends just before `problem`."""
    if problem is None:
        return None
    last: yaml.ScalarToken | None = None
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if token.start_mark.index >= problem.index:
                break
            last = token if isinstance(token, yaml.ScalarToken) else None
    except yaml.YAMLError:
        pass  # the scanner fails where the parser did, or sooner: the tokens read so far tell
    if last is None or last.style not in ('"', "'") or last.end_mark.line == last.start_mark.line:
        return None
    if last.end_mark.line != problem.line:  # something else between the quote's end and the failure
        return None
    return last.start_mark, last.end_mark


def _quote_at(text: str, mark: yaml.Mark) -> str:
    """The quote character that opens the text at `mark` (a BOM or a reader's offset aside)."""
    found = text[mark.index] if 0 <= mark.index < len(text) else ""
    return found if found in ("'", '"') else "the same quote"
