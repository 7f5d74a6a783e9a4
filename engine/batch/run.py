"""Evaluate any number of records across worker processes: in order, nothing lost, nothing twice.

The parent frames records lazily, hands them to workers in chunks, and yields each chunk's
encoded results in input order as soon as it and all before it are done, so memory stays flat.
Every input record gets exactly one result. A worker that dies (a segfault in the native engine,
SIGKILL, out of memory) costs only its chunks in flight: those records are retried one at a time
in fresh workers, and the one that kills a worker again gets an `error` result with code
`engine_crash`. Closing the generator (the run is stopped) stops every worker.

At most MAX_WORKERS workers (a usage error beyond: `--workers 99999999999999999999` must not fork
until the machine falls over), and never more than there are chunks to run: a worker is
started only when a chunk is there for it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import zlib
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

from fsgs_kb.engine.batch.workers import ChunkResult, evaluate_chunk, pack_chunk, patient_id, recv_result, serve
from fsgs_kb.engine.errors import KBError, KBErrors
from fsgs_kb.engine.evaluate.output import dumps_bytes
from fsgs_kb.engine.kb import KnowledgeBase
from fsgs_kb.engine.read.records import Record

CHUNK_SIZE = 64
PIPELINE_DEPTH = 2
POLL_S = 0.2  # how often a waiting parent looks at its stop flag
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


class _Worker:
    def __init__(self, ctx: Any, kb: KnowledgeBase, rules_dir: str | None, options: dict[str, Any]) -> None:
        self.conn, child = ctx.Pipe()
        inherit = kb if ctx.get_start_method() == "fork" else None
        self.proc = ctx.Process(target=serve, args=(child, inherit, rules_dir, options, os.getpid()), daemon=True)
        self.proc.start()
        child.close()
        self.inflight: deque[Chunk] = deque()  # chunks sent, answers not yet received
        self.isolated = False  # holds one record being retried alone: nothing else is sent to it

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
    ) -> None:
        self.options = options or {}
        self.kb = kb
        self.rules_dir = rules_dir
        self.n_workers = check_workers(workers)
        self.chunk_size = chunk_size
        self.stopped = stopped
        self.done: dict[int, tuple[ChunkResult, int]] = {}
        self.next_number = 1
        self.bytes_read = 0
        self.retry: deque[Chunk] = deque()
        self.worker_crashes = 0
        self.workers_started = 0  # replacements of crashed workers included

    def _start(self, ctx: Any) -> _Worker:
        self.workers_started += 1
        return _Worker(ctx, self.kb, self.rules_dir, self.options)

    def results(self, records: Iterable[Record], first_number: int = 1) -> Generator[tuple[ChunkResult, int]]:
        self.next_number = first_number
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        allow_workers()
        pool: list[_Worker] = []  # started as chunks arrive: never more workers than chunks
        feed = _chunks(iter(records), self.chunk_size)
        limit = self.n_workers * self.chunk_size * 3  # records read but not yet written: bounds memory
        exhausted = False
        finished = False
        try:
            while not self.stopped():
                yield from self._ready()
                exhausted = self._dispatch(ctx, pool, feed, limit, exhausted)
                busy = [w for w in pool if w.inflight]
                if not busy:
                    if exhausted and not self.retry:
                        break
                    continue
                self._collect(ctx, pool, busy)
            yield from self._ready()
            finished = not self.stopped()
        finally:
            for worker in pool:
                worker.stop(now=not finished)

    def _ready(self) -> Iterator[tuple[ChunkResult, int]]:
        while self.next_number in self.done:
            result, end = self.done.pop(self.next_number)
            self.next_number += result.count
            yield result, end

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
                    if not worker.inflight:
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
        held = sum(result.count for result, _ in self.done.values())
        return held + sum(len(chunk.records) for w in pool for chunk in w.inflight)

    def _collect(self, ctx: Any, pool: list[_Worker], busy: list[_Worker]) -> None:
        ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=POLL_S))
        for i, worker in enumerate(pool):
            if not worker.inflight or not ({worker.conn, worker.proc.sentinel} & ready):
                continue
            try:
                while worker.inflight and worker.conn.poll():
                    result = recv_result(worker.conn)
                    chunk = worker.inflight.popleft()
                    self.done[result.first] = (result, chunk.end)
                    worker.isolated = worker.isolated and bool(worker.inflight)
                if worker.proc.sentinel not in ready:
                    continue
            except (EOFError, OSError, ValueError):  # a pipe reset or a message cut short by the death
                pass
            pool[i] = self._replace(ctx, worker)

    def _replace(self, ctx: Any, worker: _Worker) -> _Worker:
        """A worker died: retry its records one by one, or record the crash of an isolated one."""
        worker.proc.join(timeout=5)
        code = worker.proc.exitcode
        self.worker_crashes += 1
        records = [record for chunk in worker.inflight for record in chunk.records]
        if worker.isolated and len(records) == 1:
            self.done[records[0].number] = (self._crash_result(records[0], code), records[0].end)
        else:
            self.retry.extend(Chunk([record], record.end) for record in records)
        worker.conn.close()
        return self._start(ctx)

    def _crash_result(self, record: Record, exitcode: int | None) -> ChunkResult:
        how = f"signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exit code {exitcode}"
        problem = KBError("engine_crash", f"the worker evaluating this record died ({how}); the batch went on")
        detail = self.options.get("detail", "full")
        result = self.kb.failed_result(
            problem, record.raw, status="error", patient_id=patient_id(record), detail=detail
        )
        line = dumps_bytes({"record": record.number, "line": record.line, **result})
        line += b"\n"
        return ChunkResult(record.number, 1, line, {"error": 1}, {}, zlib.crc32(line))


def evaluate_in_process(
    kb: KnowledgeBase, records: Iterable[Record], options: dict[str, Any] | None = None
) -> Iterator[ChunkResult]:
    """The same results without worker processes (tests, small inputs, Dask partitions)."""
    for record in records:
        yield evaluate_chunk(kb, [record], None, options)
