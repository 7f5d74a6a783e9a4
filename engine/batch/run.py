"""Evaluate any number of records across worker processes: in order, nothing lost, nothing twice.

The parent frames records lazily, hands them to workers in chunks, and yields each chunk's
encoded results in input order as soon as it and all before it are done, so memory stays flat.
Every input record gets exactly one result. A worker that dies (a segfault in the native engine,
SIGKILL, out of memory) costs only its chunks in flight: those records are retried one at a time
in fresh workers, and the one that kills a worker again gets an `error` result with code
`engine_crash`. Closing the generator (the run is stopped) stops every worker.

Given the output's descriptor (a regular file, fork), the workers write their results into it
themselves, each block where the parent says (`output_fd`, and workers.py): the parent keeps
the order and the counts, never the bytes. A worker that dies after it was granted a place and
before it said the block is written leaves a hole of known size: the block is made again by a
fresh worker and written in the same place, only if it has the same size and CRC-32 (results
are deterministic); otherwise the run stops with `batch.write_failed`, its resume record still
true to the output up to its last commit (`settled`), so `--resume` continues it.

At most MAX_WORKERS workers (a usage error beyond: `--workers 99999999999999999999` must not fork
until the machine falls over), and never more than there are chunks to run: a worker is
started only when a chunk is there for it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, NoReturn

from fsgs_kb.engine.batch.checksum import crc32
from fsgs_kb.engine.batch.files import write_failed
from fsgs_kb.engine.batch.workers import (
    WRITE_FAILED,
    ChunkResult,
    evaluate_chunk,
    pack_chunk,
    patient_id,
    recv_result,
    serve,
    write_at,
)
from fsgs_kb.engine.errors import KBError, KBErrors
from fsgs_kb.engine.evaluate.output import dumps_bytes
from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.read.records import Record

CHUNK_SIZE = 64
PIPELINE_DEPTH = 2
POLL_S = 0.2  # how often a waiting parent looks at its stop flag
REMAKE_LIMIT = 3  # a block made again this often, its worker dying each time, stops the run
SETTLE_S = 30.0  # how long a stopped run waits for the workers to write the blocks they were given
MAX_WORKERS = 256  # worker processes of one run: far above any useful count, far below a fork bomb


def check_workers(workers: int) -> int:
    """`workers` when it is a whole number in 1..MAX_WORKERS, else KBErrors (a usage error)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise KBErrors(
            [
                KBError(
                    "batch.workers",
                    f"the number of workers must be a whole number from 1 to {MAX_WORKERS}, not {str(workers)[:40]}",
                    hint="the default is the number of cores",
                )
            ]
        )
    return workers


@dataclass(slots=True)
class Chunk:
    """Records handed to a worker together, and where the input stands after the last one."""

    records: list[Record]
    end: int

    @property
    def first(self) -> int:
        return self.records[0].number


@dataclass(slots=True)
class _Granted:
    """A block a worker was told to write at `offset`, not yet confirmed written."""

    chunk: Chunk
    offset: int
    result: ChunkResult


class _Worker:
    def __init__(
        self, ctx: Any, kb: KnowledgeBase, rules_dir: str | None, options: dict[str, Any], out_fd: int | None
    ) -> None:
        self.conn, child = ctx.Pipe()
        inherit = kb if ctx.get_start_method() == "fork" else None
        self.grants: Connection | None = None
        grant_reader: Connection | None = None
        if out_fd is not None:
            grant_reader, self.grants = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(
            target=serve, args=(child, inherit, rules_dir, options, os.getpid(), grant_reader, out_fd), daemon=True
        )
        self.proc.start()
        child.close()
        if grant_reader is not None:
            grant_reader.close()
        self.inflight: deque[Chunk] = deque()  # chunks sent, answers not yet received
        self.isolated = False  # holds one record being retried alone: nothing else is sent to it
        self.granted: dict[int, _Granted] = {}  # blocks it writes itself: told where, not yet written

    def grant(self, result: ChunkResult, chunk: Chunk, offset: int) -> None:
        """Tell the worker where its block goes. A worker that died meanwhile keeps the grant: its
        sentinel shows the death, and the block is made again for the same place."""
        self.granted[result.first] = _Granted(chunk, offset, result)
        try:
            assert self.grants is not None
            self.grants.send((result.first, offset))
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
            pass

    def can_take(self) -> bool:
        """Two chunks in flight keep a worker busy while the parent handles the previous answer."""
        return not self.isolated and len(self.inflight) < PIPELINE_DEPTH

    def send(self, chunk: Chunk, isolated: bool) -> None:
        """Hand a chunk over. A worker that died meanwhile keeps the chunk: the main loop sees its
        sentinel, replaces it and retries the records one by one."""
        self.inflight.append(chunk)
        self.isolated = isolated
        try:
            self.conn.send(pack_chunk(chunk.records))
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
            pass

    def stop(self, now: bool) -> None:
        if not now:
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5)
        self.conn.close()
        if self.grants is not None:
            self.grants.close()


