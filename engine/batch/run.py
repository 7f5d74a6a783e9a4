"""Evaluate any number of records across worker processes: in order, nothing lost, nothing twice.

The parent reads records lazily, hands them to workers in chunks, and writes each result line in
input order as soon as it and all before it are done, so memory stays flat. Every input record
gets exactly one output line. A worker that dies (a segfault in the native engine, SIGKILL, out
of memory) costs only its current chunk: those records are retried one at a time in fresh
workers, and the one that kills a worker again gets an `error` result with code `engine_crash`.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from fsgs_kb.engine.batch.readers import Record
from fsgs_kb.engine.batch.workers import evaluate_record, fault_plan
from fsgs_kb.engine.evaluate.output import dumps
from fsgs_kb.engine.kb import KnowledgeBase, load

CHUNK_SIZE = 32
PIPELINE_DEPTH = 2


@dataclass
class BatchSummary:
    """What a batch did: counts by status and, per rule, by outcome, plus throughput."""

    records: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_rule: dict[str, Counter[str]] = field(default_factory=dict)
    worker_crashes: int = 0
    resumed_after: int = 0
    elapsed_s: float = 0.0
    workers: int = 0

    def add(self, status: str, outcomes: list[tuple[str, str]]) -> None:
        self.records += 1
        self.by_status[status] += 1
        for rule_id, outcome in outcomes:
            self.by_rule.setdefault(rule_id, Counter())[outcome] += 1

    @property
    def exit_code(self) -> int:
        """0 all evaluated, 1 some records invalid, 3 some records hit internal errors."""
        if self.by_status.get("error"):
            return 3
        return 1 if self.by_status.get("invalid") else 0

    def to_dict(self) -> dict[str, Any]:
        rate = self.records / self.elapsed_s if self.elapsed_s else 0.0
        return {
            "records": self.records,
            "resumed_after": self.resumed_after,
            "by_status": dict(sorted(self.by_status.items())),
            "by_rule": {rule: dict(sorted(c.items())) for rule, c in sorted(self.by_rule.items())},
            "worker_crashes": self.worker_crashes,
            "workers": self.workers,
            "elapsed_s": round(self.elapsed_s, 3),
            "records_per_s": round(rate, 1),
            "exit_code": self.exit_code,
        }


Line = tuple[str, str, list[tuple[str, str]]]  # (json line, status, [(rule id, outcome)])


def result_line(result: dict[str, Any]) -> Line:
    return dumps(result), result["status"], [(r["id"], r["outcome"]) for r in result["rules"]]


def _serve(conn: Connection, kb: KnowledgeBase, rules_dir: str | None, options: dict[str, Any]) -> None:
    """Worker loop. With fork the parent's loaded knowledge base is inherited; otherwise loaded."""
    try:
        kb = kb if kb is not None else load(rules_dir)
        faults = fault_plan()
        while True:
            message = conn.recv()
            if message is None:
                return
            conn.send([(r.number, result_line(evaluate_record(kb, r, faults, options))) for r in message])
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        return  # the parent is gone: leave quietly


class _Worker:
    def __init__(self, ctx: Any, kb: KnowledgeBase, rules_dir: str | None, options: dict[str, Any]) -> None:
        self.conn, child = ctx.Pipe()
        inherit = kb if ctx.get_start_method() == "fork" else None
        self.proc = ctx.Process(target=_serve, args=(child, inherit, rules_dir, options), daemon=True)
        self.proc.start()
        child.close()
        self.inflight: deque[list[Record]] = deque()  # chunks sent, answers not yet received
        self.isolated = False  # holds one record being retried alone: nothing else is sent to it

    def can_take(self) -> bool:
        """Two chunks in flight keep a worker busy while the parent handles the previous answer."""
        return not self.isolated and len(self.inflight) < PIPELINE_DEPTH

    def send(self, chunk: list[Record], isolated: bool) -> None:
        """Hand a chunk over. A worker that died meanwhile keeps the chunk: the main loop sees its
        sentinel, replaces it and retries the records one by one."""
        self.inflight.append(chunk)
        self.isolated = isolated
        try:
            self.conn.send(chunk)
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
            pass

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()


