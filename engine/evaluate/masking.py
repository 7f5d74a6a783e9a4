"""Store a decision's input with it, identifiers masked, so it can be replayed later on its own."""

from __future__ import annotations

import copy
from typing import Any

from fsgs_kb.engine.load.fingerprint import canonical_json, sha256_text


def masked_value(value: Any) -> str:
    return "sha256:" + sha256_text(canonical_json(value))


def mask_record(record: Any, pointers: tuple[str, ...]) -> Any:
    """A copy of the record with each pointed-at value replaced by its hash (absent ones ignored)."""
    out = copy.deepcopy(record)
    for pointer in pointers:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
        node = out
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and parts and parts[-1] in node:
            node[parts[-1]] = masked_value(node[parts[-1]])
    return out


def attach_input(result: dict[str, Any], record: Any, pointers: tuple[str, ...]) -> None:
    masked = mask_record(record, pointers)
    result["decision"]["input"] = masked
    result["decision"]["masked"] = list(pointers)
    if "/id" in pointers and isinstance(masked, dict):
        result["patient_id"] = masked.get("id")
