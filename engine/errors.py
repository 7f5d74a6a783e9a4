"""The one error type of fsgs-kb.

Every stage (YAML loading, schema checks, rule checks, compilation, patient validation,
evaluation) reports problems as `KBError` values rather than raising ad-hoc exceptions, so that a
validator can collect them all, sort them by place, and render them in one module
(`engine.report`). Codes are named for the stage that raised them: `yaml.*`, `schema.*`,
`rule.*`, `param.*`, `derived.*`, `source.*`, `kb.*`, `compile.*`, `patient.*`, `eval.*`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class KBError(Exception):
    """A located problem: where (file, line, column, JSON pointer) and what (code, message, hint).

    A value first (validators collect them), and an exception type too, so that the public API
    has one error type (issue 9: `fsgs_kb.KBError`): what the API raises, `KBErrors`, is a
    KBError (its first problem, by place) carrying all of them, and `except fsgs_kb.KBError`
    catches it."""

    code: str
    message: str
    file: str | None = None
    line: int | None = None
    col: int | None = None
    pointer: str = ""
    hint: str | None = None
    rule_id: str | None = None
    severity: str = "error"

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # an exception pickles as (class, args); a KBError's args are its fields (Dask, workers)
        return (self.__class__, tuple(getattr(self, f.name) for f in fields(KBError)))

    def sort_key(self) -> tuple[str, int, int, str, str]:
        """Sort by place first, so a reader walks through a file from top to bottom."""
        return (self.file or "", self.line or 0, self.col or 0, self.code, self.message)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and v != ""}


_frozen_setattr = KBError.__setattr__


def _setattr(self: KBError, name: str, value: Any) -> None:
    """A frozen dataclass refuses every attribute, also those the exception machinery sets
    (`contextlib` assigns `__traceback__`; `add_note` sets `__notes__`): the fields stay frozen."""
    if name.startswith("__") and name.endswith("__"):
        object.__setattr__(self, name, value)
    else:
        _frozen_setattr(self, name, value)


KBError.__setattr__ = _setattr  # type: ignore[method-assign,assignment]


class KBErrors(KBError):
    """Raised by API entry points when a knowledge base or input cannot be used at all: every
    problem found (`errors`, sorted by place), and itself the first of them, so that code
    catching the one error type (`except KBError as e: e.file, e.line, e.pointer`) reads where."""

    errors: list[KBError]

    def __init__(self, errors: list[KBError]) -> None:
        ordered = sorted(errors, key=KBError.sort_key)
        first = ordered[0] if ordered else KBError("kb.unknown", "unknown error")
        for field in fields(KBError):  # frozen: set as the dataclass's own __init__ does
            object.__setattr__(self, field.name, getattr(first, field.name))
        object.__setattr__(self, "errors", ordered)
        self.args = (f"{len(ordered)} problem(s); first: {first.message}",)

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        return (KBErrors, (self.errors,))


def pointer_parts(pointer: str) -> list[str]:
    """The keys a JSON pointer names, unescaped (`~1` is `/`, `~0` is `~`): `pointer_join`'s inverse."""
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer.split("/")[1:]]


def pointer_join(base: str, *parts: object) -> str:
    """Append parts to a JSON pointer, escaping `~` and `/` as RFC 6901 requires."""
    out = base
    for part in parts:
        out += "/" + str(part).replace("~", "~0").replace("/", "~1")
    return out
