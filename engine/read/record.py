"""One input record as the readers frame it, and the bounds every reader shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fsgs_kb.engine.errors import KBError
from fsgs_kb.engine.read.shape import MAX_RECORD_BYTES

CHUNK = 1 << 16
MAX_SKIP = 256 << 20  # an oversized line is skipped to its end; one that never ends stops the run
BOM = b"\xef\xbb\xbf"


@dataclass(slots=True)
class Record:
    """One input record: its ordinal, the input line it starts on, and its bytes or problem.

    `raw` is the record's JSON text (parsed later, by `parse_json`); `data` a record the reader
    already built (CSV, FHIR); `problem` why it cannot be evaluated, and `more` its other problems
    (a CSV row with several bad cells lists each); `end` the input offset after it.
    FHIR input only: `sources` says, per field pointer, which resource filled it or why it is empty,
    `set_aside` (always with `sources`) which resources were not used and why, `conversion` how
    the record was made (evaluation date, map), and `origin` where in the input it came from
    (file:line); the result carries all four. `digest` is the SHA-256 of a record's bytes that were
    not all kept (a line over the size limit): its result's input hash, as `raw`'s is for the others."""

    number: int
    line: int
    raw: bytes = b""
    data: Any = None
    problem: KBError | None = None
    more: tuple[KBError, ...] = ()
    end: int = 0
    sources: dict[str, Any] | None = None
    conversion: dict[str, Any] | None = None
    origin: str | None = None
    set_aside: list[dict[str, Any]] | None = None
    digest: str | None = None  # SHA-256 of the record's bytes when they were not all kept (too large)


def too_large(what: str, limit: int = MAX_RECORD_BYTES) -> KBError:
    return KBError(
        "input.too_large",
        f"{what} is larger than {limit:,} bytes",
        hint="a patient record is a few kilobytes: is this the right input?",
    )
