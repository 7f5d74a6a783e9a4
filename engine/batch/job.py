"""One batch run from input to output: what `fsgs-kb batch` does, as an API.

It opens the input (a file or standard input), frames its records, locks and verifies the
output, runs the workers, writes results in order, keeps the resume record current, counts by
status and rule (per chunk, not per record), and stops cleanly on SIGINT/SIGTERM: the results
finished so far are written and recorded, and `--resume` continues from there.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from fsgs_kb.engine.batch.checksum import crc32_combine
from fsgs_kb.engine.batch.files import (
    FLUSH_BYTES,
    NOT_RESUMABLE,
    SPACE_ERRORS,
    SPACE_HINT,
    InputDigest,
    InputFiles,
    OutputFile,
    ResumeState,
    standard_stream,
    write_failed,
)
from fsgs_kb.engine.batch.run import BatchRunner, check_workers
from fsgs_kb.engine.batch.workers import ChunkResult
from fsgs_kb.engine.errors import KBError, KBErrors
from fsgs_kb.engine.evaluate.masking import key_id
from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.read.record import in_input
from fsgs_kb.engine.read.records import FHIR_FORMATS, FORMATS, SNIFF_BYTES, Record, read_records, sniff_format
from fsgs_kb.engine.version import DURABLE_RULES_VERSION, __version__

if TYPE_CHECKING:  # a job that reads no FHIR does not import the converter
    from fsgs_kb.engine.fhir.records import FhirReader  # deferred: a type only


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
COMMIT_INTERVAL_S = 0.5  # how often the resume record follows the output during a run


@dataclass(kw_only=True)
class BatchJob:
    source: str  # a path, or "-" for standard input
    output: str | None = None  # None: standard output
    input_format: str | None = None  # None: from the name or the first bytes
    workers: int = 1
    resume: bool = False
    rules_dir: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # passed to KnowledgeBase.evaluate
    progress: Callable[[int, int], None] | None = None  # (records written, input bytes read)
    fhir: FhirReader | None = None  # FHIR input formats: the map and the evaluation date


@dataclass(kw_only=True)
class BatchSummary:
    """What the whole output holds (resumed runs included), and how this run went."""

    records: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_rule: Counter[tuple[str, str]] = field(default_factory=Counter)
    resumed_after: int = 0
    worker_crashes: int = 0
    elapsed_s: float = 0.0
    workers: int = 0
    interrupted_by: int | None = None  # the signal that stopped the run

    def add(self, chunk: ChunkResult) -> None:
        self.records += chunk.count
        self.by_status.update(chunk.by_status)
        self.by_rule.update(chunk.by_rule)

    def state(self) -> ResumeState:
        by_rule: dict[str, dict[str, int]] = {}
        for (rule, outcome), count in sorted(self.by_rule.items()):
            by_rule.setdefault(rule, {})[outcome] = count
        return ResumeState(records=self.records, by_status=dict(sorted(self.by_status.items())), by_rule=by_rule)

    @classmethod
    def from_state(cls, state: ResumeState, workers: int) -> BatchSummary:
        summary = cls(records=state.records, resumed_after=state.records, workers=workers)
        summary.by_status.update(state.by_status)
        for rule, outcomes in state.by_rule.items():
            summary.by_rule.update({(rule, outcome): n for outcome, n in outcomes.items()})
        return summary

    def to_dict(self) -> dict[str, Any]:
        this_run = self.records - self.resumed_after
        state = self.state()
        return {
            "records": self.records,
            "resumed_after": self.resumed_after,
            "by_status": state.by_status,
            "by_rule": state.by_rule,
            "worker_crashes": self.worker_crashes,
            "workers": self.workers,
            "elapsed_s": round(self.elapsed_s, 3),
            "records_per_s": round(this_run / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "interrupted_by": signal.Signals(self.interrupted_by).name if self.interrupted_by else None,
        }


class _StopFlag:
    """SIGINT/SIGTERM set a flag the run checks between chunks: no half-written line, no lost
    result, workers stopped by the runner, the resume record current.

    A signal that is ignored when the run starts stays ignored (the convention of sh, nohup and
    Python itself, which installs no SIGINT handler then): a shell starts a background job
    (`fsgs-kb batch … &` in a script) with SIGINT ignored, and installing the handler anyway made
    a `kill -INT` ignored while the command loaded and a stop once it wrote, depending on when it
    came. Such a run is stopped by SIGTERM (exit 143)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        if _in_main_thread():
            for signum in STOP_SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def __call__(self) -> bool:
        return self.signum is not None


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def open_input(source: str) -> tuple[BinaryIO, str | None]:
    """(binary stream, path or None for standard input); KBErrors when it cannot be read."""
    if source == "-":
        if sys.stdin is None:
            raise KBErrors([KBError("input.unreadable", "standard input is closed", file="-")])
        return sys.stdin.buffer, None
    try:
        handle = open(source, "rb")
    except OSError as exc:
        raise KBErrors([KBError("input.unreadable", f"cannot read the input: {exc.strerror}", file=source)]) from None
    if not os.path.isfile(source) and not _is_stream(handle):
        handle.close()
        raise KBErrors([KBError("input.unreadable", "the input is not a file", file=source)])
    return handle, source


