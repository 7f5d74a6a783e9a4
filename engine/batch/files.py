"""The files of a batch run: an output nobody else writes, and a resume record beside it.

The output is never the input (same file, a link to it; for a Bulk Data export, any of its
files: `InputFiles`), is locked for the run (a second run on
the same output is refused, not interleaved), and is written in whole lines. Beside it, a small
JSON *resume record* (`OUTPUT.fsgs-kb.json`, never a line of the output: every output line stays
one result) says what the output holds so far: the knowledge base, the options, how many records
and bytes, the counts by status, the sha256 of the input bytes consumed up to the last
written record, and the CRC-32 of the output's recorded bytes. `--resume` continues only when
all of that matches the run being resumed and the output agrees with it: the recorded bytes end
a line, have the recorded CRC-32, and hold exactly the recorded number of result lines, numbered
1..N, with the recorded counts by status (read a line at a time).

The CRC-32 catches accidental damage, hand edits and mixed files (a line swapped, a status or an
outcome changed at the same length); it is no seal: whoever rewrites the output and its resume
record together can make them agree (sha256 would not stop that either, and cost a full-detail
run 20-50 µs of parent CPU a record). `fsgs-kb replay` is the check that re-derives results.
"""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import hashlib
import json
import os
import re
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import orjson

from fsgs_kb.engine.batch.checksum import crc32
from fsgs_kb.engine.errors import KBError, KBErrors
from fsgs_kb.engine.fhir.ndjson import EXPORT_FILES
from fsgs_kb.engine.fresh import create_fresh
from fsgs_kb.engine.read.records import parse_json
from fsgs_kb.engine.read.shape import MAX_RECORD_BYTES

FLUSH_BYTES = 256 * 1024
NAME_MAX = 255  # bytes in one file name (Linux, macOS): the resume record's temporary stays within it
SIDECAR_SUFFIX = ".fsgs-kb.json"
SIDECAR_FORMAT = "fsgs-kb-batch-resume-3"  # 2: with output_crc32; 3: with the engine's versions
OLD_SIDECAR_FORMATS = {  # what each older record lacks, why the results it kept cannot be trusted
    "fsgs-kb-batch-resume-1": "without a digest of the output: the results it kept cannot be verified",
    "fsgs-kb-batch-resume-2": "without the engine version that made the results it kept",
}
MAX_RESULT_LINE = 256 << 20  # a result line longer than this is not one batch wrote: refuse, never buffer it
NOT_RESUMABLE = "not resumable"
IDENTITY_NAMES = {
    "kb_fingerprint": "knowledge base",
    "input_format": "input format",
    "options": "set of options",
    "engine": "engine version",
    "fhir": "FHIR conversion (--as-of, FHIR map)",
}


def _refuse(code: str, message: str, path: str, hint: str | None = None) -> KBErrors:
    return KBErrors([KBError(code, message, file=path, hint=hint)])


class InputDigest:
    """sha256 of an input file's first bytes, advanced as records are written.

    A second read of the input (the page cache makes it cheap) keeps the reader free of
    bookkeeping and gives the digest at exactly the end of the last written record. Only a
    regular file can be read twice: opening a pipe or a FIFO again gives the same pipe, whose
    bytes the digest would take away from the reader (`batch <(zcat x.gz) -o out` lost ~45 % of
    its records that way). Such an input gets no digest (None), and its run cannot be resumed."""

    def __init__(self, path: str | None) -> None:
        self.handle = open(path, "rb") if path else None
        self.hasher = hashlib.sha256()
        self.offset = 0

    def advance(self, offset: int) -> str | None:
        if self.handle is None:
            return None
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
    input_sha256: str | None = hashlib.sha256(b"").hexdigest()  # None: the input was a pipe, not digested
    by_status: dict[str, int] = field(default_factory=dict)
    by_rule: dict[str, dict[str, int]] = field(default_factory=dict)
    output_crc32: int = 0  # the CRC-32 (checksum.crc32) of the output's first output_bytes bytes


