"""Worker processes for batch runs: each owns its knowledge base and its durable-rules rulesets.

A worker receives chunks of framed records (bytes) and answers each chunk with one block of
encoded result lines and the chunk's counts by status and rule outcome, so the parent only
orders blocks and writes them. Where the output is a regular file (`-o FILE`, fork), the worker
writes its block itself: it reports the block's size, the parent, which keeps the order, grants
the offset where the block goes (on a pipe of its own, read by a writer thread), the worker
writes it there (pwrite) and says so. A full-detail result is ~40 KB: carried through a pipe to
the parent and written by it, it cost the parent ~45 µs of CPU a record, four times its budget.

A worker is a separate process so that a crash of the native engine
(SIGSEGV), a SIGKILL or running out of memory takes down only this worker. It dies with its
parent: PR_SET_PDEATHSIG where Linux offers it, and a check of its parent pid while idle.

Fault injection for tests and drills: FSGS_KB_FAULT="segv:ID,kill:ID" makes a worker crash for
real (a null-pointer read, or SIGKILL to itself) when it meets a record with that patient id;
"killwrite:ID" kills the worker after it wrote half of the block holding that record into the
output, once per FSGS_KB_FAULT_ONCE marker file (every time when that variable is unset);
"stallwrite:ID" holds that block back until the worker has nothing left to evaluate (a slow disk).
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import struct
import threading
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from fsgs_kb.engine.batch.checksum import crc32
from fsgs_kb.engine.drills import fault_plan
from fsgs_kb.engine.kb import KnowledgeBase, load
from fsgs_kb.engine.read.records import Record, record_value

FAULT_ONCE_ENV = "FSGS_KB_FAULT_ONCE"
WRITTEN = "written"  # a worker's message: the block of the chunk starting at record N is in the output
WRITE_FAILED = "write_failed"
PR_SET_PDEATHSIG = 1
IDLE_CHECK_S = 1.0
IOV_MAX = 1024  # buffers one pwritev takes (Linux's UIO_MAXIOV)
NEWLINE = b"\n"


@dataclass(slots=True)
class ChunkResult:
    """The encoded results of records first..first+count-1, in order, with their counts and the
    CRC-32 of `blob` (taken here, in the worker, where the bytes are made: the parent only
    combines chunk CRCs into the output's, for its resume record). `size`: the blob's length,
    also where the parent never sees the blob (the worker writes it into the output itself)."""

    first: int
    count: int
    blob: bytes | bytearray
    by_status: dict[str, int]
    by_rule: dict[tuple[str, str], int]
    crc: int
    size: int = -1
    kill_while_writing: bool = False  # fault injection (killwrite:ID): never sent to the parent
    parts: list[bytes] | None = None  # the block as its lines and newlines, unjoined (see `evaluate_chunk`)
    stall_while_writing: bool = False  # fault injection (stallwrite:ID): never sent to the parent

    def __post_init__(self) -> None:
        if self.size < 0:
            self.size = len(self.blob)


# ---- the wire: records to a worker, results back, without pickling a Record ----------------------------
# A chunk travels as (first number, raw texts, line numbers or None when they equal the record
# numbers, {index: Record} for the records that are not plain text: a reader's problem, CSV data).
# Pickling Record objects cost ~7 µs a record in parent and worker together; this costs ~0.3.
ChunkMessage = tuple[int, list[bytes], "list[int] | None", dict[int, Record]]


def pack_chunk(records: list[Record]) -> ChunkMessage:
    raws: list[bytes] = []
    special: dict[int, Record] = {}
    same_lines = True
    for i, record in enumerate(records):
        raws.append(record.raw)
        if record.problem is not None or record.data is not None:
            special[i] = record
        same_lines = same_lines and record.line == record.number
    lines = None if same_lines else [record.line for record in records]
    return records[0].number, raws, lines, special


def unpack_chunk(message: ChunkMessage) -> list[Record]:
    first, raws, lines, special = message
    return [
        special.get(i) or Record(first + i, lines[i] if lines is not None else first + i, raw=raw)
        for i, raw in enumerate(raws)
    ]


def send_result(conn: Connection, result: ChunkResult, inline: bool = True) -> None:
    """The counts pickled (small), then, `inline`, the encoded lines as they are (one copy less
    each way); not inline, the worker writes them into the output itself once granted a place."""
    conn.send((result.first, result.count, result.by_status, result.by_rule, result.crc, result.size, inline))
    if inline:
        conn.send_bytes(result.blob)


def recv_result(conn: Connection) -> ChunkResult | tuple[str, int, str]:
    """Read what `send_result` sent (the lines straight into one buffer: multiprocessing's own
    reader allocates a buffer of the whole remaining size for every read of a pipe or socket),
    or a worker's word on a block it was granted: (WRITTEN, first, "") or (WRITE_FAILED, first,
    why). A result whose lines the worker keeps has an empty blob and their size."""
    message = conn.recv()
    if message[0] in (WRITTEN, WRITE_FAILED):
        return message  # type: ignore[no-any-return]
    first, count, by_status, by_rule, crc, size, inline = message
    blob = read_bytes_message(conn.fileno()) if inline else b""
    return ChunkResult(first, count, blob, by_status, by_rule, crc, size)


def write_parts_at(fd: int, parts: list[bytes], offset: int, kill_halfway: bool = False) -> None:
    """All of `parts`, in order, at `offset` (pwritev: a block's lines are written where they are,
    never copied into one buffer first); `kill_halfway`: the killwrite fault drill."""
    if kill_halfway:
        write_at(fd, b"".join(parts), offset, kill_halfway)
        return
    pending = [memoryview(part) for part in parts if part]
    while pending:
        written = os.pwritev(fd, pending[:IOV_MAX], offset)
        offset += written
        advance(pending, written)


def advance(pending: list[memoryview], written: int) -> None:
    """Drop the first `written` bytes of `pending` (a short pwritev: the rest is written next)."""
    done = 0
    while done < len(pending) and written >= len(pending[done]):
        written -= len(pending[done])
        done += 1
    del pending[:done]
    if written:
        pending[0] = pending[0][written:]


def write_at(fd: int, data: bytes | bytearray | memoryview, offset: int, kill_halfway: bool = False) -> None:
    """All of `data` at `offset` of the file (pwrite: the output's position is shared with the
    parent and the other workers, and never moved); `kill_halfway`: the killwrite fault drill."""
    view = memoryview(data)
    if kill_halfway and _fault_once():
        write_at(fd, view[: len(view) // 2], offset)
        os.kill(os.getpid(), signal.SIGKILL)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _fault_once() -> bool:
    marker = os.environ.get(FAULT_ONCE_ENV)
    if not marker:
        return True
    try:
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        return False
    return True


def read_bytes_message(fd: int) -> bytearray:
    """One message of `Connection.send_bytes` (its framing: a 4-byte size, -1 then 8 bytes for
    a large one), read into a buffer of its size; EOFError or OSError when cut short."""
    (size,) = struct.unpack("!i", _read_exactly(fd, 4))
    if size == -1:
        (size,) = struct.unpack("!Q", _read_exactly(fd, 8))
    return _read_exactly(fd, size)


def _read_exactly(fd: int, size: int) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    done = 0
    while done < size:
        n = os.readv(fd, [view[done:]])
        if n == 0:
            if done == 0:
                raise EOFError
            raise OSError("end of file in the middle of a message")
        done += n
    return buffer


def _inject(faults: dict[str, str], record: Any) -> str | None:
    """The fault planned for this record: segv and kill strike here; the kind is returned (a
    killwrite strikes later, in the writer thread)."""
    pid = record.get("id") if isinstance(record, dict) else None
    kind = faults.get(pid) if isinstance(pid, str) else None
    if kind == "segv":
        ctypes.string_at(0)  # a real segmentation fault, as the C core would cause
    elif kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    return kind


def patient_id(record: Record) -> str | None:
    """The id of a record, read without evaluating it (to name a record that crashed or failed)."""
    data, _ = record_value(record)
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def evaluate_chunk(
    kb: KnowledgeBase,
    chunk: list[Record],
    faults: dict[str, str] | None,
    options: dict[str, Any] | None,
    unjoined: bool = False,
) -> ChunkResult:
    """The chunk's result lines as one block, with its counts and CRC-32. `unjoined` (a worker
    that writes the block into the output itself): the lines and their newlines are kept as
    `parts` and written with one pwritev, not joined first (at full detail a block is ~2.7 MB:
    the join cost ~3 µs a record of the worker's main thread)."""
    lines: list[bytes] = []
    tally: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}  # (status, outcomes): records
    options = options or {}
    kill_while_writing = stall_while_writing = False
    for record in chunk:
        if faults:
            kind = _inject(faults, record_value(record)[0])
            kill_while_writing = kind == "killwrite" or kill_while_writing
            stall_while_writing = kind == "stallwrite" or stall_while_writing
        line, status, outcomes = kb.encode_record(record, **options)  # outcomes counted at every detail level
        lines.append(line)
        key = (status, outcomes)
        tally[key] = tally.get(key, 0) + 1
    by_status: Counter[str] = Counter()
    by_rule: Counter[tuple[str, str]] = Counter()
    for (status, outcomes), n in tally.items():
        by_status[status] += n
        for pair in outcomes:
            by_rule[pair] += n
    parts: list[bytes] | None = None
    blob = b""
    if unjoined:
        parts = []
        crc = size = 0
        for line in lines:
            parts += (line, NEWLINE)
            crc = crc32(NEWLINE, crc32(line, crc))
            size += len(line) + 1
    else:
        lines.append(b"")  # the last line's newline, in the one join (a chunk at full detail is megabytes)
        blob = NEWLINE.join(lines)
        crc, size = crc32(blob), len(blob)
    return ChunkResult(
        chunk[0].number,
        len(chunk),
        blob,
        dict(by_status),
        dict(by_rule),
        crc,
        size,
        kill_while_writing,
        parts,
        stall_while_writing,
    )


