"""`-k` expressions as pytest reads them: `DOSE and not WITHIN`, `(BP or RENAL) and 30`.

A word matches a case when it occurs in the case id (`RULE-ID::case-name`), ignoring case;
`*` and `?` inside a word are wildcards. `and`, `or`, `not` and parentheses combine words, with
pytest's precedence (not > and > or).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable

from fsgs_kb.engine.errors import KBError, KBErrors

Matcher = Callable[[str], bool]
_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")
_KEYWORDS = ("and", "or", "not")


def _word(word: str) -> Matcher:
    pattern = f"*{word.lower()}*"
    return lambda text: fnmatch.fnmatchcase(text.lower(), pattern)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = [m.group(1) for m in _TOKEN.finditer(text)]
        self.at = 0

    def fail(self, what: str) -> KBErrors:
        return KBErrors(
            [KBError("cli.k_expression", f"-k {self.text!r}: {what}", hint="e.g. -k 'DOSE and not WITHIN'")]
        )

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise self.fail("the expression ends too early")
        self.at += 1
        return token

    def parse(self) -> Matcher:
        if not self.tokens:
            raise self.fail("empty expression")
        matcher = self.either()
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.peek()!r}")
        return matcher

    def either(self) -> Matcher:
        parts = [self.both()]
        while self.peek() == "or":
            self.take()
            parts.append(self.both())
        return parts[0] if len(parts) == 1 else (lambda text: any(p(text) for p in parts))

    def both(self) -> Matcher:
        parts = [self.negated()]
        while self.peek() == "and":
            self.take()
            parts.append(self.negated())
        return parts[0] if len(parts) == 1 else (lambda text: all(p(text) for p in parts))

    def negated(self) -> Matcher:
        if self.peek() == "not":
            self.take()
            inner = self.negated()
            return lambda text: not inner(text)
        return self.atom()

    def atom(self) -> Matcher:
        token = self.take()
        if token == "(":
            inner = self.either()
            if self.take() != ")":
                raise self.fail("a '(' is not closed")
            return inner
        if token == ")" or token in _KEYWORDS:
            raise self.fail(f"unexpected {token!r}")
        return _word(token)


def keyword_matcher(expressions: tuple[str, ...] | list[str]) -> Matcher:
    """A case-id matcher for the given -k expressions (any of them; none selects everything)."""
    matchers = [_Parser(text).parse() for text in expressions]
    if not matchers:
        return lambda text: True
    return lambda text: any(m(text) for m in matchers)