def resume_record(output: str) -> str:
    """The resume record of an output: beside it, named after it."""
    return output + SIDECAR_SUFFIX


def resume_temporary(record: str) -> str:
    """The temporary file a resume record is written to, then renamed over it: named after the
    record and this process (whose id it holds: the run's parent process writes every record)."""
    folder, name = os.path.split(record)
    temporary = f"{name}.{os.getpid()}.tmp"
    if len(os.fsencode(temporary)) > NAME_MAX:  # a legal resume record's name, too long with the suffix
        temporary = f".fsgs-kb-resume.{hashlib.sha256(os.fsencode(name)).hexdigest()[:16]}.{os.getpid()}.tmp"
    return os.path.join(folder, temporary)


def written_beside(output: str) -> list[tuple[str, str]]:
    """(path, what it is) of each file a run writes beside its output: the resume record, and the
    temporary file that record is written to (named after this process, which checks them and
    writes every record). There is no lock file: the output itself is locked."""
    record = resume_record(output)
    return [(record, "resume record"), (resume_temporary(record), "resume record's temporary file")]


@dataclass(frozen=True)
class InputFiles:
    """Every file a run's input reads, which nothing the run writes may be (the output, its
    resume record or that record's temporary file, the --summary): the input file, the file
    standard input reads (`- < FILE`, by its descriptor), or each file of a Bulk Data export
    directory, and any file a write would add to it (the export's files are listed once the
    output exists, and are the next run's input too)."""

    read: str | int | None = None  # the input file, or standard input's descriptor
    export: str | None = None  # a Bulk Data export directory (input format fhir-bulk)

    @classmethod
    def of(cls, source: str, input_format: str | None, stdin: int | None = 0) -> InputFiles:
        if input_format == "fhir-bulk":
            return cls(export=source)
        return cls(read=stdin if source == "-" else source)

    def clash(self, written: str | int) -> str | None:
        """How `written` (a path, or a descriptor) is the input, completing "the output is …";
        None when it is not. By resolved path, and by device and inode (a hard link)."""
        if self.read is not None and same_file(written, self.read):
            name = self.read if isinstance(self.read, str) else "standard input"
            return f"the input file ({name}): writing it would destroy the input"
        if self.export is None:
            return None
        for part in sorted(Path(self.export).glob(EXPORT_FILES)):
            if not part.is_dir() and same_file(written, str(part)):  # a link to no file yet: by its name
                return f"{part}, a file of the Bulk Data export that is the input: writing it would destroy that input"
        if isinstance(written, str):
            real = os.path.realpath(written)
            if os.path.dirname(real) == os.path.realpath(self.export) and fnmatch.fnmatchcase(
                os.path.basename(real), EXPORT_FILES
            ):
                return (
                    f"named as a file of the Bulk Data export {self.export} that is the input ({EXPORT_FILES}): "
                    "it would be read as part of that input"
                )
        return None