def die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux); ignore Ctrl-C, which
    the terminal sends the whole process group: the parent decides how the run stops."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the idle check below still ends an orphan
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(0)


def serve(
    conn: Connection,
    kb: KnowledgeBase | None,
    rules_dir: str | None,
    options: dict[str, Any],
    parent: int,
    grants: Connection | None = None,
    out_fd: int | None = None,
) -> None:
    """Worker loop. With fork the parent's loaded knowledge base is inherited; otherwise loaded.

    A sender thread hands each chunk's results to the parent while this thread evaluates the
    next chunk: a full-detail chunk is megabytes, and a worker that waited for the parent to read
    it would sit idle while the parent reads the other worker's. With `out_fd` (the output,
    inherited) and `grants` (the parent's offsets, on a pipe of their own), the sender only
    reports each block and keeps it; a writer thread writes each block where the parent says.
    Reporting never waits for a grant: a block's place is known only when every block before it
    is reported, and those may be records retried one at a time after a crash, which the parent
    hands only to a worker that has reported all it was given and written all it was granted."""
    die_with_parent(parent)
    outbox: queue.Queue[ChunkResult | None] = queue.Queue(maxsize=1)  # one waiting, one being sent
    blocks = _Blocks() if out_fd is not None and grants is not None else None
    lock = threading.Lock()  # the sender and the writer both speak on conn
    sender = threading.Thread(target=_send_all, args=(conn, outbox, blocks, lock), name="fsgs-kb-sender", daemon=True)
    try:
        kb = kb if kb is not None else load(rules_dir)
        faults = fault_plan()
        sender.start()
        idle = threading.Event()  # nothing to evaluate: the stallwrite drill waits for it
        stall_drill = "stallwrite" in faults.values()
        if blocks is not None and grants is not None and out_fd is not None:
            threading.Thread(
                target=_write_all,
                args=(conn, grants, blocks, out_fd, lock, idle),
                name="fsgs-kb-writer",
                daemon=True,
            ).start()
        while True:
            if stall_drill and not conn.poll(0):
                idle.set()
            while not conn.poll(IDLE_CHECK_S):
                if os.getppid() != parent:
                    return
            idle.clear()
            message = conn.recv()
            if message is None:
                break
            outbox.put(evaluate_chunk(kb, unpack_chunk(message), faults, options, unjoined=blocks is not None))
        outbox.put(None)
        sender.join()
    except (EOFError, KeyboardInterrupt, BrokenPipeError, ConnectionResetError):
        return  # the parent is gone: leave quietly
    except Exception as exc:  # a bug: die like a crash, so the parent isolates the record
        os.write(2, f"fsgs-kb worker: {type(exc).__name__}: {exc}\n".encode("utf-8", "replace"))
        os._exit(70)


