"""Files of a batch run: whole-line output, resuming after a kill, the input's size.

Output lines are written with os.write in blocks of whole lines, so a run that is killed leaves
complete lines behind, except that the kernel may cut a multi-page write short when SIGKILL
arrives in the middle of it; `prepare_resume` therefore drops a partial last line before
continuing after the last complete one.
"""

from __future__ import annotations

import json
import os
from typing import BinaryIO

from fsgs_kb.engine.errors import KBError, KBErrors

FLUSH_BYTES = 256 * 1024


class LineWriter:
    """Buffers whole lines and writes them in blocks; never splits a line across two writes."""

    def __init__(self, fd: int, stream: BinaryIO | None = None) -> None:
        self.fd = fd
        self.stream = stream
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, line: str) -> None:
        data = line.encode("utf-8")
        self.parts.append(data)
        self.size += len(data)
        if self.size >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.parts:
            return
        block = b"".join(self.parts)
        self.parts, self.size = [], 0
        if self.stream is not None:
            self.stream.write(block)
            self.stream.flush()
            return
        view = memoryview(block)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]


def open_output(path: str, append: bool) -> int:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    return os.open(path, flags, 0o644)


def prepare_resume(path: str, fingerprint: str) -> int:
    """Drop a partial last line of a previous output; return how many records it holds.

    Refuses (KBErrors) an output written by another knowledge base, or one whose lines are not
    the results of records 1..N in order: resuming it would mix decisions or lose records.
    """
    if not os.path.exists(path):
        return 0
    with open(path, "rb+") as handle:
        data_end = _last_newline_end(handle)
        handle.truncate(data_end)
        handle.seek(0)
        count, first, last = 0, b"", b""
        for line in handle:
            count += 1
            first = first or line
            last = line
    if count == 0:
        return 0
    try:
        head, tail = json.loads(first), json.loads(last)
    except json.JSONDecodeError:
        raise KBErrors([KBError("batch.resume", f"{path} is not a batch output (a line is not JSON)", path)]) from None
    if tail.get("record") != count:
        raise KBErrors(
            [
                KBError(
                    "batch.resume",
                    f"{path} holds {count} lines but its last is record {tail.get('record')}",
                    path,
                    hint="resume only an output of the same input, written by fsgs-kb batch",
                )
            ]
        )
    previous = head.get("decision", {}).get("kb", {}).get("fingerprint")
    if previous != fingerprint:
        raise KBErrors(
            [
                KBError(
                    "batch.resume",
                    f"{path} was written with another knowledge base ({str(previous)[:12]})",
                    path,
                    hint="resume with the knowledge base that started the run, or start afresh",
                )
            ]
        )
    return count


def _last_newline_end(handle: BinaryIO) -> int:
    """The file offset just after its last newline (0 if it has none)."""
    handle.seek(0, os.SEEK_END)
    position = handle.tell()
    while position > 0:
        step = min(65536, position)
        position -= step
        handle.seek(position)
        block = handle.read(step)
        index = block.rfind(b"\n")
        if index >= 0:
            return position + index + 1
    return 0
