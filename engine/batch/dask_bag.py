"""Evaluate a dask.bag of patient records on a Dask cluster (the optional `dask` extra).

    import dask.bag as db
    from distributed import Client
    from fsgs_kb.engine.batch.dask_bag import evaluate_bag

    client = Client("tcp://scheduler:8786")               # or LocalCluster()
    bag = db.read_text("s3://bucket/patients/*.jsonl")     # lines of JSON, or dicts
    evaluate_bag(bag).map(fsgs_kb.engine.evaluate.output.dumps).to_textfiles("s3://bucket/results/*.jsonl")

Each worker process loads the knowledge base once and keeps its own durable-rules rulesets
(created lazily in that process, never shipped over the network). A record gives the same
result as `fsgs-kb batch` without its `record`/`line` fields, which only a file reader knows.
"""

from __future__ import annotations

from typing import Any

from fsgs_kb.engine.errors import KBError
from fsgs_kb.engine.kb import KnowledgeBase, load
from fsgs_kb.engine.read.records import Record

_KNOWLEDGE_BASES: dict[str, KnowledgeBase] = {}


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


def _partition(items: Any, rules_dir: str | None) -> list[dict[str, Any]]:
    kb = _kb(rules_dir)
    return [evaluate_item(kb, item) for item in items]


def evaluate_bag(bag: Any, rules_dir: str | None = None) -> Any:
    """A bag of results, one per element of `bag` (patient dicts or JSON lines), in order."""
    return bag.map_partitions(_partition, rules_dir)
