"""What `validate` hands on: the loaded model, its problems, how much of the source it covers.

Kept apart from the checks that make it: a knowledge base read from the cache is a report, and
`fsgs-kb explain` should not import the validator, its schemas and the FHIR map checker to use one.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsgs_kb.engine.errors import KBError
from fsgs_kb.engine.load.loader import LoadResult


@dataclass(frozen=True)
class Coverage:
    """Which sentences of the primary source are encoded by rules, and which are set aside."""

    encoded: dict[str, list[str]]
    not_encoded: dict[str, str]
    uncovered: list[str]

    @property
    def total(self) -> int:
        return len(self.encoded) + len(self.not_encoded) + len(self.uncovered)


@dataclass(frozen=True)
class ValidationReport:
    load: LoadResult
    problems: list[KBError]
    coverage: Coverage | None

    @property
    def errors(self) -> list[KBError]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[KBError]:
        return [p for p in self.problems if p.severity != "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def with_problems(self, problems: list[KBError]) -> ValidationReport:
        """This report with more problems, sorted by place among its own."""
        if not problems:
            return self
        return ValidationReport(
            self.load, sorted(set(self.problems) | set(problems), key=KBError.sort_key), self.coverage
        )