def _descriptor(stream: BinaryIO | None) -> int | None:
    """The file descriptor under a stream (standard input), or None for one without (a test's BytesIO)."""
    try:
        return stream.fileno() if stream is not None else None
    except (OSError, ValueError):
        return None


def _refuse_stdout_as_input(stdout: BinaryIO | None, inputs: InputFiles, source: str) -> None:
    """Results to standard output appended to the input itself (`batch F >> F`, or to a file of
    a Bulk Data export) would change the input while it is read (and read the results back as
    records): refused, as `-o F` is."""
    out_fd = _descriptor(stdout)
    clash = inputs.clash(out_fd) if out_fd is not None else None
    if clash is not None:
        raise KBErrors(
            [
                KBError(
                    "batch.output_is_input",
                    f"standard output is {clash}",
                    file=source,
                    hint="write the results to another file",
                )
            ]
        )


def _is_stream(handle: BinaryIO) -> bool:
    mode = os.fstat(handle.fileno()).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def _is_regular(stream: BinaryIO | None) -> bool:
    """Whether the input is a regular file, which can be read again from its start (to digest it)."""
    fd = _descriptor(stream)
    return fd is not None and stat.S_ISREG(os.fstat(fd).st_mode)


def input_format(job: BatchJob, stream: BinaryIO | None, path: str | None) -> str:
    if job.input_format is not None:
        if job.input_format not in FORMATS + FHIR_FORMATS:
            raise KBErrors([KBError("input.format", f"unknown input format {job.input_format!r}")])
        if job.input_format in FHIR_FORMATS and job.fhir is None:
            raise KBErrors([KBError("input.format", f"input format {job.input_format} needs a FHIR map")])
        return job.input_format
    if stream is None:
        raise KBErrors([KBError("input.format", "no input format for a directory")])
    peek = getattr(stream, "peek", None)
    head = bytes(peek(SNIFF_BYTES)[:SNIFF_BYTES]) if peek is not None else b""
    return sniff_format(path, head)


def run_batch(kb: KnowledgeBase, job: BatchJob, stdout: BinaryIO | None = None) -> BatchSummary:
    """Run the job; KBErrors for what stops it before or while writing (bad input file, output
    refused, disk full), a summary with `interrupted_by` when a signal stopped it.

    A Bulk Data export (input format fhir-bulk) is a directory, not a stream: it is read through
    an on-disk index, and cannot be resumed (its files have no order to resume from)."""
    check_workers(job.workers)  # before anything is opened or started
    stream: BinaryIO | None = None
    path: str | None = None
    if job.input_format == "fhir-bulk":
        if job.resume:
            raise KBErrors(
                [
                    KBError(
                        "batch.resume",
                        "--resume is not available for a Bulk Data export",
                        hint="run it again without --resume (the results come out in the same order)",
                    )
                ]
            )
    else:
        stream, path = open_input(job.source)
    try:
        fmt = input_format(job, stream, path)
        inputs = InputFiles.of(job.source, job.input_format, _descriptor(stream))
        target = _Target(kb, job, path, fmt, stdout, inputs, _is_regular(stream))  # refuses an output over the input
        try:
            if fmt == "fhir-bulk" and job.fhir is not None:  # before the output is opened: none is left behind
                if target.file is not None:  # first the sharper reason: a part that links to the output
                    target.file.refuse_input_as_output()
                job.fhir.check_bulk(job.source)
            state = target.open()
            summary = BatchSummary.from_state(state, job.workers)
            _run(kb, job, stream, fmt, target, summary, state.input_bytes)
        finally:
            target.close()
    finally:
        if path is not None and stream is not None:
            stream.close()
    return summary


