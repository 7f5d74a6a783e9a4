"""Evaluate a dask.bag of patient records on a Dask cluster (the optional `dask` extra).

    import dask.bag as db
    from distributed import Client
    from fsgs_kb.engine.batch.dask_bag import evaluate_bag

    client = Client("tcp://scheduler:8786")               # or LocalCluster()
    bag = db.read_text("s3://bucket/patients/*.jsonl")     # lines of JSON, or dicts
    evaluate_bag(bag, detail="standard").map(fsgs_kb.engine.evaluate.output.dumps).to_textfiles("s3://bucket/results/*.jsonl")

Each worker process loads the knowledge base once and keeps its own durable-rules rulesets
(created lazily in that process, never shipped over the network). A record gives the same
result as `fsgs-kb batch` without its `record`/`line` fields, which only a file reader knows.
A worker's threads take turns on its knowledge base (one durable-rules session per ruleset).

From the command line, `fsgs-kb batch 'data/part-*.jsonl' --dask SCHEDULER -o OUTDIR` runs one
task per input part (`run_parts`), each writing its output part exactly as the local batch
would (engine/batch/parts.py), crash isolation included: the task hands the part's records to
the local batch's runner, whose worker process (a child of the Dask worker) may die on a record
without taking the task along. It prints the summary of all parts at the end.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fsgs_kb.engine.batch.parts import PartsRun, evaluate_part, part_output
from fsgs_kb.engine.errors import KBError, KBErrors
from fsgs_kb.engine.kb import KnowledgeBase, load
from fsgs_kb.engine.read.records import Record

_KNOWLEDGE_BASES: dict[str, KnowledgeBase] = {}
_TURNS = threading.Lock()  # a knowledge base's durable-rules sessions serve one thread at a time


def _distributed() -> Any:
    try:
        import distributed  # the dask extra
    except ImportError:
        raise KBErrors(
            [KBError("batch.dask", "--dask needs the dask extra", hint="pip install 'fsgs-kb[dask]'")]
        ) from None
    return distributed


def _kb(rules_dir: str | None) -> KnowledgeBase:
    key = rules_dir or ""
    if key not in _KNOWLEDGE_BASES:
        _KNOWLEDGE_BASES[key] = load(rules_dir)
    return _KNOWLEDGE_BASES[key]


def evaluate_item(kb: KnowledgeBase, item: Any) -> dict[str, Any]:
    """A patient given as a dict or as one line of JSON text (str or bytes), read by the same
    bounded reader as `fsgs-kb batch`."""
    if isinstance(item, (str, bytes)):
        raw = item.encode("utf-8", "surrogatepass") if isinstance(item, str) else item
        text = raw.strip()
        empty = KBError("patient.empty", "empty line: no record")
        return kb.evaluate_record(Record(1, 1, raw=text) if text else Record(1, 1, problem=empty))
    return kb.evaluate(item)


def _partition(items: Any, rules_dir: str | None, detail: str) -> list[dict[str, Any]]:
    with _TURNS:
        kb = _kb(rules_dir)
        return [kb.reduce(evaluate_item(kb, item), detail) for item in items]


def evaluate_bag(bag: Any, rules_dir: str | None = None, detail: str = "full") -> Any:
    """A bag of results, one per element of `bag` (patient dicts or JSON lines), in order."""
    return bag.map_partitions(_partition, rules_dir, detail)


STOP_POLL_S = 0.2  # how often a task asks whether its command has stopped the run
STOP_WAIT_S = 120.0  # how long a stopped run waits for its tasks to end (each stops within a chunk)


@dataclass
class PartOutcome:
    """What one part's task did: its counts, or the problems that stopped it, or that it was
    stopped (its output part left as it was)."""

    counts: dict[str, Any] | None = None
    errors: list[KBError] = field(default_factory=list)
    stopped: bool = False


class _StopRequested:
    """Whether the command asked its tasks to stop (a distributed.Event it sets), asked at most
    every STOP_POLL_S; a scheduler that cannot be asked any more counts as a stop."""

    def __init__(self, name: str) -> None:
        self.event: Any = _distributed().Event(name)
        self.asked = 0.0
        self.answer = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.answer and now - self.asked >= STOP_POLL_S:
            self.asked = now
            try:
                self.answer = bool(self.event.is_set())
            except (OSError, TimeoutError):
                self.answer = True
        return self.answer


def _part_task(
    source: str,
    output: str,
    rules_dir: str | None,
    options: dict[str, Any],
    input_format: str | None,
    stop_event: str,
) -> PartOutcome:
    stopped = _StopRequested(stop_event)
    with _TURNS:
        if stopped():
            return PartOutcome(stopped=True)
        try:
            counts = evaluate_part(_kb(rules_dir), source, output, options, input_format, rules_dir, stopped)
        except KBErrors as exc:  # returned, not raised: the problems travel as they are
            return PartOutcome(errors=exc.errors)
        return PartOutcome(counts=counts, stopped=counts is None)


def connect(scheduler: str) -> Any:
    """A client of the Dask scheduler at `scheduler`, or KBErrors naming it: asked before the
    output directory is made, so a scheduler that cannot be reached leaves nothing behind."""
    try:
        make_client: Any = _distributed().Client  # untyped: used through Any
        return make_client(scheduler, timeout="30s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise KBErrors(
            [KBError("batch.dask", f"cannot reach the Dask scheduler {scheduler}: {exc}", file=scheduler)]
        ) from None


def run_parts(
    client: Any,
    scheduler: str,
    parts: list[str],
    outdir: str,
    rules_dir: str | None,
    options: dict[str, Any],
    input_format: str | None = None,
) -> PartsRun:
    """Evaluate each part as one task on the Dask cluster of `client` (`connect`), each into its output
    part; a record that crashes the interpreter costs only itself, as in the local batch (the
    task evaluates through the local batch's runner, in a worker process of its own).

    A part that cannot be read or written stops the run with its error (exit 2, as locally),
    naming the part; the other tasks are then told to stop and the command waits until none is
    still writing (an interrupt too), so no task outlives the command: a stopped task leaves its
    output part as it was (engine/batch/parts.py `PartOutput`)."""
    distributed = _distributed()
    start = time.perf_counter()
    try:
        workers = len(client.scheduler_info().get("workers", {}))
        stop: Any = distributed.Event(f"fsgs-kb-stop-{uuid.uuid4().hex}", client=client)
        futures: dict[Any, str] = {
            client.submit(
                _part_task, part, part_output(outdir, part), rules_dir, options, input_format, stop.name, pure=False
            ): part
            for part in parts
        }
        outcomes: dict[str, PartOutcome] = {}
        try:
            for future in distributed.as_completed(list(futures)):
                outcome = outcomes[futures[future]] = _outcome(future, futures[future])
                if outcome.errors:
                    break
        except BaseException:  # an interrupt: the tasks stop before the command does
            _stop(client, stop, futures, outcomes, scheduler)
            raise
        errors = [e for o in outcomes.values() for e in o.errors]
        if errors:
            errors += _stop(client, stop, futures, outcomes, scheduler)
            raise KBErrors(errors)
    finally:
        client.close()
    counts = [outcomes[part].counts for part in parts]
    return PartsRun(parts=[c for c in counts if c is not None], workers=workers, elapsed_s=time.perf_counter() - start)


def _outcome(future: Any, part: str, asked_to_stop: bool = False) -> PartOutcome:
    """A finished task's outcome; a task that raised (a bug, a lost worker) or that stopped when
    this command had not asked it to is a problem named by its part."""
    if future.status == "cancelled":
        return PartOutcome(errors=[KBError("batch.dask", "the part's task was cancelled on the cluster", file=part)])
    exc = future.exception()
    if exc is not None:
        if isinstance(exc, _distributed().KilledWorker):
            problem = KBError(
                "batch.dask",
                f"the part's task lost its worker: {exc}",
                file=part,
                hint="see the Dask workers' logs (memory limit, a killed process)",
            )
        else:
            problem = KBError("internal", f"{type(exc).__name__}: {exc}", file=part, hint="see the Dask worker's log")
        return PartOutcome(errors=[problem])
    outcome: PartOutcome = future.result()
    if outcome.stopped and not asked_to_stop:
        why = "the part's task stopped before its end: the scheduler could not be reached"
        return PartOutcome(errors=[KBError("batch.dask", why, file=part)])
    return outcome


def _stop(
    client: Any, stop: Any, futures: dict[Any, str], outcomes: dict[str, PartOutcome], scheduler: str
) -> list[KBError]:
    """Tell every task to stop and wait until none runs (each stops within a chunk of records);
    the problems of the tasks not yet in `outcomes` that failed meanwhile, and a note about
    those that did not end."""
    stop.set()
    problems = []
    try:
        _distributed().wait(list(futures), timeout=STOP_WAIT_S)
    except TimeoutError:
        running = [part for future, part in futures.items() if not future.done()]
        problems.append(
            KBError(
                "batch.dask",
                f"{len(running)} task(s) did not stop within {STOP_WAIT_S:.0f} s ({', '.join(running[:3])}): "
                "their output parts stay locked until they end",
                file=scheduler,
            )
        )
    for future, part in futures.items():
        if part not in outcomes and future.done():
            problems += _outcome(future, part, asked_to_stop=True).errors
    client.cancel(list(futures))
    return problems