class OutputFile:
    """The `-o` file of a batch run: locked, never the input, resumable through its record."""

    def __init__(
        self,
        path: str,
        input_path: str | None,
        identity: dict[str, Any],
        inputs: InputFiles | None = None,
        input_regular: bool = True,
    ) -> None:
        self.path = path
        self.sidecar: str | None = resume_record(path)
        self.input_path = input_path  # read again on resume, to check it
        self.inputs = inputs if inputs is not None else InputFiles(read=input_path)
        self.input_regular = input_regular  # a regular file, which can be read again to check it on resume
        self.identity = identity  # knowledge base, options, input format: must match on resume
        self.fd = -1
        self.written = 0

    def open(self, resume: bool) -> ResumeState:
        """Open and lock the output; on resume, verify it and return what it already holds."""
        if resume:
            self._refuse_unreadable_input()
        self.refuse_input_as_output()
        created = False
        try:
            try:
                self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
                created = True
            except FileExistsError:  # (or a link, perhaps to no file yet)
                self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _refuse("batch.output", f"cannot open the output: {exc.strerror}", self.path) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self.close()  # and forget the descriptor: the caller's close() must not close it again
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):  # ENOLCK, EOPNOTSUPP: NFS, FUSE
                raise _refuse(
                    "batch.output",
                    f"cannot lock the output: {exc.strerror or exc}",
                    self.path,
                    hint="write the output on a local file system, which can lock it for the run",
                ) from None
            raise _refuse(
                "batch.output_locked",
                "another fsgs-kb batch run is writing this output",
                self.path,
                hint="wait for it to finish, or write to another file",
            ) from None
        self.refuse_input_as_output()  # again, now that the output exists: a hard link to the input
        if not stat.S_ISREG(os.fstat(self.fd).st_mode):  # /dev/null, a pipe: nothing to resume
            if resume:
                raise _refuse("batch.resume", "only a regular file can be resumed", self.path)
            self.sidecar = None
            return ResumeState()
        state = self._verified_state() if resume else ResumeState()
        # The resume record before the output is cut to what it holds: when it cannot be written (a
        # directory the user cannot write, a name too long, a full disk), the output stays as it was.
        self.written = state.output_bytes
        try:
            self.commit(state, starting=True)
        except KBErrors:
            if created:  # made by this run, which wrote nothing: not left behind, empty
                os.unlink(self.path)
            raise
        if os.fstat(self.fd).st_size != state.output_bytes:
            # Only when there is something to cut: ext4 (auto_da_alloc) writes back, on close, every
            # page of a file that was truncated to zero, in the closing process; for a new output
            # that was 0.26 s of the parent's at the end of a 20,000-record full-detail run (840 MB).
            os.ftruncate(self.fd, state.output_bytes)
        os.lseek(self.fd, state.output_bytes, os.SEEK_SET)
        return state

    def refuse_input_as_output(self) -> None:
        """Before anything is opened for writing (and again once the output exists): neither the
        output nor a file written beside it (its resume record, that record's temporary file) is
        a file the input reads (`InputFiles`), by name, by link, or as the file standard input
        reads (`- < FILE`)."""
        written = [(self.path, "output"), *((path, f"output's {what}") for path, what in written_beside(self.path))]
        for path, what in written:
            clash = self.inputs.clash(path)
            if clash is not None:
                raise _refuse(
                    "batch.output_is_input",
                    f"the {what} is {clash}",
                    path,
                    hint="write the results to a file outside the export directory"
                    if self.inputs.export is not None
                    else "write the results to another file",
                )

    def _verified_state(self) -> ResumeState:
        assert self.sidecar is not None
        try:
            with open(self.sidecar, "rb") as handle:
                raw = handle.read(MAX_RECORD_BYTES + 1)
        except FileNotFoundError:
            if os.fstat(self.fd).st_size == 0:
                return ResumeState()
            raise _refuse(
                "batch.resume",
                f"no resume record ({os.path.basename(self.sidecar)}) beside the output: its origin cannot be verified",
                self.path,
                hint="start afresh without --resume",
            ) from None
        except OSError as exc:
            raise _refuse("batch.resume", f"the resume record cannot be read: {exc.strerror}", self.sidecar) from None
        saved, problem = parse_json(raw)  # the bounded reader: size, depth, duplicate keys; no recursion
        if problem is not None:
            why = "nested too deeply" if problem.code == "input.too_deep" else problem.message
            raise _refuse("batch.resume", f"the resume record cannot be read: {why}", self.sidecar)
        if isinstance(saved, dict) and saved.get("format") in OLD_SIDECAR_FORMATS:
            raise _refuse(
                "batch.resume",
                f"the resume record was written by an older fsgs-kb, {OLD_SIDECAR_FORMATS[saved['format']]}; "
                f"{NOT_RESUMABLE}",
                self.sidecar,
                hint="run without --resume (the results are made again)",
            )
        if not isinstance(saved, dict) or saved.get("format") != SIDECAR_FORMAT:
            raise _refuse("batch.resume", "the resume record is not one fsgs-kb batch wrote", self.sidecar)
        for key, value in self.identity.items():
            if saved.get(key) != value:
                if key == "engine":
                    raise _refuse(
                        "batch.resume",
                        f"the output was written by {_engine(saved.get(key))}, not by this {_engine(value)}: "
                        "one output never mixes the results of two engine versions",
                        self.path,
                        hint="start a new output (another -o, or without --resume), or resume with the version "
                        "that wrote it",
                    )
                raise _refuse(
                    "batch.resume",
                    f"the output was written with another {IDENTITY_NAMES.get(key, key)} "
                    f"({_difference(saved.get(key), value)})",
                    self.path,
                    hint="resume with the same knowledge base, input and options, or start afresh",
                )
        try:
            state = ResumeState(**saved["state"])
        except (KeyError, TypeError):
            raise _refuse("batch.resume", "the resume record is damaged", self.sidecar) from None
        damage = _state_damage(state)
        if damage is not None:
            raise _refuse("batch.resume", f"the resume record is damaged: {damage}", self.sidecar)
        self._verify_kept_output(state)
        if state.input_sha256 is None:
            raise _refuse(
                "batch.resume",
                "the output was made from a pipe or a device, whose bytes were not recorded: it cannot be resumed",
                self.path,
                hint="run without --resume (the results are made again)",
            )
        assert self.input_path is not None  # _refuse_unreadable_input
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

    def _refuse_unreadable_input(self) -> None:
        """A resume reads the input again from its start, to check it: a pipe cannot be (and
        opening it again would take bytes from its writer), nor standard input. Refused before
        the output is opened."""
        if not self.input_path:
            raise _refuse("batch.resume", "a run that read standard input cannot be resumed", self.path)
        if not self.input_regular:
            raise _refuse(
                "batch.resume",
                "the input is not a regular file (a pipe, a FIFO or a device): it cannot be read again "
                "from its start, so a run on it cannot be resumed",
                self.input_path,
                hint="run without --resume (the results are made again), or save the input to a file first",
            )

    def _verify_kept_output(self, state: ResumeState) -> None:
        """The output's first `output_bytes` bytes are exactly `records` whole result lines,
        numbered 1..records, whose statuses are the record's counts; else refuse. Read in
        bounded pieces (an output can be gigabytes): one line at a time, parsed for its number
        and status, never more than MAX_RESULT_LINE bytes held."""
        name = os.path.basename(self.path)
        size = os.fstat(self.fd).st_size
        if size < state.output_bytes:
            self._not_resumable(f"{name} holds {size} bytes where its resume record says {state.output_bytes}")
        lines = 0
        crc = 0
        statuses: Counter[str] = Counter()
        # Where the lines list every rule's outcome (standard, full), the counts by rule are recounted
        # too: a hand-edited resume record's by_rule was taken as it stood, and the summary of the
        # resumed run counted outcomes no result holds. At minimal they are only checked for consistency.
        options = self.identity.get("options")
        recount = isinstance(options, dict) and options.get("detail") != "minimal"
        outcomes: Counter[tuple[str, str]] = Counter()
        with open(self.path, "rb") as handle:
            if state.output_bytes:
                handle.seek(state.output_bytes - 1)
                if handle.read(1) != b"\n":
                    self._not_resumable(
                        f"{name} does not end a line at byte {state.output_bytes}, where its resume record "
                        "says its results end"
                    )
                handle.seek(0)
            remaining = state.output_bytes
            while remaining:
                line = handle.readline(min(remaining, MAX_RESULT_LINE))
                remaining -= len(line)
                crc = crc32(line, crc)
                if not line.endswith(b"\n"):
                    self._not_resumable(f"{name} line {lines + 1} is not a whole result line")
                lines += 1
                status, rules = _result_parts(line, lines)
                if status is None:
                    self._not_resumable(f"{name} line {lines} is not the result of record {lines}")
                statuses[status] += 1
                if recount:
                    if rules is None:
                        self._not_resumable(f"{name} line {lines} does not list its rules' outcomes")
                    outcomes.update(rules)
        if crc != state.output_crc32:
            self._not_resumable(
                f"{name} does not hold the results its resume record describes (CRC-32 {crc:08x} of its first "
                f"{state.output_bytes} bytes, not {state.output_crc32:08x}): a result was changed, or the file "
                "mixes runs"
            )
        if lines != state.records:
            self._not_resumable(f"{name} holds {lines} lines where its resume record says {state.records}")
        if statuses != Counter({k: v for k, v in state.by_status.items() if v}):
            self._not_resumable(
                f"{name} holds results {_short(dict(sorted(statuses.items())))} where its resume record says "
                f"{_short(dict(sorted(state.by_status.items())))}"
            )
        if recount:
            recorded = Counter({(r, o): n for r, counts in state.by_rule.items() for o, n in counts.items() if n})
            if outcomes != recorded:
                rule, outcome = min((outcomes - recorded) + (recorded - outcomes))
                self._not_resumable(
                    f"{name} holds {outcomes[rule, outcome]} results in which rule {rule} is {outcome}; its "
                    f"resume record says {recorded[rule, outcome]}"
                )

    def _not_resumable(self, what: str) -> NoReturn:
        raise _refuse(
            "batch.resume",
            f"{what}: {NOT_RESUMABLE}; run without --resume",
            self.path,
            hint="the output or its resume record was changed after the run that wrote them",
        )

    def write(self, data: bytes | bytearray) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.written += len(data)

    def commit(self, state: ResumeState, starting: bool = False) -> None:
        """Record what the output holds, atomically (write a temporary file, then rename); a
        failure removes the temporary file and names the resume record (KBErrors)."""
        if self.sidecar is None:
            return
        state.output_bytes = self.written
        payload = {"format": SIDECAR_FORMAT, **self.identity, "state": state.__dict__}
        temporary = resume_temporary(self.sidecar)
        try:
            # one write: json.dump encodes piece by piece
            with open(create_fresh(temporary), "w", encoding="utf-8") as handle:
                handle.write(json.dumps(payload))
            os.replace(temporary, self.sidecar)
        except OSError as exc:
            try:
                os.unlink(temporary)
            except OSError:
                pass  # never made, or already renamed
            raise write_failed(
                self.sidecar, f"cannot write the resume record: {exc.strerror or exc}", _sidecar_hint(exc, starting)
            ) from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