class _Blocks:
    """Blocks reported to the parent and kept until it says where they go (by first record)."""

    def __init__(self) -> None:
        self.ready = threading.Condition()
        self.held: dict[int, ChunkResult] = {}

    def put(self, result: ChunkResult) -> None:
        with self.ready:
            self.held[result.first] = result
            self.ready.notify_all()

    def take(self, first: int) -> ChunkResult:
        with self.ready:
            while first not in self.held:
                self.ready.wait()
            return self.held.pop(first)


def _send_all(
    conn: Connection, outbox: queue.Queue[ChunkResult | None], blocks: _Blocks | None, lock: threading.Lock
) -> None:
    """The sender thread: results to the parent, in order; the parent gone, the worker ends.
    With `blocks`, each block is kept there before its report goes out (a grant finds it)."""
    while True:
        result = outbox.get()
        if result is None:
            return
        try:
            if blocks is not None:
                blocks.put(result)
            with lock:
                send_result(conn, result, inline=blocks is None)
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
            os._exit(0)  # the parent is gone: nothing left to do


def _write_all(
    conn: Connection, grants: Connection, blocks: _Blocks, out_fd: int, lock: threading.Lock, idle: threading.Event
) -> None:
    """The writer thread: each granted block into the output at its offset, then WRITTEN, or
    WRITE_FAILED with the system's reason (a full disk: the parent stops the run with that
    error, as when it writes itself).

    The stallwrite drill (a disk slower than the workers): the block holding that record is
    written only once this worker has nothing left to evaluate, and the worker says on stderr
    how many blocks it then holds. The parent counts granted, unwritten blocks as in flight,
    so that is a few, not the rest of the input (tests/test_batch_direct.py)."""
    try:
        while True:
            first, offset = grants.recv()
            result = blocks.take(first)
            if result.stall_while_writing:
                idle.wait()
                with blocks.ready:
                    waiting = len(blocks.held)
                os.write(2, f"fsgs-kb worker: stallwrite: {waiting} more blocks held\n".encode())
            try:
                assert result.parts is not None  # a worker that writes keeps its blocks unjoined (serve)
                write_parts_at(out_fd, result.parts, offset, result.kill_while_writing)
            except OSError as exc:
                with lock:
                    conn.send((WRITE_FAILED, first, exc.strerror or str(exc)))
                continue
            with lock:
                conn.send((WRITTEN, first, ""))
    except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
        os._exit(0)  # the parent is gone, or closed the grants at the end of the run
