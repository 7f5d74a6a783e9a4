"""Many input parts, one output part each: `fsgs-kb batch 'data/part-*.jsonl' -o OUTDIR`.

An input given as a glob (or with --dask, any input) names parts; each part `NAME` is
evaluated on its own into `OUTDIR/NAME`, exactly as `fsgs-kb batch NAME -o OUTDIR/NAME` would
write it (record numbers and lines count within the part), so a part's output can be checked,
replayed or resumed on its own. Locally the parts run one after the other, each across all the
workers (and each resumable through its own resume record); with --dask each part is one task on
the cluster (engine/batch/dask_bag.py), evaluated through the same runner with one worker process,
so a record that crashes it costs only itself there too. Paths go through fsspec where the part names a URL
(`s3://…` with s3fs installed), so a cluster reads and writes where its data lives.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import posixpath
import signal
import stat
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from fsgs_kb.engine.batch.files import same_file, write_failed, written_beside
from fsgs_kb.engine.batch.job import BatchJob, BatchSummary, run_batch
from fsgs_kb.engine.batch.run import BatchRunner, check_workers
from fsgs_kb.engine.errors import KBError, KBErrors
from fsgs_kb.engine.fresh import create_fresh
from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.read.records import FORMATS, read_records, sniff_format

GLOB_CHARS = "*?["
PART_TEMPORARY = (".fsgs-kb-part-", ".tmp")  # a Dask task's part, written then renamed (PartOutput)


def is_pattern(source: str) -> bool:
    return any(c in source for c in GLOB_CHARS)


def is_url(path: str) -> bool:
    return "://" in path


def _fsspec() -> Any:
    try:
        import fsspec  # the dask extra; only parts that are URLs need it
    except ImportError:
        raise KBErrors(
            [KBError("batch.fsspec", "reading a URL needs fsspec", hint="pip install 'fsgs-kb[dask]'")]
        ) from None
    return fsspec


def url_call(url: str, code: str, call: Callable[[Any], Any]) -> Any:
    """`call(fsspec)` for a URL; what fsspec refuses as a KBErrors naming the URL, not a traceback:
    a protocol it does not know (ValueError), one whose package is not installed (ImportError,
    e.g. s3fs for s3://), a URL it cannot reach or read (OSError)."""
    fsspec = _fsspec()
    try:
        return call(fsspec)
    except ImportError as exc:
        protocol = url.split("://", 1)[0]
        raise KBErrors(
            [
                KBError(
                    "batch.fsspec",
                    f"{protocol}:// is read through a package that is not installed: {exc}",
                    file=url,
                    hint=f"install the fsspec implementation for {protocol}:// where the parts are read "
                    "(and on every Dask worker)",
                )
            ]
        ) from None
    except ValueError as exc:
        raise KBErrors(
            [KBError("batch.fsspec", f"fsspec cannot read this URL: {exc}", file=url, hint="check the protocol")]
        ) from None
    except OSError as exc:
        raise KBErrors([KBError(code, f"cannot read {url}: {_why(exc)}", file=url)]) from None


def expand_parts(source: str) -> tuple[list[str], list[KBError]]:
    """The input parts a source names, sorted (a glob's matches, or the one path or URL), and a
    warning naming the directories a local glob matched (not parts: skipped, but never silently).

    A match that is neither a regular file nor a directory, or that cannot be read (a dangling
    symbolic link to an unmounted volume, a FIFO, a socket, no permission), is data the glob names
    and the run cannot read: KBErrors listing each one, before anything is written."""
    if is_url(source):
        files = url_call(source, "input.unreadable", lambda fsspec: fsspec.open_files(source, "rb"))
        parts = sorted({f.full_name for f in files}) if is_pattern(source) else [source]
        if not is_pattern(source):
            return parts, []
        protocol = source.split("://", 1)[0]
        return [p if is_url(p) else f"{protocol}://{p}" for p in parts], []
    if not is_pattern(source):
        return [source], []
    parts, directories, unreadable = [], [], []
    for match in sorted(glob.glob(source, recursive=True)):  # `**` spans directories, as with globstar
        problem = _unreadable(match)
        if problem is None:
            parts.append(match)
        elif problem == "directory":
            directories.append(match)
        else:
            unreadable.append(KBError("input.unreadable", problem, file=match, hint=UNREADABLE_HINT))
    if unreadable:
        raise KBErrors(unreadable)
    warnings = []
    if directories:
        shown = ", ".join(directories[:3]) + (f" and {len(directories) - 3} more" if len(directories) > 3 else "")
        warnings.append(
            KBError(
                "batch.parts_skipped",
                f"{len(directories)} match(es) of the glob are directories, not parts: skipped ({shown})",
                file=source,
                hint="narrow the glob to the files, e.g. 'DIR/**/*.jsonl'",
                severity="warning",
            )
        )
    return parts, warnings


UNREADABLE_HINT = "every file the glob matches is a part: make it readable, remove it, or narrow the glob"


def _unreadable(path: str) -> str | None:
    """Why a glob's match cannot be read as a part ("directory" for a directory), or None."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if os.path.islink(path):
            return f"a symbolic link to {os.readlink(path)}, which cannot be read: {exc.strerror}"
        return f"cannot read the input part: {exc.strerror}"
    if stat.S_ISDIR(mode):
        return "directory"
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        return f"the input part is {kind}, not a file: it cannot be read again or resumed"
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        return f"cannot read the input part: {exc.strerror}"
    return None


def local_parts(parts: list[str]) -> list[str]:
    """Parts a local run can open: `file://` URLs as paths; KBErrors for other URLs, which only
    the Dask workers read (through fsspec)."""
    out = []
    for part in parts:
        if part.startswith("file://"):
            out.append(part[len("file://") :])
        elif is_url(part):
            raise KBErrors(
                [
                    KBError(
                        "batch.parts_url",
                        f"{part}: a local run reads files, not URLs",
                        hint="run it on a Dask cluster with --dask SCHEDULER, or copy the parts here",
                    )
                ]
            )
        else:
            out.append(part)
    return out


def prepare_outdir(outdir: str) -> None:
    """The output directory of the parts, made if need be (not for URLs, which fsspec makes);
    KBErrors when it cannot be one (a file is there, no permission, no such parent)."""
    if is_url(outdir):
        return
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise KBErrors([KBError("batch.output", "the output directory is a file", file=outdir, hint="-o a directory")])
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as exc:
        raise KBErrors(
            [KBError("batch.output", f"cannot make the output directory: {exc.strerror or exc}", file=outdir)]
        ) from None


def part_output(outdir: str, part: str) -> str:
    """Where a part's results go: OUTDIR/the part's file name."""
    name = part_output_name(part)
    return posixpath.join(outdir.rstrip("/"), name) if is_url(outdir) else os.path.join(outdir, name)


def check_parts(source: str, parts: list[str], outdir: str) -> None:
    """KBErrors unless there are parts and nothing one part writes is what another part reads or
    writes: no output part overwrites an input part (by name, by resolved path, or as the same
    file: a hard link or a symbolic link in OUTDIR to any input part, compared by device and
    inode), and no output part has the name of a file the run writes beside another output part
    (`refuse_written_beside`)."""
    if not parts:
        raise KBErrors([KBError("input.unreadable", f"no input matches {source}", file=source)])
    first_by_output: dict[str, str] = {}
    for part in parts:
        output = part_output(outdir, part)
        other = first_by_output.setdefault(output, part)
        if other != part:
            inside = any(_inside(p, outdir) for p in (other, part))
            raise KBErrors(
                [
                    KBError(
                        "batch.output",
                        f"has the same file name as the input part {other}: both would be written to {output}",
                        file=part,
                        hint="the output directory lies inside the glob, so a run's own outputs are read as parts: "
                        "write to a directory outside it"
                        if inside
                        else "give the parts distinct file names, or run each directory with its own -o",
                    )
                ]
            )
    refuse_written_beside(first_by_output)
    inputs = input_files(parts)
    for output, part in first_by_output.items():
        refuse_output_over_inputs(part, output, inputs)


def refuse_written_beside(parts_by_output: dict[str, str]) -> None:
    """KBErrors (batch.output, naming both input parts) when an output part has the name of the
    resume record, or of that record's temporary file, of another output part: every output part
    is in OUTDIR, named after its input part, so `x.jsonl` and `x.jsonl.fsgs-kb.json` among the
    parts would each overwrite what the other wrote (the second part's results over the first's
    resume record, or the first part's resume record over the second's results). Nor may an
    output part have the name of the temporary files a Dask task writes its part into
    (`PartOutput`)."""
    by_name = {part_output_name(output): (output, part) for output, part in parts_by_output.items()}
    for output, part in parts_by_output.items():
        for path, what in written_beside(output):
            clash = by_name.get(part_output_name(path))
            if clash is not None:
                raise KBErrors(
                    [
                        KBError(
                            "batch.output",
                            f"its output part {clash[0]} is the {what} of the output part {output} of the input "
                            f"part {part}: each would overwrite what the other wrote",
                            file=clash[1],
                            hint="rename one of the two input parts, or evaluate them into separate -o directories",
                        )
                    ]
                )
        name = part_output_name(output)
        if name.startswith(PART_TEMPORARY[0]) and name.endswith(PART_TEMPORARY[1]):
            raise KBErrors(
                [
                    KBError(
                        "batch.output",
                        f"its output part {output} has the name of the temporary files batch writes output "
                        "parts into (a leftover of a stopped run?)",
                        file=part,
                        hint="leave such files out of the glob, or remove them",
                    )
                ]
            )


def input_files(parts: list[str]) -> dict[tuple[int, int] | str, str]:
    """The local input parts by device and inode, and by resolved path: what no output may be."""
    found: dict[tuple[int, int] | str, str] = {}
    for part in parts:
        if is_url(part) and not part.startswith("file://"):
            found[part] = part
            continue
        path = part.removeprefix("file://")
        found[os.path.realpath(path)] = part
        identity = _file_id(path)
        if identity is not None:
            found[identity] = part
    return found


def refuse_output_over_inputs(part: str, output: str, inputs: dict[tuple[int, int] | str, str]) -> None:
    """KBErrors when the output of `part`, or a file the run writes beside it (`written_beside`),
    is one of the input parts (`inputs`, from `input_files`): checked before a run and again as
    each part is started."""
    over = _input_at(output, inputs)
    if over is not None:
        what = "its input part" if over == part else f"the input part {over}"
        raise KBErrors(
            [
                KBError(
                    "batch.output_is_input",
                    f"the output part is {what} (the same file): writing it would destroy that input",
                    file=output,
                    hint="write the results to another directory (one that holds no link to an input part)",
                )
            ]
        )
    for path, what in written_beside(output):
        over = _input_at(path, inputs)
        if over is not None:
            raise KBErrors(
                [
                    KBError(
                        "batch.output_is_input",
                        f"the {what} of the output part {output} is the input part {over} (the same file): "
                        "the run would write over that input",
                        file=path,
                        hint="write the results to another directory (one that holds no link to an input part)",
                    )
                ]
            )


def _input_at(path: str, inputs: dict[tuple[int, int] | str, str]) -> str | None:
    """The input part a path the run writes is (by name, resolved path, or device and inode)."""
    if path in inputs.values():
        return path
    if is_url(path) and not path.startswith("file://"):
        return None
    local = path.removeprefix("file://")
    identity = _file_id(local)
    return inputs.get(os.path.realpath(local)) or (inputs.get(identity) if identity is not None else None)


def part_output_name(path: str) -> str:
    return posixpath.basename(path.rstrip("/")) if is_url(path) else os.path.basename(path)


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None  # not there (yet)
    return info.st_dev, info.st_ino


def _inside(path: str, directory: str) -> bool:
    if is_url(path) or is_url(directory):
        return path.startswith(directory.rstrip("/") + "/")
    return os.path.realpath(path).startswith(os.path.realpath(directory).rstrip(os.sep) + os.sep)


def evaluate_part(
    kb: KnowledgeBase,
    source: str,
    output: str,
    options: dict[str, Any],
    input_format: str | None = None,
    rules_dir: str | None = None,
    stopped: Callable[[], bool] = lambda: False,
) -> dict[str, Any] | None:
    """Evaluate one part into its output part (through fsspec); its counts, as a summary has them,
    or None when `stopped` ended it first (the output part then left as it was: `PartOutput`).

    The records go through the local batch's runner (engine/batch/run.py) with one worker
    process, so a record that crashes the interpreter costs only itself (`error` /
    `engine_crash`) here as it does locally, and the rest of the part is evaluated. What cannot
    be read or written is a KBErrors naming the input or the output part."""
    fsspec = _fsspec()
    summary = BatchSummary()
    runner = BatchRunner(kb, rules_dir, 1, options=options, stopped=stopped)
    with PartOutput(output, source) as out:
        try:
            with fsspec.open(source, "rb") as stream:
                head = stream.read(64)
                stream.seek(0)
                fmt = input_format or sniff_format(source, head)
                if fmt not in FORMATS:
                    raise KBErrors([KBError("input.format", f"unknown input format {fmt!r}", file=source)])
                for chunk, _ in runner.results(read_records(stream, fmt)):
                    out.write(chunk.blob)  # its own errors name the output part
                    summary.add(chunk)
        except OSError as exc:
            raise KBErrors(
                [KBError("input.unreadable", f"cannot read the input part: {_why(exc)}", file=source)]
            ) from None
        if stopped():
            return None
        out.publish()
    summary.worker_crashes = runner.worker_crashes
    return part_counts(source, output, summary)


def _temporary_name() -> str:
    return f"{PART_TEMPORARY[0]}{uuid.uuid4().hex}{PART_TEMPORARY[1]}"


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


class PartOutput:
    """Where a Dask task writes its part: a temporary file beside the output part, renamed over it
    once the part is complete, so a task stopped or failed leaves the output part as it was.

    A local output part (a path, or a `file://` URL) is also locked from the start to the rename,
    as the local batch locks its output (`flock` on the output part itself): no other run writes
    it meanwhile, and a task that outlives its command can never write into an output part a
    later run owns (that run finds it locked and is refused; the command itself stops and waits
    for its tasks: dask_bag.run_parts)."""

    def __init__(self, output: str, source: str) -> None:
        self.output = output
        self.source = source
        self.local = not is_url(output) or output.startswith("file://")
        self.path = output.removeprefix("file://") if self.local else output
        self.lock_fd = -1
        self.created = False  # the output part did not exist: removed again unless published
        self.temp: str | None = None
        self.handle: Any = None
        self.fs: Any = None

    def __enter__(self) -> PartOutput:
        try:
            if self.local:
                self._lock()
                # made as any new file is (0666 less the umask: the mode of a local batch's part), never
                # through a link (create_fresh: O_EXCL | O_NOFOLLOW); mkstemp's 0600 stayed on the part
                self.temp = os.path.join(os.path.dirname(self.path) or ".", _temporary_name())
                self.handle = os.fdopen(create_fresh(self.temp), "wb")
            else:
                self.fs, path = url_call(self.output, "batch.output", lambda fsspec: fsspec.core.url_to_fs(self.output))
                self.temp = posixpath.join(posixpath.dirname(path), _temporary_name())
                self.handle = self.fs.open(self.temp, "wb")
        except OSError as exc:
            self._discard()
            raise KBErrors(
                [KBError("batch.output", f"cannot open the output part: {_why(exc)}", file=self.output)]
            ) from None
        except BaseException:
            self._discard()
            raise
        return self

    def _lock(self) -> None:
        flags = os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC  # no reader on a FIFO: refused, not a hang
        try:
            self.lock_fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o644)
            self.created = True
        except FileExistsError:
            self.lock_fd = os.open(self.path, flags)  # never truncated: the rename replaces it
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KBErrors(
                [
                    KBError(
                        "batch.output_locked",
                        "another fsgs-kb batch run is writing this output part",
                        file=self.output,
                        hint="wait for it to finish, or write to another directory",
                    )
                ]
            ) from None
        source = self.source.removeprefix("file://")
        if not is_url(source) and same_file(self.lock_fd, source):
            raise KBErrors(
                [
                    KBError(
                        "batch.output_is_input",
                        "the output part is its input part (the same file): writing it would destroy that input",
                        file=self.output,
                        hint="write the results to another directory",
                    )
                ]
            )

    def write(self, blob: bytes | bytearray) -> None:
        try:
            self.handle.write(blob)
        except OSError as exc:
            raise write_failed(self.output, f"cannot write: {_why(exc)}") from None

    def publish(self) -> None:
        """The complete part in place of the output part (one rename)."""
        assert self.temp is not None
        try:
            self.handle.close()
            if self.local:
                os.replace(self.temp, self.path)
            else:
                self.fs.mv(self.temp, self.path)
        except OSError as exc:
            raise write_failed(self.output, f"cannot write: {_why(exc)}") from None
        self.temp = None
        self.created = False

    def __exit__(self, *exc: object) -> None:
        self._discard()

    def _discard(self) -> None:
        """Remove what an unfinished part left (its temporary file, an output part it created),
        then unlock."""
        if self.handle is not None:
            with contextlib.suppress(OSError):
                self.handle.close()
        if self.temp is not None:
            with contextlib.suppress(OSError):
                if self.fs is not None:
                    self.fs.rm(self.temp)
                else:
                    os.unlink(self.temp)
            self.temp = None
        if self.lock_fd >= 0:
            if self.created and same_file(self.lock_fd, self.path):
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
            os.close(self.lock_fd)
            self.lock_fd = -1


def part_counts(source: str, output: str, summary: BatchSummary) -> dict[str, Any]:
    """A part's counts, locally or from a Dask task, as the run's summary adds them up."""
    return {
        "input": source,
        "output": output,
        "records": summary.records,
        "by_status": dict(summary.by_status),
        "by_rule": [[rule, outcome, n] for (rule, outcome), n in sorted(summary.by_rule.items())],
        "worker_crashes": summary.worker_crashes,
    }


def run_parts_locally(kb: KnowledgeBase, job: BatchJob, parts: list[str], outdir: str) -> PartsRun:
    """Each part through the local batch (all workers, locked output, resume record), in turn, into
    OUTDIR as `prepare_outdir` made it (the command does, for local parts and Dask alike)."""
    run = PartsRun(workers=check_workers(job.workers))
    start = time.perf_counter()
    inputs = input_files(parts)
    for part in parts:
        output = part_output(outdir, part)
        refuse_output_over_inputs(part, output, inputs)  # again: a link made since check_parts
        summary = run_batch(kb, replace(job, source=part, output=output))
        run.parts.append(part_counts(part, output, summary))
        run.resumed_after += summary.resumed_after
        if summary.interrupted_by:
            run.interrupted_by = summary.interrupted_by
            break
    run.elapsed_s = time.perf_counter() - start
    return run


@dataclass(kw_only=True)
class PartsRun:
    """What a run over many parts did: each part's counts, and the run's own figures."""

    parts: list[dict[str, Any]] = field(default_factory=list)
    workers: int = 0
    elapsed_s: float = 0.0
    resumed_after: int = 0
    interrupted_by: int | None = None

    def summary(self) -> dict[str, Any]:
        """All parts together, as `BatchSummary.to_dict` gives one run, plus the parts."""
        by_status: Counter[str] = Counter()
        by_rule: dict[str, Counter[str]] = {}
        for part in self.parts:
            by_status.update(part["by_status"])
            for rule, outcome, n in part["by_rule"]:
                by_rule.setdefault(rule, Counter())[outcome] += n
        records = sum(part["records"] for part in self.parts)
        this_run = records - self.resumed_after
        return {
            "records": records,
            "resumed_after": self.resumed_after,
            "by_status": dict(sorted(by_status.items())),
            "by_rule": {rule: dict(sorted(c.items())) for rule, c in sorted(by_rule.items())},
            "worker_crashes": sum(part["worker_crashes"] for part in self.parts),
            "workers": self.workers,
            "elapsed_s": round(self.elapsed_s, 3),
            "records_per_s": round(this_run / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "interrupted_by": signal.Signals(self.interrupted_by).name if self.interrupted_by else None,
            "parts": [{"input": p["input"], "output": p["output"], "records": p["records"]} for p in self.parts],
        }
