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

import json
from typing import Any

from fsgs_kb.engine.kb import KnowledgeBase, load

_KNOWLEDGE_BASES: dict[str, KnowledgeBase] = {}


def _kb(rules_dir: str | None) -> KnowledgeBase:
    key = rules_dir or ""
    if key not in _KNOWLEDGE_BASES:
        _KNOWLEDGE_BASES[key] = load(rules_dir)
    return _KNOWLEDGE_BASES[key]


def evaluate_item(kb: KnowledgeBase, item: Any) -> dict[str, Any]:
    """A patient given as a dict or as one line of JSON text."""
    if isinstance(item, (str, bytes)):
        text = item.decode("utf-8") if isinstance(item, bytes) else item
        text = text.rstrip("\r\n")
        if not text.strip():
            return kb.failed_result("patient.empty", "empty line: no record", text)
        try:
            item = json.loads(text)
        except json.JSONDecodeError as exc:
            return kb.failed_result("patient.json", f"not valid JSON at column {exc.colno}: {exc.msg}", text)
    return kb.evaluate(item)


def _partition(items: Any, rules_dir: str | None) -> list[dict[str, Any]]:
    kb = _kb(rules_dir)
    return [evaluate_item(kb, item) for item in items]


def evaluate_bag(bag: Any, rules_dir: str | None = None) -> Any:
    """A bag of results, one per element of `bag` (patient dicts or JSON lines), in order."""
    return bag.map_partitions(_partition, rules_dir)