SPACE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
SPACE_HINT = "the resume record names what the output holds: free the space and run again with --resume"


def _sidecar_hint(exc: OSError, starting: bool) -> str:
    """What to do when the resume record cannot be written (`starting`: before the output was touched)."""
    if exc.errno == errno.ENAMETOOLONG:
        return f"give the output a shorter name: its resume record is named OUTPUT{SIDECAR_SUFFIX}"
    if exc.errno in SPACE_ERRORS:
        return "the output is as it was: free the space and run again" if starting else SPACE_HINT
    return (
        "the resume record is written beside the output: write the output in a directory you can write to"
        if starting
        else "the resume record is written beside the output: make its directory writable and run again with --resume"
    )


def write_failed(where: str, message: str, hint: str | None = None) -> KBErrors:
    """The error that stops a run whose results could not all be written (by the parent or by a
    worker): one code, naming the output."""
    return KBErrors([KBError("batch.write_failed", message, file=where, hint=hint)])


def standard_stream(path: str) -> int | None:
    """The descriptor of this process that `path` names, or None for any other path: `-` is
    standard output; /dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N (and links to them) are
    the descriptors the shell gave. Opening such a path again opens the file behind the
    descriptor afresh, without its O_APPEND (`-o /dev/stdout >> log` truncated the log): it is
    written through the descriptor instead, or refused."""
    if path == "-":
        return 1
    own = os.path.realpath(f"/proc/{os.getpid()}/fd")
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's limit on links followed
        folder, name = os.path.split(current)
        if re.fullmatch(r"[0-9]+", name) and _descriptor_folder(folder, own):
            return int(name)
        try:
            target = os.readlink(current)
        except OSError:
            return None  # not a link: a file, or nothing yet
        current = os.path.normpath(os.path.join(folder, target))
    return None


