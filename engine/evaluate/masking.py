"""Store a decision's input with it, identifiers masked, so it can be replayed later on its own.

A masked value must not be recoverable from the result: an unsalted hash of a patient id is
found by brute force in a fraction of a second. So masking is keyed — HMAC-SHA256 with a
secret the site provides (the same secret gives the same token, so records stay linkable
within a site) — or, without a secret, the value is removed.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
from typing import Any

from fsgs_kb.engine.errors import pointer_parts
from fsgs_kb.engine.load.fingerprint import canonical_json, decision_id, input_sha256

REMOVED = "[masked]"


def check_pointers(pointers: tuple[str, ...]) -> None:
    """Raise ValueError for a mask that is not a JSON pointer to a field (e.g. `id`, `/`)."""
    for pointer in pointers:
        if not isinstance(pointer, str) or not pointer.startswith("/") or pointer == "/":
            raise ValueError(f"mask {pointer!r} is not a JSON pointer to a field (write /{str(pointer).lstrip('/')})")


def masked_value(value: Any, key: bytes | None) -> str:
    if key is None:
        return REMOVED
    return "hmac-sha256:" + hmac.new(key, canonical_json(value).encode("utf-8"), hashlib.sha256).hexdigest()


def key_id(key: bytes | None) -> str | None:
    """Names a masking key without revealing it (to tell runs with different keys apart)."""
    return None if key is None else hmac.new(key, b"fsgs-kb mask key id", hashlib.sha256).hexdigest()[:16]


def mask_record(record: Any, pointers: tuple[str, ...], key: bytes | None) -> Any:
    """A copy of the record with each pointed-at value masked (absent ones ignored)."""
    out = copy.deepcopy(record)
    for pointer in pointers:
        parts = pointer_parts(pointer)
        node = out
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and parts and parts[-1] in node:
            node[parts[-1]] = masked_value(node[parts[-1]], key)
    return out


def attach_input(result: dict[str, Any], record: Any, pointers: tuple[str, ...], key: bytes | None) -> None:
    """Store the (masked) input in the decision record. With a mask, the input hash and the
    decision id are those of the masked input too: a hash of the clear record beside it would
    let anyone confirm a guessed identifier."""
    masked = mask_record(record, pointers, key)
    decision = result["decision"]
    decision["input"] = masked
    decision["masked"] = list(pointers)
    if pointers:
        decision["input_sha256"] = input_sha256(masked)
        decision["decision_id"] = decision_id(decision["kb"]["fingerprint"], decision["input_sha256"])
    if "/id" in pointers and isinstance(masked, dict):
        result["patient_id"] = masked.get("id")
