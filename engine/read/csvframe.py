"""Where each CSV row starts and ends, found in bytes as Python's csv module would find it.

Rows are framed before they are decoded, so a row that is not UTF-8 is that row's problem only
(the bytes `"`, `,`, CR and LF never occur inside a UTF-8 sequence). The framing follows the
csv module's reader (RFC 4180 with its lenient edges) state for state:

- a quote opens a quoted field only as the first character of a field; anywhere else in an
  unquoted field it is an ordinary character (`about 5" of text` is one cell, not the start of
  a quoted one that swallows the rows after it);
- inside a quoted field `""` is a quote, and CR, LF and commas are text; after the closing quote
  the rest of the field up to the next comma or line end is plain text (`"ab"cd` is `abcd`);
- a row ends at LF, CR LF or a lone CR outside quotes.

A quoted field that never closes cannot be told from a legitimately long one until the input
ends inside it. There the csv module would make one row of everything after the quote; this
framer reports the row as unclosed, from its first line to the end of the line the quote opened
on, and frames the input after that line again, so the rows after a stray opening quote are
still read, each once. A file is read on to its end first (a quoted cell past the record size
limit that does close is one too-large row) and then read again from that line; a pipe cannot go
back, so there a quoted field that runs past the size limit is taken as unclosed at once and the
bytes kept (the limit and one chunk) are framed again.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from fsgs_kb.engine.errors import KBError, KBErrors
from fsgs_kb.engine.read.record import BOM, CHUNK, MAX_SKIP, TailDigest, too_large
from fsgs_kb.engine.read.shape import MAX_RECORD_BYTES

_UNQUOTED_END = re.compile(rb"[,\r\n]")  # what ends an unquoted field; quotes in it are text
_LINE_END = re.compile(rb"\r\n?|\n")
START, UNQUOTED, QUOTED, QUOTE_SEEN = range(4)  # field start; plain field; in quotes; `"` in quotes


@dataclass(slots=True, kw_only=True)
class CsvRow:
    """One framed row: the line it starts on, its bytes (empty when too large; the bad row's for
    an unclosed quote), the input offset after it, why it cannot be read, if it cannot, and for a
    row too large to keep the SHA-256 of all its bytes without its line end (its result's input
    hash, as a kept row's bytes give theirs)."""

    line: int
    raw: bytes
    end: int
    problem: KBError | None = None
    digest: str | None = None


@dataclass(slots=True)
class _Scan:
    """The csv reader's state across chunks, and the input offset of the quote that opened the
    current quoted field."""

    state: int = START
    quote_at: int = 0

    def row_ends(self, chunk: bytes, i: int, base: int) -> list[int]:
        """Offsets in `chunk` just after each row terminator from `i` on (chunk[0] is at input
        offset `base`)."""
        ends: list[int] = []
        n = len(chunk)
        while i < n:
            if self.state == START:
                if chunk[i] == 0x22:  # a quote as a field's first character opens a quoted field
                    self.state, self.quote_at, i = QUOTED, base + i, i + 1
                    continue
                self.state = UNQUOTED
            if self.state == UNQUOTED:
                i = self._unquoted(chunk, i, ends)
            elif self.state == QUOTED:
                j = chunk.find(b'"', i)
                self.state, i = (QUOTED, n) if j < 0 else (QUOTE_SEEN, j + 1)
            elif chunk[i] == 0x22:  # QUOTE_SEEN, then `"`: a doubled quote, still quoted
                self.state, i = QUOTED, i + 1
            else:  # QUOTE_SEEN, then anything else: the field is closed, the rest of it is text
                self.state = UNQUOTED
        return ends

    def _unquoted(self, chunk: bytes, i: int, ends: list[int]) -> int:
        match = _UNQUOTED_END.search(chunk, i)
        if match is None:
            return len(chunk)
        j = match.start()
        self.state = START
        if chunk[j] == 0x2C:  # a comma: the next field starts
            return j + 1
        if chunk[j] == 0x0D and chunk[j + 1 : j + 2] == b"\n":
            j += 1
        ends.append(j + 1)
        return j + 1


def _plain_line(chunk: bytes) -> bool:
    return chunk.endswith(b"\n") and b'"' not in chunk and chunk.find(b"\r", 0, len(chunk) - 2) < 0


@dataclass(slots=True)
class _Row:
    """The row being framed: its first line and input offset, the bytes kept, its size and lines.

    The bytes are kept until the row passes the size limit, including the piece that passes it,
    so a quoted field found unclosed there can be framed again from the bytes kept; the pieces
    after them are hashed, not kept (`hashed`), so a row too large has the hash of all its bytes."""

    line: int
    start: int
    parts: list[bytes] = field(default_factory=list)
    size: int = 0
    kept: int = 0
    newlines: int = 0
    last: bytes = b""
    hashed: TailDigest | None = None

    def add(self, piece: bytes) -> None:
        if self.size <= MAX_RECORD_BYTES:
            self.parts.append(piece)
            self.kept += len(piece)
        else:
            if self.hashed is None:  # the first piece not kept: the hash takes over from the bytes kept
                self.hashed = TailDigest(b"".join(self.parts))
            self.hashed.update(piece)
        self.size += len(piece)
        self.newlines += piece.count(b"\n")
        self.last = piece[-1:]
        if self.size > MAX_RECORD_BYTES + MAX_SKIP:
            message = f"row at line {self.line} does not end: reading stopped"
            raise KBErrors([KBError("input.unbounded", message, line=self.line)])

    @property
    def whole(self) -> bool:
        return self.kept == self.size

    def sha256(self) -> str:
        """The SHA-256 of all the row's bytes, kept or not, without its line end."""
        return (self.hashed or TailDigest(b"".join(self.parts))).hexdigest()

    def next_line(self) -> int:
        return self.line + self.newlines + (self.last == b"\r")  # a lone CR ended the row: a line too


class CsvFramer:
    """The rows of a CSV stream, framed as the csv module reads them (see the module docstring)."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.origin = _position(stream)  # where a seekable input starts; None: it cannot go back
        self.pushed: list[bytes] = []  # lines to frame again (after an unclosed quote), last first
        self.carry = b""  # the byte read after a chunk that ends in CR, when it is not LF
        self.offset = 0  # input offset after the bytes handed to the scan
        self.scan = _Scan()
        self.row = _Row(1, 0)
        self.back: _Cut | None = None  # where to go back to if the open quote never closes

    def rows(self) -> Iterator[CsvRow]:
        first = True
        while True:
            chunk = self._read()
            if not chunk:
                if self.scan.state == QUOTED and (self._going_back() or self.row.whole):
                    yield self._unclosed()  # and the lines after its first are framed next
                    continue
                break
            row = self.row
            if not row.size and self.scan.state == START and not first and _plain_line(chunk):
                row.line, row.start = row.line + 1, self.offset  # the common case: a whole row, no quotes
                yield CsvRow(line=row.line - 1, raw=chunk, end=self.offset)
                continue
            start = len(BOM) if first and chunk.startswith(BOM) else 0  # the csv reader never sees it
            first = False
            yield from self._frame(chunk, start)
            if self.scan.state == QUOTED and self.row.size > MAX_RECORD_BYTES and self.row.whole:
                if self.origin is None:
                    yield self._unclosed()  # a pipe: the bytes kept are all there is to go back to
                else:  # a file: a long quoted cell may yet close; go back only if it never does
                    self.back = self._cut()
        if self.row.size:
            yield self._finish(self.offset)

    def _going_back(self) -> bool:
        """Whether the quote left open at the end is the one to go back for (not a later one)."""
        return self.back is not None and self.back.quote_at == self.scan.quote_at

    def _read(self) -> bytes:
        if self.pushed:
            chunk = self.pushed.pop()
        else:
            chunk, self.carry = self.carry + self.stream.readline(CHUNK), b""
            if chunk.endswith(b"\r"):  # a CR at a chunk's edge: a CR LF, or a lone CR that ends a row
                more = self.stream.read(1)
                chunk, self.carry = (chunk + more, b"") if more == b"\n" else (chunk, more)
        self.offset += len(chunk)
        return chunk

    def _frame(self, chunk: bytes, start: int) -> Iterator[CsvRow]:
        base = self.offset - len(chunk)
        pos = 0
        for end in self.scan.row_ends(chunk, start, base):
            self.row.add(chunk[pos:end])
            yield self._finish(base + end)
            pos = end
        if pos < len(chunk):
            self.row.add(chunk[pos:])

    def _finish(self, end: int) -> CsvRow:
        row = self.row
        self.row, self.back = _Row(row.next_line(), end), None
        if row.size > MAX_RECORD_BYTES:
            problem = too_large(f"the row at line {row.line}")
            return CsvRow(line=row.line, raw=b"", end=end, problem=problem, digest=row.sha256())
        return CsvRow(line=row.line, raw=b"".join(row.parts), end=end)

    def _cut(self) -> _Cut:
        """Where the row of the open quoted field is cut: after the line the quote opened on."""
        row, kept = self.row, b"".join(self.row.parts)
        at = self.scan.quote_at - row.start
        match = _LINE_END.search(kept, at)
        cut = len(kept) if match is None else match.end()
        bad = kept[:cut]
        return _Cut(
            offset=row.start + cut,
            line=row.line + bad.count(b"\n") + bad.endswith(b"\r"),
            opened=row.line + kept.count(b"\n", 0, at),
            quote_at=self.scan.quote_at,
            rest=kept[cut:],
            bad=bad,
        )

    def _unclosed(self) -> CsvRow:
        """The open quoted field never closes: the row up to the end of the line its quote opened
        on is one bad row; the input after that line is framed again."""
        row, cut = self.row, self.back if self.back is not None and self._going_back() else self._cut()
        if cut is self.back and self.origin is not None:  # a file read on to its end: go back
            self.stream.seek(self.origin + cut.offset)
            self.carry, self.pushed = b"", []
        else:
            self.pushed = cut.rest.splitlines(keepends=True)[::-1]  # a line a chunk, as readline gives
        self.offset = cut.offset
        self.scan, self.row, self.back = _Scan(), _Row(cut.line, cut.offset), None
        problem = KBError(
            "patient.csv",
            f"the quoted cell opened on line {cut.opened} is never closed",
            hint='a cell that starts with " runs to the next lone "; a quote inside a quoted cell is written ""',
        )
        return CsvRow(line=row.line, raw=cut.bad, end=cut.offset, problem=problem)  # its hash names it


@dataclass(slots=True, kw_only=True)
class _Cut:
    """Where framing starts again after an unclosed quote: the input offset and line after the
    line the quote opened on, that line, the quote's offset, and the kept bytes after it (to frame
    again from a pipe)."""

    offset: int
    line: int
    opened: int
    quote_at: int
    rest: bytes
    bad: bytes  # the bad row's bytes: its result's input hash is theirs


def _position(stream: BinaryIO) -> int | None:
    try:
        return stream.tell() if stream.seekable() else None
    except (OSError, ValueError):
        return None
