"""Content hashes that make a decision reproducible: of the knowledge base and of the input.

The knowledge-base fingerprint hashes the parsed content of every YAML file (canonical JSON,
sorted keys) with its path, so comments and formatting do not change it but any change of
meaning does. Scenario tests under tests/ are not knowledge and are left out; so is the FHIR
map (fhir-map.yaml), which the loader does not read: it is versioned by its own map_version, and
a FHIR result records its sha256 (engine.audit.mapdiff makes diff require the version bump).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson

from fsgs_kb.engine.load.yamlsafe import Located


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def decision_id(fingerprint: str, input_sha: str) -> str:
    """A decision's id: the knowledge base that made it and the input it was made from."""
    return sha256_text(f"{fingerprint}:{input_sha}")[:32]


_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def input_sha256(value: Any) -> str:
    """sha256 of `canonical_json(value)`, the input hash every decision records, computed with
    orjson (sorted keys) where that gives the same bytes, ten times faster.

    orjson and `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)` write
    the same text for strings, integers, true/false/null, lists and string-keyed objects (keys in
    code-point order), and the same shortest round-trip text for every float except those below
    1e-4 in magnitude, which Python writes as `1e-05` and orjson as `0.00001` or `3e-7`. Such a
    float leaves `0.0000` or `e-` in orjson's text, so either sequence (also when it is only
    inside a string) sends the value to the standard library; so does anything orjson refuses
    (a non-string key, an integer beyond 64 bits, a type that is not JSON). A test compares
    both on generated values (tests/test_fastpaths.py)."""
    try:
        text = orjson.dumps(value, option=_SORTED)
    except TypeError:
        return sha256_text(canonical_json(value))
    if b"e-" in text or b"0.0000" in text:
        return sha256_text(canonical_json(value))
    return hashlib.sha256(text).hexdigest()


def kb_fingerprint(docs: dict[str, Located], root: str, inside: dict[str, str] | None = None) -> str:
    """sha256 over (path relative to the rules directory, canonical content) of every file.

    `inside` maps each file to its path inside the rules directory (the loader records it); the
    displayed paths alone cannot tell when the working directory is inside the rules directory."""
    digest = hashlib.sha256()
    prefix = root.rstrip("/") + "/"
    inside = inside or {}
    for file in sorted(docs, key=lambda f: inside.get(f, f)):
        relative = inside.get(file) or (file[len(prefix) :] if file.startswith(prefix) else file.rsplit("/", 1)[-1])
        if relative.startswith("tests/"):
            continue
        digest.update(
            relative.encode("utf-8", "surrogateescape")
            + b"\0"
            + canonical_json(docs[file].data).encode("utf-8")
            + b"\0"
        )
    return digest.hexdigest()
