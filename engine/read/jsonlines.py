"""JSON Lines: one record per line, whatever the line holds, and a stream that can be read again
from bytes already taken out of it (for readers that look ahead before they choose)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any, BinaryIO

from fsgs_kb.engine.errors import KBError
from fsgs_kb.engine.read.record import BOM, Record, skip_line, too_large
from fsgs_kb.engine.read.shape import MAX_RECORD_BYTES


def read_jsonl(stream: BinaryIO, *, number: int = 0, line: int = 0, offset: int = 0) -> Iterator[Record]:
    """One record per line. `number`, `line` and `offset` say how many records, lines and bytes
    came before `stream` (JSON Lines after a JSON array's end); a byte order mark is skipped only
    at the very start of the input."""
    while True:
        raw = stream.readline(MAX_RECORD_BYTES + 1)
        if not raw:
            return
        offset += len(raw)
        number += 1
        line += 1
        if offset == len(raw) and raw.startswith(BOM):
            raw = raw[len(BOM) :]
        if len(raw) > MAX_RECORD_BYTES and not raw.endswith(b"\n"):
            skipped, digest = skip_line(stream, line, raw)
            offset += skipped
            yield Record(number, line, problem=too_large(f"line {line}"), end=offset, digest=digest)
            continue
        text = raw.rstrip(b"\r\n")
        if not text.strip():
            yield Record(number, line, problem=KBError("patient.empty", "empty line: no record"), end=offset)
        else:
            yield Record(number, line, raw=text, end=offset)


def prefixed(head: bytes, rest: BinaryIO) -> BinaryIO:
    """`head`, then the rest of the stream, as one buffered stream."""
    return io.BufferedReader(_Prefixed(head, rest))


class _Prefixed(io.RawIOBase):
    """Bytes already read, then the rest of the stream: lets a reader look ahead and go back."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head = memoryview(head)
        self.rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