def _chunks(records: Iterator[Record], size: int) -> Iterator[Chunk]:
    chunk: list[Record] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield Chunk(chunk, record.end)
            chunk = []
    if chunk:
        yield Chunk(chunk, chunk[-1].end)


def allow_workers() -> None:
    """Let this process start workers even when it is daemonic, as a Dask worker is (its nanny
    starts it so): multiprocessing refuses a daemonic process children so that, terminated, it
    leaves no orphans, and ours leave none, dying with their parent (PR_SET_PDEATHSIG and the idle
    check of workers.serve). The flag is lifted for good, not restored after a run, since another
    thread's run may be starting a worker; it has no other effect here (_Worker sets each
    worker's own flag)."""
    current = mp.current_process()
    if current.daemon:
        current.daemon = False


class BatchRunner:
    """Runs one batch; `results()` yields (chunk results, input offset after them) in order."""

    def __init__(
        self,
        kb: KnowledgeBase,
        rules_dir: str | None,
        workers: int,
        *,
        chunk_size: int = CHUNK_SIZE,
        options: dict[str, Any] | None = None,
        stopped: Callable[[], bool] = lambda: False,
        output_fd: int | None = None,
        output_offset: int = 0,
        output_name: str = "the output",
    ) -> None:
        self.options = options or {}
        self.kb = kb
        self.rules_dir = rules_dir
        self.n_workers = check_workers(workers)
        self.chunk_size = chunk_size
        self.stopped = stopped
        self.done: dict[int, tuple[ChunkResult, int, _Worker | None, Chunk | None]] = {}  # (result, end, holder, chunk)
        self.next_number = 1
        self.bytes_read = 0
        self.retry: deque[Chunk] = deque()
        self.worker_crashes = 0
        self.workers_started = 0  # replacements of crashed workers included
        self.output_fd = output_fd if output_fd is not None and "fork" in mp.get_all_start_methods() else None
        self.offset = output_offset  # where the next block goes (workers write: output_fd)
        self.output_name = output_name
        self.rewrites: dict[int, _Granted] = {}  # blocks of dead workers, made again for their place
        self.remade: dict[int, int] = {}  # how often each block was made again (REMAKE_LIMIT)
        self.lost_writes = False  # stopped with a block granted and not confirmed: commit nothing more
        self.closed = False
        self.ctx: Any = None
        self.pool: list[_Worker] = []

    @property
    def direct(self) -> bool:
        """Whether the workers write the results (the caller only counts them)."""
        return self.output_fd is not None

    def _start(self, ctx: Any) -> _Worker:
        self.workers_started += 1
        return _Worker(ctx, self.kb, self.rules_dir, self.options, self.output_fd)

    def results(self, records: Iterable[Record], first_number: int = 1) -> Generator[tuple[ChunkResult, int]]:
        self.next_number = first_number
        ctx = self.ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        allow_workers()
        pool = self.pool  # started as chunks arrive: never more workers than chunks
        feed = _chunks(iter(records), self.chunk_size)
        limit = self.n_workers * self.chunk_size * 4  # records read but not yet written: bounds memory
        exhausted = False
        finished = False
        try:
            while not self.stopped():
                yield from self._ready()
                exhausted = self._dispatch(ctx, pool, feed, limit, exhausted)
                busy = [w for w in pool if w.inflight or w.granted]
                if not busy:
                    if exhausted and not self.retry:
                        break
                    continue
                self._collect(ctx, pool, busy)
            yield from self._ready()
            finished = not self.stopped()
            if finished:
                self.settle()
        finally:
            try:
                if not finished and self.direct and not self.lost_writes:
                    self._settle_live()
            finally:
                self.closed = True
                for worker in pool:
                    worker.stop(now=not finished)

    def settled(self) -> bool:
        """Whether everything yielded so far is in the output (waiting for the workers' word where
        they write): the caller commits its resume record only then."""
        if not self.direct:
            return True
        if self.closed:
            return not self.lost_writes
        self.settle()
        return True

    def settle(self) -> None:
        """Wait until every granted block is written, making again the blocks of workers that died."""
        while self.rewrites or any(w.granted for w in self.pool):  # a block being made again: not yet granted
            self._collect(self.ctx, self.pool, [w for w in self.pool if w.inflight or w.granted])

    def _settle_live(self) -> None:
        """On a stop: wait (a while) for the blocks live workers were granted, making nothing
        again; a hole a dead worker left, a write refused or a worker that does not answer means
        nothing after the last commit is committed (`lost_writes`)."""
        deadline = time.monotonic() + SETTLE_S
        try:
            while not self.rewrites and time.monotonic() <= deadline:
                waiting = [w for w in self.pool if w.granted]
                if not waiting:
                    return
                if not all(w.proc.is_alive() for w in waiting):
                    break
                wait([w.conn for w in waiting] + [w.proc.sentinel for w in waiting], timeout=POLL_S)
                for worker in waiting:
                    while worker.granted and worker.conn.poll():
                        self._receive(worker)
        except (KBErrors, EOFError, OSError, ValueError):
            pass
        self.lost_writes = True

    def _ready(self) -> Iterator[tuple[ChunkResult, int]]:
        """The results next in order. A worker writing its own results is granted no block while
        it evaluates a record retried alone (nor given one while it writes: `_dispatch`): if it
        dies, the record killed it, not a write, and only the record gets `engine_crash`."""
        while self.next_number in self.done:
            holder = self.done[self.next_number][2]
            if holder is not None and holder.isolated and holder.inflight:
                return
            result, end, holder, chunk = self.done.pop(self.next_number)
            self.next_number += result.count
            if self.output_fd is not None:
                if holder is not None and chunk is not None:
                    holder.grant(result, chunk, self.offset)
                else:  # made here (a crashed record's error result): written here, in its place
                    self._write(result.blob, self.offset)
                    result.blob = b""
                self.offset += result.size
            yield result, end

    def _write(self, blob: bytes | bytearray, offset: int) -> None:
        try:
            write_at(self.output_fd, blob, offset)  # type: ignore[arg-type]
        except OSError as exc:
            self._write_failed(exc.strerror or str(exc))

    def _write_failed(self, why: str) -> NoReturn:
        self.lost_writes = True  # the block is not in the output: the run stops, committing nothing more
        hint = "the resume record names what the output holds: free the space and run again with --resume"
        raise write_failed(self.output_name, f"cannot write: {why}", hint)

    def _dispatch(self, ctx: Any, pool: list[_Worker], feed: Iterator[Chunk], limit: int, exhausted: bool) -> bool:
        for slot in range(self.n_workers):
            if slot == len(pool):  # the next worker starts only for a chunk of its own
                if self.retry or exhausted or self._in_flight(pool) >= limit:
                    break
                first = next(feed, None)
                if first is None:
                    return True
                pool.append(self._start(ctx))
                self.bytes_read = first.end
                pool[slot].send(first, isolated=False)
            worker = pool[slot]
            while worker.can_take():
                if self.retry:
                    if not worker.inflight and not worker.granted:  # its death must be the record's
                        worker.send(self.retry.popleft(), isolated=True)
                    break
                if exhausted or self._in_flight(pool) >= limit:
                    break
                chunk = next(feed, None)
                if chunk is None:
                    exhausted = True
                    break
                self.bytes_read = chunk.end
                worker.send(chunk, isolated=False)
        return exhausted

    def _in_flight(self, pool: list[_Worker]) -> int:
        """Records read and not yet in the output: held here, sent to a worker, or granted to one
        that has not yet said it wrote them. Without the last, a disk slower than the workers
        (dirty-page throttling on an 8.7 GB output) let granted blocks pile up in the workers."""
        held = sum(entry[0].count for entry in self.done.values())
        sent = sum(len(chunk.records) for w in pool for chunk in w.inflight)
        return held + sent + sum(g.result.count for w in pool for g in w.granted.values())

    def _collect(self, ctx: Any, pool: list[_Worker], busy: list[_Worker]) -> None:
        ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=POLL_S))
        for i, worker in enumerate(pool):
            if not (worker.inflight or worker.granted) or not ({worker.conn, worker.proc.sentinel} & ready):
                continue
            try:
                while (worker.inflight or worker.granted) and worker.conn.poll():
                    self._receive(worker)
                if worker.proc.sentinel not in ready:
                    continue
            except (EOFError, OSError, ValueError):  # a pipe reset or a message cut short by the death
                pass
            pool[i] = self._replace(ctx, worker)

    def _receive(self, worker: _Worker) -> None:
        """One message of a worker: a chunk's result, or its word on a block it was granted."""
        message = recv_result(worker.conn)
        if isinstance(message, tuple):
            kind, first, why = message
            if kind == WRITE_FAILED:
                self._write_failed(why)
            worker.granted.pop(first, None)
            return
        chunk = worker.inflight.popleft()
        worker.isolated = worker.isolated and bool(worker.inflight)
        again = self.rewrites.pop(message.first, None)
        if again is None:
            self.done[message.first] = (message, chunk.end, worker if self.direct else None, chunk)
        elif (message.size, message.crc) == (again.result.size, again.result.crc):
            worker.grant(message, chunk, again.offset)
        else:
            self._not_remade(again, "and they came out different when made again")

    def _not_remade(self, again: _Granted, why: str) -> NoReturn:
        self.lost_writes = True
        first, last = again.chunk.first, again.chunk.records[-1].number
        message = f"a worker died while writing the results of records {first}-{last} {why}"
        hint = "run again with --resume: the resume record names what the output holds"
        raise write_failed(self.output_name, message, hint)

    def _replace(self, ctx: Any, worker: _Worker) -> _Worker:
        """A worker died: retry its records one by one, or record the crash of an isolated one.
        Writing its own results, it may also have left a block granted and not confirmed (made
        again by the fresh worker, for the same place) or one reported and not yet granted (its
        bytes died with it: the chunk is evaluated again)."""
        worker.proc.join(timeout=5)
        code = worker.proc.exitcode
        self.worker_crashes += 1
        remaking = [chunk for chunk in worker.inflight if chunk.first in self.rewrites]  # not yet reported
        holes = [self.rewrites.pop(chunk.first) for chunk in remaking] + list(worker.granted.values())
        evaluating = [chunk for chunk in worker.inflight if all(chunk is not r for r in remaking)]
        records = [record for chunk in evaluating for record in chunk.records]
        if worker.isolated and len(records) == 1:
            self.done[records[0].number] = (self._crash_result(records[0], code), records[0].end, None, None)
        else:
            self.retry.extend(Chunk([record], record.end) for record in records)
        for first, (_, _, holder, held) in list(self.done.items()):
            if holder is worker and held is not None:  # reported, its bytes lost with the worker
                del self.done[first]
                self.retry.appendleft(held)
        worker.conn.close()
        if worker.grants is not None:
            worker.grants.close()
        for granted in holes:  # before a fresh worker starts: stopping, the run must leave none behind
            first = granted.chunk.first
            self.remade[first] = self.remade.get(first, 0) + 1
            if self.remade[first] > REMAKE_LIMIT:  # a block whose writing kills every worker
                self._not_remade(granted, f"and every worker that made them again died too ({REMAKE_LIMIT} times)")
        fresh = self._start(ctx)
        for granted in holes:
            self.rewrites[granted.chunk.first] = granted
            fresh.send(granted.chunk, isolated=True)
        return fresh

    def _crash_result(self, record: Record, exitcode: int | None) -> ChunkResult:
        how = f"signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exit code {exitcode}"
        problem = KBError("engine_crash", f"the worker evaluating this record died ({how}); the batch went on")
        detail = self.options.get("detail", "full")
        result = self.kb.failed_result(
            problem, record.raw, status="error", patient_id=patient_id(record), detail=detail, digest=record.digest
        )
        line = dumps_bytes({"record": record.number, "line": record.line, **result})
        line += b"\n"
        return ChunkResult(record.number, 1, line, {"error": 1}, {}, crc32(line))


def evaluate_in_process(
    kb: KnowledgeBase, records: Iterable[Record], options: dict[str, Any] | None = None
) -> Iterator[ChunkResult]:
    """The same results without worker processes (tests, small inputs, Dask partitions)."""
    for record in records:
        yield evaluate_chunk(kb, [record], None, options)