def job_records(job: BatchJob, stream: BinaryIO | None, fmt: str) -> Iterator[Record]:
    """The input's records, framed by the reader of its format."""
    if fmt in FHIR_FORMATS:
        reader = job.fhir
        assert reader is not None  # checked by input_format
        if fmt == "fhir-bulk":
            return reader.bulk(job.source)
        assert stream is not None
        return reader.bundles(stream) if fmt == "fhir-bundles" else reader.document(stream)
    assert stream is not None
    return in_input(read_records(stream, fmt), job.source)


def _records_after(records: Iterator[Record], done: int, end: int, source: str) -> Iterator[Record]:
    """The records after the first `done`, whose results a resumed output keeps. Record `done`
    must still end where it ended when its result was made (byte `end`): a last line read before
    its writer had finished it (no line end yet) may have grown since, and its kept result would
    not be that line's. Such an output is refused, as one whose input changed."""
    if done:
        for record in records:
            if record.number == done:
                if record.end != end:
                    raise KBErrors(
                        [
                            KBError(
                                "batch.resume",
                                f"record {done} (line {record.line}) ends at byte {record.end} of the input, not at "
                                f"byte {end} where the resume record says the kept results end: the line had no line "
                                "end when its result was kept and has grown since, or the resume record was changed: "
                                f"{NOT_RESUMABLE}; run without --resume",
                                file=source,
                                hint="the output still holds its first results; without --resume they are made again",
                            )
                        ]
                    )
                break
    yield from records


def _run(
    kb: KnowledgeBase,
    job: BatchJob,
    stream: BinaryIO | None,
    fmt: str,
    target: _Target,
    summary: BatchSummary,
    kept_end: int = 0,
) -> None:
    start = time.perf_counter()
    done = summary.records
    records = _records_after(job_records(job, stream, fmt), done, kept_end, job.source)
    with _StopFlag() as stopped:
        direct_fd = target.direct_fd()
        runner = BatchRunner(
            kb,
            job.rules_dir,
            summary.workers,
            options=job.options,
            stopped=stopped,
            output_fd=direct_fd,
            output_offset=target.file.written if target.file is not None else 0,
            output_name=target.file.path if target.file is not None else "standard output",
        )
        target.direct, target.settled = runner.direct, runner.settled
        results = runner.results(records, first_number=done + 1)
        try:
            for chunk, end in results:
                summary.add(chunk)
                target.write(chunk, end, summary)
                if job.progress is not None:
                    job.progress(summary.records, runner.bytes_read)
        finally:
            results.close()  # stops the workers, also when writing failed
            summary.worker_crashes = runner.worker_crashes
            summary.interrupted_by = stopped.signum
        target.flush(summary)
    summary.elapsed_s = time.perf_counter() - start


