"""The files of a batch run: an output nobody else writes, and a resume record beside it.

The output is never the input (same file, a link to it), is locked for the run (a second run on
the same output is refused, not interleaved), and is written in whole lines. Beside it, a small
JSON *resume record* (`OUTPUT.fsgs-kb.json`, never a line of the output: every output line stays
one result) says what the output holds so far: the knowledge base, the options, how many records
and bytes, the counts by status, and the sha256 of the input bytes consumed up to the last
written record. `--resume` continues only when all of that matches the run being resumed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from typing import Any

from fsgs_kb.engine.errors import KBError, KBErrors

FLUSH_BYTES = 256 * 1024
SIDECAR_SUFFIX = ".fsgs-kb.json"
SIDECAR_FORMAT = "fsgs-kb-batch-resume-1"
IDENTITY_NAMES = {"kb_fingerprint": "knowledge base", "input_format": "input format", "options": "set of options"}


def _refuse(code: str, message: str, path: str, hint: str | None = None) -> KBErrors:
    return KBErrors([KBError(code, message, file=path, hint=hint)])


class InputDigest:
    """sha256 of an input file's first bytes, advanced as records are written.

    A second read of the input (the page cache makes it cheap) keeps the reader free of
    bookkeeping and gives the digest at exactly the end of the last written record."""

    def __init__(self, path: str | None) -> None:
        self.handle = open(path, "rb") if path else None
        self.hasher = hashlib.sha256()
        self.offset = 0

    def advance(self, offset: int) -> str:
        if self.handle is not None:
            while self.offset < offset:
                block = self.handle.read(min(1 << 20, offset - self.offset))
                if not block:
                    break
                self.hasher.update(block)
                self.offset += len(block)
        return self.hasher.hexdigest()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


@dataclass(kw_only=True)
class ResumeState:
    """What the resume record says an output holds."""

    records: int = 0
    output_bytes: int = 0
    input_bytes: int = 0
    input_sha256: str = hashlib.sha256(b"").hexdigest()
    by_status: dict[str, int] = field(default_factory=dict)
    by_rule: dict[str, dict[str, int]] = field(default_factory=dict)


class OutputFile:
    """The `-o` file of a batch run: locked, never the input, resumable through its record."""

    def __init__(self, path: str, input_path: str | None, identity: dict[str, Any]) -> None:
        self.path = path
        self.sidecar: str | None = path + SIDECAR_SUFFIX
        self.input_path = input_path
        self.identity = identity  # knowledge base, options, input format: must match on resume
        self.fd = -1
        self.written = 0

    def open(self, resume: bool) -> ResumeState:
        """Open and lock the output; on resume, verify it and return what it already holds."""
        self._refuse_input_as_output()
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _refuse("batch.output", f"cannot open the output: {exc.strerror}", self.path) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.close()  # and forget the descriptor: the caller's close() must not close it again
            raise _refuse(
                "batch.output_locked",
                "another fsgs-kb batch run is writing this output",
                self.path,
                hint="wait for it to finish, or write to another file",
            ) from None
        self._refuse_input_as_output()  # again, now that the output exists: a hard link to the input
        if not stat.S_ISREG(os.fstat(self.fd).st_mode):  # /dev/null, a pipe: nothing to resume
            if resume:
                raise _refuse("batch.resume", "only a regular file can be resumed", self.path)
            self.sidecar = None
            return ResumeState()
        state = self._verified_state() if resume else ResumeState()
        os.ftruncate(self.fd, state.output_bytes)
        os.lseek(self.fd, state.output_bytes, os.SEEK_SET)
        self.written = state.output_bytes
        self.commit(state)
        return state

    def _refuse_input_as_output(self) -> None:
        if not self.input_path:
            return
        same = os.path.realpath(self.path) == os.path.realpath(self.input_path)
        try:
            same = same or os.path.samefile(self.path, self.input_path)
        except OSError:
            pass  # the output does not exist yet
        if same:
            raise _refuse(
                "batch.output_is_input",
                "the output is the input file: writing it would destroy the input",
                self.path,
                hint="write the results to another file",
            )

    def _verified_state(self) -> ResumeState:
        assert self.sidecar is not None
        try:
            with open(self.sidecar, encoding="utf-8") as handle:
                saved = json.load(handle)
        except FileNotFoundError:
            if os.fstat(self.fd).st_size == 0:
                return ResumeState()
            raise _refuse(
                "batch.resume",
                f"no resume record ({os.path.basename(self.sidecar)}) beside the output: its origin cannot be verified",
                self.path,
                hint="start afresh without --resume",
            ) from None
        except (OSError, ValueError) as exc:
            raise _refuse("batch.resume", f"the resume record cannot be read: {exc}", self.sidecar) from None
        if not isinstance(saved, dict) or saved.get("format") != SIDECAR_FORMAT:
            raise _refuse("batch.resume", "the resume record is not one fsgs-kb batch wrote", self.sidecar)
        for key, value in self.identity.items():
            if saved.get(key) != value:
                raise _refuse(
                    "batch.resume",
                    f"the output was written with another {IDENTITY_NAMES.get(key, key)} ({_short(saved.get(key))})",
                    self.path,
                    hint="resume with the same knowledge base, input and options, or start afresh",
                )
        try:
            state = ResumeState(**saved["state"])
        except (KeyError, TypeError):
            raise _refuse("batch.resume", "the resume record is damaged", self.sidecar) from None
        if os.fstat(self.fd).st_size < state.output_bytes:
            raise _refuse("batch.resume", "the output is shorter than its resume record says", self.path)
        if not self.input_path:
            raise _refuse("batch.resume", "a run that read standard input cannot be resumed", self.path)
        digest = InputDigest(self.input_path)
        try:
            actual = digest.advance(state.input_bytes)
            complete = digest.offset == state.input_bytes
        finally:
            digest.close()
        if not complete or actual != state.input_sha256:
            raise _refuse(
                "batch.resume",
                "the input is not the one this output was made from",
                self.path,
                hint="resume with the same input, or start afresh",
            )
        return state

    def write(self, data: bytes | bytearray) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.written += len(data)

    def commit(self, state: ResumeState) -> None:
        """Record what the output holds, atomically (write a temporary file, then rename)."""
        if self.sidecar is None:
            return
        state.output_bytes = self.written
        payload = {"format": SIDECAR_FORMAT, **self.identity, "state": state.__dict__}
        temporary = f"{self.sidecar}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(payload, handle)
        os.replace(temporary, self.sidecar)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 40 else text[:37] + "…"
