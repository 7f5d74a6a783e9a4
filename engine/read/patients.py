"""A patients file read as the command that made its results read it (`replay`/`trace --input`).

A result names its input by hash, and a batch result also by record number. batch reads a file
by its format (CSV by its name, a JSON array, JSON Lines: `sniff_format`, on the bytes batch peeks
at), so the file is read that way: read as one document instead, no result of a batch of a JSON
array over 1 MiB was found (its lines are no records) and one of a smaller array was called
misplaced (its elements numbered as lines). `evaluate` reads a whole file as one document (a
pretty-printed record, or one over the size limit hashed over all its bytes), so the same file is
also read that way, in the same pass (the input may be a pipe): `whole()`, once the records are
read, is that one record.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any, BinaryIO

from fsgs_kb.engine.read.jsonlines import prefixed
from fsgs_kb.engine.read.record import BOM, CHUNK, MAX_SKIP, Record, TailDigest
from fsgs_kb.engine.read.records import (
    SNIFF_BYTES,
    oversized_document,
    read_csv,
    read_document,
    read_records,
    sniff_format,
)
from fsgs_kb.engine.read.shape import MAX_RECORD_BYTES


class PatientsFile:
    """The records of a patients file as batch frames them, then (`whole`) the file as one record."""

    def __init__(self, stream: BinaryIO, name: str | None) -> None:
        self.stream = stream
        self.name = name
        self.head = b""
        self.tee: _Hashing | None = None

    def records(self) -> Iterator[Record]:
        if sniff_format(self.name, b"") == "csv":  # evaluate reads no CSV: no whole record to add
            yield from read_csv(self.stream)
            return
        self.head = self.stream.read(MAX_RECORD_BYTES + 1)
        if len(self.head) > MAX_RECORD_BYTES:
            self.tee = _Hashing(self.stream, TailDigest(self.head.removeprefix(BOM)))
            rest: BinaryIO = io.BufferedReader(self.tee)
        else:
            rest = io.BytesIO()
        yield from read_records(prefixed(self.head, rest), sniff_format(self.name, self.head[:SNIFF_BYTES]))

    def whole(self) -> Record | None:
        """The file read whole as evaluate reads it (after `records`), or None: a CSV file, or one
        longer than evaluate reads (it stops at the size limit and MAX_SKIP beyond it)."""
        if self.tee is None:
            return next(read_document(io.BytesIO(self.head)), None) if self.head else None
        while self.tee.size <= MAX_SKIP and self.tee.read(CHUNK):  # what the reader left unread
            pass
        if self.tee.size > MAX_SKIP:
            return None
        return oversized_document(self.tee.digest.hexdigest(), len(self.head) + self.tee.size)


class _Hashing(io.RawIOBase):
    """A stream that hashes every byte read through it, up to just past MAX_SKIP."""

    def __init__(self, stream: BinaryIO, digest: TailDigest) -> None:
        self.stream = stream
        self.digest = digest
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        if self.size <= MAX_SKIP:
            self.digest.update(data)
        self.size += len(data)
        return len(data)