def _descriptor_folder(folder: str, own: str) -> bool:
    real = os.path.realpath(folder)
    threads = re.escape(os.path.dirname(own)) + r"/task/[0-9]+/fd"  # /proc/thread-self/fd
    return real in (own, "/dev/fd") or re.fullmatch(threads, real) is not None


def same_file(one: str | int, other: str | int) -> bool:
    """Whether two paths (or open descriptors) are the same regular file: by resolved path, and by
    device and inode where both exist (a hard link, a descriptor the shell opened on it)."""
    if isinstance(one, str) and isinstance(other, str) and os.path.realpath(one) == os.path.realpath(other):
        return True
    try:
        first = os.fstat(one) if isinstance(one, int) else os.stat(one)
        second = os.fstat(other) if isinstance(other, int) else os.stat(other)
    except OSError:
        return False  # one of them does not exist (yet), or a descriptor is closed
    return stat.S_ISREG(first.st_mode) and (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _state_damage(state: ResumeState) -> str | None:
    """What makes a resume record's state inconsistent in itself, or None."""
    for name in ("records", "output_bytes", "input_bytes"):
        if not _count(getattr(state, name)):
            return f"{name} is not a count"
    if not _count(state.output_crc32) or state.output_crc32 > 0xFFFFFFFF:
        return "output_crc32 is not a CRC-32"
    if state.input_sha256 is not None and not isinstance(state.input_sha256, str):
        return "input_sha256 is not a digest"
    if not isinstance(state.by_status, dict) or not all(_count(n) for n in state.by_status.values()):
        return "by_status is not a table of counts"
    if sum(state.by_status.values()) != state.records:
        return f"its counts by status add up to {sum(state.by_status.values())}, not its {state.records} records"
    if not isinstance(state.by_rule, dict):
        return "by_rule is not a table of counts"
    for rule, outcomes in state.by_rule.items():
        if not isinstance(outcomes, dict) or not all(_count(n) for n in outcomes.values()):
            return "by_rule is not a table of counts"
        if sum(outcomes.values()) > state.records:
            return f"rule {rule} has more outcomes than its {state.records} records"
    return None


def _result_parts(line: bytes, number: int) -> tuple[str | None, list[tuple[str, str]] | None]:
    """(status, each listed rule's (id, outcome), None where the line lists none) of a batch
    result line that is the result of record `number`; (None, None) for any other line."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(value, dict) or value.get("record") != number or isinstance(value.get("record"), bool):
        return None, None
    status = value.get("status")
    if not isinstance(status, str):
        return None, None
    rules = value.get("rules")
    if not isinstance(rules, list):
        return status, None
    pairs: list[tuple[str, str]] = []
    for rule in rules:
        rule_id, outcome = (rule.get("id"), rule.get("outcome")) if isinstance(rule, dict) else (None, None)
        if not isinstance(rule_id, str) or not isinstance(outcome, str):
            return status, None
        pairs.append((rule_id, outcome))
    return status, pairs


def _difference(saved: Any, current: Any) -> str:
    """What differs between the identity entry a resume record holds and this run's, naming the
    first entry that differs (`detail "standard", not "full"`): the whole recorded value, cut to
    40 characters, did not say which of the options was not the same."""
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in sorted(set(saved) | set(current)):
            if saved.get(key, _UNSET) != current.get(key, _UNSET):
                inner = _difference(saved.get(key, _UNSET), current.get(key, _UNSET))
                nested = isinstance(saved.get(key), dict) and isinstance(current.get(key), dict)
                return f"{key}.{inner}" if nested else f"{key} {inner}"

    def shown(value: Any) -> str:
        return "not set" if value is _UNSET else _short(value)

    return f"{shown(saved)} there, {shown(current)} in this run"


_UNSET = object()  # an entry one identity has and the other has not


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 40 else text[:37] + "…"


def _engine(versions: Any) -> str:
    """`fsgs-kb 0.1.0 with durable-rules 2.0.28`, from the identity's engine entry."""
    if not isinstance(versions, dict):
        return "an fsgs-kb that did not record its version"
    return f"fsgs-kb {versions.get('fsgs_kb')} with durable-rules {versions.get('durable_rules')}"
