"""Errors of the FHIR layer, each with a JSON pointer to what is wrong.

Two kinds, because the remedies differ: a broken map (FhirMapError) is fixed by the site's editor
before anything runs; an unusable input (FhirInputError) is a property of one bundle or line and
must never stop a batch. Field-level gaps are not errors at all: they become `{"missing": reason}`
in the provenance, so that nothing is guessed and nothing is silent.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One located problem in the map file: message, JSON pointer and, when known, line and column."""

    message: str
    pointer: str = ""
    line: int | None = None
    col: int | None = None
    hint: str | None = None  # how to fix it, where the problem knows better than the map's header

    def render(self, file: str = "") -> str:
        """`file:line:col: pointer: message`, the shape an editor can jump to."""
        where = f"{file}:{self.line}:{self.col}" if self.line else file
        return f"{where}: {self.pointer or '/'}: {self.message}"


class FhirMapError(Exception):
    """The map cannot be used; `problems` lists every problem found, sorted by place."""

    def __init__(self, problems: list[Problem], file: str = "") -> None:
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.col or 0, p.pointer))
        self.file = file
        first = self.problems[0].render(file) if self.problems else "unknown problem"
        super().__init__(f"{len(self.problems)} problem(s) in the FHIR map; first: {first}")


class FhirInputError(ValueError):
    """A bundle (or bulk line) that cannot be read as one patient's FHIR data."""

    def __init__(self, message: str, pointer: str = "", hint: str | None = None) -> None:
        self.message = message
        self.pointer = pointer
        self.hint = hint  # how to fix it, where the Bundle hint (one Patient and its resources) is not it
        super().__init__(f"{pointer or '/'}: {message}")


def pointer_join(base: str, *parts: object) -> str:
    """Append parts to a JSON pointer, escaping `~` and `/` as RFC 6901 requires."""
    out = base
    for part in parts:
        out += "/" + str(part).replace("~", "~0").replace("/", "~1")
    return out


def field_pointer(path: str) -> str:
    """The JSON pointer of a dotted record path: `serum_creatinine.current` -> `/serum_creatinine/current`."""
    return pointer_join("", *path.split("."))