def _chunks(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class BatchRunner:
    """Runs one batch; `write` receives whole result lines in input order."""

    def __init__(
        self,
        kb: KnowledgeBase,
        rules_dir: str | None,
        workers: int,
        write: Callable[[str], None],
        progress: Callable[[int, int], None] | None = None,
        chunk_size: int = CHUNK_SIZE,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.options = options or {}
        self.kb = kb
        self.rules_dir = rules_dir
        self.n_workers = max(1, workers)
        self.write = write
        self.progress = progress
        self.chunk_size = chunk_size
        self.summary = BatchSummary(workers=self.n_workers)
        self.done: dict[int, Line] = {}
        self.next_number = 1
        self.bytes_read = 0
        self.retry: deque[list[Record]] = deque()

    def run(self, records: Iterable[Record], first_number: int = 1) -> BatchSummary:
        start = time.perf_counter()
        self.next_number = first_number
        self.summary.resumed_after = first_number - 1
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        pool = [_Worker(ctx, self.kb, self.rules_dir, self.options) for _ in range(self.n_workers)]
        feed = _chunks(iter(records), self.chunk_size)
        limit = self.n_workers * self.chunk_size * 3  # records read but not yet written: bounds memory
        exhausted = False
        try:
            while True:
                self._flush()
                exhausted = self._dispatch(pool, feed, limit, exhausted)
                busy = [w for w in pool if w.inflight]
                if not busy:
                    if exhausted and not self.retry:
                        break
                    continue
                self._collect(ctx, pool, busy)
        finally:
            for worker in pool:
                worker.stop()
        self._flush()
        self.summary.elapsed_s = time.perf_counter() - start
        return self.summary

    def _dispatch(self, pool: list[_Worker], feed: Iterator[list[Record]], limit: int, exhausted: bool) -> bool:
        for worker in pool:
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
                self.bytes_read += sum(r.size for r in chunk)
                worker.send(chunk, isolated=False)
        return exhausted

    def _in_flight(self, pool: list[_Worker]) -> int:
        return len(self.done) + sum(len(chunk) for w in pool for chunk in w.inflight)

    def _collect(self, ctx: Any, pool: list[_Worker], busy: list[_Worker]) -> None:
        ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy]))
        for i, worker in enumerate(pool):
            if not worker.inflight or not ({worker.conn, worker.proc.sentinel} & ready):
                continue
            try:
                while worker.inflight and worker.conn.poll():
                    for number, line in worker.conn.recv():
                        self.done[number] = line
                    worker.inflight.popleft()
                    worker.isolated = worker.isolated and bool(worker.inflight)
                if worker.proc.sentinel not in ready:
                    continue
            except Exception:  # noqa: BLE001 - EOF, a reset pipe, a message cut short by the death
                pass
            pool[i] = self._replace(ctx, worker)

    def _replace(self, ctx: Any, worker: _Worker) -> _Worker:
        """A worker died: retry its records one by one, or record the crash of an isolated one."""
        worker.proc.join(timeout=5)
        code = worker.proc.exitcode
        self.summary.worker_crashes += 1
        records = [record for chunk in worker.inflight for record in chunk]
        if worker.isolated and len(records) == 1:
            self.done[records[0].number] = self._crash_line(records[0], code)
        else:
            self.retry.extend([record] for record in records)
        return _Worker(ctx, self.kb, self.rules_dir, self.options)

    def _crash_line(self, record: Record, exitcode: int | None) -> Line:
        how = f"signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exit code {exitcode}"
        result = self.kb.failed_result(
            "engine_crash",
            f"the worker evaluating this record died ({how}); the batch went on",
            record.text or "",
            status="error",
        )
        result["patient_id"] = _patient_id(record)
        return result_line({"record": record.number, "line": record.line, **result})

    def _flush(self) -> None:
        while self.next_number in self.done:
            text, status, outcomes = self.done.pop(self.next_number)
            self.write(text + "\n")
            self.summary.add(status, outcomes)
            self.next_number += 1
        if self.progress is not None:
            self.progress(self.summary.records, self.bytes_read)


def _patient_id(record: Record) -> str | None:
    """The id of a record, read without evaluating it (for the result of a record that crashed)."""
    import json

    data = record.data
    if record.text is not None:
        try:
            data = json.loads(record.text)
        except ValueError:
            return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None
