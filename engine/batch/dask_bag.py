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
from typing import Any

from fsgs_kb.engine.batch.parts import PartsRun, evaluate_part, part_output
from fsgs_kb.engine.errors import KBError, KBErrors
from fsgs_kb.engine.kb import KnowledgeBase, load
from fsgs_kb.engine.read.records import Record

_KNOWLEDGE_BASES: dict[str, KnowledgeBase] = {}
_TURNS = threading.Lock()  # a knowledge base's durable-rules sessions serve one thread at a time


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


def _part_task(
    source: str, output: str, rules_dir: str | None, options: dict[str, Any], input_format: str | None
) -> dict[str, Any]:
    with _TURNS:
        return evaluate_part(_kb(rules_dir), source, output, options, input_format, rules_dir)


def run_parts(
    scheduler: str,
    parts: list[str],
    outdir: str,
    rules_dir: str | None,
    options: dict[str, Any],
    input_format: str | None = None,
) -> PartsRun:
    """Evaluate each part as one task on the Dask cluster at `scheduler`, each into its output
    part; a record that crashes the interpreter costs only itself, as in the local batch (the
    task evaluates through the local batch's runner, in a worker process of its own)."""
    try:
        import distributed  # the dask extra
    except ImportError:
        raise KBErrors(
            [KBError("batch.dask", "--dask needs the dask extra", hint="pip install 'fsgs-kb[dask]'")]
        ) from None
    try:
        make_client: Any = distributed.Client  # untyped: used through Any
        client: Any = make_client(scheduler, timeout="30s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise KBErrors([KBError("batch.dask", f"cannot reach the Dask scheduler {scheduler}: {exc}")]) from None
    start = time.perf_counter()
    try:
        workers = len(client.scheduler_info().get("workers", {}))
        futures = [
            client.submit(_part_task, part, part_output(outdir, part), rules_dir, options, input_format, pure=False)
            for part in parts
        ]
        counts: list[dict[str, Any]] = client.gather(futures)
    finally:
        client.close()
    return PartsRun(parts=counts, workers=workers, elapsed_s=time.perf_counter() - start)