class _Target:
    """Where results go: a locked, resumable output file, or standard output."""

    def __init__(
        self,
        kb: KnowledgeBase,
        job: BatchJob,
        path: str | None,
        fmt: str,
        stdout: BinaryIO | None,
        inputs: InputFiles,
        input_regular: bool = False,
    ) -> None:
        self.file: OutputFile | None = None
        self.stdout = stdout
        self.pending: list[bytes | bytearray] = []
        self.size = 0
        self.end = 0  # where the input's last written record ends: from the resume record on, never backwards
        self.crc = 0  # CRC-32 of every result written to the output (on resume: from its first byte)
        self.digest = InputDigest(path if job.output and input_regular else None)  # never a pipe's second reader
        self.committed_at = time.monotonic()
        self.direct = False  # the workers write the results into the file (BatchRunner.direct)
        self.settled: Callable[[], bool] = lambda: True  # whether all results counted are written
        if job.output == "":  # not "no output": the results would have gone nowhere
            raise KBErrors([KBError("batch.output", "the output is an empty path, which names no file")])
        if job.output:
            options = {k: list(v) if isinstance(v, tuple) else v for k, v in job.options.items() if k != "mask_key"}
            options["mask_key_id"] = key_id(job.options.get("mask_key"))  # never the key itself
            options["detail"] = job.options.get("detail", "full")  # a resumed output keeps one detail level
            identity = {
                "kb_fingerprint": kb.fingerprint,
                "input_format": fmt,
                "options": dict(sorted(options.items())),
                "engine": {"fsgs_kb": __version__, "durable_rules": DURABLE_RULES_VERSION},  # in every result
            }
            if job.fhir is not None and fmt in FHIR_FORMATS:  # another date or map makes other records
                identity["fhir"] = {k: v for k, v in job.fhir.conversion("").items() if k != "bundle_sha256"}
            if standard_stream(job.output) is not None:
                raise KBErrors(
                    [
                        KBError(
                            "batch.output",
                            "the output names a descriptor this process was given (standard output, /dev/fd/N): "
                            "opening it again would truncate the file behind it",
                            file=job.output,
                            hint="leave out -o for standard output (the shell's >> appends)",
                        )
                    ]
                )
            self.file = OutputFile(job.output, path, identity, inputs, input_regular)
        elif job.resume:
            raise KBErrors([KBError("batch.resume", "--resume needs -o OUTPUT (a file to continue)")])
        else:
            _refuse_stdout_as_input(stdout, inputs, job.source)
        self.resume = job.resume

    def open(self) -> ResumeState:
        file = self.file
        if file is None:
            return ResumeState()
        state: ResumeState = self._io(lambda: file.open(self.resume))
        self.crc = state.output_crc32
        # A resumed run's commits go on from the kept records' input extent: from 0, a resume with
        # nothing left to read recorded the digest of no bytes, after which a replaced input was
        # "resumed" into the same output and an appended one refused.
        self.end = state.input_bytes
        return state

    def direct_fd(self) -> int | None:
        """The output's descriptor when the workers may write into it themselves: a regular file
        (positioned writes; a pipe or a device keeps its bytes in order through this process)."""
        file = self.file
        return file.fd if file is not None and file.sidecar is not None and file.fd >= 0 else None

    def write(self, chunk: ChunkResult, end: int, summary: BatchSummary) -> None:
        if self.file is not None:  # ~75 µs a chunk of 64 records: hashing the bytes here cost 20-50 µs a record
            self.crc = crc32_combine(self.crc, chunk.crc, chunk.size)
        if self.direct and self.file is not None:
            self.file.written += chunk.size  # a worker writes it, in its place (commits wait: settled)
        else:
            self.pending.append(chunk.blob)
        self.size += chunk.size
        self.end = end
        if self.size >= FLUSH_BYTES:
            self.flush(summary, final=False)

    def flush(self, summary: BatchSummary, final: bool = True) -> None:
        """Write the pending lines; record them in the resume record at the end of the run and
        at most every COMMIT_INTERVAL_S in between (each commit writes and renames a file: at
        every 256 KiB flush it cost more parent CPU than everything else). A kill loses only
        results after the last commit, which --resume evaluates again."""
        block = self.pending[0] if len(self.pending) == 1 else b"".join(self.pending)
        self.pending, self.size = [], 0
        if self.file is None:
            if block and self.stdout is not None:
                self._io(lambda: (self.stdout.write(block), self.stdout.flush()) if self.stdout else None)
            return
        file = self.file
        now = time.monotonic()
        commit = final or now - self.committed_at >= COMMIT_INTERVAL_S

        def write_and_commit() -> None:
            if block:
                file.write(block)
            if commit and self.settled():
                state = summary.state()
                state.input_bytes = self.end
                state.input_sha256 = self.digest.advance(self.end)
                state.output_crc32 = self.crc
                file.commit(state)
                self.committed_at = now

        self._io(write_and_commit)

    def _io(self, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except OSError as exc:
            where = self.file.path if self.file else "standard output"
            hint = SPACE_HINT if self.file is not None and exc.errno in SPACE_ERRORS else None
            raise write_failed(where, f"cannot write: {exc.strerror or exc}", hint) from None

    def close(self) -> None:
        self.digest.close()
        if self.file is not None:
            self.file.close()
