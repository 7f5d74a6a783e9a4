"""One input record as the readers frame it, and the bounds every reader shares."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, BinaryIO

from fsgs_kb.engine.errors import KBError, KBErrors
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


class TailDigest:
    """The SHA-256 of bytes given in pieces, without the CR and LF bytes they end with: the input
    hash of a record too large to keep, taken over the same bytes as a kept record's (its line end
    left out, as `raw.rstrip(b"\\r\\n")`), in constant memory. The hash of everything up to the
    last byte that is not CR or LF is kept aside (a copy of the hash state), so a line end split
    over two pieces, or a run of line breaks in a quoted cell, is never held in memory. `strip`:
    the bytes left out at the end instead (a JSON array element also leaves out spaces and tabs)."""

    def __init__(self, head: bytes = b"", strip: bytes = b"\r\n") -> None:
        self._all = hashlib.sha256()
        self._mark = self._all.copy()
        self._strip = strip
        self.update(head)

    def update(self, piece: bytes) -> None:
        body = piece.rstrip(self._strip)
        if body:
            self._all.update(body)
            self._mark = self._all.copy()
            piece = piece[len(body) :]
        self._all.update(piece)

    def hexdigest(self) -> str:
        return self._mark.hexdigest()


def skip_line(stream: BinaryIO, line: int, head: bytes) -> tuple[int, str]:
    """Consume the rest of an oversized line (`head` its start, already read): (the bytes
    skipped, the SHA-256 of the whole line without its line end, as a line within the limit is
    hashed: an oversized line's result is traceable by its own hash, not that of no bytes, which
    every oversized line and every empty one shared). Stop the run if it never ends (/dev/zero)."""
    digest = TailDigest(head)
    skipped = 0
    while True:
        more = stream.readline(CHUNK)
        skipped += len(more)
        digest.update(more)
        if not more or more.endswith(b"\n"):
            return skipped, digest.hexdigest()
        if skipped > MAX_SKIP:
            message = f"line {line} goes on for more than {MAX_SKIP >> 20} MiB: reading stopped"
            raise KBErrors([KBError("input.unbounded", message, line=line)])


def skip_document(stream: BinaryIO, head: bytes) -> tuple[int, str]:
    """Consume the rest of a one-record input over the size limit (a patient file or a Bundle given
    to `evaluate`; `head` its start, already read): (the bytes skipped, the SHA-256 of all of it
    without its last line end), so that two different oversized files get two decision ids, as
    two oversized lines do. Stop if it never ends (/dev/zero), as a line that never ends does."""
    digest = TailDigest(head)
    skipped = 0
    while more := stream.read(CHUNK):
        skipped += len(more)
        digest.update(more)
        if skipped > MAX_SKIP:
            message = f"the input goes on for more than {MAX_SKIP >> 20} MiB: reading stopped"
            raise KBErrors([KBError("input.unbounded", message, line=1)])
    return skipped, digest.hexdigest()


def in_input(records: Iterator[Record], source: str) -> Iterator[Record]:
    """The records; a problem that stops reading (a line or a document that never ends: /dev/zero)
    named by the input it is in, which the reader does not know (it was shown as `<input>:`, and
    by `evaluate` as `fsgs-kb:`)."""
    try:
        yield from records
    except KBErrors as exc:
        raise KBErrors([error if error.file else replace(error, file=source) for error in exc.errors]) from None
