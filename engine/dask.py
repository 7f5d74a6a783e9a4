"""Evaluate a dask.bag of patient records on a Dask cluster (the optional `dask` extra).

    import dask.bag as db
    from distributed import Client
    from engine.dask import evaluate_bag

    client = Client("tcp://scheduler:8786")               # or LocalCluster()
    bag = db.read_text("s3://bucket/patients/*.jsonl")     # lines of JSON, or dicts
    evaluate_bag(bag).map(engine.output.dumps).to_textfiles("s3://bucket/results/*.jsonl")

Each worker process loads the knowledge base once and keeps its own durable-rules rulesets
(created lazily in that process, never shipped over the network). A record gives the same
result as `fsgs-kb batch` without its `record`/`line` fields, which only a file reader knows.
"""

from __future__ import annotations

import json
from typing import Any

_KNOWLEDGE_BASES: dict[str, Any] = {}


def _kb(rules_dir: str | None) -> Any:
    import engine

    key = rules_dir or ""
    if key not in _KNOWLEDGE_BASES:
        _KNOWLEDGE_BASES[key] = engine.load(rules_dir)
    return _KNOWLEDGE_BASES[key]


def evaluate_item(kb: Any, item: Any) -> dict[str, Any]:
    """A patient given as a dict or as one line of JSON text."""
    from engine.evaluate import failed_result, invalid_json_result

    if isinstance(item, (str, bytes)):
        text = item.decode("utf-8") if isinstance(item, bytes) else item
        text = text.rstrip("\r\n")
        if not text.strip():
            return failed_result(kb, "patient.empty", "empty line: no record", text)
        try:
            item = json.loads(text)
        except json.JSONDecodeError as exc:
            return invalid_json_result(kb, text, f"not valid JSON at column {exc.colno}: {exc.msg}")
    return kb.evaluate(item)


def _partition(items: Any, rules_dir: str | None) -> list[dict[str, Any]]:
    kb = _kb(rules_dir)
    return [evaluate_item(kb, item) for item in items]


def evaluate_bag(bag: Any, rules_dir: str | None = None) -> Any:
    """A bag of results, one per element of `bag` (patient dicts or JSON lines), in order."""
    return bag.map_partitions(_partition, rules_dir)
