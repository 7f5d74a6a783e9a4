"""The one error type of fsgs-kb.

Every stage (YAML loading, schema checks, rule checks, compilation, patient validation,
evaluation) reports problems as `KBError` values rather than raising ad-hoc exceptions, so that a
validator can collect them all, sort them by place, and render them in one module
(`engine.report`). Codes are named for the stage that raised them: `yaml.*`, `schema.*`,
`rule.*`, `param.*`, `derived.*`, `source.*`, `kb.*`, `compile.*`, `patient.*`, `eval.*`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class KBError:
    """A located problem: where (file, line, column, JSON pointer) and what (code, message, hint)."""

    code: str
    message: str
    file: str | None = None
    line: int | None = None
    col: int | None = None
    pointer: str = ""
    hint: str | None = None
    rule_id: str | None = None
    severity: str = "error"

    def sort_key(self) -> tuple[str, int, int, str, str]:
        """Sort by place first, so a reader walks through a file from top to bottom."""
        return (self.file or "", self.line or 0, self.col or 0, self.code, self.message)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and v != ""}


class KBErrors(Exception):
    """Raised by API entry points when a knowledge base or input cannot be used at all."""

    def __init__(self, errors: list[KBError]) -> None:
        self.errors = sorted(errors, key=KBError.sort_key)
        first = self.errors[0].message if self.errors else "unknown error"
        super().__init__(f"{len(self.errors)} problem(s); first: {first}")


def pointer_parts(pointer: str) -> list[str]:
    """The keys a JSON pointer names, unescaped (`~1` is `/`, `~0` is `~`): `pointer_join`'s inverse."""
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer.split("/")[1:]]


def pointer_join(base: str, *parts: object) -> str:
    """Append parts to a JSON pointer, escaping `~` and `/` as RFC 6901 requires."""
    out = base
    for part in parts:
        out += "/" + str(part).replace("~", "~0").replace("/", "~1")
    return out
