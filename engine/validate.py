"""`validate`: load a knowledge base, run every check, and say how much of the source it covers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.checks import Coverage, run_checks
from engine.errors import KBError
from engine.loader import LoadResult, read_rules_dir


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


def validate_dir(rules_dir: Path) -> ValidationReport:
    """Every problem of a rules directory, sorted by file, line and column."""
    load = read_rules_dir(rules_dir)
    problems = list(load.errors)
    checks, coverage = run_checks(load.model, load.docs, load.failed)
    problems.extend(checks)
    unique = sorted(set(problems), key=KBError.sort_key)
    return ValidationReport(load, unique, coverage)
